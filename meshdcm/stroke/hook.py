"""The two places the perfusion code calls into the stroke analysis, kept thin so that it stays one line there.

- :func:`stroke_object` — the end of :func:`meshdcm.perfusion.analyse_series`: analyse, write the SEG/SR/summary,
  and return the ``"stroke"`` object of perfusion.json.  It never makes the perfusion analysis fail: without the
  imaging extras (SciPy, highdicom, Pillow) or on inputs the stroke rules cannot use, the object says so
  (``{"error": ..., "action": ...}``) and the maps are written as ever.
- :func:`announcements` — the perfusion node: one derived ``stored.series`` per stroke object written (folder,
  a file to read the header from, and the message meta).
- :class:`SessionADCs` — the perfusion node: the ADC series announced for each study (``ADC_FILTER``), kept on
  disk, so that a DSC series arriving later (DWI is acquired before PWI in stroke protocols) has its ADC core.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["Announcement", "SessionADCs", "announcements", "stroke_object"]


def stroke_object(series, maps, baseline_frames, out_dir, *, method: str, adc=None, write_dicom: bool = True) -> dict:
    """The ``"stroke"`` object of perfusion.json for one analysed DSC series (module docstring)."""
    try:
        from .analysis import analyse_dsc
        from .errors import StrokeError
    except ImportError as exc:  # SciPy (or another imaging extra) missing: perfusion maps only
        return {"error": f"stroke analysis unavailable: {exc}", "action": "install meshdcm[imaging]"}
    try:
        result = analyse_dsc(series, maps, baseline_frames, out_dir, method=method, adc=adc, write_dicom=write_dicom)
    except StrokeError as exc:
        log.warning("stroke analysis of series %s not done: %s", series.series_uid, exc)
        return {"error": str(exc), "action": "the perfusion maps are written; check them (Tmax, CBV) and the ADC "
                                             "series if one was given"}
    return result.to_dict()


@dataclass(frozen=True)
class Announcement:
    kind: str  # "seg", "sr", "summary"
    folder: Path
    file: Path
    meta: dict

    def header(self):
        """What the message body carries: the object's top-level attributes without sequences, pixel data and SOP
        Instance UID.  An SR's content tree or a SEG's per-frame groups are fetched with the file, not sent to
        every node; and the announcement is of a series: without an instance UID the index does not file the
        measurement SR as a prior *report* of the radiologist (with no text, since its content is not here)."""
        from pydicom import dcmread

        ds = dcmread(self.file, stop_before_pixels=True)
        for elem in list(ds):
            if elem.VR == "SQ" or elem.keyword == "SOPInstanceUID":
                del ds[elem.tag]
        return ds


def announcements(stroke: dict | None, source_series_uid: str) -> list[Announcement]:
    """The stroke objects to announce as derived series (none when there is no stroke object or it failed)."""
    if not stroke or "error" in stroke:
        return []
    summary = {k: stroke.get(k) for k in ("core_method", "core_ml", "tmax6_ml", "tmax10_ml", "mismatch_ml",
                                          "mismatch_ratio", "hir", "side")}
    summary["defuse3_all_met"] = (stroke.get("defuse3") or {}).get("all_met")
    out = []
    for kind in ("seg", "sr", "summary"):
        written = (stroke.get("outputs") or {}).get(kind) or {}
        if not written.get("files"):
            continue
        file = Path(written["files"][0])
        meta = {"derived_from": source_series_uid, "stroke": kind, "modality": written.get("modality"),
                "instances": len(written["files"]), "volumes": summary, "warnings": stroke.get("warnings", [])}
        out.append(Announcement(kind, file.parent, file, meta))
    return out


class SessionADCs:
    """The latest ADC series announced per study: ``folder/<study>/adc.json`` = {series_uid, uris, time}.

    Study and series UIDs must already be checked as path-safe (:func:`meshdcm.path_part`) by the caller."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def remember(self, study_uid: str, series_uid: str, uris: list[str]) -> None:
        from ..atomic import replacing

        path = self.folder / study_uid / "adc.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as tmp:
            tmp.write_text(json.dumps({"series_uid": series_uid, "uris": list(uris), "time": time.time()}))

    def find(self, study_uid: str) -> tuple[str, list[str]] | None:
        """(series UID, URIs) of the study's ADC series, or None when none was announced."""
        try:
            doc = json.loads((self.folder / study_uid / "adc.json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        return str(doc["series_uid"]), list(doc["uris"])
