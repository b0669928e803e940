"""web: the radiologist's web UI (Starlette + uvicorn, run inside the node).

Study browser (``find.studies`` -> ``found.study`` streamed into the page), study page (``get.study`` with
progress per series, thumbnails, derived/AI series with the node that made them, errors in place with a
dead-letter retry button, the study's timeline), image viewer (raw slices windowed in the browser; perfusion
maps in colour with values under the cursor), mesh monitor, and the report editor that signs a DICOM SR
(``store.series`` -> the pacs node uploads it -> ``uploaded.series``). See docs/web.md.

Options (``[nodes.web]``): ``host`` (127.0.0.1), ``port`` (8080; 0: any free port), ``token`` (the login token;
default ``$MESHDCM_WEB_TOKEN``, else a random one printed at start), ``users_file`` (a users file with scrypt
hashes, full names and organisations: who may sign; python -m meshdcm.web.auth NAME makes a line), ``secret_key`` (signs session cookies; default random per
start), ``tls_certfile``/``tls_keyfile`` (serve HTTPS; cookies are then Secure), ``data`` (drafts, reports,
image cache; default the node's data folder), ``cache_max_gb`` (20) and ``cache_max_days`` (7): series fetched
from other machines into ``<data>/cache`` are removed least recently used first beyond either (the series on screen
stay; one asked for again is fetched again).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

from meshdcm import ConfigError, Node, NodeConfig, data_dir, days_option, node_options
from meshdcm.config import WEB_LISTEN_FD_ENV

log = logging.getLogger("meshdcm.web")


@dataclass(frozen=True)
class WebOptions:
    """``[nodes.web]`` (the module docstring says what each does); the cache limits default to the web app's
    (``meshdcm.web.app.CACHE_MAX_BYTES``, ``CACHE_MAX_AGE``: 20 GB, 7 days)."""

    host: str = "127.0.0.1"
    port: int = 8080
    token: str = ""
    users_file: str = ""
    secret_key: str = ""
    tls_certfile: str | None = None
    tls_keyfile: str | None = None
    data: str = ""
    cache_max_gb: float | None = None
    cache_max_days: float | None = None


def create(config: NodeConfig) -> Node:
    opts = node_options("web", WebOptions, config.options)
    try:
        import uvicorn

        from meshdcm.web.app import CACHE_MAX_AGE, CACHE_MAX_BYTES, WebConfig, create_app
    except ImportError as exc:
        raise ConfigError(f"the web node needs its extra: pip install 'meshdcm[web]' ({exc})") from exc

    host, port = opts.host, opts.port
    certfile, keyfile = opts.tls_certfile, opts.tls_keyfile
    cache_days = CACHE_MAX_AGE / 86400 if opts.cache_max_days is None else opts.cache_max_days
    cache_age = days_option({"cache_max_days": cache_days}, "cache_max_days")
    cache_bytes = int((CACHE_MAX_BYTES / 2**30 if opts.cache_max_gb is None else opts.cache_max_gb) * 2**30)
    if cache_bytes < 0:
        raise ConfigError("[nodes.web] cache_max_gb must be >= 0")
    if not _loopback(host) and not certfile:
        log.warning("the web UI listens on %s without TLS: session cookies and patient data cross the network in "
                    "clear; set tls_certfile/tls_keyfile", host)
    users_file = Path(opts.users_file) if opts.users_file else None
    token = opts.token or os.environ.get("MESHDCM_WEB_TOKEN") or ""
    made_token = not token and users_file is None
    if made_token:
        token = secrets.token_urlsafe(16)
    data = Path(opts.data or data_dir(config.name))
    data.mkdir(parents=True, exist_ok=True)
    node = Node(config=config, capabilities=("web",))
    app = create_app(node, WebConfig(data=data, token=token, users_file=users_file,
                                     secret_key=opts.secret_key, https=bool(certfile),
                                     cache_max_bytes=cache_bytes, cache_max_age=cache_age))
    # IPPROTO_TCP named explicitly: asyncio sets TCP_NODELAY on accepted connections only when the listening socket's
    # proto says TCP, and without it every small answer waits ~40 ms for Nagle and the browser's delayed ACK
    inherited = os.environ.pop(WEB_LISTEN_FD_ENV, "")
    if inherited:  # `meshdcm up` bound it (so that two of them never pick one port) and handed it over
        sock = socket.socket(fileno=int(inherited))
    else:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM,
                             socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise ConfigError(f"the web UI cannot listen on {host}:{port}: {exc}; set another [nodes.web] port "
                              "(0 picks a free one)") from exc
        sock.listen(128)
    bound = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                           ssl_certfile=certfile, ssl_keyfile=keyfile))
    url = f"{'https' if certfile else 'http'}://{host if ':' not in host else f'[{host}]'}:{bound}/"
    node.extra["web"] = url

    @node.task
    def serve(stopping: threading.Event) -> None:
        def stop_when_asked():
            stopping.wait()
            server.should_exit = True
        threading.Thread(target=stop_when_asked, name="web-stop", daemon=True).start()
        # a token this node made is shown once, here; one given to it (meshdcm up prints its own) is not logged
        log.info("web UI on %s (log in %s)", url, f"with the token {token}" if made_token else
                 "with the configured token" if token else "with a users-file account")
        try:
            server.run(sockets=[sock])
        finally:
            sock.close()

    return node


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
