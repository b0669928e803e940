"""Tissue classes without a segmentation, normal-appearing white matter, relative maps and per-tissue summaries.

Everything here works on the maps themselves (NumPy (Z, Y, X) arrays and boolean masks), so a segmentation
from elsewhere can replace any step.  Rules, in order (``m`` = median CBV of the brain-mask voxels with
CBV > 0, a scale that needs no absolute calibration):

- *parenchyma*: brain-mask voxels with ``0.25 m < CBV <= 4 m``: below are CSF, air and noise (no bolus
  passage), above are vessels and sinuses (a voxel of blood has CBV ~ 100 ml/100 g; grey matter about
  twice white matter, so 4 m keeps all grey matter);
- *hypoperfused*: parenchyma with ``Tmax > 6 s`` (the critical-hypoperfusion threshold of the DEFUSE /
  EXTEND trials, Olivot et al. 2009, Stroke 40:469), with isolated voxels removed (an in-plane 3 x 3 opening).
  Its volume is reported in ml.  Note this pipeline's Tmax at zero delay is about 2 s (docs/perfusion.md),
  so ``Tmax > 6 s`` is a delay of about 4 s or more behind the AIF;
- *GM / WM*: parenchyma split at Otsu's threshold of log CBV (grey matter has about twice the blood volume
  of white matter; the log makes the two modes equally wide); above is GM, below WM.  The per-tissue
  summary uses the normal-appearing part (hypoperfused voxels removed);
- *NAWM* (reference of the relative maps): WM, outside the hypoperfused region with a margin
  (``Tmax <= 4 s``), in the hemisphere contralateral to the hypoperfused region when one of at least 1 ml
  (and 10 voxels) is found and at least 75 % of it lies on one side of the midline (the median left-right
  position of the parenchyma; ``lr`` gives each voxel's patient left-right coordinate, else the image
  column is used); both hemispheres otherwise.

Relative maps (:func:`normalise_to_nawm`): rCBV, rCBF, rMTT = map / median of the map in NAWM (a given
``nawm_mask`` replaces the rule).  Summaries (:func:`tissue_summary`): medians per class and volumes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .concentration import otsu_threshold
from .errors import PerfusionError
from .maps import PerfusionMaps

logger = logging.getLogger(__name__)

__all__ = ["TissueClasses", "classify_tissue", "estimate_nawm", "normalise_to_nawm", "tissue_summary",
           "HYPOPERFUSION_TMAX", "NAWM_TMAX"]

HYPOPERFUSION_TMAX = 6.0  # s
NAWM_TMAX = 4.0  # s
MIN_LESION_ML = 1.0
SUMMARY_MAPS = ("CBF", "CBV", "MTT", "Tmax")


@dataclass
class TissueClasses:
    """Boolean (Z, Y, X) masks of the classes above, plus what was decided on the way."""

    parenchyma: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    hypoperfused: np.ndarray
    nawm: np.ndarray
    voxel_ml: float | None
    lesion_side: str | None  # "left" / "right" (patient side, when lr is given in LPS) or None
    cbv_threshold: float  # the GM/WM boundary, ml/100 g

    def normal(self, cls: np.ndarray) -> np.ndarray:
        return cls & ~self.hypoperfused


def _open2d(mask: np.ndarray) -> np.ndarray:
    """In-plane 3 x 3 binary opening (erosion then dilation) of a (Z, Y, X) mask."""
    def shifted(a, fill):
        p = np.pad(a, ((0, 0), (1, 1), (1, 1)), constant_values=fill)
        ny, nx = a.shape[1:]
        return [p[:, 1 + dy:1 + dy + ny, 1 + dx:1 + dx + nx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    eroded = np.logical_and.reduce(shifted(mask, False))
    return np.logical_or.reduce(shifted(eroded, False)) & mask


def classify_tissue(maps: PerfusionMaps, lr: np.ndarray | None = None, voxel_ml: float | None = None) -> TissueClasses:
    """The classes of the module docstring from ``maps`` (CBV and Tmax are used)."""
    mask = maps.mask
    cbv, tmax = maps.maps["CBV"], maps.maps["Tmax"]
    positive = cbv[mask & (cbv > 0)]
    if positive.size < 10:
        raise PerfusionError("fewer than 10 brain voxels with a positive blood volume: no tissue classes")
    m = float(np.median(positive))
    parenchyma = mask & (cbv > 0.25 * m) & (cbv <= 4 * m)
    hypo = _open2d(parenchyma & (tmax > HYPOPERFUSION_TMAX))
    normal = parenchyma & ~hypo
    ref = normal if normal.sum() >= 10 else parenchyma
    threshold = float(np.exp(otsu_threshold(np.log(cbv[ref]))))
    gm = parenchyma & (cbv > threshold)
    wm = parenchyma & (cbv <= threshold)
    if lr is None:
        lr = np.broadcast_to(np.arange(mask.shape[2], dtype=np.float64), mask.shape)
    lr = np.asarray(lr, dtype=np.float64)
    midline = float(np.median(lr[parenchyma])) if parenchyma.any() else 0.0
    side = None
    nawm = wm & ~hypo & (tmax <= NAWM_TMAX)
    big_enough = hypo.sum() >= 10 and (voxel_ml is None or hypo.sum() * voxel_ml >= MIN_LESION_ML)
    if big_enough:
        on_plus = float(np.mean(lr[hypo] > midline))
        if on_plus >= 0.75 or on_plus <= 0.25:
            lesion_plus = on_plus >= 0.75
            contra = (lr < midline) if lesion_plus else (lr > midline)
            if (nawm & contra).sum() >= 10:
                nawm = nawm & contra
                side = "left" if lesion_plus else "right"  # +x is patient left in LPS
    return TissueClasses(parenchyma, gm, wm, hypo, nawm, voxel_ml, side, threshold)


def estimate_nawm(maps: PerfusionMaps, lr: np.ndarray | None = None) -> np.ndarray:
    """The NAWM mask of the module docstring; raises :class:`PerfusionError` below 10 voxels."""
    tissue = maps.tissue if isinstance(maps.tissue, TissueClasses) else classify_tissue(maps, lr)
    if tissue.nawm.sum() < 10:
        raise PerfusionError("could not estimate a normal-appearing white matter mask (fewer than 10 voxels); "
                             "pass nawm_mask= to normalise")
    return tissue.nawm


def normalise_to_nawm(maps: PerfusionMaps, nawm_mask: np.ndarray | None = None,
                      lr: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """rCBV, rCBF, rMTT: maps divided by their median in NAWM; also stored in ``maps.maps``."""
    nawm = estimate_nawm(maps, lr) if nawm_mask is None else np.asarray(nawm_mask, bool) & maps.mask
    rel = {}
    for name in ("CBV", "CBF", "MTT"):
        ref = float(np.median(maps.maps[name][nawm])) if nawm.any() else 0.0
        if ref <= 0:
            raise PerfusionError(f"median {name} in normal-appearing white matter is {ref}; cannot normalise")
        rel["r" + name] = np.where(maps.mask, maps.maps[name] / ref, 0).astype(np.float32)
        maps.extra[f"nawm_{name}"] = ref
    maps.extra["nawm_voxels"] = int(nawm.sum())
    maps.maps.update(rel)
    return rel


def _medians(maps: dict[str, np.ndarray], sel: np.ndarray, names) -> dict:
    return {k: (round(float(np.median(maps[k][sel])), 3) if sel.any() else None) for k in names if k in maps}


def tissue_summary(maps: PerfusionMaps, tissue: TissueClasses) -> dict:
    """``{"GM": {...}, "WM": {...}, "hypoperfused": {...}}``: medians of CBF, CBV, MTT, Tmax (and rCBF, rCBV
    when computed), voxel counts and volumes in ml (``None`` without a voxel size)."""
    names = SUMMARY_MAPS + ("rCBF", "rCBV")
    out = {}
    for label, sel in (("GM", tissue.normal(tissue.gm)), ("WM", tissue.normal(tissue.wm)),
                       ("hypoperfused", tissue.hypoperfused)):
        entry = _medians(maps.maps, sel, names)
        entry["voxels"] = int(sel.sum())
        entry["volume_ml"] = round(float(sel.sum() * tissue.voxel_ml), 2) if tissue.voxel_ml else None
        out[label] = entry
    return out
