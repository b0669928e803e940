"""The index: one meaning for every backend.

:class:`Index` turns messages into writes (:mod:`.documents`) and answers queries; a :class:`Backend` only
stores documents and returns *candidates* for a coarse :data:`Prefilter` on its indexed fields (UIDs, patient
ID, upper-case patient name prefix, study date range, modality). The exact C-FIND matching
(:func:`meshdcm.cfind.matches`: wildcards, date ranges, PN case-insensitive) runs here, on every candidate,
so the embedded and the MongoDB backends answer a query identically; the contract tests prove it.

A prefilter maps a field to a condition: ``("eq", v)``, ``("in", [v, ...])``, ``("prefix", p)`` or
``("range", lo, hi)`` (either end may be empty). It may return more than matches, never fewer.
"""

from __future__ import annotations

import time
from typing import Iterable, Protocol

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from ..cfind import matches
from ..message import Message
from .documents import Event, Writes, iso_time, writes_for
from .reports import is_algorithm_result

__all__ = ["Backend", "Index", "Prefilter", "prefilter"]

Prefilter = dict[str, tuple]
LEVELS = {"STUDY": "study", "SERIES": "series"}
_WILDCARDS = ("*", "?")
CHUNK = 500  # UIDs per "in" condition (SQLite allows 32766 parameters, MongoDB 16 MB per query)


class Backend(Protocol):
    """Where the documents live. ``apply`` is atomic and durable when it returns (that is the acknowledgement)."""

    name: str

    def apply(self, writes: Writes, now: str) -> bool:
        """Apply ``writes``; False (and nothing changed) when its message id was applied before."""

    def candidates(self, kind: str, where: Prefilter) -> Iterable[dict]:
        """Documents of ``kind`` that may satisfy ``where`` (a superset is fine)."""

    def events(self, study: str) -> list[Event]:
        """The study's timeline events, oldest first."""

    def counts(self) -> dict[str, int]:
        """Documents per kind, and events."""

    def close(self) -> None: ...


def _literal_prefix(value: str) -> str:
    cut = min((value.index(c) for c in _WILDCARDS if c in value), default=len(value))
    return value[:cut]


def prefilter(kind: str, query: Dataset) -> Prefilter:
    """The coarse condition on indexed fields implied by a C-FIND identifier (see the module docstring)."""
    where: Prefilter = {}
    for keyword, name in (("StudyInstanceUID", "study"), ("SeriesInstanceUID", "series"),
                          ("SOPInstanceUID", "uid")):
        value = query.get(keyword)
        if value and (name != "uid" or kind in ("instance", "report")) and (name != "series" or kind != "study"):
            where[name] = ("in", _values(value))
    pid = str(query.get("PatientID", "") or "")
    if pid:
        where["patient_id"] = ("prefix", _literal_prefix(pid)) if any(c in pid for c in _WILDCARDS) else ("eq", pid)
    name = str(query.get("PatientName", "") or "").upper()
    if name and _literal_prefix(name):
        where["patient_name"] = ("prefix", _literal_prefix(name))
    date = str(query.get("StudyDate", "") or "")
    if date and not any(c in date for c in _WILDCARDS) and "\\" not in date:
        if "-" in date:
            lo, _, hi = date.partition("-")
            where["study_date"] = ("range", lo, hi + "\uffff" if hi else "")
        else:
            where["study_date"] = ("eq", date)
    modality = str(query.get("Modality", "") or "")
    if kind == "series" and modality and not any(c in modality for c in _WILDCARDS) and "\\" not in modality:
        where["modality"] = ("eq", modality)
    for unusable in [k for k, cond in where.items() if cond[0] == "prefix" and not cond[1]]:
        del where[unusable]
    return where


def _values(value) -> list[str]:
    """A DICOM value as a list of non-empty strings (None, one value, a multi-value, a backslash string)."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v for v in value.split("\\") if v]
    if isinstance(value, (list, tuple, MultiValue)):
        return [str(v) for v in value if str(v)]
    return [str(value)]


def _dataset(doc: dict, tags: set[str] | None = None) -> Dataset:
    """The document's DICOM elements as a Dataset; only ``tags`` when given (decoding is what queries cost)."""
    dicom = doc.get("dicom", {})
    if tags is not None:
        dicom = {t: dicom[t] for t in tags if t in dicom}
    return Dataset.from_json(dicom)


def _tags(query: Dataset, *keywords: str) -> set[str]:
    out = {f"{int(elem.tag):08X}" for elem in query}
    out.update(f"{tag_for_keyword(k):08X}" for k in keywords)
    return out


def _response(record: Dataset, query: Dataset, level: str, computed: dict) -> Dataset:
    """A C-FIND answer: the query's keys filled from the record (empty when unknown), plus the unique keys."""
    out = Dataset()
    for elem in query:
        if elem.keyword == "QueryRetrieveLevel":
            continue
        if elem.keyword in computed:
            out.add_new(elem.tag, elem.VR, computed[elem.keyword])
        elif elem.tag in record:
            out.add(record[elem.tag])
        else:
            out.add_new(elem.tag, elem.VR, None)
    out.QueryRetrieveLevel = level
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID") if level == "SERIES" else ("StudyInstanceUID",):
        if keyword not in out and keyword in record:
            out.add(record[keyword])
    if "SpecificCharacterSet" in record:
        out.SpecificCharacterSet = record.SpecificCharacterSet
    return out


class Index:
    """The mesh's memory over one backend. Thread-safe as far as the backend is."""

    def __init__(self, backend: Backend):
        self.backend = backend

    @property
    def name(self) -> str:
        return self.backend.name

    def record(self, msg: Message, sender_name: str) -> bool:
        """Remember what ``msg`` says; True when something changed. Durable when it returns."""
        writes = writes_for(msg, sender_name)
        if writes is None:
            return False
        return self.backend.apply(writes, iso_time(time.time_ns()))

    def find(self, level: str, query: Dataset) -> list[Dataset]:
        """C-FIND at ``level`` (STUDY or SERIES) over what the index knows: one answer per match."""
        kind = LEVELS[level]
        docs = [d for d in self.backend.candidates(kind, prefilter(kind, query))]
        out = []
        modalities_wanted = "ModalitiesInStudy" in query and kind == "study"
        series_of: dict[str, list[dict]] = {}
        if modalities_wanted or (kind == "study" and "NumberOfStudyRelatedSeries" in query):
            uids = [d["uid"] for d in docs]
            for at in range(0, len(uids), CHUNK):
                for s in self.backend.candidates("series", {"study": ("in", uids[at:at + CHUNK])}):
                    series_of.setdefault(s.get("study", ""), []).append(s)
        tags = _tags(query, "SpecificCharacterSet", "StudyInstanceUID", "SeriesInstanceUID")
        for doc in sorted(docs, key=lambda d: (d.get("study_date") or "", d["uid"])):
            record = _dataset(doc, tags)
            if not matches(record, query):
                continue
            computed = {}
            if kind == "study":
                known = series_of.get(doc["uid"], [])
                if modalities_wanted:
                    mods = sorted(set(_values(record.get("ModalitiesInStudy")))
                                  | {s["modality"] for s in known if s.get("modality")})
                    wanted = _values(query.ModalitiesInStudy)
                    if wanted and not set(wanted) & set(mods):
                        continue
                    computed["ModalitiesInStudy"] = mods or None
                if "NumberOfStudyRelatedSeries" in query and "NumberOfStudyRelatedSeries" not in record:
                    computed["NumberOfStudyRelatedSeries"] = len(known) or None
            out.append(_response(record, query, level, computed))
        return out

    def reports(self, query: Dataset, exclude_study: str | None = None) -> list[tuple[Dataset, str]]:
        """Stored SR reports matching ``query`` (PatientID / PatientName, ...), newest study first: (dataset, text).
        An analysis' unverified measurement report (``is_algorithm_result``) is a result, not a prior report."""
        keys = Dataset()
        for keyword in ("PatientID", "PatientName", "StudyDate"):  # a StudyInstanceUID is the one to exclude
            if keyword in query and query[keyword].value not in (None, ""):
                keys.add(query[keyword])
        if "PatientID" not in keys and "PatientName" not in keys:
            return []  # never "every report of every patient"
        found = []
        wanted = _tags(keys)
        for doc in self.backend.candidates("report", prefilter("report", keys)):
            if exclude_study and doc.get("study") == exclude_study:
                continue
            if matches(_dataset(doc, wanted), keys) and not is_algorithm_result(whole := _dataset(doc)):
                found.append((doc, whole))
        found.sort(key=lambda dr: (dr[0].get("study_date") or "", str(dr[1].get("ContentDate", "")), dr[0]["uid"]),
                   reverse=True)
        return [(record, str(doc.get("meta", {}).get("text", ""))) for doc, record in found]

    def timeline(self, study: str) -> list[dict]:
        """The study's life in the mesh, oldest first (the ``got.timeline`` events)."""
        return [e.public() for e in self.backend.events(study)]

    def documents(self, kind: str, where: Prefilter | None = None) -> list[dict]:
        """Raw documents (for tests and tools), ordered by uid."""
        return sorted(self.backend.candidates(kind, where or {}), key=lambda d: d["uid"])

    def counts(self) -> dict[str, int]:
        return self.backend.counts()

    def close(self) -> None:
        self.backend.close()
