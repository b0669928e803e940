"""Mesh commands: node, peers, publish, tail, filter-check, up."""

from __future__ import annotations

import importlib
import importlib.util
from importlib.metadata import entry_points
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

from pydicom import dcmread
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from .. import codec
from ..config import WEB_LISTEN_FD_ENV
from ..errors import ConfigError, FilterSyntaxError, MeshError
from ..filters import parse
from ..message import Message
from ..node import Node
from .common import config_from, fail, setup_logging

log = logging.getLogger("meshdcm.cli")
#: What ``tail`` shows of a body: technical attributes only, never patient-identifying ones.
TAIL_KEYS = ("Modality", "SeriesNumber", "SeriesDescription", "NumberOfSeriesRelatedInstances", "StudyInstanceUID",
             "SeriesInstanceUID")
#: What ``tail`` shows of a query's answers (``found.*``): what a worklist shows, since whoever asked searched for it.
FOUND_KEYS = ("PatientName", "PatientID", "StudyDate", "ModalitiesInStudy", "StudyDescription", "AccessionNumber",
              "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances", *TAIL_KEYS)


def shown_attributes(msg: Message) -> dict[str, str]:
    """The attributes ``tail`` prints for ``msg``, as text (multiple values joined by a backslash)."""
    out = {}
    for key in FOUND_KEYS if msg.topic.startswith("found.") else TAIL_KEYS:
        value = msg.get(key)
        if value is not None and value != "":
            out[key] = "\\".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)
    return out


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


# --- peers -----------------------------------------------------------------------------------------------

def cmd_peers(args) -> int:
    config = config_from(args, "peers", name=f"peers-{os.getpid()}", workers=1)
    setup_logging(args.log_level or "WARNING")
    with Node(config=config, role="tool") as node:
        node.settle(minimum=min(0.5, args.wait), maximum=args.wait)
        peers = [p for p in node.peers if p["role"] != "tool" or args.all]
    peers.sort(key=lambda p: (p["kind"], p["name"]))
    if args.json:
        print(json.dumps(peers, indent=2))
        return 0
    if not peers:
        print(f"no nodes found in mesh {config.mesh!r} on {config.address} within {args.wait} s")
        return 1
    print(f"{'NAME':20} {'KIND':12} {'HOST':16} {'GROUP':12} {'STATE':8} {'AGE':>7}  TOPICS AND FILTERS")
    behind = [p for p in peers if p.get("behind")]
    for p in peers:
        wants = "; ".join(f"{h['topic'] or '*'}{' [shared]' if h['shared'] else ''}"
                          f"{' where ' + h['where'] if h['where'] else ''}" for h in p["handlers"]) or "-"
        print(f"{p['name'][:20]:20} {p['kind'][:12]:12} {p['host'][:16]:16} {(p['group'] or '-')[:12]:12} "
              f"{p['state'] if not p.get('behind') else 'BEHIND':8} {p['age']:6.1f}s  {wants}")
    for p in behind:
        print(f"warning: {p['name']} is falling behind: {p['pending']} messages wait for its handlers and it has "
              "stopped reading (nothing is dropped; its senders replay what overflows). Give it more workers or "
              "start another member of its group.")
    return 0


# --- publish ----------------------------------------------------------------------------------------------

def _dicom_files(paths: list[str]):
    for p in paths:
        path = Path(p)
        if path.is_dir():
            yield from sorted(f for f in path.rglob("*") if f.is_file())
        elif path.is_file():
            yield path
        else:
            raise ConfigError(f"{p} does not exist")


def _apply_sets(ds: Dataset, sets: list[str]) -> None:
    for item in sets:
        keyword, sep, value = item.partition("=")
        keyword = keyword.strip()
        tag = tag_for_keyword(keyword)
        if not sep or tag is None:
            raise ConfigError(f"--set takes Keyword=Value with a DICOM keyword, got {item!r}")
        vr = dictionary_VR(tag)
        if vr in ("US", "SS", "UL", "SL", "UV", "SV"):
            parts = [int(v) for v in value.split("\\")]
            ds.add_new(tag, vr, parts[0] if len(parts) == 1 else parts)
        elif vr in ("FL", "FD"):
            parts = [float(v) for v in value.split("\\")]
            ds.add_new(tag, vr, parts[0] if len(parts) == 1 else parts)
        elif vr == "SQ":
            raise ConfigError(f"--set cannot set the sequence {keyword}")
        else:
            values = value.split("\\")
            for v in values:
                _check_value(keyword, vr, v)
            ds.add_new(tag, vr, values if len(values) > 1 else value)


#: What a valid value of these VRs looks like, for the error of ``--set``.
_VR_FORMS = {"DA": "YYYYMMDD, or a range YYYYMMDD-YYYYMMDD", "TM": "HHMMSS, or a range HHMMSS-HHMMSS",
             "AS": "nnnD, nnnW, nnnM or nnnY", "IS": "an integer", "DS": "a decimal number", "UI": "digits and dots"}


def _check_value(keyword: str, vr: str, value: str) -> None:
    """Refuse a value that is not valid for its VR, without repeating it (it may be patient data); a C-FIND range
    (``a-b``, ``a-``, ``-b``) of dates or times is valid."""
    from pydicom import config as dicom_config
    from pydicom.valuerep import validate_value

    if vr == "DT":
        return  # a DT's own "-" (time zone) and a range's cannot be told apart: left to the receiver
    for part in value.split("-") if vr in ("DA", "TM") else [value]:
        try:
            if part:
                validate_value(vr, part, dicom_config.RAISE)
        except ValueError:
            raise ConfigError(f"--set {keyword}: not a valid {vr} value (the form is "
                              f"{_VR_FORMS.get(vr, 'described in DICOM PS3.5 6.2')})") from None


def cmd_publish(args) -> int:
    config = config_from(args, "publish", name=f"publish-{os.getpid()}", workers=1)
    setup_logging(args.log_level or "WARNING")
    datasets: list[tuple[str, Dataset]] = []
    skipped = 0
    for path in _dicom_files(args.files):
        try:
            ds = dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, EOFError) as exc:
            print(f"skipped {path}: not readable as DICOM ({exc})", file=sys.stderr)
            skipped += 1
            continue
        _apply_sets(ds, args.set)
        datasets.append((str(path), ds))
    if not args.files:
        ds = Dataset()
        _apply_sets(ds, args.set)
        datasets.append(("--set", ds))
    if not datasets:
        return fail("nothing to publish: no readable DICOM file among the arguments")
    with Node(config=config, role="tool") as node:
        node.settle(minimum=min(0.5, args.wait), maximum=args.wait)
        # a one-shot publisher must know whom it publishes to: every node announced (mDNS, --peer) has answered and
        # every one that wants the topic has its subscription in place, or it says who may miss the message
        deadline = time.monotonic() + args.wait
        while (unconfirmed := node.unconfirmed(args.topic)) and time.monotonic() < deadline:
            time.sleep(0.05)
        for _source, ds in datasets:
            msg = node.publish(args.topic, ds, uris=args.uri or None)
            if args.verbose:
                print(f"published {args.topic} {msg.id}")
        # work items (topics a worker group shares) are this tool's to hand over: it waits until a member took each
        deadline = time.monotonic() + max(args.wait, 1.0)
        while (unclaimed := node.unclaimed_work()) and time.monotonic() < deadline:
            time.sleep(0.05)
    print(f"published {len(datasets)} message{'s' if len(datasets) != 1 else ''} on {args.topic}"
          + (f" ({skipped} files skipped)" if skipped else ""))
    if unconfirmed:
        return fail(f"{len(unconfirmed)} node(s) announced in the mesh had not confirmed they receive {args.topic} "
                    f"within {args.wait:g} s and may have missed it: {', '.join(sorted(unconfirmed))}; check them "
                    "with `meshdcm peers`, then publish again (or give a longer --wait)", 1)
    if unclaimed:
        return fail(f"{sum(unclaimed.values())} work item(s) were taken by no member of worker group(s) "
                    f"{', '.join(sorted(unclaimed))} within {max(args.wait, 1.0):.0f} s, so nobody received them: "
                    "check `meshdcm peers`, then publish again", 1)
    return 0


# --- tail ----------------------------------------------------------------------------------------------------

def describe_line(msg: Message, sender_name: str) -> str:
    t = datetime.fromtimestamp(msg.timestamp_ns / 1e9).strftime("%H:%M:%S.%f")[:-3]
    head = f"{t} {msg.topic:22} {sender_name:16}"
    if msg.topic.startswith("error."):
        err = msg.meta.get("error", {})
        uids = msg.uids
        where = ", ".join(f"{k} {v}" for k, v in uids.items()) or "no study"
        attempt = f" attempt {err['attempt']}/{err['attempts']}" if "attempts" in err and err.get("topic") else ""
        step = f"; next: {err['next']}" if err.get("next") and err.get("next") != err.get("action") else ""
        return (f"{head} ERROR in {err.get('node', '?')}/{err.get('handler', '?')} on {err.get('topic') or '-'} "
                f"({where}){attempt}: {err.get('reason', '?')} -> {err.get('action', '')}{step}")
    parts = [f"{key}={value!r}" if " " in value else f"{key}={value}" for key, value in shown_attributes(msg).items()]
    if msg.topic == "found.end":  # the end of a query's answers: how many, and whether a PACS failed
        parts.append(f"count={msg.meta.get('count', '?')} status={msg.meta.get('status', '?')}")
    if msg.uris:
        parts.append(f"uris={len(msg.uris)}")
    if msg.correlation_id:
        parts.append(f"re={msg.correlation_id.hex()[:12]}")
    return f"{head} {' '.join(parts)}"


def cmd_tail(args) -> int:
    # a tool that only reads: nothing of its own to linger for, so its --timeout is a deadline (plus about a second)
    config = config_from(args, "tail", name=f"tail-{os.getpid()}", workers=1, linger=0.5)
    setup_logging(args.log_level or "WARNING")
    try:
        where = parse(args.where)
    except FilterSyntaxError as exc:
        return fail(str(exc))
    done = threading.Event()
    count = [0]
    lock = threading.Lock()
    node = Node(config=config, role="tool")
    names: dict[str, str] = {}

    def sender_name(sender: bytes) -> str:
        key = sender.hex()
        if key not in names:
            for p in node.peers:
                names[p["id"]] = p["name"]
        return names.get(key, key[:12])

    @node.on(args.topic or "", where=where)
    def show(msg: Message) -> None:
        with lock:
            if done.is_set():
                return
            if args.json:
                line = json.dumps({**msg.describe(), "sender_name": sender_name(msg.sender),
                                   "attributes": shown_attributes(msg)},
                                  default=str)
            else:
                line = describe_line(msg, sender_name(msg.sender))
            print(line, flush=True)
            count[0] += 1
            if args.count and count[0] >= args.count:
                done.set()

    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    node.start()
    try:
        print(f"# tail of mesh {config.mesh!r} on {config.address}, topic {args.topic or '*'}"
              f"{', where ' + str(where) if not where.is_all else ''}", file=sys.stderr, flush=True)
        done.wait(args.timeout if args.timeout else None)
    finally:
        done.set()
        node.stop(timeout=0.5)
    if args.count and count[0] < args.count:
        return fail(f"only {count[0]} of {args.count} messages arrived within {args.timeout} s", 1)
    return 0


# --- filter-check ---------------------------------------------------------------------------------------------

def cmd_filter_check(args) -> int:
    try:
        flt = parse(args.filter)
    except FilterSyntaxError as exc:
        return fail(str(exc))
    matched = total = 0
    results = []
    for path in _dicom_files(args.files or ["."]):
        try:
            ds = dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, EOFError):
            continue
        total += 1
        ok = flt.matches(codec.encode(ds))  # the bytes a node would receive: the same meaning as on the mesh
        matched += ok
        results.append({"file": str(path), "match": ok})
        if not args.json and (ok or not args.matches_only):
            print(f"{'match' if ok else 'no   '}  {path}")
    if args.json:
        print(json.dumps({"filter": str(flt), "matched": matched, "files": total, "results": results}, indent=2))
    else:
        print(f"{matched} of {total} DICOM files match: {flt if not flt.is_all else '(everything)'}")
    return 0 if matched else 1


# --- up ----------------------------------------------------------------------------------------------------------

def cmd_up(args) -> int:
    """Start every node kind on this machine, on loopback, until Ctrl-C: the main job.

    Without --pacs the pacs node starts an embedded PACS loaded with the synthetic studies; with --pacs NAME it
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
    print(f"PACS: {'the embedded one, with synthetic studies' if not args.pacs else args.pacs}; store {pacs_opts['storage']}")
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


# --- keys -----------------------------------------------------------------------------------------------------

def cmd_keys(args) -> int:
    from ..keys import Keyring

    ring = Keyring(args.keyring)
    if args.keys_command == "init":
        ring.init()
        print(f"created keyring {ring.path}; add a key per node with: meshdcm keys add NAME --keyring {ring.path}")
    elif args.keys_command == "add":
        if args.public:
            ring.authorize(args.name, args.public)
            print(f"authorized {args.name} in {ring.path}")
        else:
            secret = ring.add(args.name)
            print(f"made and authorized key {args.name}; its secret is {secret}: copy it (and authorized/) to the "
                  f"node's machine only")
    elif args.keys_command == "revoke":
        ring.revoke(args.name)
        print(f"revoked {args.name}: running nodes refuse it within a second for new connections")
    else:
        entries = ring.list()
        if args.json:
            print(json.dumps(entries, indent=2))
        else:
            for e in entries:
                print(f"{e['name']:24} {e['status']:10} {e['public_key']}{'  (secret here)' if e['secret_here'] else ''}")
    return 0


def guarded(func):
    def run(args) -> int:
        try:
            return func(args)
        except (ConfigError, MeshError) as exc:
            return fail(str(exc))
    return run
