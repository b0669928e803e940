"""An ADC series that arrives after its study's DSC series was analysed with the rCBF core: the stroke analysis again,
now with the ADC core, published as new SEG, SR and summary series; the new SR supersedes the first.

A study fetched from a PACS arrives series by series in any order, so the DSC series can be analysed before the
ADC series of the same session is announced. The perfusion maps do not depend on the ADC; only the stroke part is
run again, on what :class:`KeptAnalyses` kept of the first run (no second fetch of the DSC series, no second
deconvolution)::

    folder/<study>/<dsc series>/inputs.npz   CBF, CBV, Tmax, brain mask, pre-bolus signal (Z, Y, X), affine (LPS)
                              /slices.json   the DSC slice headers (first time point, no pixel data) the SEG and
                                             the summary image are built on, as DICOM JSON
                              /kept.json     study, series, perfusion method, Frame of Reference, the SR written,
                                             the ADC series tried

A few MB per DSC series, written under a temporary name and renamed; removed once an ADC core is published for it,
else by the caller's retention after ``keep_days``. Only analyses whose core is by rCBF are kept: one with an ADC
core has nothing to wait for. Each ADC series is tried once per DSC series (an unusable one does not make the
same rCBF objects again; its UIDs would be the first run's).

The new objects' UIDs derive from the ADC series too (:func:`~.analysis.output_uids`), so they never take the
first run's UIDs; the SR names the first one in its Predecessor Documents Sequence and has the newer content time,
which is what the web node's AI panel sorts by.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..atomic import replacing

log = logging.getLogger(__name__)

__all__ = ["KeptAnalysis", "KeptAnalyses", "rerun_with_adc"]

_MAPS = ("CBF", "CBV", "Tmax")


@dataclass(frozen=True)
class KeptAnalysis:
    """One DSC series' stroke inputs as kept on disk (:class:`KeptAnalyses`)."""

    folder: Path
    study_uid: str
    series_uid: str
    method: str
    sr: str | None  # the SR the first run wrote (its predecessor), if it was written
    adc_tried: tuple[str, ...]

    def load(self):
        """(series, maps, baseline frames): stand-ins for the DSCSeries and PerfusionMaps that
        :func:`~.analysis.analyse_dsc` reads (signal = the pre-bolus mean as a single frame)."""
        from pydicom.dataset import Dataset

        with np.load(self.folder / "inputs.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        doc = json.loads((self.folder / "kept.json").read_text())
        slices = [Dataset.from_json(d) for d in json.loads((self.folder / "slices.json").read_text())]
        series = SimpleNamespace(signal=arrays["baseline"][None], affine_lps=arrays["affine"], slices=slices,
                                 series_uid=self.series_uid, study_uid=self.study_uid,
                                 frame_of_reference_uid=doc.get("frame_of_reference_uid"))
        maps = SimpleNamespace(maps={k: arrays[k] for k in _MAPS}, mask=arrays["mask"])
        return series, maps, (0, 1)


class KeptAnalyses:
    """The stroke inputs of each DSC series analysed with the rCBF core, per study (module docstring).

    Study and series UIDs must already be checked as path-safe (:func:`meshdcm.path_part`) by the caller."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def keep(self, study_uid: str, series, maps, baseline_frames: tuple[int, int], *, method: str,
             stroke: dict, adc_tried: str | None = None) -> KeptAnalysis | None:
        """Keep what a second stroke run needs when ``stroke`` (perfusion.json's object) has the rCBF core; a kept
        entry of the same series is replaced (a DSC series analysed again). ``adc_tried``: the ADC series this
        analysis was given but could not use (not fetched, or no core from it): not tried again."""
        if not stroke or "error" in stroke or stroke.get("core_method") != "rcbf":
            return None
        b0, b1 = baseline_frames
        target = self.folder / study_uid / series.series_uid
        tmp = target.with_name(f".part-{os.getpid()}-{target.name}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            arrays = {k: np.asarray(maps.maps[k], dtype=np.float32) for k in _MAPS}
            np.savez(tmp / "inputs.npz", mask=np.asarray(maps.mask, dtype=bool), affine=np.asarray(series.affine_lps),
                     baseline=np.asarray(series.signal[b0:b1]).mean(axis=0).astype(np.float32), **arrays)
            (tmp / "slices.json").write_text(json.dumps([ds.to_json_dict() for ds in series.slices]))
            sr = ((stroke.get("outputs") or {}).get("sr") or {}).get("files") or [None]
            doc = {"study_uid": study_uid, "series_uid": series.series_uid, "method": method,
                   "frame_of_reference_uid": series.frame_of_reference_uid, "sr": sr[0],
                   "adc_tried": [adc_tried] if adc_tried else [],
                   "time": time.time()}
            (tmp / "kept.json").write_text(json.dumps(doc))
            shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self._read(target)

    def waiting(self, study_uid: str, adc_series_uid: str) -> list[KeptAnalysis]:
        """The study's kept analyses not yet tried with this ADC series."""
        try:
            folders = sorted(p for p in (self.folder / study_uid).iterdir() if p.is_dir() and
                             not p.name.startswith("."))
        except FileNotFoundError:
            return []
        kept = [k for k in (self._read(p) for p in folders) if k is not None]
        return [k for k in kept if adc_series_uid not in k.adc_tried]

    def tried(self, kept: KeptAnalysis, adc_series_uid: str) -> None:
        """Note an ADC series that gave no ADC core for this DSC series (it is not tried again)."""
        doc = json.loads((kept.folder / "kept.json").read_text())
        doc["adc_tried"] = sorted(set(doc.get("adc_tried", [])) | {adc_series_uid})
        with replacing(kept.folder / "kept.json") as tmp:
            tmp.write_text(json.dumps(doc))

    def done(self, kept: KeptAnalysis) -> None:
        """The ADC core of this DSC series is published: nothing more to wait for."""
        shutil.rmtree(kept.folder, ignore_errors=True)

    @staticmethod
    def _read(folder: Path) -> KeptAnalysis | None:
        try:
            doc = json.loads((folder / "kept.json").read_text())
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return None
        return KeptAnalysis(folder, str(doc["study_uid"]), str(doc["series_uid"]), str(doc["method"]),
                            doc.get("sr"), tuple(doc.get("adc_tried") or ()))


def rerun_with_adc(kept: KeptAnalysis, adc: str | Path, out_dir: str | Path) -> dict | None:
    """The stroke analysis of a kept DSC series with the ADC series in the folder ``adc``: its SEG, SR (superseding
    the first run's) and summary written under ``out_dir/stroke``, and perfusion.json's ``"stroke"`` object
    written to ``out_dir/stroke.json`` (perfusion.json stays the first run's) and returned; None when the ADC gives
    no core (it cannot be used: the warning says why, and the rCBF objects stand)."""
    from pydicom import dcmread

    from .analysis import analyse_dsc, write_outputs
    from .errors import StrokeError

    t0 = time.perf_counter()
    series, maps, frames = kept.load()
    try:
        result = analyse_dsc(series, maps, frames, None, method=kept.method, adc=adc, write_dicom=False)
    except StrokeError as exc:
        log.warning("series %s: the stroke analysis with the ADC series that came after it failed (%s); the rCBF "
                    "core stands", kept.series_uid, exc)
        return None
    if result.core_method != "adc":
        log.warning("series %s: the ADC series that came after it gives no ADC core (%s); the rCBF core stands",
                    kept.series_uid, "; ".join(result.warnings) or "no reason given")
        return None
    predecessor = None
    if kept.sr:
        try:
            predecessor = dcmread(kept.sr, stop_before_pixels=True)
        except (OSError, ValueError) as exc:  # removed by retention meanwhile: the new SR stands on its own
            log.warning("series %s: the earlier stroke SR %s could not be read (%s); the new one does not name it",
                        kept.series_uid, kept.sr, exc)
    write_outputs(series, result, series.signal[0], Path(out_dir) / "stroke", method=kept.method,
                  adc_series_uid=result.reference.get("adc_series_uid"), supersedes=predecessor)
    result.seconds = round(time.perf_counter() - t0, 3)
    stroke = result.to_dict()
    with replacing(Path(out_dir) / "stroke.json") as tmp:  # perfusion.json's "stroke" object for this run
        tmp.write_text(json.dumps(stroke, indent=2) + "\n")
    return stroke
