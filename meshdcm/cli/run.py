"""Commands that run nodes: ``node`` (one node of a kind, or of a Python file) and ``up`` (every kind on this
machine, on loopback, each restarted when it dies)."""

from __future__ import annotations

import importlib
import importlib.util
from importlib.metadata import entry_points
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..config import WEB_LISTEN_FD_ENV
from ..errors import ConfigError
from ..node import Node
from .common import config_from, fail, setup_logging

log = logging.getLogger("meshdcm.cli")


# --- node -----------------------------------------------------------------------------------------------

#: The entry-point group node kinds are registered in (pyproject.toml): ``KIND = "module"``, the module defining
#: ``create(config)``. The kinds shipped with meshdcm live in the ``nodes`` package; another distribution adds its own
#: kinds the same way, and the core never imports any of them by name.
NODE_KINDS_GROUP = "meshdcm.nodes"


def _registered_kinds() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=NODE_KINDS_GROUP)}


def load_node_module(spec: str):
    """``KIND`` (a registered node kind) or a path to a Python file defining ``create(config)``."""
    if spec.endswith(".py") or os.sep in spec:
        path = Path(spec)
        if not path.is_file():
            raise ConfigError(f"node file {spec} does not exist")
        module_spec = importlib.util.spec_from_file_location(f"meshdcm_node_{path.stem}", path)
        if module_spec is None or module_spec.loader is None:
            raise ConfigError(f"cannot load node file {spec}")
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        kind = path.stem
    else:
        target = _registered_kinds().get(spec)
        if target is None:
            raise ConfigError(f"no node kind {spec!r}; the kinds are: {', '.join(node_kinds())}")
        module = importlib.import_module(target)
        kind = spec
    if not callable(getattr(module, "create", None)):
        raise ConfigError(f"node {spec} has no create(config) function returning a meshdcm.Node")
    return kind, module


def node_kinds() -> list[str]:
    return sorted(_registered_kinds())


#: Files and folders a node process makes are its owner's only: stores, indexes, journals hold patient data.
PRIVATE_UMASK = 0o077


def cmd_node(args) -> int:
    os.umask(PRIVATE_UMASK)
    kind, module = load_node_module(args.kind)
    config = config_from(args, kind)
    setup_logging(config.log_level)
    node = module.create(config)
    if not isinstance(node, Node):
        return fail(f"create(config) of node {args.kind} did not return a meshdcm.Node")
    restarted = os.environ.pop(RESTARTED_ENV, "").split()
    if len(restarted) == 2:
        @node.task
        def say_restarted(stopping: threading.Event) -> None:
            node.wait_for_peers(1, timeout=30)  # someone to hear it (a loaded machine: discovery takes a while)
            node.settle(maximum=5)
            node.wait_for_subscribers("error", timeout=30)
            reason = (f"node {node.name} ({kind}) exited with status {restarted[1]} and was restarted by meshdcm up "
                      f"(restart {restarted[0]})")
            action = "its log (where meshdcm up runs) says why; messages it had not finished are handled again"
            log.error("%s; %s", reason, action)
            node._error_event("restart", reason, action, exit_status=restarted[1], restarts=restarted[0])
    node.run()
    return 0


# --- up ----------------------------------------------------------------------------------------------------------

def cmd_up(args) -> int:
    """Start every node kind on this machine, on loopback, until Ctrl-C: the main job.

    Without --pacs the pacs node starts an embedded PACS loaded with the realistic stroke studies (docs/studies.md;
    made on the first start, about 1.5 min, then cached; [nodes.pacs] embedded_size = "small" serves the small
    synthetic ones instead); with --pacs NAME it
    uses that PACS from the config's [nodes.pacs.servers.NAME]. The viewer node starts only when the config names a
    viewer ([nodes.viewer.viewers.NAME]): it has nothing to send to otherwise."""
    import tomllib

    os.umask(PRIVATE_UMASK)
    kinds = args.kinds or node_kinds()
    if "web" in kinds and not args.kinds and not all(importlib.util.find_spec(m) for m in ("starlette", "uvicorn")):
        print("the web UI is not started: install it with  pip install 'meshdcm[web]'", file=sys.stderr)
        kinds = [k for k in kinds if k != "web"]
    from ..config import data_dir, load_config
    from ..state import folder_name

    # the mesh's name (option, $MESHDCM_MESH, the config's [mesh] name, else "default") names its state folder too,
    # so that two `meshdcm up --mesh A` / `--mesh B` on one machine share nothing
    mesh = load_config(kind="up", file=args.config, args={"mesh": args.mesh}).mesh
    state = Path(args.state or data_dir("up") / folder_name(mesh))
    state.mkdir(parents=True, exist_ok=True)
    settings = tomllib.loads(Path(args.config).read_text()) if args.config else {}
    pacs_opts = settings.setdefault("nodes", {}).setdefault("pacs", {})
    if not args.kinds and not settings["nodes"].get("viewer", {}).get("viewers"):
        kinds = [k for k in kinds if k != "viewer"]  # nothing to send to without [nodes.viewer.viewers.NAME]
    pacs_opts.setdefault("storage", str(state / "store"))
    if args.pacs:
        if args.pacs not in pacs_opts.get("servers", {}):
            return fail(f"no PACS called {args.pacs!r} in [nodes.pacs.servers] of {args.config or 'the config'}")
        pacs_opts["use"] = args.pacs
    else:
        pacs_opts["embedded"] = True
        pacs_opts.setdefault("embedded_size", "realistic")
    settings["nodes"].setdefault("index", {}).setdefault("path", str(state / "index.sqlite3"))
    for kind in ("convert", "perfusion", "register", "viewer"):  # work folders of this mesh's own
        settings["nodes"].setdefault(kind, {}).setdefault("work", str(state / kind))
    web_url, web_env, web_socket = _web_settings(kinds, settings, args.web_port, state)
    config = state / "up.toml"
    config.write_text(_toml(settings))
    base = [sys.executable, "-m", "meshdcm.cli.main", "node"]
    extra = ["--config", str(config), "--mesh", mesh]
    children = []
    for kind in kinds:
        # an argument list (no shell); the kinds are names of modules in the nodes package
        env = dict(os.environ, **web_env) if kind == "web" else dict(os.environ)
        fds = (web_socket.fileno(),) if kind == "web" and web_socket is not None else ()
        children.append(_Child(kind, base + [kind] + extra, env, fds))
    print(f"meshdcm up: {len(children)} node(s) on 127.0.0.1 in mesh {mesh}: "
          + ", ".join(f"{c.kind} (pid {c.proc.pid})" for c in children))
    studies = {"realistic": "the realistic stroke studies (docs/studies.md; the first start makes them, about 1.5 min)",
               "realistic-small": "the realistic stroke studies, small"}.get(pacs_opts.get("embedded_size"),
                                                                           "the synthetic studies")
    print(f"PACS: {f'the embedded one, with {studies}' if not args.pacs else args.pacs}; store {pacs_opts['storage']}")
    if web_url:
        print(f"web UI: {web_url}  (login token: {web_env['MESHDCM_WEB_TOKEN']})")
    m = f" --mesh {shlex.quote(mesh)}"
    print(f"watch the mesh:  meshdcm peers{m}   |   meshdcm tail{m}   |   errors: meshdcm tail{m} --topic error")
    print(f"try (start the tail first, in another terminal):  meshdcm tail{m} --topic found")
    print(f"     meshdcm publish find.studies{m} --set PatientName='*' --set StudyInstanceUID= --set StudyDescription=")
    print("stop with Ctrl-C", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(0.5):
        for child in children:
            child.watch(time.monotonic())
    for child in children:
        child.terminate()
    deadline = time.monotonic() + 15
    for child in children:
        child.wait(deadline)
    if web_socket is not None:
        web_socket.close()
    print("meshdcm up: stopped")
    return 0


#: Set by ``meshdcm up`` for a node it restarts: "RESTARTS STATUS" (the node then publishes an error event about it).
RESTARTED_ENV = "MESHDCM_RESTARTED"


class _Child:
    """One node process of ``meshdcm up``: restarted when it dies, with a growing pause (1 s doubling to 60 s); a
    node that keeps dying within 10 s of its start (5 times in a row: a configuration mistake, most likely) is left
    stopped and the others go on."""

    QUICK, GIVE_UP, MAX_PAUSE = 10.0, 5, 60.0

    def __init__(self, kind: str, argv: list[str], env: dict, fds: tuple[int, ...]):
        self.kind, self.argv, self.env, self.fds = kind, argv, env, fds
        self.restarts, self.quick_deaths, self.pause = 0, 0, 1.0
        self.restart_at: float | None = None
        self.given_up = False
        self.proc = self._spawn()

    def _spawn(self) -> subprocess.Popen:
        self.started = time.monotonic()
        return subprocess.Popen(self.argv, env=self.env, pass_fds=self.fds)  # noqa: S603 (an argument list)

    def watch(self, now: float) -> None:
        if self.given_up:
            return
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.restart_at = None
                self.restarts += 1
                self.env[RESTARTED_ENV] = f"{self.restarts} {self.status}"
                self.proc = self._spawn()
                print(f"meshdcm up: node {self.kind} restarted (pid {self.proc.pid}, restart {self.restarts})",
                      file=sys.stderr, flush=True)
            return
        status = self.proc.poll()
        if status is None:
            return
        self.status = status
        if now - self.started < self.QUICK:
            self.quick_deaths += 1
        else:
            self.quick_deaths, self.pause = 0, 1.0
        if self.quick_deaths >= self.GIVE_UP:
            self.given_up = True
            print(f"meshdcm up: node {self.kind} exited with status {status} {self.quick_deaths} times within "
                  f"{self.QUICK:.0f} s of its start; it is left stopped (its log above says why), the other nodes go "
                  "on", file=sys.stderr, flush=True)
            return
        print(f"meshdcm up: node {self.kind} exited with status {status}; restarting it in {self.pause:.0f} s",
              file=sys.stderr, flush=True)
        self.restart_at = now + self.pause
        self.pause = min(self.pause * 2, self.MAX_PAUSE)

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, deadline: float) -> None:
        try:
            self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _web_settings(kinds: list[str], settings: dict, port: int | None,
                  state: Path) -> tuple[str, dict, socket.socket | None]:
    """The web node's address, login token (passed in its environment, never written to a file) and listening
    socket: bound here and inherited by the web node, so that two ``up`` starting side by side never pick one port."""
    if "web" not in kinds:
        return "", {}, None
    import secrets

    web = settings["nodes"].setdefault("web", {})
    host = web.setdefault("host", "127.0.0.1")
    web.setdefault("data", str(state / "web"))  # drafts, signed reports, image cache
    if port is None:
        port = web.get("port")
    # 8080, else the next free one up to 8099 (below the ephemeral range, which the nodes' ZeroMQ sockets use); any
    # free one as a last resort
    candidates = [int(port)] if port is not None else [*range(8080, 8100), 0]
    sock = None
    for candidate in candidates:
        # IPPROTO_TCP named, as the web node does: asyncio sets TCP_NODELAY only on such sockets' connections
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, candidate))
        except OSError as exc:
            sock.close()
            sock = None
            if len(candidates) == 1:
                raise ConfigError(f"the web UI cannot listen on {host}:{candidate}: {exc}; give --web-port another "
                                  "port (0 picks a free one)") from None
            continue
        break
    assert sock is not None  # port 0 always binds
    sock.listen(128)
    sock.set_inheritable(True)
    web["port"] = sock.getsockname()[1]
    token = os.environ.get("MESHDCM_WEB_TOKEN") or secrets.token_urlsafe(16)
    env = {"MESHDCM_WEB_TOKEN": token, WEB_LISTEN_FD_ENV: str(sock.fileno())}
    return f"http://{host}:{web['port']}/", env, sock


def _toml(data: dict, prefix: str = "") -> str:
    """A small TOML writer for the settings ``up`` passes on (tables of strings, numbers, booleans, lists)."""
    import json as _json

    lines, tables = [], []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_json.dumps(value)}")
    out = ""
    if lines:
        out += (f"[{prefix}]\n" if prefix else "") + "\n".join(lines) + "\n"
    for key, value in tables:
        out += _toml(value, f"{prefix}.{key}" if prefix else key)
    return out
