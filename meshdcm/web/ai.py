"""What an analysis node proposes for the report: the stroke measurement SR (TID 1500) of a study, read with
highdicom, as the findings and impression text a radiologist may accept, with its provenance.

The web node hears the SR's ``stored.series`` (the perfusion node's, meta ``stroke: sr``; or any SR series the pacs
node announces when the study is fetched again), fetches the series by its URIs off the handler thread, and keeps,
per study, what :func:`read_ai_sr` made of each SR that is a meshdcm stroke report. The text is
:func:`meshdcm.stroke.report_text`'s (the same words as the perfusion node's JSON gives): written once.

Nothing is inserted by itself: the page offers the text with an "Accept" button; a report signed after an accept
references the SR it came from (``report.build_sr``, ``ai_sr``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from meshdcm.transfer import TransferError

from .signing import predecessors_of

log = logging.getLogger("meshdcm.web")

MAX_STUDIES = 500  # studies whose AI results are kept (the oldest heard of forgotten first; reopening reads again)
#: Comprehensive 3D SR and Comprehensive SR: the classes a TID 1500 measurement report is written in.
SR_CLASSES = frozenset({"1.2.840.10008.5.1.4.1.1.88.34", "1.2.840.10008.5.1.4.1.1.88.33"})


class NotAnAIResult(ValueError):
    """An SR that is no meshdcm stroke measurement report (a signed report, another vendor's): not offered."""


def _dt(ds: Dataset) -> str:
    """The SR's content date and time as ISO 8601 (local time as written), else ''."""
    date, time = str(ds.get("ContentDate", "") or ""), str(ds.get("ContentTime", "") or "")
    if len(date) != 8 or not date.isdigit():
        return ""
    out = f"{date[:4]}-{date[4:6]}-{date[6:]}"
    if len(time) >= 4 and time[:4].isdigit():
        out += f"T{time[:2]}:{time[2:4]}" + (f":{time[4:6]}" if len(time) >= 6 and time[4:6].isdigit() else "")
    return out


def read_ai_sr(ds: Dataset) -> dict:
    """What the report editor offers from one stroke measurement SR: ``findings``, ``impression``, ``values``
    (volumes in ml, ratios, side, DEFUSE-3 criteria) and ``provenance`` (algorithm, version, the SR's study, series,
    SOP class and instance UIDs, its time, the SEG and source series). Raises :class:`NotAnAIResult` for any other
    SR."""
    from meshdcm.stroke import StrokeError, report_text

    if str(ds.get("SOPClassUID", "")) not in SR_CLASSES or "ContentSequence" not in ds:
        raise NotAnAIResult(f"SOP instance {ds.get('SOPInstanceUID', '?')} is not a measurement report")
    try:
        text = report_text(ds)
    except StrokeError as exc:
        raise NotAnAIResult(str(exc)) from exc
    p = dict(text.provenance)
    p.update({"study_uid": str(ds.StudyInstanceUID), "series_uid": str(ds.SeriesInstanceUID),
              "sop_class_uid": str(ds.SOPClassUID), "sop_instance_uid": str(ds.SOPInstanceUID), "time": _dt(ds),
              "series_description": str(ds.get("SeriesDescription", "") or ""),
              "seg_series_uid": _evidence_series(ds, p.get("seg_sop_instance_uid")),
              "supersedes": predecessors_of(ds)})
    return {"findings": text.findings, "impression": text.impression, "values": text.values, "provenance": p}


def _evidence_series(ds: Dataset, sop: str | None) -> str | None:
    """The series UID the SR's evidence gives for the SOP instance ``sop`` (its SEG), else None: the page overlays
    that SEG, not another of the same DSC series (an ADC core's SEG after an rCBF one, docs/stroke.md)."""
    for keyword in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        for study in ds.get(keyword, []):
            for series in study.get("ReferencedSeriesSequence", []):
                if any(str(i.get("ReferencedSOPInstanceUID", "")) == sop for i in series.get("ReferencedSOPSequence", [])):
                    return str(series.SeriesInstanceUID)
    return None


class AIResults:
    """Per study, the stroke SRs heard of and what they propose; thread-safe. ``fetch(uris, dest)`` gives the local
    folder of a series (the node's ``fetch_folder``); ``changed(study)`` is called when a study's results change."""

    def __init__(self, fetch: Callable[[list[str], Path], Path], folder: Path, changed: Callable[[str], None]):
        self._fetch = fetch
        self.folder = folder
        self._changed = changed
        self._lock = threading.Lock()
        self._studies: dict[str, dict[str, dict]] = {}  # study -> SOP instance -> result (or {"state": ...})
        self._series: dict[str, str] = {}  # series UIDs read or being read -> their study
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="web-ai")

    def heard(self, study: str, series: str, uris: list[str], node: str) -> None:
        """An SR series of ``study`` was announced: read it (once per series) off the caller's thread."""
        with self._lock:
            if series in self._series or not uris:
                return
            self._series[series] = study
            self._studies.setdefault(study, {})[f"series:{series}"] = {"state": "reading", "series": series,
                                                                       "node": node}
            while len(self._studies) > MAX_STUDIES:
                old = next(iter(self._studies))
                del self._studies[old]
                self._series = {k: v for k, v in self._series.items() if v != old}
        self._changed(study)
        self._pool.submit(self._read, study, series, list(uris), node)

    def _read(self, study: str, series: str, uris: list[str], node: str) -> None:
        found: dict[str, dict] = {}
        error = None
        try:
            folder = self._fetch(uris, self.folder / series)
            for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and not p.name.endswith(".part")):
                try:
                    ds = dcmread(path)
                    result = read_ai_sr(ds)
                except (InvalidDicomError, NotAnAIResult, OSError, AttributeError, KeyError) as exc:
                    log.debug("series %s: %s is not a stroke SR (%s)", series, path.name, exc)
                    continue
                result["provenance"]["node"] = node
                result["state"] = "ready"
                result["_dataset"] = ds
                found[result["provenance"]["sop_instance_uid"]] = result
        except TransferError as exc:
            error = f"the AI result series {series} could not be fetched: {exc}"
        except Exception as exc:  # never lose the worker: the page says what failed
            error = f"the AI result series {series} could not be read: {type(exc).__name__}: {exc}"
        with self._lock:
            results = self._studies.setdefault(study, {})
            results.pop(f"series:{series}", None)
            if error:
                log.warning("study %s: %s", study, error)
                results[f"series:{series}"] = {"state": "error", "series": series, "node": node, "error": error}
                self._series.pop(series, None)  # announced again, it is tried again
            results.update(found)
        self._changed(study)

    def of(self, study: str) -> list[dict]:
        """The study's AI results as the page gets them: ready ones first, one that a later SR supersedes (the rCBF
        core's once the ADC core's is here; ``superseded`` True) after those that are current, newest first; those
        still being read, or failed, last."""
        with self._lock:
            results = [{k: v for k, v in r.items() if k != "_dataset"} for r in self._studies.get(study, {}).values()]
        replaced = {sop for r in results for sop in (r.get("provenance") or {}).get("supersedes", [])}
        for r in results:
            r["superseded"] = (r.get("provenance") or {}).get("sop_instance_uid") in replaced
        return sorted(results, key=lambda r: (r["state"] != "ready", r["superseded"], -_order(r)))

    def dataset(self, study: str, sop: str) -> Dataset | None:
        """The SR ``sop`` of ``study`` as read (for the signed report's references), None when not known here."""
        with self._lock:
            result = self._studies.get(study, {}).get(sop)
            return result.get("_dataset") if result else None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _order(result: dict) -> float:
    """Newer SRs first: by their content time (ISO text), as a number."""
    t = (result.get("provenance") or {}).get("time") or ""
    digits = "".join(c for c in t if c.isdigit())
    return float(digits) if digits else 0.0
