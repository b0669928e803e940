"""Node configuration: defaults < TOML file < ``MESHDCM_*`` environment < command-line arguments.

Read once, then frozen (a :class:`NodeConfig` never changes after it is made).  docs/configuration.md lists
every setting; the TOML layout is::

    [mesh]
    name = "default"              # nodes of other meshes on the same LAN are ignored
    keyring = "/etc/meshdcm/keyring"  # CURVE keys: only authorized nodes join (meshdcm keys ...)
    insecure = false              # a LAN interface without a keyring is refused unless this is true
    interface = "127.0.0.1"       # an IPv4 address or an interface name; loopback unless you name one
    peers = ["tcp://10.1.2.3:5670"]  # static peers' control endpoints, for networks without multicast
    discovery = true              # mDNS on the interface above

    [node]
    name = "perfusion-1"
    group = "perfusion"           # nodes with the same group share work
    key = "ws12"                  # the keyring's secret key this node uses
    port = 0                      # 0: ephemeral ports; N: control N, events N+1, work N+2
    workers = 4

    [delivery]                    # docs/delivery.md
    state_dir = "/var/lib/meshdcm/perfusion-1"
    journal_max_age = 86400       # seconds
    journal_max_bytes = 268435456
    max_attempts = 3
    retry_backoff = 0.5
    lease = 10.0

    [nodes.perfusion]             # options for one node kind, passed to it as config.options
    method = "osvd"
"""

from __future__ import annotations

import os
import socket
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError
from .peers import Timing

__all__ = ["DEFAULT_INTERFACE", "DEFAULT_MESH", "NodeConfig", "WEB_LISTEN_FD_ENV", "data_dir", "load_config",
           "resolve_interface"]

DEFAULT_MESH = "default"
DEFAULT_INTERFACE = "127.0.0.1"
ENV_PREFIX = "MESHDCM_"
#: A listening socket (file descriptor) the web node inherits from ``meshdcm up``, which bound it: two ``up`` started
#: side by side can then never pick the same port.
WEB_LISTEN_FD_ENV = ENV_PREFIX + "WEB_LISTEN_FD"


@dataclass(frozen=True)
class NodeConfig:
    name: str = "node"
    kind: str = "node"
    mesh: str = DEFAULT_MESH
    interface: str = DEFAULT_INTERFACE
    address: str = DEFAULT_INTERFACE  # the IPv4 address resolved from ``interface``
    group: str | None = None
    peers: tuple[str, ...] = ()
    discovery: bool = True
    port: int = 0
    workers: int = 4
    max_pending: int = 2000
    high_water_mark: int = 100_000
    keyring: str | None = None  # a meshdcm keyring folder: CURVE on every socket (docs/security.md)
    key: str | None = None  # which secret key of the keyring this node uses
    insecure: bool = False  # allow a LAN interface without a keyring (warned at every start)
    max_message_size: int = 16 * 1024 * 1024  # bytes; larger messages close the sender's connection
    linger: float = 10.0  # seconds a stopping node keeps sending what it already accepted
    seed_retry: float = 0.2
    rediscover_for: float = 60.0
    timing: Timing = field(default_factory=Timing)
    log_level: str = "INFO"
    # delivery (docs/delivery.md)
    state_dir: str | None = None  # journal, receive state, dead letters; default data_dir(name)/mesh-<mesh>
    durable: bool | None = None  # keep delivery state on disk; None: yes for nodes, in memory for CLI tools
    journal: bool = True  # journal published frames (off only to measure what it costs)
    journal_max_age: float = 86400.0  # seconds a published frame stays replayable
    journal_max_bytes: int = 256 * 1024 * 1024  # frames beyond this (oldest first) are dropped from the journal
    max_attempts: int = 3  # handler attempts before a message becomes a dead letter
    retry_backoff: float = 0.5  # seconds before the 2nd attempt; doubles each time
    lease: float = 10.0  # seconds a group member holds a work item without renewing before it is re-sent
    lag_alarm: float = 2.0  # seconds the handler queue may stay full before the node reports it is behind
    options: Mapping[str, Any] = field(default_factory=dict)

    def with_(self, **changes) -> "NodeConfig":
        cfg = replace(self, **changes)
        if "interface" in changes and "address" not in changes:
            cfg = replace(cfg, address=resolve_interface(cfg.interface))
        return cfg


def data_dir(name: str) -> Path:
    """Where a node keeps its files unless told otherwise: ``$XDG_DATA_HOME/meshdcm/NAME``
    (``~/.local/share/meshdcm/NAME``)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "meshdcm" / name


def resolve_interface(interface: str) -> str:
    """The IPv4 address for an interface name or address (``lo``, ``eth0``, ``10.0.0.5``)."""
    try:
        socket.inet_aton(interface)
        return interface
    except OSError:
        pass
    import ifaddr

    for adapter in ifaddr.get_adapters():
        if adapter.nice_name == interface or adapter.name == interface:
            for ip in adapter.ips:
                if ip.is_IPv4:
                    return str(ip.ip)
            raise ConfigError(f"interface {interface!r} has no IPv4 address; give an address instead")
    raise ConfigError(f"no network interface called {interface!r}; `ip addr` lists them")


_KEYS = {
    # key: (toml table, toml key, env var, type)
    "mesh": ("mesh", "name", "MESH", str),
    "interface": ("mesh", "interface", "INTERFACE", str),
    "peers": ("mesh", "peers", "PEERS", tuple),
    "discovery": ("mesh", "discovery", "DISCOVERY", bool),
    "name": ("node", "name", "NAME", str),
    "group": ("node", "group", "GROUP", str),
    "port": ("node", "port", "PORT", int),
    "workers": ("node", "workers", "WORKERS", int),
    "log_level": ("node", "log_level", "LOG_LEVEL", str),
    "keyring": ("mesh", "keyring", "KEYRING", str),
    "key": ("node", "key", "KEY", str),
    "insecure": ("mesh", "insecure", "INSECURE", bool),
    "state_dir": ("delivery", "state_dir", "STATE_DIR", str),
    "journal_max_age": ("delivery", "journal_max_age", "JOURNAL_MAX_AGE", float),
    "journal_max_bytes": ("delivery", "journal_max_bytes", "JOURNAL_MAX_BYTES", int),
    "max_attempts": ("delivery", "max_attempts", "MAX_ATTEMPTS", int),
    "retry_backoff": ("delivery", "retry_backoff", "RETRY_BACKOFF", float),
    "lease": ("delivery", "lease", "LEASE", float),
}


def _coerce(key: str, value: Any, kind: type, source: str):
    try:
        if kind is tuple:
            if isinstance(value, str):
                return tuple(v.strip() for v in value.split(",") if v.strip())
            return tuple(str(v) for v in value)
        if kind is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if kind is str and not isinstance(value, str):
            raise TypeError(value)  # str(["a"]) would become a node called "['a']"
        if kind is int and (isinstance(value, bool) or (isinstance(value, float) and not value.is_integer())):
            raise ValueError(value)  # int(True) == 1 and int(5670.5) == 5670 would hide a typo
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {key} must be {kind.__name__}, got {value!r}") from None


def load_config(
    *, kind: str = "node", file: str | Path | None = None, args: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> NodeConfig:
    """Build a frozen config: defaults, then the TOML ``file`` (or ``$MESHDCM_CONFIG``), then the environment,
    then ``args`` (values that are None are ignored)."""
    environ = os.environ if environ is None else environ
    args = {k: v for k, v in (args or {}).items() if v is not None}
    values: dict[str, Any] = {"name": kind, "kind": kind}
    options: dict[str, Any] = {}
    path = file or environ.get(ENV_PREFIX + "CONFIG")
    if path:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"configuration file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"configuration file {path} cannot be read: {exc}") from None
        for table in ("mesh", "node", "nodes", "delivery"):
            if not isinstance(data.get(table, {}), dict):
                raise ConfigError(f"configuration file {path}: [{table}] must be a table")
        if not isinstance(data.get("nodes", {}).get(kind, {}), dict):
            raise ConfigError(f"configuration file {path}: [nodes.{kind}] must be a table")
        for key, (table, tkey, _env, typ) in _KEYS.items():
            if tkey in data.get(table, {}):
                values[key] = _coerce(key, data[table][tkey], typ, str(path))
        options = dict(data.get("nodes", {}).get(kind, {}))
    for key, (_table, _tkey, env, typ) in _KEYS.items():
        if ENV_PREFIX + env in environ:
            values[key] = _coerce(key, environ[ENV_PREFIX + env], typ, f"${ENV_PREFIX}{env}")
    for key, value in args.items():
        if key == "options":
            options.update(value)
        elif key in _KEYS:
            values[key] = _coerce(key, value, _KEYS[key][3], f"--{key}")
        else:
            values[key] = value
    if values.get("port", 0) < 0 or values.get("port", 0) > 65533:
        raise ConfigError("port must be 0 (ephemeral) or a base port below 65534")
    if values.get("workers", 1) < 1:
        raise ConfigError("workers must be at least 1")
    for peer in values.get("peers", ()):
        endpoint = peer.split("@", 1)[1] if "@" in peer else peer
        if not endpoint.startswith("tcp://") or ":" not in endpoint[6:]:
            raise ConfigError(f"a peer is a control endpoint like tcp://HOST:PORT (KEYNAME@tcp://HOST:PORT in a mesh "
                              f"with a keyring), got {peer!r}")
    cfg = NodeConfig(**values, options=options)
    return replace(cfg, address=resolve_interface(cfg.interface))
