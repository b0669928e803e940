"""One call from a DSC series to written perfusion maps: what a mesh node wraps.

``analyse_series`` loads the series, masks the brain, finds the baseline, converts to dR2*, optionally
corrects leakage, selects (or takes) the AIF, deconvolves, computes maps, optionally normalises them to
NAWM, and writes derived DICOM series, NIfTI files and PNG renderings under ``out_dir``::

    out_dir/dicom/<MAP>/<MAP>_0001.dcm ...   one derived series per map
    out_dir/nifti/<MAP>.nii.gz
    out_dir/png/<MAP>.png
    out_dir/perfusion.json                   the PerfusionResult summary (no patient data)
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from ._xp import get_xp, to_numpy
from .aif import AIF, manual_aif, select_aif
from .concentration import brain_mask, detect_baseline, signal_to_concentration
from .deconvolution import METHODS
from .derived import write_map_series
from .leakage import boxerman_correction
from .maps import MAP_UNITS, PerfusionMaps, compute_maps, normalise_to_nawm
from .nifti import write_nifti
from .render import render_map
from .series import DSCSeries, load_dsc_series
from ..atomic import replacing

logger = logging.getLogger(__name__)

__all__ = ["PerfusionResult", "MapOutput", "analyse_series", "analyse_loaded"]


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
    """Paths written and summary values (means/medians in the brain mask) for an SR or a message."""

    source_series_uid: str
    study_uid: str
    method: str
    aif_method: str
    aif_voxels: list[list[int]]
    baseline_frames: tuple[int, int]
    brain_voxels: int
    summary: dict[str, float]
    outputs: dict[str, MapOutput]
    png_encoder: str | None
    array_module: str
    seconds: float
    leakage_corrected: bool = False
    stroke: dict | None = None  # core, Tmax > 6/10 s, mismatch, DEFUSE-3, SEG/SR/summary files (meshdcm.stroke)
    maps: PerfusionMaps | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("maps", None)
        return d


def analyse_loaded(series: DSCSeries, method: str = "osvd", aif=None, xp=None, leakage_correction: bool = False,
                   normalise: bool = False, nawm_mask=None, **deconv_kw) -> tuple[PerfusionMaps, AIF, tuple[int, int]]:
    """Compute maps for a loaded series (no files written)."""
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
        chosen = select_aif(conc, mask, series.times)
    elif isinstance(aif, AIF):
        chosen = aif
    else:
        chosen = manual_aif(aif, conc)
    pm = compute_maps(conc, chosen.curve, series.dt, mask, method=method, xp=xp, **deconv_kw)
    if normalise:
        normalise_to_nawm(pm, nawm_mask)
    return pm, chosen, baseline


def analyse_series(source: str | Path | Sequence[Dataset] | DSCSeries, out_dir: str | Path, method: str = "osvd",
                   aif=None, xp=None, *, series_uid: str | None = None, leakage_correction: bool = False,
                   normalise: bool = False, nawm_mask=None, write_dicom: bool = True, write_nifti_files: bool = True,
                   write_png_files: bool = True, adc: str | Path | None = None, **deconv_kw) -> PerfusionResult:
    """Analyse a DSC series (folder, datasets or loaded series) and write the maps under ``out_dir``.

    ``aif``: None (automatic), an :class:`AIF`, a curve (T,) in dR2* units, a (Z, Y, X) boolean mask or
    (z, y, x) voxel triples.  ``xp``: array module (None = CuPy if a GPU is present, else NumPy).  ``adc``: folder
    of the session's ADC series for the stroke core (else the core is rCBF < 30 %; docs/stroke.md).
    Raises :class:`~meshdcm.perfusion.errors.PerfusionError` (or a subclass) with what to do next.
    """
    t0 = time.perf_counter()
    xp_mod = get_xp(xp)
    series = source if isinstance(source, DSCSeries) else load_dsc_series(source, series_uid=series_uid)
    pm, chosen, baseline = analyse_loaded(series, method, aif, xp_mod, leakage_correction, normalise, nawm_mask,
                                          **deconv_kw)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    outputs: dict[str, MapOutput] = {}
    encoder = None
    for number, (name, vol) in enumerate(pm.maps.items()):
        mo = MapOutput(name, MAP_UNITS.get(name, ""))
        if write_dicom:
            uid, files = write_map_series(series, name, vol, out / "dicom" / name, method, series_number=9000 + number)
            mo.series_uid, mo.dicom_files = uid, [str(f) for f in files]
        if write_nifti_files:
            mo.nifti = str(write_nifti(vol, series.affine_lps, out / "nifti" / f"{name}.nii.gz",
                                       f"{name} [{mo.unit}] {method}"))
        if write_png_files:
            (out / "png").mkdir(parents=True, exist_ok=True)
            path, encoder = render_map(name, vol, pm.mask, out / "png" / f"{name}.png")
            mo.png = str(path)
        outputs[name] = mo
    m = pm.mask
    summary = {}
    for name, vol in pm.maps.items():
        v = vol[m]
        summary[f"mean_{name}"] = round(float(v.mean()), 4)
        summary[f"median_{name}"] = round(float(np.median(v)), 4)
    summary.update({k: round(float(v), 4) for k, v in pm.extra.items()})
    result = PerfusionResult(
        source_series_uid=series.series_uid, study_uid=series.study_uid, method=method, aif_method=chosen.method,
        aif_voxels=chosen.voxels.tolist(), baseline_frames=baseline, brain_voxels=int(m.sum()), summary=summary,
        outputs=outputs, png_encoder=encoder, array_module=xp_mod.__name__, seconds=round(time.perf_counter() - t0, 3),
        leakage_corrected=leakage_correction, maps=pm)
    from ..stroke.hook import stroke_object  # the stroke analysis and its SEG/SR/summary (docs/stroke.md)
    result.stroke = stroke_object(series, pm, baseline, out, method=method, adc=adc, write_dicom=write_dicom)
    with replacing(out / "perfusion.json") as tmp:
        tmp.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    logger.info("perfusion %s of series %s: %d brain voxels, mean CBF %.1f ml/100g/min, %.2f s", method,
                series.series_uid, result.brain_voxels, summary["mean_CBF"], result.seconds)
    return result
