"""A study's report is signed once; a correction is an amendment (PS3.3 C.17.2, Predecessor Documents Sequence).

Every SR this node signed is on disk, ``<data>/reports/<study>/<series>/<sop>.dcm``: the study's chain of reports,
the first one signed and then its amendments, each naming the one it corrects in its Predecessor Documents Sequence
(0040,A360: the predecessor's Study, Series and SOP Instance UIDs). :class:`Signatures` holds the rules:

- sign: only a study without a signed report; else refused with the signed one (:class:`SignatureRefused`, 409),
  so a double click, a second tab or a replayed request make one SR;
- amend: names the report it corrects, which must be the latest of the chain (one amended already: 409);
- one signature at a time per study: the study is reserved from the check until its file is written (a second
  request meanwhile is refused, 409).

The chain is read from the files (the headers of a few SRs), so it survives a restart of the node.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from .report import SECTIONS, ReportError

_SECTION_BY_CODE = {code: key for key, _, code in SECTIONS}


class SignatureRefused(ReportError):
    """A signature that may not be made: the message says why and what to do; ``report`` is the study's signed
    report when there is one (the page then shows it), ``status`` the HTTP status."""

    def __init__(self, message: str, *, report: dict | None = None, status: int = 409):
        super().__init__(message)
        self.report = report
        self.status = status


def predecessors_of(ds: Dataset) -> list[str]:
    """The SOP Instance UIDs a report's Predecessor Documents Sequence names (the reports it amends)."""
    return [str(sop.ReferencedSOPInstanceUID)
            for study in ds.get("PredecessorDocumentsSequence", [])
            for series in study.get("ReferencedSeriesSequence", [])
            for sop in series.get("ReferencedSOPSequence", []) if "ReferencedSOPInstanceUID" in sop]


def describe(ds: Dataset, path: Path | None = None) -> dict:
    """What the page shows of a signed report: who verified it where and when, what it amends, its sections."""
    observer = (ds.get("VerifyingObserverSequence") or [Dataset()])[0]
    when = str(observer.get("VerificationDateTime", ""))
    sections = {}
    for item in ds.get("ContentSequence", []):
        if getattr(item, "ValueType", "") == "TEXT":
            key = _SECTION_BY_CODE.get(str(item.ConceptNameCodeSequence[0].CodeValue))
            if key:
                sections[key] = str(item.TextValue)
    predecessors = predecessors_of(ds)
    ai = [str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID) for item in ds.get("ContentSequence", [])
          if getattr(item, "ValueType", "") == "COMPOSITE" and "ReferencedSOPSequence" in item
          and str(item.ConceptNameCodeSequence[0].CodeValue) == "121112"]  # Source of Measurement: the AI SR used
    return {"sop": str(ds.SOPInstanceUID), "series": str(ds.SeriesInstanceUID), "study": str(ds.StudyInstanceUID),
            "signed_by": str(observer.get("VerifyingObserverName", "")),
            "organisation": str(observer.get("VerifyingOrganization", "")),
            "time": _iso(when), "amends": predecessors[0] if predecessors else None,
            "sections": sections, "ai_sr": ai[0] if ai else None, "path": str(path) if path else None}


def _iso(dt: str) -> str:
    """A DICOM DT (``YYYYMMDDHHMMSS.FFFFFF``) as ISO 8601 to the second (local time, as written)."""
    if len(dt) < 14 or not dt[:14].isdigit():
        return dt
    return f"{dt[:4]}-{dt[4:6]}-{dt[6:8]}T{dt[8:10]}:{dt[10:12]}:{dt[12:14]}"


class Signatures:
    """The signed reports of each study, on disk under ``folder``, and the rules for signing more."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._lock = threading.Lock()
        self._signing: set[str] = set()

    def chain(self, study: str) -> list[dict]:
        """The study's signed reports, the first signed first, each amendment after the report it amends."""
        reports = {}
        for path in sorted((self.folder / study).glob("*/*.dcm")):
            try:
                ds = dcmread(path, stop_before_pixels=True)
            except (InvalidDicomError, OSError, ValueError):
                continue  # not one of ours, or half gone: never a signature
            reports[str(ds.SOPInstanceUID)] = describe(ds, path)
        after = {r["amends"]: r for r in reports.values() if r["amends"] in reports}
        roots = sorted((r for r in reports.values() if r["amends"] not in reports), key=lambda r: r["time"])
        out = []
        for report in roots:
            while report is not None and report not in out:
                out.append(report)
                report = after.get(report["sop"])
        return out

    def head(self, study: str) -> dict | None:
        """The study's report in force: the last of its chain (None: not signed)."""
        chain = self.chain(study)
        return chain[-1] if chain else None

    @contextmanager
    def reserve(self, study: str, amends: str | None) -> Iterator[dict | None]:
        """Hold the study for one signature (``amends``: the SOP Instance UID of the report it corrects, None for the
        first one); yields the report amended. Refused (:class:`SignatureRefused`) when the rules say no."""
        with self._lock:
            if study in self._signing:
                raise SignatureRefused("this study's report is being signed right now (another click or another "
                                       "tab); reload to see it")
            head = self.head(study)
            if amends is None and head is not None:
                raise SignatureRefused(f"this study's report is already signed (by {_person(head['signed_by'])} at "
                                       f"{head['time'].replace('T', ' ')}); a signed report is final: to correct "
                                       "it, amend it", report=public(head))
            if amends is not None and head is None:
                raise SignatureRefused("this study has no signed report to amend; sign it first")
            if amends is not None and amends != head["sop"]:
                raise SignatureRefused(f"report {amends} is not the latest of this study: it was amended already "
                                       f"(latest {head['sop']}, by {_person(head['signed_by'])}); reload, and amend "
                                       "the latest if it still needs a correction", report=public(head))
            self._signing.add(study)
        try:
            yield head
        finally:
            with self._lock:
                self._signing.discard(study)


def read_report(report: dict) -> Dataset:
    """The SR file of a report of :meth:`Signatures.chain` (for the Predecessor Documents Sequence)."""
    return dcmread(report["path"], stop_before_pixels=True)


def public(report: dict | None) -> dict | None:
    """A report as the page gets it (without the file's path)."""
    return None if report is None else {k: v for k, v in report.items() if k != "path"}


def _person(pn: str) -> str:
    family, _, rest = pn.partition("^")
    given = rest.split("^")[0]
    return f"{given} {family}".strip() or "?"
