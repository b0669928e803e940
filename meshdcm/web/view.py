"""The web node's view of the mesh: searches and their answers, studies being fetched (series, progress,
derived series, errors, signed reports), a per-study timeline of every message that concerned it, message rates,
recent errors and dead letters. Filled by one catch-all handler on the node's worker threads; read by the routes.

Requests this node publishes are remembered by message id, so answers (``reply_to``) find their way back.
Answers from an index node (prior reports, timeline) and from dead-letter stores are optional: without such a
node the sections stay empty and the timeline is the web node's own.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pydicom.dataset import Dataset

from meshdcm import Message, Node

from .hub import Hub
from .signing import predecessors_of

log = logging.getLogger("meshdcm.web")

STUDY_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
              "StudyTime", "StudyDescription", "AccessionNumber", "ModalitiesInStudy",
              "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances")
SERIES_KEYS = ("SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "Modality",
               "NumberOfSeriesRelatedInstances")
TIMELINE_MAX = 2000
RATE_WINDOW = 60.0
MAX_REQUESTS = 5000  # requests whose answers are still routed to their study, search or page
MAX_STUDIES = 500  # studies kept in memory (the index node is the mesh's long memory)
#: the register node's ``derivation`` of a registered series (before it also sent ``reference``)
REGISTERED_ONTO = re.compile(r"registered onto (\S+)")
RENDITION_NAMES = {"nii": "NIfTI"}
#: the stroke analysis' objects (meta ``stroke`` of their ``stored.series``) as the page names them
STROKE_NAMES = {"seg": "stroke segmentation (core, Tmax > 6 s, Tmax > 10 s)", "sr": "stroke measurements (SR)",
                "summary": "stroke summary image"}  # stored.series.<format>: the format as the page names it


def iso(ns: int | None = None) -> str:
    t = (ns / 1e9) if ns is not None else time.time()
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


def attrs(ds: Dataset, keys) -> dict[str, str]:
    return {k: text(ds.get(k)) for k in keys if k in ds}


@dataclass
class Study:
    uid: str
    info: dict = field(default_factory=dict)
    series: dict[str, dict] = field(default_factory=dict)
    state: str = "idle"                     # idle, fetching, complete, incomplete
    done: int = 0
    total: int = 0
    errors: list[dict] = field(default_factory=list)
    timeline: list[dict] = field(default_factory=list)
    index_timeline: list[dict] = field(default_factory=list)
    reports: list[dict] = field(default_factory=list)
    priors: list[dict] = field(default_factory=list)
    priors_state: str = "none"              # none (no index answered), asked, done
    evidence: Dataset | None = None         # one instance header of the study (for the SR)
    renditions: dict[tuple[str, str], dict] = field(default_factory=dict)  # (series, format) -> a rendition
    waiting: dict[tuple[str, str], dict] = field(default_factory=dict)     # (node, series) -> why it waits

    def summary(self) -> dict:
        series = sorted(self.series.values(), key=lambda s: (s["derived"], _num(s["number"]), s["description"]))
        info = self.info
        if not info.get("ModalitiesInStudy"):  # a study reached by a link, never found by a search: from its series
            info = {**info, "ModalitiesInStudy": "\\".join(sorted({s["modality"] for s in series if s["modality"]}))}
        return {"uid": self.uid, "info": info, "state": self.state, "done": self.done, "total": self.total,
                "series": [dict(s, provenance=self.provenance(s)) for s in series],
                "renditions": [dict(r, provenance=f"{r['format']} rendition of {self.describe(r['of'])}")
                               for r in self.renditions.values()],
                "notes": self.notes(), "errors": self.errors[-50:], "reports": self.reports, "priors": self.priors,
                "priors_state": self.priors_state}

    def describe(self, uid: str | None) -> str:
        """A series of the study as the radiologist knows it: its description (else its number, else its UID)."""
        row = self.series.get(uid or "")
        if row is None:
            return uid or "an unknown series"
        return row["description"] or (f"series #{row['number']}" if row["number"] else uid)

    def provenance(self, row: dict) -> str:
        """What a derived series is, in words: "CBF map of <series>", "registered to <reference>", "coronal
        reformat 3 mm of <series>"; "" for an original series."""
        if not row["derived"]:
            return ""
        source = self.describe(row["derived_from"]) if row["derived_from"] else None
        derivation = row.get("derivation") or ""
        if row["map"]:
            return f"{row['map']} map of {source}" if source else f"{row['map']} map"
        if row.get("stroke"):
            what = STROKE_NAMES.get(row["stroke"], f"stroke {row['stroke']}")
            return f"{what} of {source}" if source else what
        if derivation.startswith("registered"):
            found = REGISTERED_ONTO.match(derivation)
            reference = row.get("reference") or (found.group(1) if found else None)
            return f"registered to {self.describe(reference)}" + (f", from {source}" if source else "")
        if derivation:
            return f"{derivation} of {source}" if source else derivation
        return f"derived from {source}" if source else "derived"

    def notes(self) -> list[dict]:
        """Why a node holds series of this study back (the register node waiting for a reference series), one
        note per node and reason, for the series not yet registered."""
        registered = {s["derived_from"] for s in self.series.values() if (s.get("derivation") or "").startswith(
            "registered")}
        notes: dict[tuple[str, str], dict] = {}
        for (node, series), w in self.waiting.items():
            if series in registered:
                continue
            note = notes.setdefault((node, w["reason"]), {"node": node, "reason": w["reason"], "series": []})
            note["series"].append(self.describe(series))
        return list(notes.values())


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return 1e9


class MeshView:
    def __init__(self, node: Node, hub: Hub, on_series=None, on_sr=None):
        self.node = node
        self.hub = hub
        self.on_series = on_series or (lambda uid, uris, unit: None)
        #: an SR series was announced (study, series, uris, node): the AI results read it (``ai.AIResults``)
        self.on_sr = on_sr or (lambda study, series, uris, node: None)
        self.lock = threading.RLock()
        self.searches: dict[str, dict] = {}
        self.studies: dict[str, Study] = {}
        self.requests: dict[str, tuple[str, str]] = {}   # message id -> (what, key)
        self.answers: dict[str, list[Message]] = {}      # request id -> replies (dead letters)
        self.series_uris: dict[str, tuple[list[str], str | None]] = {}
        self.aifs: dict[str, dict] = {}                  # source series -> the AIF its maps were made with
        self.errors: deque[dict] = deque(maxlen=100)
        self.rates: deque[tuple[float, str, str]] = deque(maxlen=50000)
        self._names: dict[str, str] = {}
        node.on("")(self.on_message)

    # --- publishing (and remembering what we asked) ---------------------------------------------------
    def publish(self, topic: str, body: Dataset, *, what: str = "", key: str = "", **kw) -> Message:
        """Publish a request and remember it, both under the lock: an answer (a node's error can come back within
        a millisecond) is handled only once the request is known. Callers that record more about the request
        (a signed report) do so inside their own ``with view.lock`` around this call."""
        with self.lock:
            msg = self.node.publish(topic, body, **kw)
            if what:
                self._remember(msg.id, what, key)
            study_uid = body.get("StudyInstanceUID") if body is not None else None
            if study_uid:
                self._timeline(self.study(str(study_uid)), msg, self.node.name)
            self.rates.append((time.monotonic(), topic, self.node.name))
        return msg

    def _remember(self, request: str, what: str, key: str) -> None:
        """A request whose answers we wait for (the oldest are forgotten beyond MAX_REQUESTS)."""
        self.requests[request] = (what, key)
        while len(self.requests) > MAX_REQUESTS:
            old = next(iter(self.requests))
            del self.requests[old]
            self.answers.pop(old, None)

    def study(self, uid: str) -> Study:
        with self.lock:
            if uid not in self.studies:
                self.studies[uid] = Study(uid)
                if len(self.studies) > MAX_STUDIES:  # forget the oldest study nobody is fetching
                    for old, st in self.studies.items():
                        if st.state != "fetching" and old != uid:
                            del self.studies[old]
                            break
            return self.studies[uid]

    def sender_name(self, sender: bytes) -> str:
        key = sender.hex()
        if key not in self._names:
            for p in self.node.peers:
                self._names[p["id"]] = p["name"]
        return self._names.get(key, key[:12])

    # --- the catch-all handler ------------------------------------------------------------------------
    def on_message(self, msg: Message) -> None:
        sender = self.sender_name(msg.sender)
        request = msg.correlation_id.hex() if msg.correlation_id else ""
        with self.lock:
            self.rates.append((time.monotonic(), msg.topic, sender))
            asked = self.requests.get(request)
            study_uid = msg.uids.get("study")
            study = self.study(study_uid) if study_uid else None
            if study is not None:
                self._timeline(study, msg, sender)
            if asked and asked[0] == "dead":
                self.answers.setdefault(request, []).append(msg)
            topic = msg.topic
            if topic == "found.study" and asked and asked[0] == "search":
                self._found_study(request, msg, sender)
            elif topic == "found.end" and asked and asked[0] == "search":
                self.searches[request]["ends"].append({"node": sender, **msg.meta})
                self.hub.emit("search", request)
            elif topic == "found.series" and study is not None:
                self._series(study, msg, sender, expected=True)
            elif topic == "progress.study" and study is not None:
                self._progress(study, msg)
            elif topic == "stored.series" and study is not None:
                self._series(study, msg, sender, expected=False)
            elif topic.startswith("stored.series.") and study is not None:
                self._rendition(study, msg, sender)
            elif topic == "waiting.series" and study is not None:
                self._waiting(study, msg, sender)
            elif topic == "stored.study" and study is not None and study.state == "fetching":
                complete = msg.meta.get("complete") is not False
                study.state = "complete" if complete else "incomplete"
                if complete:  # its progress events may still be in other workers' hands: the count is final here
                    study.total = max(study.total, int(msg.meta.get("instances") or 0))
                    study.done = study.total
                self.hub.emit("study", study.uid)
            elif topic == "uploaded.series" and asked and asked[0] == "report":
                self._report(asked[1], request, "stored", f"stored in PACS {msg.meta.get('pacs', '?')}")
            elif topic.startswith("error."):
                self._error(msg, sender, study, asked, request)
            elif topic == "got.report" and asked and asked[0] == "priors":
                self._prior(asked[1], msg, sender)
            elif topic == "got.end" and asked and asked[0] == "priors":
                self.study(asked[1]).priors_state = "done"
                self.hub.emit("study", asked[1])
            elif topic == "got.timeline":
                uid = msg.meta.get("study") or study_uid
                if uid:
                    self.study(uid).index_timeline = list(msg.meta.get("events", []))
                    self.hub.emit("timeline", uid)

    def _timeline(self, study: Study, msg: Message, sender: str) -> None:
        err = msg.meta.get("error", {}) if msg.topic.startswith("error.") else {}
        series = msg.uids.get("series")
        last = study.timeline[-1] if study.timeline else None
        if last and last["topic"] == msg.topic == "progress.study" and last["node"] == sender:
            last["count"] = last.get("count", 1) + 1
            last["last"] = iso(msg.timestamp_ns)
            return
        study.timeline.append({"time": iso(msg.timestamp_ns), "node": sender, "topic": msg.topic,
                               "series": series, "message_id": msg.id, "error": err.get("reason") if err else None})
        del study.timeline[:-TIMELINE_MAX]
        self.hub.emit("timeline", study.uid)

    def _found_study(self, request: str, msg: Message, sender: str) -> None:
        ds = msg.dataset
        uid = str(ds.get("StudyInstanceUID", ""))
        if not uid:
            return
        search = self.searches[request]
        source = msg.meta.get("pacs") or msg.meta.get("node") or sender
        row = search["studies"].setdefault(uid, {"sources": []})
        for k, v in attrs(ds, STUDY_KEYS).items():
            if v or k not in row:
                row[k] = v
        if source not in row["sources"]:
            row["sources"].append(source)
        study = self.study(uid)
        study.info.update({k: v for k, v in row.items() if k != "sources" and v})
        self.hub.emit("search", request)

    def _series(self, study: Study, msg: Message, sender: str, expected: bool) -> None:
        ds = msg.dataset
        uid = str(ds.get("SeriesInstanceUID", ""))
        if not uid:
            return
        row = study.series.setdefault(uid, {"uid": uid, "number": "", "description": "", "modality": "",
                                            "expected": 0, "arrived": 0, "complete": None, "derived": False,
                                            "derived_from": None, "node": None, "map": None, "unit": None,
                                            "summary": {}, "method": None, "thumbnail": False,
                                            "derivation": None, "reference": None, "stroke": None})
        row["number"] = text(ds.get("SeriesNumber", row["number"]))
        row["description"] = text(ds.get("SeriesDescription", row["description"]))
        row["modality"] = text(ds.get("Modality", row["modality"]))
        if expected:
            row["expected"] = int(ds.get("NumberOfSeriesRelatedInstances", 0) or 0)
        else:
            meta = msg.meta
            instances = int(meta.get("instances") or 0)
            row["arrived"] = max(row["arrived"], instances)
            row["expected"] = max(row["expected"], instances)
            row["complete"] = meta.get("complete", True) is not False
            row["derived"] = bool(meta.get("derived_from")) or "DERIVED" in text(ds.get("ImageType", "")).upper()
            row["derived_from"] = meta.get("derived_from")
            row["node"] = sender
            row["map"] = meta.get("map")
            row["unit"] = meta.get("unit")
            row["summary"] = meta.get("summary") or {}
            row["method"] = meta.get("method")
            row["derivation"] = meta.get("derivation")
            row["reference"] = meta.get("reference")
            row["stroke"] = meta.get("stroke")  # the stroke analysis' seg, sr or summary
            row["thumbnail"] = row["modality"] != "SR"  # a document has no image
            if isinstance(meta.get("aif"), dict) and meta.get("derived_from"):
                self.aifs[str(meta["derived_from"])] = dict(meta["aif"], node=sender)
            if not row["derived"] and "SOPInstanceUID" in ds:
                study.evidence = ds
                study.info.update({k: v for k, v in attrs(ds, STUDY_KEYS).items() if v and k not in study.info})
            if msg.uris and (meta.get("stroke") == "sr" or row["modality"] == "SR"):
                self.on_sr(study.uid, uid, list(msg.uris), sender)
            elif msg.uris:
                self.series_uris[uid] = (list(msg.uris), meta.get("unit") if meta.get("map") else None)
                self.on_series(uid, list(msg.uris), meta.get("unit") if meta.get("map") else None)
        self.hub.emit("study", study.uid)

    def _rendition(self, study: Study, msg: Message, sender: str) -> None:
        """``stored.series.<format>``: the series in another format (the convert node's NIfTI files); the body is
        the source series' header."""
        uid = msg.meta.get("derived_from") or text(msg.dataset.get("SeriesInstanceUID", ""))
        if not uid:
            return
        fmt = msg.topic.split(".", 2)[2]
        files = msg.meta.get("files") or [u.rsplit("/", 1)[-1] for u in msg.uris]
        study.renditions[(uid, fmt)] = {"of": uid, "format": RENDITION_NAMES.get(fmt, fmt), "topic": msg.topic,
                                        "node": sender, "files": list(files),
                                        "warnings": list(msg.meta.get("warnings") or [])}
        self.hub.emit("study", study.uid)

    def _waiting(self, study: Study, msg: Message, sender: str) -> None:
        """``waiting.series``: a node holds a series back until something arrives, and says why."""
        series = text(msg.dataset.get("SeriesInstanceUID", ""))
        study.waiting[(sender, series)] = {"reason": str(msg.meta.get("reason") or "waiting"),
                                           "waiting_for": msg.meta.get("waiting_for"), "time": iso(msg.timestamp_ns)}
        self.hub.emit("study", study.uid)

    def aif(self, series_uid: str) -> dict | None:
        """The arterial input function an analysis node used for the maps of ``series_uid`` (its ``aif`` meta)."""
        with self.lock:
            found = self.aifs.get(series_uid)
            return dict(found) if found else None

    def _progress(self, study: Study, msg: Message) -> None:
        series = msg.uids.get("series")
        if series:
            row = study.series.get(series)
            if row is not None and row["complete"] is None:
                row["arrived"] = row["arrived"] + 1 if not row["expected"] else min(row["arrived"] + 1,
                                                                                      row["expected"])
        # handlers run on several workers, so progress events are seen in any order: counts only ever grow
        # (a new fetch starts them from 0)
        study.done = max(study.done, int(msg.meta.get("done") or 0))
        study.total = max(study.total, int(msg.meta.get("total") or 0))
        self.hub.emit("study", study.uid)

    def _error(self, msg: Message, sender: str, study: Study | None, asked, request: str) -> None:
        err = dict(msg.meta.get("error", {}))
        entry = {"time": iso(msg.timestamp_ns), "node": err.get("node", sender), "topic": err.get("topic"),
                 "reason": err.get("reason"), "action": err.get("action"), "study": msg.uids.get("study"),
                 "series": msg.uids.get("series"), "dead_letter": msg.meta.get("dead_letter")
                 or err.get("dead_letter"), "message_id": msg.id}
        self.errors.append(entry)
        if study is not None:
            study.errors.append(entry)
            self.hub.emit("study", study.uid)
        if asked and asked[0] == "report":
            self._report(asked[1], request, "error", f"{entry['reason']}; {entry['action'] or ''}")
        self.hub.emit("mesh")

    def _report(self, study_uid: str, request: str, state: str, detail: str) -> None:
        study = self.study(study_uid)
        for rep in study.reports:
            if rep["request"] == request:
                rep["state"], rep["detail"], rep["updated"] = state, detail, iso()
        self.hub.emit("study", study_uid)

    def _prior(self, study_uid: str, msg: Message, sender: str) -> None:
        ds = msg.dataset
        study = self.study(study_uid)
        sop = text(ds.get("SOPInstanceUID", msg.id))
        if any(p["sop"] == sop for p in study.priors):
            return
        study.priors.append({"sop": sop, "study": text(ds.get("StudyInstanceUID")),
                             "date": text(ds.get("ContentDate") or ds.get("StudyDate")),
                             "description": text(ds.get("StudyDescription")), "node": msg.meta.get("node", sender),
                             "text": msg.meta.get("text", ""), "amends": predecessors_of(ds)})
        self.hub.emit("study", study_uid)

    def report_error(self, study_uid: str, reason: str, action: str) -> None:
        """A failure of this node about a study: logged (UIDs only), shown on the study page, published as
        ``error.<node>`` like a handler's failure."""
        log.error("study %s: %s", study_uid, reason)
        body = Dataset()
        body.StudyInstanceUID = study_uid
        error = {"node": self.node.name, "node_id": self.node.id, "kind": self.node.config.kind, "handler": "web",
                 "topic": "", "reason": reason, "action": action}
        msg = self.node.publish(self.node.error_topic, body, meta={"error": error})
        with self.lock:
            entry = {"time": iso(), "node": self.node.name, "topic": None, "reason": reason, "action": action,
                     "study": study_uid, "series": None, "dead_letter": None, "message_id": msg.id}
            self.errors.append(entry)
            self.study(study_uid).errors.append(entry)
        self.hub.emit("study", study_uid)

    # --- what the pages ask for -----------------------------------------------------------------------
    def search_state(self, request: str) -> dict | None:
        with self.lock:
            s = self.searches.get(request)
            if s is None:
                return None
            return {"id": request, "studies": list(s["studies"].values()), "ends": list(s["ends"]),
                    "started": s["started"]}

    def start_search(self, identifier: Dataset) -> str:
        with self.lock:
            msg = self.node.publish("find.studies", identifier)
            self.searches[msg.id] = {"studies": {}, "ends": [], "started": iso()}
            self._remember(msg.id, "search", msg.id)
            while len(self.searches) > 200:
                self.searches.pop(next(iter(self.searches)))
        return msg.id

    def timeline(self, uid: str) -> list[dict]:
        with self.lock:
            study = self.study(uid)
            events = {e["message_id"]: dict(e, source="index") for e in study.index_timeline if e.get("message_id")}
            for e in study.timeline:
                events.setdefault(e["message_id"], dict(e, source="web"))
        return sorted(events.values(), key=lambda e: e["time"])

    def measurements(self, uid: str) -> list[dict]:
        """Values analysis nodes published for the study's derived series, with their provenance: for a perfusion
        map its median per tissue (GM, WM, hypoperfused region; the Tmax map also gives that region's volume), then
        its mean and median over the region the summary names (the parenchyma; an older node: the brain mask).

        The hypoperfused region's volume is left out once the stroke analysis reported on the same DSC series: the
        AI findings give its Tmax > 6 s volume, cleaned as docs/stroke.md says (CSF and small clusters out), and the
        map summary's region (the medians' region) differs from it by a few ml.  One finding, one figure."""
        out = []
        with self.lock:
            study = self.study(uid)
            stroke_analysed = {s["derived_from"] for s in study.series.values() if s["stroke"] == "sr"}
            for s in study.series.values():
                if not s["map"] or not s["summary"]:
                    continue
                summary, name = s["summary"], s["map"]
                source = study.series.get(s["derived_from"] or "", {}).get("description") or s["derived_from"]
                values = []
                tissues = summary.get("tissues") if isinstance(summary.get("tissues"), dict) else {}
                for tissue, entry in tissues.items():
                    if not isinstance(entry, dict) or not entry.get("voxels"):
                        continue
                    if entry.get(name) is not None:
                        values.append((f"{name} {tissue} median", entry[name], s["unit"]))
                    if (tissue == "hypoperfused" and name == "Tmax" and entry.get("volume_ml") is not None
                            and s["derived_from"] not in stroke_analysed):
                        values.append(("hypoperfused volume (Tmax > 6 s)", entry["volume_ml"], "ml"))
                for stat in ("mean", "median"):
                    if summary.get(f"{stat}_{name}") is not None:
                        values.append((f"{name} {stat} ({summary.get('region') or 'brain mask'})",
                                       summary[f"{stat}_{name}"], s["unit"]))
                out.extend({"label": label, "value": value, "unit": unit, "series": s["uid"],
                            "series_description": s["description"], "node": s["node"], "method": s["method"],
                            "source_series": source} for label, value, unit in values)
        return out

    def rates_summary(self, window: float = 10.0) -> dict:
        now = time.monotonic()
        by_topic: dict[str, int] = {}
        by_node: dict[str, int] = {}
        with self.lock:
            while self.rates and now - self.rates[0][0] > RATE_WINDOW:
                self.rates.popleft()
            recent = [r for r in self.rates if now - r[0] <= window]
        for _, topic, node in recent:
            family = topic.split(".")[0]
            by_topic[family] = by_topic.get(family, 0) + 1
            by_node[node] = by_node.get(node, 0) + 1
        return {"window": window, "total_per_s": round(len(recent) / window, 2),
                "topics": {k: round(v / window, 2) for k, v in sorted(by_topic.items())},
                "nodes": {k: round(v / window, 2) for k, v in sorted(by_node.items())}}

    def take_answers(self, request: str) -> list[Message]:
        with self.lock:
            return list(self.answers.get(request, []))
