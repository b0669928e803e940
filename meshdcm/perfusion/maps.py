"""Perfusion maps from concentration curves and an AIF: CBV, CBF, MTT, Tmax, TTP; units and display windows.

- CBV = kH/rho * 100 * integral(C_t) / integral(C_a)            [ml/100 g]   (Rempp et al. 1994)
- CBF = kH/rho * 6000 * max_t(F R(t)) from the deconvolution   [ml/100 g/min] (Østergaard et al. 1996)
  (:mod:`.model`, the default, or truncated SVD: :mod:`.deconvolution`)
- MTT = 60 * CBV / CBF (central volume theorem)                    [s]
- Tmax = time of the residue maximum [s]: the model's fitted delay plus its dispersed residue's peak, or the SVD
  residue's maximum interpolated between frames
- TTP = time of the concentration peak after the first frame       [s]

Absolute units need the AIF in arterial concentration: the partial-volume correction of :mod:`.vof` scales
a measured AIF before it gets here.  Relative maps (rCBV, rCBF, rMTT over normal-appearing white matter)
and tissue classes are in :mod:`.tissue`.

``DISPLAY_RANGES`` are the windows a map opens with (derived DICOM WindowCenter/WindowWidth, PNG renderings,
web thumbnails), from each map's physiological range rather than its values: CBV 0-8 ml/100 g, CBF
0-100 ml/100 g/min, MTT 0-15 s, Tmax 0-12 s, rCBV/rCBF 0-2, rMTT 0-3; TTP 0 to the series duration.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from ._xp import get_xp, to_numpy
from .constants import KH, RHO
from .deconvolution import DEFAULT_METHOD, deconvolve
from .errors import PerfusionError

logger = logging.getLogger(__name__)

__all__ = ["MAP_NAMES", "MAP_UNITS", "DISPLAY_RANGES", "PerfusionMaps", "compute_maps", "display_range"]

MAP_NAMES = ("CBV", "CBF", "MTT", "Tmax", "TTP")
MAP_UNITS = {"CBV": "ml/100g", "CBF": "ml/100g/min", "MTT": "s", "Tmax": "s", "TTP": "s",
             "rCBV": "1", "rCBF": "1", "rMTT": "1"}
DISPLAY_RANGES = {"CBV": (0.0, 8.0), "CBF": (0.0, 100.0), "MTT": (0.0, 15.0), "Tmax": (0.0, 12.0),
                  "rCBV": (0.0, 2.0), "rCBF": (0.0, 2.0), "rMTT": (0.0, 3.0)}


def display_range(name: str, duration: float | None = None) -> tuple[float, float] | None:
    """The window (low, high) a map opens with; TTP spans the series ``duration``; ``None`` if unknown."""
    if name == "TTP" and duration:
        return (0.0, float(duration))
    return DISPLAY_RANGES.get(name)


@dataclass
class PerfusionMaps:
    """Maps as NumPy float32 (Z, Y, X) arrays (0 outside ``mask``), plus the mask and per-voxel details.

    ``tissue`` holds the :class:`~.tissue.TissueClasses` once they are computed; ``notes`` what could not be done.
    """

    method: str
    maps: dict[str, np.ndarray]
    mask: np.ndarray
    threshold: np.ndarray | None = None
    oscillation: np.ndarray | None = None
    extra: dict = field(default_factory=dict)
    tissue: object | None = None
    #: oSVD's CBF when the maps are by another method and a stroke core by rCBF is wanted (meshdcm.stroke: the
    #: rCBF < 30 % threshold was derived on SVD flow; docs/stroke.md, "rCBF core")
    core_cbf: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


def compute_maps(conc, aif, dt: float, mask: np.ndarray, method: str = DEFAULT_METHOD, xp=None, **deconv_kw) -> PerfusionMaps:
    """Maps from concentration ``conc`` (T, Z, Y, X), global ``aif`` (T,), frame interval ``dt`` (s).

    Only voxels in ``mask`` are computed (on the chosen array module); results come back as NumPy.
    """
    xp = get_xp(xp)
    mask = np.asarray(mask, dtype=bool)
    nt = conc.shape[0]
    aif_np = np.asarray(to_numpy(aif), dtype=np.float64).ravel()
    area_aif = float(aif_np.sum() * dt)
    if not np.isfinite(area_aif) or area_aif <= 0:
        raise PerfusionError("the arterial input function has no positive area; choose another AIF (aif=...)")
    c = xp.asarray(conc, dtype=xp.float32).reshape(nt, -1)
    idx = xp.asarray(np.flatnonzero(mask.ravel()))
    cm = c[:, idx]
    dec = deconvolve(cm, aif_np, dt, method=method, xp=xp, **deconv_kw)
    scale = xp.float32(KH / RHO)
    cbv = scale * xp.float32(100.0) * cm.sum(axis=0) * xp.float32(dt) / xp.float32(area_aif)
    cbf = scale * xp.float32(6000.0) * dec.flow
    mtt = xp.where(cbf > 0, xp.float32(60.0) * cbv / xp.where(cbf > 0, cbf, xp.float32(1)), xp.float32(0))
    ttp = cm.argmax(axis=0).astype(xp.float32) * xp.float32(dt)
    values = {"CBV": cbv, "CBF": cbf, "MTT": mtt, "Tmax": dec.tmax, "TTP": ttp}
    out = {}
    flat_idx = np.flatnonzero(mask.ravel())
    for name, v in values.items():
        full = np.zeros(mask.size, dtype=np.float32)
        full[flat_idx] = to_numpy(v)
        out[name] = full.reshape(mask.shape)
    thr = np.zeros(mask.size, np.float32)
    thr[flat_idx] = to_numpy(dec.threshold)
    oi = np.full(mask.size, np.nan, np.float32)
    oi[flat_idx] = to_numpy(dec.oscillation)
    return PerfusionMaps(method, out, mask, thr.reshape(mask.shape), oi.reshape(mask.shape))
