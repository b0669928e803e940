"""One call from a DSC series to written perfusion maps: what a mesh node wraps.

``analyse_series`` loads the series, masks the brain, finds the baseline, converts to dR2*, optionally
corrects leakage, selects (or takes) the AIF, scales it by the venous output function (partial-volume
correction, on by default), deconvolves, computes maps, classifies tissue (GM, WM, hypoperfused), normalises
to NAWM (rCBV, rCBF, rMTT; on by default), and writes derived DICOM series, NIfTI files and PNG renderings
under ``out_dir``::

    out_dir/dicom/<MAP>/<MAP>_0001.dcm ...   one derived series per map
    out_dir/nifti/<MAP>.nii.gz
    out_dir/png/<MAP>.png
    out_dir/perfusion.json                   the PerfusionResult summary (no patient data)

perfusion.json ``summary``: ``mean_<MAP>`` / ``median_<MAP>`` over the perfused parenchyma (brain mask less
vessels and CSF, :mod:`.tissue`; the whole brain mask when no classes could be made, ``summary["region"]``
says which), the NAWM references (``nawm_CBV`` ...), and ``tissues``: per-class medians and volumes
(:func:`~.tissue.tissue_summary`).  ``aif_scale``, ``vof_voxels`` and ``partial_volume_correction`` say
what the VOF scaling did; ``notes`` lists what could not be done (relative maps without NAWM, say).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from ._xp import get_xp, to_numpy
from .aif import AIF, manual_aif, select_aif
from .concentration import brain_mask, detect_baseline, signal_to_concentration
from .deconvolution import DEFAULT_METHOD, METHODS
from .derived import write_map_series
from .leakage import boxerman_correction
from .errors import PerfusionError
from .maps import MAP_UNITS, PerfusionMaps, compute_maps, display_range
from .nifti import write_nifti
from .render import render_map
from .series import DSCSeries, load_dsc_series
from .tissue import classify_tissue, normalise_to_nawm, tissue_summary
from .vof import PartialVolumeCorrection, correct_aif, dilate_in_plane, select_vof
from ..atomic import replacing

logger = logging.getLogger(__name__)

__all__ = ["PerfusionResult", "MapOutput", "analyse_series", "analyse_loaded", "summarise"]

PLAUSIBLE_CBV = (0.5, 15.0)  # ml/100 g: a parenchymal median outside means the AIF (or the series) is wrong


@dataclass
class MapOutput:
    name: str
    unit: str
    series_uid: str | None = None
    dicom_files: list[str] = field(default_factory=list)
    nifti: str | None = None
    png: str | None = None


@dataclass
class PerfusionResult:
    """Paths written and summary values (tissue-aware, see the module docstring) for an SR or a message."""

    source_series_uid: str
    study_uid: str
    method: str
    aif_method: str
    aif_voxels: list[list[int]]
    baseline_frames: tuple[int, int]
    brain_voxels: int
    summary: dict
    outputs: dict[str, MapOutput]
    png_encoder: str | None
    array_module: str
    seconds: float
    leakage_corrected: bool = False
    aif_scale: float = 1.0
    vof_voxels: list[list[int]] = field(default_factory=list)
    partial_volume_correction: dict | None = None
    notes: list[str] = field(default_factory=list)
    aif_curve: list[float] = field(default_factory=list)  # the AIF (dR2*, 1/s) at ``times``
    aif_points_lps: list[list[float]] = field(default_factory=list)  # the AIF voxels' centres (LPS, mm)
    times: list[float] = field(default_factory=list)  # s from the first time point
    stroke: dict | None = None  # core, Tmax > 6/10 s, mismatch, DEFUSE-3, SEG/SR/summary files (meshdcm.stroke)
    maps: PerfusionMaps | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("maps", None)
        return d


def _left_right(series: DSCSeries, shape: tuple[int, int, int]) -> np.ndarray:
    """Each voxel's patient left-right coordinate (LPS x, mm; + is left) from the series geometry."""
    a = np.asarray(series.affine_lps, dtype=np.float64)
    z, y, x = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij")
    return a[0, 0] * x + a[0, 1] * y + a[0, 2] * z + a[0, 3]


def _voxel_ml(series: DSCSeries) -> float | None:
    v = abs(float(np.linalg.det(np.asarray(series.affine_lps, dtype=np.float64)[:3, :3]))) / 1000.0
    return v if v > 0 else None


def analyse_loaded(series: DSCSeries, method: str = DEFAULT_METHOD, aif=None, xp=None, leakage_correction: bool = False,
                   normalise: bool = True, nawm_mask=None, vof_correction: bool = True, svd_core_cbf: bool = False,
                   **deconv_kw) -> tuple[PerfusionMaps, AIF, tuple[int, int]]:
    """Compute maps for a loaded series (no files written).

    ``vof_correction``: scale an AIF measured in the series (automatic or given as voxels) so that its area
    equals the venous output function's (:mod:`.vof`); a curve given by hand is taken as it is.  The returned
    AIF is the one used, its ``scale`` and ``correction`` say what was done.  ``normalise``: add rCBV, rCBF,
    rMTT over NAWM (``nawm_mask``, else :mod:`.tissue`'s rule); when no NAWM is found the maps are left out
    and ``maps.notes`` says so.  Tissue classes are in ``maps.tissue``.  ``svd_core_cbf``: with a method other
    than oSVD, also oSVD's CBF in ``maps.core_cbf``, for a stroke core by rCBF (docs/stroke.md).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    xp = get_xp(xp)
    mask = brain_mask(series.signal)
    curve = series.signal[:, mask].mean(axis=1)
    try:
        baseline = detect_baseline(curve)
    except Exception as exc:
        raise type(exc)(f"series {series.series_uid}: {exc}") from exc
    conc_x, _ = signal_to_concentration(series.signal, series.te, baseline, xp=xp)
    conc = to_numpy(conc_x)
    if leakage_correction:
        flat = conc.reshape(conc.shape[0], -1)
        idx = np.flatnonzero(mask.ravel())
        lc = boxerman_correction(flat[:, idx], series.dt, xp=xp)
        flat[:, idx] = to_numpy(lc.corrected)
    if aif is None:
        chosen = select_aif(conc, mask, series.times, te=series.te, baseline=baseline)
    elif isinstance(aif, AIF):
        chosen = aif
    else:
        chosen = manual_aif(aif, conc)
    if not vof_correction:
        chosen = replace(chosen, correction=PartialVolumeCorrection(False, reason="switched off (vof_correction=False)"))
    elif chosen.method == "manual-curve":
        chosen = replace(chosen, correction=PartialVolumeCorrection(False, reason="AIF curve given by hand: taken "
                                                                                  "as the arterial concentration"))
    else:
        # the sinus lies outside the brain mask (Otsu on the mean image: a saturated sinus is dark on average)
        vof = select_vof(conc, dilate_in_plane(mask, 2), series.times, chosen, te=series.te, baseline=baseline)
        chosen, _ = correct_aif(chosen, vof, series.times)
    pm = compute_maps(conc, chosen.curve, series.dt, mask, method=method, xp=xp, **deconv_kw)
    if svd_core_cbf and method != "osvd":
        pm.core_cbf = compute_maps(conc, chosen.curve, series.dt, mask, method="osvd", xp=xp).maps["CBF"]
    lr = _left_right(series, mask.shape)
    try:
        pm.tissue = classify_tissue(pm, lr, _voxel_ml(series))
    except PerfusionError as exc:
        pm.notes.append(f"no tissue classes: {exc}")
    if pm.tissue is not None and pm.tissue.parenchyma.any():
        cbv = float(np.median(pm.maps["CBV"][pm.tissue.parenchyma]))
        if not PLAUSIBLE_CBV[0] <= cbv <= PLAUSIBLE_CBV[1]:
            pm.notes.append(f"median parenchymal CBV {cbv:.1f} ml/100g is not physiological (about 2-6): the arterial "
                            "input is not arterial (tissue and vessels enhance alike?); absolute values are not "
                            "reportable, check the series and the AIF voxels")
    if normalise:
        try:
            normalise_to_nawm(pm, nawm_mask, lr)
        except PerfusionError as exc:
            if nawm_mask is not None:
                raise
            pm.notes.append(f"relative maps (rCBV, rCBF, rMTT) not made: {exc}")
    for note in pm.notes:
        logger.warning("series %s: %s", series.series_uid, note)
    return pm, chosen, baseline


def summarise(pm: PerfusionMaps) -> dict:
    """perfusion.json's ``summary`` (module docstring)."""
    tissue = pm.tissue
    region, label = (tissue.parenchyma, "parenchyma") if tissue is not None and tissue.parenchyma.any() else \
        (pm.mask, "brain mask")
    summary: dict = {"region": label}
    for name, vol in pm.maps.items():
        v = vol[region]
        summary[f"mean_{name}"] = round(float(v.mean()), 4)
        summary[f"median_{name}"] = round(float(np.median(v)), 4)
    summary.update({k: round(float(v), 4) for k, v in pm.extra.items()})
    summary["tissues"] = tissue_summary(pm, tissue) if tissue is not None else None
    return summary


def analyse_series(source: str | Path | Sequence[Dataset] | DSCSeries, out_dir: str | Path, method: str = DEFAULT_METHOD,
                   aif=None, xp=None, *, series_uid: str | None = None, leakage_correction: bool = False,
                   normalise: bool = True, nawm_mask=None, vof_correction: bool = True, write_dicom: bool = True,
                   write_nifti_files: bool = True, write_png_files: bool = True, adc: str | Path | None = None,
                   **deconv_kw) -> PerfusionResult:
    """Analyse a DSC series (folder, datasets or loaded series) and write the maps under ``out_dir``.

    ``aif``: None (automatic), an :class:`AIF`, a curve (T,) in dR2* units, a (Z, Y, X) boolean mask or
    (z, y, x) voxel triples.  ``xp``: array module (None = CuPy if a GPU is present, else NumPy).
    ``vof_correction`` and ``normalise``: see :func:`analyse_loaded`. ``adc``: folder of the session's ADC series
    for the stroke core (else the core is rCBF < 30 %; docs/stroke.md).
    Raises :class:`~meshdcm.perfusion.errors.PerfusionError` (or a subclass) with what to do next.
    """
    t0 = time.perf_counter()
    xp_mod = get_xp(xp)
    series = source if isinstance(source, DSCSeries) else load_dsc_series(source, series_uid=series_uid)
    pm, chosen, baseline = analyse_loaded(series, method, aif, xp_mod, leakage_correction, normalise, nawm_mask,
                                          vof_correction, svd_core_cbf=adc is None, **deconv_kw)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    outputs: dict[str, MapOutput] = {}
    encoder = None
    duration = float(series.times[-1]) if series.times.size else None
    for number, (name, vol) in enumerate(pm.maps.items()):
        mo = MapOutput(name, MAP_UNITS.get(name, ""))
        window = display_range(name, duration)
        if write_dicom:
            uid, files = write_map_series(series, name, vol, out / "dicom" / name, method, series_number=9000 + number,
                                          window=window, mask=pm.mask)
            mo.series_uid, mo.dicom_files = uid, [str(f) for f in files]
        if write_nifti_files:
            mo.nifti = str(write_nifti(vol, series.affine_lps, out / "nifti" / f"{name}.nii.gz",
                                       f"{name} [{mo.unit}] {method}"))
        if write_png_files:
            (out / "png").mkdir(parents=True, exist_ok=True)
            path, encoder = render_map(name, vol, pm.mask, out / "png" / f"{name}.png", value_range=window)
            mo.png = str(path)
        outputs[name] = mo
    summary = summarise(pm)
    correction = chosen.correction
    result = PerfusionResult(
        source_series_uid=series.series_uid, study_uid=series.study_uid, method=method, aif_method=chosen.method,
        aif_voxels=chosen.voxels.tolist(), baseline_frames=baseline, brain_voxels=int(pm.mask.sum()), summary=summary,
        outputs=outputs, png_encoder=encoder, array_module=xp_mod.__name__, seconds=round(time.perf_counter() - t0, 3),
        leakage_corrected=leakage_correction, aif_scale=round(float(chosen.scale), 4),
        vof_voxels=list(correction.vof_voxels) if correction is not None else [],
        partial_volume_correction=correction.to_dict() if correction is not None else None, notes=list(pm.notes),
        aif_curve=[round(float(v), 5) for v in chosen.curve],
        aif_points_lps=_points_lps(series, chosen), times=[round(float(t), 3) for t in series.times], maps=pm)
    from ..stroke.hook import stroke_object  # the stroke analysis and its SEG/SR/summary (docs/stroke.md)
    result.stroke = stroke_object(series, pm, baseline, out, method=method, adc=adc, write_dicom=write_dicom)
    with replacing(out / "perfusion.json") as tmp:
        tmp.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    logger.info("perfusion %s of series %s: %d brain voxels, AIF x%.2f, %s mean CBF %.1f ml/100g/min, %.2f s", method,
                series.series_uid, result.brain_voxels, result.aif_scale, summary["region"], summary["mean_CBF"],
                result.seconds)
    return result


def _points_lps(series: DSCSeries, aif: AIF) -> list[list[float]]:
    """The AIF voxels (z, y, x) as points in the patient (LPS, mm): where any viewer finds them, whatever its own
    slice order."""
    if not len(aif.voxels):
        return []
    zyx = np.asarray(aif.voxels, dtype=float).reshape(-1, 3)
    ijk1 = np.column_stack([zyx[:, 2], zyx[:, 1], zyx[:, 0], np.ones(len(zyx))])
    return [[round(float(v), 3) for v in p[:3]] for p in ijk1 @ series.affine_lps.T]
