"""Options every mesh command shares, how they become a NodeConfig, and how a command fails."""

from __future__ import annotations

import argparse
import logging
import sys

from ..config import NodeConfig, load_config
from ..errors import ConfigError, MeshError

PRECEDENCE = ("settings come from, lowest to highest: built-in defaults, the TOML file (--config or $MESHDCM_CONFIG), "
              "MESHDCM_* environment variables, then these options")


def add_mesh_options(p: argparse.ArgumentParser, *, node: bool = False) -> None:
    g = p.add_argument_group("mesh", PRECEDENCE)
    g.add_argument("--config", metavar="FILE.toml", help="configuration file")
    g.add_argument("--mesh", help="mesh name; nodes of other meshes are ignored (default: default)")
    g.add_argument("--interface", help="network interface or IPv4 address to use (default: 127.0.0.1)")
    g.add_argument("--peer", action="append", dest="peers", metavar="tcp://HOST:PORT",
                   help="a static peer's control endpoint (repeatable), for networks that block multicast")
    g.add_argument("--no-discovery", action="store_true", help="do not use mDNS; only --peer")
    g.add_argument("--keyring", metavar="DIR", help="mesh keyring: CURVE on every socket, only authorized nodes join")
    g.add_argument("--key", metavar="NAME", help="which secret key of the keyring this node uses")
    g.add_argument("--insecure", action="store_true", default=None,
                   help="allow a non-loopback interface without a keyring (every machine there can read the mesh)")
    g.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log level (default INFO)")
    if node:
        g.add_argument("--name", help="node name (default: the node kind)")
        g.add_argument("--group", help="worker group: nodes with the same group share work")
        g.add_argument("--port", type=int, help="base port: control PORT, events PORT+1, work PORT+2 (default: ephemeral)")
        g.add_argument("--workers", type=int, help="handler threads (default 4)")


def config_from(args: argparse.Namespace, kind: str, **overrides) -> NodeConfig:
    values = {
        "mesh": args.mesh, "interface": args.interface, "peers": tuple(args.peers) if args.peers else None,
        "discovery": False if args.no_discovery else None, "log_level": args.log_level,
        "keyring": args.keyring, "key": args.key, "insecure": args.insecure,
        "name": getattr(args, "name", None), "group": getattr(args, "group", None),
        "port": getattr(args, "port", None), "workers": getattr(args, "workers", None),
    }
    values.update(overrides)
    return load_config(kind=kind, file=args.config, args=values)


#: Libraries that log DICOM identifiers (patient names among them) at INFO: held at WARNING unless DEBUG is asked.
CHATTY_DICOM_LOGGERS = ("pynetdicom", "pydicom")


def setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level, logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    if level != "DEBUG":
        for name in CHATTY_DICOM_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def fail(message: str, code: int = 2) -> int:
    print(f"meshdcm: {message}", file=sys.stderr)
    return code


def guarded(func):
    def run(args) -> int:
        try:
            return func(args)
        except (ConfigError, MeshError) as exc:
            return fail(str(exc))
    return run


__all__ = ["ConfigError", "add_mesh_options", "config_from", "fail", "guarded", "setup_logging"]
