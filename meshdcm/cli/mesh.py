"""Mesh commands that look at the mesh or talk to it: peers, publish, tail, filter-check."""

from __future__ import annotations

import json
import os
import signal
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
from ..errors import ConfigError, FilterSyntaxError
from ..filters import parse
from ..message import Message
from ..node import Node
from .common import config_from, fail, setup_logging

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
