"""What the index keeps of a message: documents (study, series, instance, report) and one timeline event.

A document is a plain JSON-able dict, the same for every backend::

    {"uid": "1.2...", "study": ..., "series": ..., "patient_id": ..., "patient_name": "DOE^JANE",   # indexed fields
     "study_date": "20240102", "modality": "MR", "derived_from": ...,
     "dicom": {"0020000D": {"vr": "UI", "Value": [...]}, ...},   # DICOM JSON (PS3.18 F.2), bulk data removed
     "meta": {"uris": [...], "derived_from": ..., ...},          # the message's meta, merged key by key
     "first_seen": "2026-11-25T09:00:00.000Z"}

Writes are merges, so that a replayed or repeated message changes nothing: indexed fields and ``dicom`` elements
are set element by element (an element without a value never erases a known one), ``meta`` key by key. Large
binary elements (pixel, overlay and waveform data, any OB/OW/UN value over 1 KiB) are never stored; the message's
URIs say where the data is. ``patient_name`` is kept upper-case: C-FIND matches PN case-insensitively.
"""

from __future__ import annotations

import datetime as _dt
import logging
from dataclasses import dataclass, field
from functools import lru_cache

from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset

from ..message import Message
from .reports import is_report, report_text

__all__ = ["KINDS", "Event", "Upsert", "Writes", "dicom_json", "iso_time", "merge", "writes_for"]

log = logging.getLogger("meshdcm.index")

KINDS = ("study", "series", "instance", "report")
FIELDS = ("study", "series", "patient_id", "patient_name", "study_date", "modality", "derived_from")

#: Patient and study level attributes (PS3.4 C.6.2.1.2): what a study document keeps of a header.
STUDY_KEYWORDS = frozenset({
    "SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "PatientAge", "PatientSize", "PatientWeight", "OtherPatientIDs", "EthnicGroup", "PatientComments",
    "StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID", "StudyDescription",
    "ReferringPhysicianName", "NameOfPhysiciansReadingStudy", "AdmittingDiagnosesDescription",
    "ModalitiesInStudy", "SOPClassesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
    "InstitutionName", "Timezone",
})

#: Topics whose body describes data (a study, series or instance) that the index remembers.
DATA_TOPICS = ("found.study", "found.series", "found.instance", "stored.study", "stored.series", "stored.instance",
               "store.study", "store.series", "store.instance")
SERIES_LEVEL = {"found.series", "stored.series", "store.series"}
INSTANCE_LEVEL = {"found.instance", "stored.instance", "store.instance"}
#: Answers of index nodes: never recorded (they are what an index already knows, not news).
ANSWER_TOPICS = ("got",)
#: Requests only an index answers: reading the memory is not an event in a study's life.
READ_TOPICS = frozenset({"get.reports", "get.timeline"})

BULK_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
BULK_LIMIT = 1024  # bytes; larger binary values stay where the URIs point


@dataclass
class Upsert:
    kind: str
    uid: str
    fields: dict = field(default_factory=dict)
    dicom: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)


@dataclass
class Event:
    """One line of a study's timeline (``get.timeline``); ``id`` is the message id, which also makes a replayed
    message a no-op."""

    id: str
    study: str
    series: str | None
    ts: int  # ns since the epoch, from the message envelope (when it was published)
    node: str
    topic: str
    error: str | None

    def public(self) -> dict:
        return {"time": iso_time(self.ts), "node": self.node, "topic": self.topic, "series": self.series,
                "message_id": self.id, "error": self.error}


@dataclass
class Writes:
    """Everything one message changes, applied atomically by a backend."""

    message_id: str
    upserts: list[Upsert]
    event: Event | None


def iso_time(ns: int) -> str:
    t = _dt.datetime.fromtimestamp(ns / 1e9, tz=_dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _is_bulk_tag(tag: str) -> bool:
    group, element = int(tag[:4], 16), tag[4:]
    return group in (0x7FE0, 0x5400) or (group & 0xFF00 == 0x6000 and element == "3000")


def _drop_bulk(data: dict) -> dict:
    out = {}
    for tag, elem in data.items():
        if "BulkDataURI" in elem or _is_bulk_tag(tag) or not ("Value" in elem or "InlineBinary" in elem):
            continue
        if elem.get("vr") == "SQ":
            elem = {**elem, "Value": [_drop_bulk(item) for item in elem["Value"]]}
        out[tag] = elem
    return out


def dicom_json(ds: Dataset) -> dict:
    """DICOM JSON of ``ds`` without bulk data (see the module docstring) and without elements that carry no
    value. pydicom's bulk data hook marks binary values over the limit; they are then left out."""
    data = ds.to_json_dict(bulk_data_threshold=BULK_LIMIT, bulk_data_element_handler=lambda _elem: "",
                           suppress_invalid_tags=True)
    return _drop_bulk(data)


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    if not isinstance(value, str) and hasattr(value, "__iter__") and not hasattr(value, "family_name"):
        value = "\\".join(str(v) for v in value)
    return str(value) or None


def _fields(ds: Dataset, **known) -> dict:
    out = {"patient_id": _text(ds, "PatientID"), "study_date": _text(ds, "StudyDate")}
    name = _text(ds, "PatientName")
    out["patient_name"] = name.upper() if name else None
    out.update(known)
    return {k: v for k, v in out.items() if v is not None}


def writes_for(msg: Message, sender_name: str) -> Writes | None:
    """The writes one received message causes, or None when it changes nothing (no study named, an index answer)."""
    topic = msg.topic
    if topic.split(".", 1)[0] in ANSWER_TOPICS or topic in READ_TOPICS:
        return None
    meta = msg.meta
    if topic.startswith("found.") and meta.get("source") == "index":
        return None  # another index's answer: what it knows, not news
    is_data = topic in DATA_TOPICS or topic.startswith("stored.series.")
    ds = msg.dataset if is_data else None
    uids = msg.uids
    study = uids.get("study")
    upserts = _data_upserts(topic, ds, meta, uids) if ds is not None else []
    event = None
    if study:
        error = None
        if topic.startswith("error."):
            error = str(meta.get("error", {}).get("reason") or "unknown error")
        event = Event(msg.id, study, uids.get("series"), msg.timestamp_ns, sender_name, topic, error)
    if not upserts and event is None:
        return None
    return Writes(msg.id, upserts, event)


def _data_upserts(topic: str, ds: Dataset, meta: dict, uids: dict) -> list[Upsert]:
    study, series, sop = uids.get("study"), uids.get("series"), uids.get("instance")
    kept_meta = {k: v for k, v in meta.items() if k != "error"}
    out: list[Upsert] = []
    if topic.startswith("stored.series.") and series:  # a rendition of a series (e.g. NIfTI): attach it
        rendition = topic[len("stored.series."):]
        out.append(Upsert("series", series, _fields(ds, study=study, series=series),
                          meta={f"rendition:{rendition}": kept_meta}))
        return out
    whole = dicom_json(ds)
    if study:
        study_part = {tag: elem for tag, elem in whole.items() if _keyword(tag) in STUDY_KEYWORDS}
        out.append(Upsert("study", study, _fields(ds, study=study), study_part,
                          kept_meta if topic.endswith(".study") else {}))
    level_is_series = topic in SERIES_LEVEL
    if series and (level_is_series or topic in INSTANCE_LEVEL):
        fields = _fields(ds, study=study, series=series, modality=_text(ds, "Modality"),
                         derived_from=meta.get("derived_from") if level_is_series else None)
        out.append(Upsert("series", series, fields, whole, kept_meta if level_is_series else {}))
    if sop and topic in INSTANCE_LEVEL:
        out.append(Upsert("instance", sop, _fields(ds, study=study, series=series,
                                                   modality=_text(ds, "Modality")), whole, kept_meta))
    if sop and topic != "found.series" and not topic.endswith(".study") and is_report(ds):
        text = report_text(ds)  # a C-FIND answer has no content: it must not erase the text of a stored report
        out.append(Upsert("report", sop, _fields(ds, study=study, series=series, modality="SR"), whole,
                          {**kept_meta, **({"text": text} if text else {})}))
    return out


@lru_cache(maxsize=4096)
def _keyword(tag_hex: str) -> str:
    return keyword_for_tag(int(tag_hex, 16))


def merge(doc: dict | None, upsert: Upsert, now: str) -> dict:
    """``doc`` with ``upsert`` applied (see the module docstring); a new document when ``doc`` is None."""
    out = {"uid": upsert.uid, "dicom": {}, "meta": {}, "first_seen": now} if doc is None else {
        **doc, "dicom": dict(doc.get("dicom", {})), "meta": dict(doc.get("meta", {}))}
    out.update(upsert.fields)
    out["dicom"].update(upsert.dicom)
    out["meta"].update(upsert.meta)
    return out
