"""From a DSC series and its perfusion maps to the stroke result and its DICOM objects::

    out_dir/stroke/SEG/seg.dcm          core, Tmax > 6 s, Tmax > 10 s, mismatch on the DSC slices
    out_dir/stroke/SR/sr.dcm            TID 1500 measurement report referencing the SEG segments
    out_dir/stroke/SUMMARY/summary.dcm  RGB Secondary Capture (the same picture as out_dir/stroke/summary.png)

UIDs derive from the source series, the perfusion method, the ADC series used (if any), the algorithm version and
the software version: a re-run writes the same objects; a different input (an ADC that arrived since, another
method) makes new ones, never a second version under the same UID.  Each object is written on its own: one that
fails is reported in ``outputs[kind]["error"]`` and the others, and the volumes, stay.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from ._uid import stable_uid
from .errors import StrokeError
from .rules import ALGORITHM_VERSION, DEFAULT_RULES, StrokeRules
from .volumes import StrokeResult, analyse_stroke, voxel_volume_ml

log = logging.getLogger(__name__)

__all__ = ["analyse_dsc", "write_outputs", "output_uids"]

try:
    from meshdcm._version import __version__ as SOFTWARE_VERSION
except ImportError:  # pragma: no cover
    SOFTWARE_VERSION = "0"


def output_uids(source_series_uid: str, method: str, adc_series_uid: str | None) -> dict[str, str]:
    """Series and SOP Instance UIDs of the SEG, SR and summary of one analysis."""
    base = stable_uid("stroke", source_series_uid, method, adc_series_uid or "", ALGORITHM_VERSION, SOFTWARE_VERSION)
    return {f"{kind}_{what}": stable_uid(base, kind, what) for kind in ("seg", "sr", "summary")
            for what in ("series", "instance")}


def analyse_dsc(series, maps, baseline_frames: tuple[int, int], out_dir: str | Path | None, *, method: str,
                adc: str | Path | None = None, write_dicom: bool = True,
                rules: StrokeRules = DEFAULT_RULES) -> StrokeResult:
    """The stroke analysis of a loaded :class:`~meshdcm.perfusion.DSCSeries` and its
    :class:`~meshdcm.perfusion.PerfusionMaps`; with ``write_dicom`` its SEG, SR and summary under ``out_dir``.

    ``adc``: a folder with the ADC series of the same session (core by ADC), or None (core by rCBF); an ADC series
    that cannot be used falls back to the rCBF core, with a warning saying why.
    """
    t0 = time.perf_counter()
    b0, b1 = baseline_frames
    baseline = np.asarray(series.signal[b0:b1]).mean(axis=0)
    adc_map, adc_problem = None, None
    if adc is not None:
        from .adc import load_adc
        from .errors import ADCError

        try:
            adc_map = load_adc(adc, series.affine_lps, maps.mask.shape, series.frame_of_reference_uid)
        except ADCError as exc:  # the perfusion core still stands: say why the ADC one does not
            adc_problem = f"the ADC series was not used ({exc}); the core is by rCBF"
            log.warning("series %s: %s", series.series_uid, adc_problem)
    # the rCBF core on oSVD's flow when the maps are by the model: the 30 % threshold was derived on SVD flow, and
    # the model reads dispersed penumbra lower (docs/stroke.md, "rCBF core")
    cbf = maps.core_cbf if adc_map is None and getattr(maps, "core_cbf", None) is not None else maps.maps["CBF"]
    result = analyse_stroke(cbf, maps.maps["CBV"], maps.maps["Tmax"], maps.mask,
                            voxel_volume_ml(series.affine_lps), baseline=baseline,
                            adc=adc_map, affine_lps=series.affine_lps, rules=rules)
    if adc_problem is not None:
        result.warnings.append(adc_problem)
    if adc_map is not None:
        result.warnings.extend(adc_map.warnings)
        result.reference["adc_series_uid"] = adc_map.series_uid
    if write_dicom and out_dir is not None:
        write_outputs(series, result, baseline, Path(out_dir) / "stroke", method=method,
                      adc_series_uid=None if adc_map is None else adc_map.series_uid)
    result.seconds = round(time.perf_counter() - t0, 3)
    return result


def write_outputs(series, result: StrokeResult, baseline: np.ndarray, folder: Path, *, method: str,
                  adc_series_uid: str | None = None, supersedes=None) -> dict:
    """Write the SEG, SR and summary; record each in ``result.outputs`` (or the error that stopped it).
    ``supersedes``: the earlier SR (a pydicom Dataset) this analysis replaces (:mod:`.late_adc`)."""
    from .seg import write_seg
    from .sr import write_sr
    from .summary import render_summary, write_summary

    uids = output_uids(series.series_uid, method, adc_series_uid)
    seg = None
    try:
        path = folder / "SEG" / "seg.dcm"
        seg = write_seg(series.slices, result.masks, path, series_uid=uids["seg_series"],
                        sop_instance_uid=uids["seg_instance"], core_method=result.core_method, rules=result.rules,
                        software_version=SOFTWARE_VERSION)
        result.outputs["seg"] = {"modality": "SEG", "series_uid": uids["seg_series"],
                                 "sop_instance_uid": uids["seg_instance"], "files": [str(path)]}
    except StrokeError as exc:
        result.outputs["seg"] = {"error": str(exc)}
    if seg is not None:
        try:
            path = folder / "SR" / "sr.dcm"
            write_sr(seg, result, series.series_uid, path, series_uid=uids["sr_series"],
                     sop_instance_uid=uids["sr_instance"], supersedes=supersedes)
            result.outputs["sr"] = {"modality": "SR", "series_uid": uids["sr_series"],
                                    "sop_instance_uid": uids["sr_instance"], "files": [str(path)]}
        except StrokeError as exc:
            result.outputs["sr"] = {"error": str(exc)}
    else:
        result.outputs["sr"] = {"error": "not written: the SEG it refers to could not be written"}
    try:
        first = series.slices[0]
        iop = [float(v) for v in first.get("ImageOrientationPatient", [1, 0, 0, 0, 1, 0])]
        picture = render_summary(baseline, result, orientation=(iop[:3], iop[3:]))
        path, png = folder / "SUMMARY" / "summary.dcm", folder / "summary.png"
        write_summary(picture, first, path, series_uid=uids["summary_series"],
                      sop_instance_uid=uids["summary_instance"], png_path=png)
        result.outputs["summary"] = {"modality": "OT", "series_uid": uids["summary_series"],
                                     "sop_instance_uid": uids["summary_instance"], "files": [str(path)],
                                     "png": str(png)}
    except (StrokeError, ImportError) as exc:
        result.outputs["summary"] = {"error": str(exc)}
    for kind, out in result.outputs.items():
        if "error" in out:
            log.error("stroke %s of series %s not written: %s", kind, series.series_uid, out["error"])
    return result.outputs
