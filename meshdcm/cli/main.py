"""``meshdcm``: run nodes and look at the mesh.  ``meshdcm COMMAND --help`` documents each command."""

from __future__ import annotations

import argparse
import faulthandler
import importlib
import os
import signal
import sys
import threading

from .._version import __version__
from . import dead, mesh, run
from .common import add_mesh_options, guarded
from .keys import cmd_keys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="meshdcm", description="A brokerless mesh of DICOM-aware analysis nodes.")
    p.add_argument("--version", action="version", version=f"meshdcm {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p.commands = sub.choices  # name -> the command's parser

    c = sub.add_parser("node", help="run one node", description="Run a node until SIGINT/SIGTERM.")
    c.add_argument("kind", metavar="KIND|path/to/node.py",
                   help="a node kind (meshdcm up lists them) or a Python file with create(config) -> meshdcm.Node")
    add_mesh_options(c, node=True)
    c.set_defaults(func=run.cmd_node)

    c = sub.add_parser("peers", help="list the nodes in the mesh")
    c.add_argument("--wait", type=float, default=1.5, help="seconds to listen for nodes (default 1.5)")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.add_argument("--all", action="store_true", help="also list short-lived tools (tail, publish)")
    add_mesh_options(c)
    c.set_defaults(func=mesh.cmd_peers)

    c = sub.add_parser("publish", help="publish DICOM headers as messages",
                       description="Publish one message per DICOM file (pixel data is never sent), or one built from "
                                   "--set values when no file is given.")
    c.add_argument("topic", help="e.g. stored.series")
    c.add_argument("files", nargs="*", metavar="FILE.dcm|DIR")
    c.add_argument("--set", action="append", default=[], metavar="Keyword=Value",
                   help="set an element (repeatable; multiple values separated by a backslash)")
    c.add_argument("--uri", action="append", metavar="URI", help="a data URI to carry in the envelope (repeatable)")
    c.add_argument("--wait", type=float, default=5.0,
                   help="longest wait for the announced nodes to answer and subscribe (default 5 s)")
    c.add_argument("-v", "--verbose", action="store_true")
    add_mesh_options(c)
    c.set_defaults(func=mesh.cmd_publish)

    c = sub.add_parser("tail", help="print messages as they pass")
    c.add_argument("--topic", default="", help="topic prefix, e.g. stored or error (default: all)")
    c.add_argument("--where", default="", metavar="FILTER", help="a DICOM filter, e.g. 'Modality == \"MR\"'")
    c.add_argument("--count", type=int, default=0, help="exit after N messages")
    c.add_argument("--timeout", type=float, default=0, help="exit after S seconds (status 1 if --count not reached)")
    c.add_argument("--json", action="store_true", help="one JSON object per line")
    add_mesh_options(c)
    c.set_defaults(func=mesh.cmd_tail)

    c = sub.add_parser("filter-check", help="dry run: which files a filter matches",
                       description="Evaluate a filter on DICOM files exactly as a node would on the mesh.")
    c.add_argument("filter", help="e.g. 'Modality == \"MR\" and SeriesDescription ~ \"(?i)perf\"'")
    c.add_argument("files", nargs="*", metavar="FILE.dcm|DIR")
    c.add_argument("--json", action="store_true")
    c.add_argument("--matches-only", action="store_true", help="list only the files that match")
    c.set_defaults(func=mesh.cmd_filter_check)

    c = sub.add_parser("keys", help="manage the mesh keyring (who may join)",
                       description="A keyring is a folder of CURVE certificates: authorized/ (public), secret/ "
                                   "(one per node, keep private), revoked/. docs/security.md explains distribution.")
    keys = c.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    k = keys.add_parser("init", help="create an empty keyring")
    k.add_argument("keyring", metavar="DIR")
    k = keys.add_parser("add", help="make and authorize a key pair for a node (or authorize a public certificate)")
    k.add_argument("name")
    k.add_argument("--keyring", required=True, metavar="DIR")
    k.add_argument("--public", metavar="FILE.key", help="authorize this public certificate instead of making a pair")
    k = keys.add_parser("revoke", help="take a node's key out of the keyring")
    k.add_argument("name")
    k.add_argument("--keyring", required=True, metavar="DIR")
    k = keys.add_parser("list", help="list authorized and revoked keys")
    k.add_argument("--keyring", required=True, metavar="DIR")
    k.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_keys)

    c = sub.add_parser("dead", help="dead letters: messages whose handler kept failing (list, show, retry, drop)",
                       description="Each node keeps the messages its handlers gave up on after their retries; "
                                   "list them, show one, hand one to its handler again (retry) or drop it.")
    c.add_argument("action", choices=["list", "show", "retry", "drop"])
    c.add_argument("node", nargs="?", help="the node's name (list: all nodes when left out)")
    c.add_argument("id", nargs="?", help="the dead letter's id (meshdcm dead list shows it)")
    c.add_argument("--wait", type=float, default=2.0, help="seconds to find the nodes (default 2)")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    add_mesh_options(c)
    c.set_defaults(func=dead.cmd_dead)

    for name, text in (("pacs", "talk to a PACS without a mesh: echo, find, get, store, scp, serve"),
                       ("perfusion", "DSC perfusion maps of a series folder: DSC_SERIES_DIR OUT_DIR [--method]"),
                       ("convert", "DICOM <-> NIfTI: to-nifti SERIES_DIR OUT_DIR | to-dicom IMAGE REFERENCE_DIR OUT_DIR"),
                       ("register", "register a series onto another: FIXED_DIR MOVING_DIR OUT_DIR"),
                       ("reformat", "multiplanar reformat of a series: SERIES_DIR OUT_DIR --plane coronal"),
                       ("index", "ask the index node: query studies|series|reports|timeline [--json]"),
                       ("studies", "realistic stroke studies with ground truth: make [--variant small|full] [--out DIR]")):
        c = sub.add_parser(name, help=text, add_help=False, description=f"meshdcm {name} --help for details")
        c.add_argument("args", nargs=argparse.REMAINDER)

    c = sub.add_parser("up", help="run every node kind on this machine (the main job)")
    c.add_argument("kinds", nargs="*", help="node kinds to start (default: all; viewer only when [nodes.viewer.viewers.NAME] is configured)")
    c.add_argument("--config", metavar="FILE.toml", help="settings for the nodes ([nodes.pacs.servers.NAME] for PACS)")
    c.add_argument("--mesh")
    c.add_argument("--pacs", metavar="NAME", help="use this PACS of the config instead of the embedded one")
    c.add_argument("--state", metavar="DIR", help="where the embedded PACS and the store live "
                                                  "(default ~/.local/share/meshdcm/up)")
    c.add_argument("--web-port", type=int, metavar="PORT",
                   help="port of the web UI on 127.0.0.1 (default 8080, or a free one if 8080 is taken)")
    c.set_defaults(func=run.cmd_up)
    return p


#: Commands whose whole command line belongs to a library's own entry point.
_DELEGATED = {
    "pacs": ("meshdcm.pacs.cli", "main"),
    "perfusion": ("meshdcm.perfusion.cli", "main"),
    "convert": ("meshdcm.imaging.cli", "main_convert"),
    "register": ("meshdcm.imaging.cli", "main_register"),
    "reformat": ("meshdcm.imaging.cli", "main_reformat"),
    "index": ("meshdcm.index.cli", "main"),
    "studies": ("meshdcm.studies.cli", "main"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if hasattr(signal, "SIGUSR1") and threading.current_thread() is threading.main_thread():
        faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID`: every thread's stack, to stderr
    try:
        return _run(argv)
    except BrokenPipeError:
        # the reader went away (`meshdcm index query ... | head`): not an error of ours; keep Python from
        # complaining about the unflushed rest at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _run(argv: list[str]) -> int:
    if argv[:1] and argv[0] in _DELEGATED:  # their own command lines (argparse's REMAINDER would eat options)
        module, function = _DELEGATED[argv[0]]
        return getattr(importlib.import_module(module), function)(argv[1:])
    parser = build_parser()
    command = _command_parser(parser, argv)
    # options may stand anywhere, also after a list of positionals (`publish TOPIC --mesh X FOLDER`)
    args = command.parse_intermixed_args(argv[1:]) if command is not None else parser.parse_args(argv)
    return guarded(args.func)(args)


def _command_parser(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser | None:
    """The sub-command's own parser, unless it has sub-commands of its own (argparse cannot intermix those)."""
    if not argv or argv[0] in _NESTED:
        return None
    return parser.commands.get(argv[0])


#: Commands with sub-commands of their own: parsed by the top-level parser.
_NESTED = {"keys"}


if __name__ == "__main__":
    sys.exit(main())
