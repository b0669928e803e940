"""A scripted peer for the web node's tests: answers the index node's and the dead-letter stores' mesh
contracts (docs/web.md) the way those nodes do, so the web node's handling of them is tested over real sockets
before (and independently of) the real index node and delivery guarantees.

- ``find.studies`` whose PatientName matches and that names nothing else -> the synthetic head CT study as
  ``found.study`` (meta ``{"source": "index", "node"}``) + ``found.end`` (so the web node must de-duplicate)
- ``get.reports`` -> one ``got.report`` (an SR-like body with text) + ``got.end``
- ``get.timeline`` -> one ``got.timeline`` with one event
- on ``stored.study``: an ``error.<node>`` event for the study with ``dead_letter`` in its meta
- ``dead.list`` -> one ``dead.letter`` + ``dead.end``; ``dead.retry``/``dead.drop`` -> ``dead.retried``/``dead.dropped``;
  a line per retry in the file ``out``
"""

from __future__ import annotations

import fnmatch
from datetime import datetime, timezone

from pydicom.dataset import Dataset

from meshdcm import Message, Node, NodeConfig, synthetic

PRIOR_TEXT = "Findings: prior study without abnormality"


def create(config: NodeConfig) -> Node:
    out = dict(config.options)["out"]
    node = Node(config=config)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")

    ct = next(iter(synthetic.head_ct(seed=1, size="small")))  # the embedded PACS's CT study (deterministic UIDs)

    @node.on("find.studies")
    def find(msg: Message) -> None:
        query = msg.dataset
        others = [k for k in ("AccessionNumber", "ModalitiesInStudy", "StudyDate", "PatientID") if query.get(k)]
        pattern = str(query.get("PatientName", "") or "*")
        count = 0
        if not others and fnmatch.fnmatchcase(str(ct.PatientName), pattern):
            body = Dataset()
            for key in ("PatientName", "PatientID", "StudyInstanceUID", "StudyDate", "StudyDescription",
                        "AccessionNumber"):
                setattr(body, key, ct.get(key))
            node.publish("found.study", body, reply_to=msg, meta={"source": "index", "node": node.name})
            count = 1
        node.publish("found.end", Dataset(), reply_to=msg, meta={"count": count, "source": "index", "node": node.name})

    @node.on("get")
    def answer(msg: Message) -> None:
        if msg.topic == "get.reports":
            body = Dataset()
            body.SOPInstanceUID = "1.2.3.4.5.6"
            body.StudyInstanceUID = "1.2.3.4.5"
            body.ContentDate = "20230101"
            body.StudyDescription = "MR HEAD (prior)"
            node.publish("got.report", body, reply_to=msg, meta={"node": node.name, "text": PRIOR_TEXT})
            node.publish("got.end", Dataset(), reply_to=msg, meta={"node": node.name, "count": 1})
        elif msg.topic == "get.timeline":
            study = msg.get("StudyInstanceUID")
            body = Dataset()
            body.StudyInstanceUID = study
            event = {"time": "2000-01-01T00:00:00.000Z", "node": "scanner", "topic": "stored.study", "series": None,
                     "message_id": "ab" * 16, "error": None}
            node.publish("got.timeline", body, reply_to=msg,
                         meta={"node": node.name, "study": study, "events": [event]})

    @node.on("stored.study")
    def fail(msg: Message) -> None:
        body = Dataset()
        body.StudyInstanceUID = msg.get("StudyInstanceUID")
        error = {"node": node.name, "handler": "fail", "topic": msg.topic, "reason": "scripted failure",
                 "action": f"meshdcm dead retry {node.name} dl-1"}
        node.publish(node.error_topic, body, reply_to=msg,
                     meta={"error": error, "dead_letter": {"node": node.name, "id": "dl-1"}})

    @node.on("dead")
    def dead(msg: Message) -> None:
        if msg.meta.get("node") not in (None, node.name):
            return
        if msg.topic == "dead.list":
            body = Dataset()
            body.StudyInstanceUID = "1.2.3.4.5"
            node.publish("dead.letter", body, reply_to=msg, meta={
                "node": node.name, "id": "dl-1", "topic": "stored.study", "handler": "fail",
                "error": "scripted failure", "attempts": 3, "first_failed": now, "last_failed": now})
            node.publish("dead.end", Dataset(), reply_to=msg, meta={"node": node.name, "count": 1})
        elif msg.topic in ("dead.retry", "dead.drop"):
            if msg.meta.get("id") != "dl-1":
                node.publish("dead.end", Dataset(), reply_to=msg,
                             meta={"node": node.name, "error": f"no dead letter {msg.meta.get('id')}"})
                return
            with open(out, "a") as fh:
                fh.write(f"{msg.topic} {msg.meta.get('id')}\n")
            done = "dead.retried" if msg.topic == "dead.retry" else "dead.dropped"
            node.publish(done, Dataset(), reply_to=msg, meta={"node": node.name, "id": "dl-1"})

    return node
