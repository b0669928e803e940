"""index: the mesh's memory (docs/index.md).

Hears every message of the mesh (except its own) and remembers, in the embedded SQLite file or in MongoDB:
the metadata of every ``found.*``, ``stored.*`` and ``store.*`` dataset (studies, series, instances, derived series
with their provenance meta, renditions such as ``stored.series.nii``), every SR report with its text, and one
timeline event per message that names a study. A message is *acknowledged* once its writes are committed: the
handler commits before it returns, and the node answers from committed data only, so whatever it counted or
answered survives a SIGKILL.

Answers (the contract in docs/index.md):
- ``find.studies`` / ``find.series``: one ``found.study`` / ``found.series`` per match, then ``found.end``
  (meta ``source: "index"``). When nothing matches it stays silent (a PACS answers too; the web UI is not kept
  waiting for a "none"), unless the request's meta says ``"to": "index"`` or this node's name: then it always
  sends ``found.end`` (what ``meshdcm index query`` uses).
- ``get.reports``: one ``got.report`` per SR report of the patient (body: the SR without bulk data, meta
  ``text``), then ``got.end``.
- ``get.timeline``: one ``got.timeline`` with the study's events, oldest first.

Options (``[nodes.index]``): ``path`` (the SQLite file; default ``<data dir>/<name>/index.sqlite3``), ``mongo``
(a ``mongodb://`` URI: use MongoDB instead), ``synchronous`` (SQLite: ``normal`` survives a killed process,
``full`` also a power cut).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from pydicom.dataset import Dataset

from meshdcm import HandlerError, MalformedMessage, Message, Node, NodeConfig, data_dir, node_options, topics
from meshdcm.index import open_index

log = logging.getLogger("meshdcm.index.node")

LEVELS = {topics.FIND_STUDIES: ("STUDY", topics.FOUND_STUDY), topics.FIND_SERIES: ("SERIES", topics.FOUND_SERIES)}
#: Requests a consumer can address to index nodes only (meta ``to``).
ADDRESSED = ("index",)


@dataclass(frozen=True)
class IndexOptions:
    """``[nodes.index]`` (the module docstring and docs/index.md say what each does)."""

    path: str = ""
    mongo: str = ""
    synchronous: str = "normal"


def create(config: NodeConfig) -> Node:
    opts = node_options("index", IndexOptions, config.options)
    mongo = opts.mongo or None
    path = opts.path or data_dir(config.name) / "index.sqlite3"
    index = open_index(path, mongo=mongo, synchronous=opts.synchronous)
    node = Node(config=config, capabilities=("index",),
                extra={"index": {"backend": index.name, "where": "mongodb" if mongo else str(path)}})
    names: dict[str, str] = {}
    names_lock = threading.Lock()
    log.info("index %s on %s (%s)", config.name, index.name, "MongoDB" if mongo else path)

    def sender_name(msg: Message) -> str:
        key = msg.sender.hex()
        with names_lock:
            if key not in names:
                for p in node.peers:
                    names[p["id"]] = p["name"]
            name = names.get(key)
        if name is None and msg.topic.startswith("error."):
            name = msg.meta.get("error", {}).get("node")
        return name or key[:12]

    def addressed_here(msg: Message) -> bool:
        to = msg.meta.get("to")
        return to in ADDRESSED or to == node.name

    def for_someone_else(msg: Message) -> bool:
        to = msg.meta.get("to")
        return bool(to) and not addressed_here(msg)

    def answer_find(msg: Message) -> None:
        level, topic = LEVELS[msg.topic]
        found = index.find(level, msg.dataset)
        if not found and not addressed_here(msg):
            return
        meta = {"source": "index", "node": node.name}
        for ds in found:
            node.publish(topic, ds, reply_to=msg, meta=meta)
        node.publish(topics.FOUND_END, Dataset(), reply_to=msg, meta={**meta, "count": len(found)})

    def answer_reports(msg: Message) -> None:
        query = msg.dataset
        exclude = query.get("StudyInstanceUID") or None
        found = index.reports(query, exclude_study=str(exclude) if exclude else None)
        for ds, text in found:
            node.publish(topics.GOT_REPORT, ds, reply_to=msg, meta={"node": node.name, "text": text})
        node.publish(topics.GOT_END, Dataset(), reply_to=msg, meta={"count": len(found), "node": node.name})

    def answer_timeline(msg: Message) -> None:
        study = msg.get("StudyInstanceUID")
        if not study:
            raise HandlerError("get.timeline names no StudyInstanceUID", action="send it with the study's UID")
        body = Dataset()
        body.StudyInstanceUID = study
        node.publish(topics.GOT_TIMELINE, body, reply_to=msg,
                     meta={"node": node.name, "study": study, "events": index.timeline(study)})

    answers = {topics.FIND_STUDIES: answer_find, topics.FIND_SERIES: answer_find, topics.GET_REPORTS: answer_reports,
               topics.GET_TIMELINE: answer_timeline}

    @node.on("")
    def hear(msg: Message) -> None:
        if msg.sender == node.id_bytes:
            return  # its own answers are not news
        try:
            index.record(msg, sender_name(msg))
        except MalformedMessage as exc:
            raise HandlerError(f"{msg.topic} {msg.id[:12]} could not be read: {exc}",
                               action="fix the sender; the index kept everything else") from exc
        except Exception as exc:  # the store refused: say so, keep running
            raise HandlerError(f"{msg.topic} {msg.id[:12]} was not indexed: {type(exc).__name__}: {exc}",
                               action=f"check the index store ({index.name}: disk space, server reachable); "
                                      f"then publish the message again") from exc
        answer = answers.get(msg.topic)
        if answer is not None and not for_someone_else(msg):
            answer(msg)

    return node
