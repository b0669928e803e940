"""Signal to contrast-agent concentration for DSC-MRI: brain mask, bolus arrival / baseline, delta R2*.

DSC signal model (Rosen et al. 1990; Østergaard et al. 1996, MRM 36:715): for a gradient-echo EPI
acquisition ``S(t) = S0 * exp(-TE * dR2*(t))`` and ``dR2*(t)`` is proportional to the tracer
concentration, so ``C(t) ~ dR2*(t) = -ln(S(t)/S0) / TE`` (units 1/s; the proportionality constant cancels
in every map because the AIF is measured the same way).

The brain mask is Otsu's threshold on the time-averaged signal (air and bone give almost no EPI signal);
Otsu is hand-written here (a histogram and a cumulative sum) so that this package needs no scikit-image
or SciPy.  Bolus arrival is the first frame, after ``skip`` steady-state frames, where the whole-brain mean
signal drops below the running baseline by more than 3 standard deviations for two frames in a row.
"""

from __future__ import annotations

import logging

import numpy as np

from ._xp import get_xp
from .errors import PerfusionError

logger = logging.getLogger(__name__)

__all__ = ["otsu_threshold", "brain_mask", "detect_baseline", "signal_to_concentration"]


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's (1979) between-class-variance threshold of a set of values (NumPy, small)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0 or v.min() == v.max():
        return float(v.min()) if v.size else 0.0
    hist, edges = np.histogram(v, bins=bins)
    centres = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mt = m0[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mt * w0 / w0[-1] - m0) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = -1
    return float(centres[int(np.argmax(between))])


def brain_mask(signal: np.ndarray, skip: int = 1) -> np.ndarray:
    """Boolean (Z, Y, X) mask of voxels with tissue signal, from a (T, Z, Y, X) DSC series."""
    mean_image = np.asarray(signal[skip:]).mean(axis=0)
    thr = otsu_threshold(mean_image)
    mask = mean_image > thr
    if not mask.any():
        raise PerfusionError("the brain mask is empty (no voxel above Otsu's threshold); check the series pixel data")
    return mask


def detect_baseline(curve: np.ndarray, skip: int = 1, nsd: float = 3.0, min_baseline: int = 3) -> tuple[int, int]:
    """``(start, stop)`` frame indices of the pre-bolus baseline of a mean signal ``curve`` (T,).

    ``stop`` is exclusive and is one frame before the detected bolus arrival (that frame is often already
    partly affected).  Raises :class:`PerfusionError` when no bolus passage can be seen.
    """
    s = np.asarray(curve, dtype=np.float64)
    n = s.size
    for i in range(skip + min_baseline, n - 1):
        base = s[skip:i]
        mu, sd = base.mean(), base.std()
        limit = mu - max(nsd * sd, 0.01 * abs(mu))
        if s[i] < limit and s[i + 1] < limit:
            stop = max(skip + min_baseline - 1, i - 1)
            return skip, stop
    raise PerfusionError(
        "no bolus passage found: the mean brain signal never drops below its baseline; "
        "is this a DSC (T2*-weighted, contrast bolus) series with enough time points?"
    )


def signal_to_concentration(signal, te: float, baseline: tuple[int, int], xp=None, floor: float = 1e-3):
    """``(dR2*, S0)`` from a (T, ...) signal: ``dR2* = -ln(S/S0)/TE`` with ``S0`` the baseline mean.

    ``te`` is in seconds.  Signal is clipped to ``floor * S0`` to keep the logarithm finite; voxels with
    ``S0 <= 0`` give zeros.  Returns float32 arrays of the chosen array module.
    """
    if not te or te <= 0:
        raise PerfusionError(f"EchoTime must be positive to convert signal to concentration (got {te!r} s)")
    xp = get_xp(xp)
    s = xp.asarray(signal, dtype=xp.float32)
    b0, b1 = baseline
    s0 = s[b0:b1].mean(axis=0)
    safe_s0 = xp.where(s0 > 0, s0, xp.float32(1))
    ratio = xp.maximum(s / safe_s0, xp.float32(floor))
    conc = -xp.log(ratio) / xp.float32(te)
    conc = xp.where(s0 > 0, conc, xp.float32(0))
    return conc.astype(xp.float32), s0
