"""``meshdcm index query studies|series|reports|timeline``: ask the index node from the command line.

Joins the mesh as a tool (like ``meshdcm publish``), waits for an index node, sends the request the web UI would
send (``find.studies``, ``find.series``, ``get.reports``, ``get.timeline``; searches carry meta ``"to": "index"``
so that PACS nodes leave them alone and the index always answers, even "none"), collects the answers until the
index's end marker or ``--timeout``, and prints a table or ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import time

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from ..cli.common import add_mesh_options, config_from, fail, setup_logging
from ..errors import ConfigError, MeshError
from ..message import Message
from ..node import Node

__all__ = ["main"]

STUDY_KEYS = ("StudyDate", "PatientID", "PatientName", "StudyDescription", "ModalitiesInStudy", "AccessionNumber",
              "StudyInstanceUID")
SERIES_KEYS = ("SeriesNumber", "Modality", "SeriesDescription", "NumberOfSeriesRelatedInstances", "SeriesInstanceUID",
               "StudyInstanceUID")
REQUESTS = {"studies": ("find.studies", "found.end"), "series": ("find.series", "found.end"),
            "reports": ("get.reports", "got.end"), "timeline": ("get.timeline", "got.timeline")}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="meshdcm index", description="Ask the mesh's index node (docs/index.md).")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = sub.add_parser("query", help="studies, series, reports or a study's timeline, from what the index knows")
    q.add_argument("what", choices=sorted(REQUESTS))
    q.add_argument("--patient-id", help="PatientID (wildcards * and ? allowed for studies/series)")
    q.add_argument("--patient-name", help="PatientName, e.g. 'DOE^*' (case-insensitive)")
    q.add_argument("--study", metavar="UID", help="StudyInstanceUID (required for timeline; excluded for reports)")
    q.add_argument("--date", metavar="YYYYMMDD[-YYYYMMDD]", help="StudyDate or a range")
    q.add_argument("--modality", help="Modality (series) or one of ModalitiesInStudy (studies)")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.add_argument("--timeout", type=float, default=10.0, help="longest wait for the index (default 10 s)")
    add_mesh_options(q)
    return p


def _set(ds: Dataset, keyword: str, value: str | None) -> None:
    tag = tag_for_keyword(keyword)
    ds.add_new(tag, dictionary_VR(tag), value or None)


def request_for(args) -> Dataset:
    ds = Dataset()
    if args.what in ("studies", "series"):
        for keyword in STUDY_KEYS if args.what == "studies" else SERIES_KEYS:
            _set(ds, keyword, None)
        values = {"PatientID": args.patient_id, "PatientName": args.patient_name, "StudyInstanceUID": args.study,
                  "StudyDate": args.date,
                  "ModalitiesInStudy" if args.what == "studies" else "Modality": args.modality}
        for keyword, value in values.items():
            if value:
                _set(ds, keyword, value)
    elif args.what == "reports":
        if not (args.patient_id or args.patient_name):
            raise ConfigError("reports need --patient-id or --patient-name")
        for keyword, value in (("PatientID", args.patient_id), ("PatientName", args.patient_name),
                               ("StudyInstanceUID", args.study)):
            if value:
                _set(ds, keyword, value)
    else:
        if not args.study:
            raise ConfigError("timeline needs --study UID")
        ds.StudyInstanceUID = args.study
    return ds


def _plain(ds: Dataset, keyword: str):
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple, MultiValue)):
        return [str(v) for v in value]
    return value if isinstance(value, (int, float)) else str(value)


def ask(node: Node, args) -> tuple[list[Message], Message]:
    """Send the request; the index's answers and its end marker (raises MeshError on timeout)."""
    topic, end = REQUESTS[args.what]
    answers: queue.SimpleQueue = queue.SimpleQueue()
    sent: list[Message] = []

    @node.on("found")
    @node.on("got")
    def collect(msg: Message) -> None:
        answers.put(msg)

    node.start()
    deadline = time.monotonic() + args.timeout
    if not node.wait_for(lambda ps: any("index" in p["capabilities"] for p in ps), args.timeout):
        raise MeshError(f"no index node in mesh {node.config.mesh!r} within {args.timeout} s: start one "
                        "(meshdcm node index, or meshdcm up)")
    node.wait_for_subscribers(topic, timeout=max(0.1, deadline - time.monotonic()))
    meta = {"to": "index"} if topic.startswith("find.") else None
    sent.append(node.publish(topic, request_for(args), meta=meta))
    got: list[Message] = []
    while True:
        left = deadline - time.monotonic()
        try:
            msg = answers.get(timeout=max(0.0, left))
        except queue.Empty:
            raise MeshError(f"the index did not answer {topic} within {args.timeout} s") from None
        if msg.correlation_id != sent[0].message_id:
            continue
        if topic.startswith("find.") and msg.meta.get("source") != "index":
            continue
        if msg.topic == end:
            return got, msg
        got.append(msg)


def show(args, got: list[Message], end: Message) -> None:
    if args.what == "timeline":
        events = end.meta.get("events", [])
        if args.json:
            print(json.dumps(events, indent=2))
            return
        for e in events:
            print(f"{e['time']}  {e['node'][:16]:16} {e['topic']:22} {e.get('series') or '-':40} "
                  f"{('ERROR ' + e['error']) if e.get('error') else ''}".rstrip())
        print(f"{len(events)} events for study {end.meta.get('study')}")
        return
    if args.what == "reports":
        rows = [{"StudyInstanceUID": _plain(m.dataset, "StudyInstanceUID"), "StudyDate": _plain(m.dataset, "StudyDate"),
                 "SOPInstanceUID": _plain(m.dataset, "SOPInstanceUID"), "text": m.meta.get("text", "")} for m in got]
        if args.json:
            print(json.dumps(rows, indent=2))
            return
        for r in rows:
            print(f"--- {r['StudyDate'] or '?'} study {r['StudyInstanceUID']}\n{r['text']}")
        print(f"{len(rows)} report{'s' if len(rows) != 1 else ''}")
        return
    keys = STUDY_KEYS if args.what == "studies" else SERIES_KEYS
    rows = [{k: _plain(m.dataset, k) for k in keys} for m in got]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    widths = {k: max([len(k)] + [len(_cell(r[k])) for r in rows]) for k in keys}
    print("  ".join(k.ljust(widths[k]) for k in keys))
    for r in rows:
        print("  ".join(_cell(r[k]).ljust(widths[k]) for k in keys))
    print(f"{len(rows)} {args.what} known to the index")


def _cell(value) -> str:
    if value is None:
        return "-"
    return "\\".join(value) if isinstance(value, list) else str(value)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config = config_from(args, "index-query", name=f"index-query-{os.getpid()}", workers=1)
        setup_logging(args.log_level or "WARNING")
        request_for(args)  # bad arguments fail before joining the mesh
        node = Node(config=config, role="tool")
        try:
            got, end = ask(node, args)
        finally:
            node.stop()
    except (ConfigError, MeshError) as exc:
        return fail(str(exc))
    show(args, got, end)
    return 0
