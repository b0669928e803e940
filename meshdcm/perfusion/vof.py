"""Venous output function (VOF) and the partial-volume correction of the AIF it allows.

An automatic AIF comes from voxels near the middle cerebral arteries, which are smaller than a voxel: the
measured curve is a fraction of the arterial concentration plus some tissue, so its area is too small and
absolute CBF and CBV come out too large by the same factor.  Tracer conservation gives the remedy (van Osch
et al. 2003, MRM 49:1067; Knutsson et al. 2010, MAGMA 23:1; Bleeker et al. 2011, MRM 65:448): all the tracer
that enters the brain leaves it through the veins, and the venous curve is the arterial curve passed through
a system of unit area (delay and dispersion), so the *areas* under the arterial and the venous concentration
curves are equal.  A large vein, the superior sagittal sinus, is wider than a voxel and has no partial volume;
scaling the AIF by ``area(VOF) / area(AIF)`` restores its absolute level.

VOF selection (:func:`select_vof`), from the curves alone (no spatial prior, so any slice orientation works;
the chosen voxels are reported so that a reader can check they lie in the sinus, usually posterior superior
midline):

1. candidates: voxels of ``mask`` (the pipeline passes the brain mask grown by 2 voxels in-plane,
   :func:`dilate_in_plane`: a saturated sinus is dark on the time-mean image and lies outside the Otsu brain
   mask, inside which only its partial-volume edge is found), not the AIF's, with a baseline signal at least
   10 noise standard deviations (noise from the baseline frames: not the noise floor, nor background; tested
   first), then the largest area under the concentration curve (top 1 %, at least 20): sinus blood has the
   largest blood volume of any voxel;
2. late-peaking: peak later than the AIF's peak (veins come after the capillary transit);
3. saturation: a curve is saturated when at its peak the signal ``S0 exp(-TE dR2*)`` is within 3 noise
   standard deviations of 0: the top of the curve is lost in the noise floor and its area is too small.  Of the
   clear curves, the 25 % roughest (as in :mod:`.aif`) are dropped;
4. the VOF is the mean curve of the ``n_voxels`` (6) clear candidates of largest area, unless the saturated
   candidates hold still more area (a saturated sinus: their area is a lower bound but closer to the truth);
   then it is theirs and the correction says it is saturated (its scale is then a lower bound).

Areas: the plain integrals of the whole curves (sum x frame interval, as CBV uses).  Conservation holds for
the whole curves, recirculation included (recirculating tracer passes the same artery-to-vein system), and a
partial-volume AIF's tissue part is part of what is scaled, so after scaling the AIF's area is the VOF's.  The
one bias is the venous tail still above baseline when the acquisition ends (delay plus dispersion times the
late concentration): -2 to -5 % for a 60-120 s series with recirculation (tests/test_perfusion_vof.py).
First-pass areas from gamma-variate fits (``area="gamma"``: ``ln C = ln K + alpha ln(t - t0) - (t - t0)/beta``
weighted by C, from the rise to 30 % of the peak, t0 on a grid of tenths of a frame) were the other candidate
and are kept as an option: they remove recirculation from the arterial curve well, but the venous first pass is
dispersed and the second pass reaches the vein before it has fallen, so the venous fit takes in recirculation
(+27 to +29 % on the same test).  With ``area="gamma"`` a failed fit (fewer than 4 samples, R^2 < 0.9) falls
back to the integrals, and ``area_method`` says which was used.  The correction is applied when
``0.5 <= scale <= 10``; outside that a VOF or AIF choice is wrong, nothing is scaled and ``reason`` says why.

A saturated VOF (its area a lower bound: 0.83 of the truth on the realistic studies) gives the scale from the
*tails* instead, ``mean(VOF) / mean(AIF)`` over the frames from ``TAIL_LAG_S`` (25 s) after the VOF's peak, when
there are at least 5 such frames and the AIF's tail holds at least 5 % of its peak (a steady state; else the area,
flagged a lower bound): after the first and second pass arterial and venous blood hold the same concentration
(conservation at equilibrium), far above the noise floor, and a partial-volume AIF's tissue part scales with it
as with the area (``area_method = "tail"``; +2-4 % on the realistic studies, the venous tail lagging the slowly
rising steady state).  A partial-volume sinus edge that stays above the noise floor is not used instead: it is
~60 % vein and its area (and a scale from it) is ~0.6 of the truth.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .aif import AIF

logger = logging.getLogger(__name__)

__all__ = ["VOF", "dilate_in_plane", "PartialVolumeCorrection", "select_vof", "first_pass_area", "gamma_variate_fit", "correct_aif"]

SCALE_BOUNDS = (0.5, 10.0)


@dataclass
class VOF:
    """A venous output function: ``curve`` (T,) and the (n, 3) z, y, x voxels it came from."""

    curve: np.ndarray
    voxels: np.ndarray
    saturated: bool = False


@dataclass
class PartialVolumeCorrection:
    """What the VOF scaling did; ``to_dict`` is what perfusion.json holds."""

    applied: bool
    scale: float = 1.0
    aif_area: float | None = None
    vof_area: float | None = None
    area_method: str | None = None  # "gamma" | "integral"
    vof_voxels: list = field(default_factory=list)
    vof_saturated: bool = False
    reason: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("scale", "aif_area", "vof_area"):
            if d[k] is not None:
                d[k] = round(float(d[k]), 4)
        return d


def dilate_in_plane(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` (Z, Y, X) grown by a disc of ``radius`` voxels in each slice (no wrap-around)."""
    m = np.asarray(mask, bool)
    out = m.copy()
    ny, nx = m.shape[1:]
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if 0 < dy * dy + dx * dx <= radius * radius:
                src = m[:, max(0, -dy):ny - max(0, dy), max(0, -dx):nx - max(0, dx)]
                out[:, max(0, dy):ny - max(0, -dy), max(0, dx):nx - max(0, -dx)] |= src
    return out


def _roughness(curves: np.ndarray, area: np.ndarray) -> np.ndarray:
    return ((curves[:, 2:] - 2 * curves[:, 1:-1] + curves[:, :-2]) ** 2).sum(1) / area ** 2


def select_vof(conc: np.ndarray, mask: np.ndarray, times: np.ndarray, aif: AIF, te: float | None = None,
               baseline: tuple[int, int] | None = None, n_voxels: int = 6, fraction: float = 0.01,
               min_candidates: int = 20) -> VOF | None:
    """The VOF of ``conc`` (T, Z, Y, X) NumPy within ``mask``; ``None`` when no late, large curve is found.

    ``te`` (s) and ``baseline`` (frame range) enable the saturation check; without them it is skipped.
    """
    conc = np.asarray(conc)
    times = np.asarray(times, dtype=np.float64)
    dt = float(times[1] - times[0])
    m = np.asarray(mask, bool).copy()
    if aif.voxels.size:
        m[tuple(np.asarray(aif.voxels, int).T)] = False
    idx = np.flatnonzero(m.ravel())
    if idx.size < min_candidates:
        return None
    curves = conc.reshape(conc.shape[0], -1)[:, idx].T.astype(np.float64)
    checked = bool(te and baseline is not None and baseline[1] - baseline[0] >= 2)
    if checked:
        b0, b1 = baseline
        noise_all = te * curves[:, b0:b1].std(1)  # relative signal noise sigma/S0
        signal = noise_all < 0.1  # S0 at least 10 sigma: a voxel with signal, not the noise floor (nor background)
        idx, curves, noise_all = idx[signal], curves[signal], noise_all[signal]
        if idx.size < min_candidates:
            return None
    area = curves.sum(1) * dt
    n_cand = max(min_candidates, int(fraction * idx.size))
    order = np.argsort(area)[::-1][:n_cand]
    order = order[area[order] > 0]
    order = order[curves[order].argmax(1) > int(np.argmax(aif.curve))]
    if order.size < 3:
        return None
    saturated = np.zeros(order.size, bool)
    if checked:
        noise = noise_all[order]
        saturated = np.exp(-te * curves[order].max(1)) < 3 * noise  # S/S0 at the peak within 3 sigma of 0
    clear = order[~saturated]
    if clear.size >= 3:
        rough = _roughness(curves[clear], area[clear])
        clear = clear[rough <= np.quantile(rough, 0.75)]
    groups = [(g[np.argsort(area[g])[::-1][:n_voxels]], sat) for g, sat in ((clear, False), (order[saturated], True))
              if g.size]
    if not groups:
        return None
    # a saturated sinus still holding more area than every clear curve is the better (lower-bound) estimate
    chosen, sat = max(groups, key=lambda g: area[g[0]].mean())
    voxels = np.column_stack(np.unravel_index(idx[chosen], mask.shape))
    curve = curves[chosen].mean(0)
    logger.info("VOF from %d voxels, peak %.3g at %.1f s%s", chosen.size, curve.max(), times[int(curve.argmax())],
                " (saturated)" if sat else "")
    return VOF(curve.astype(np.float32), voxels, sat)


def gamma_variate_fit(curve: np.ndarray, times: np.ndarray, fall: float = 0.3) -> dict | None:
    """Fit ``K (t - t0)^alpha exp(-(t - t0)/beta)`` to the first pass of ``curve``; ``None`` if no fit.

    Returns ``{"K", "alpha", "beta", "t0", "area", "r2"}``; ``area = K beta^(alpha+1) Gamma(alpha+1)``.
    """
    c = np.asarray(curve, dtype=np.float64)
    t = np.asarray(times, dtype=np.float64)
    k = int(np.argmax(c))
    peak = c[k]
    if peak <= 0:
        return None
    start = k
    while start > 0 and c[start - 1] > 0.1 * peak:
        start -= 1
    end = k
    while end < c.size - 1 and c[end + 1] > fall * peak:
        end += 1
    if end - start + 1 < 4 or start == 0:
        return None
    dt = t[1] - t[0]
    ts, cs = t[start:end + 1], c[start:end + 1]
    best = None
    for t0 in np.arange(t[start] - 2 * dt, t[start] - 0.05 * dt, 0.1 * dt):
        x = ts - t0
        w = np.clip(cs, 1e-12, None)
        design = np.column_stack([np.ones_like(x), np.log(x), -x]) * w[:, None]
        coef, *_ = np.linalg.lstsq(design, np.log(w) * w, rcond=None)
        ln_k, alpha, inv_beta = coef
        if alpha <= 0 or inv_beta <= 0 or not np.all(np.isfinite(coef)):
            continue
        fit = np.exp(ln_k + alpha * np.log(x) - inv_beta * x)
        sse = float(((fit - cs) ** 2).sum())
        if best is None or sse < best[0]:
            best = (sse, float(t0), float(np.exp(ln_k)), float(alpha), float(1 / inv_beta))
    if best is None:
        return None
    sse, t0, kk, alpha, beta = best
    ss = float(((cs - cs.mean()) ** 2).sum())
    area = kk * beta ** (alpha + 1) * math.gamma(alpha + 1)
    return {"K": kk, "alpha": alpha, "beta": beta, "t0": t0, "area": area, "r2": 1 - sse / ss if ss > 0 else 0.0}


def first_pass_area(curve: np.ndarray, times: np.ndarray, min_r2: float = 0.9,
                    fit: bool = True) -> tuple[float | None, float]:
    """``(gamma-variate first-pass area, or None when the fit fails or fit=False; plain integral)`` of a curve."""
    c = np.asarray(curve, dtype=np.float64)
    integral = float(c.sum() * (times[1] - times[0]))
    if not fit:
        return None, integral
    fit = gamma_variate_fit(c, times)
    if fit is None or fit["r2"] < min_r2 or not np.isfinite(fit["area"]) or fit["area"] <= 0:
        return None, integral
    return float(fit["area"]), integral


TAIL_LAG_S = 25.0  # the tail starts this long after the VOF's peak: first and second pass over
TAIL_MIN_FRAMES = 5
TAIL_MIN_LEVEL = 0.05  # the AIF's tail must hold at least this fraction of its peak (a steady state, not noise)


def _tail_ratio(aif_curve: np.ndarray, vof_curve: np.ndarray, times: np.ndarray) -> float | None:
    """``sum(VOF) / sum(AIF)`` over the frames from ``TAIL_LAG_S`` after the VOF's peak, or ``None`` when the
    series has no such tail (too short, or no steady state: the tails are noise)."""
    a = np.asarray(aif_curve, dtype=np.float64)
    v = np.asarray(vof_curve, dtype=np.float64)
    w = times >= times[int(np.argmax(v))] + TAIL_LAG_S
    if w.sum() < TAIL_MIN_FRAMES:
        return None
    at, vt = a[w].mean(), v[w].mean()
    if at < TAIL_MIN_LEVEL * a.max() or vt <= 0:
        return None
    return float(vt / at)


def correct_aif(aif: AIF, vof: VOF | None, times: np.ndarray, area: str = "integral") -> tuple[AIF, PartialVolumeCorrection]:
    """The AIF scaled so that its area (``"integral"`` or ``"gamma"``, module docstring) equals the VOF's, and a
    record of what was done."""
    if area not in ("integral", "gamma"):
        raise ValueError(f"unknown area {area!r}; use 'integral' or 'gamma'")
    if vof is None:
        record = PartialVolumeCorrection(False, reason="no venous output function found (no late-peaking curve of "
                                                       "large area in the brain mask)")
        return replace(aif, correction=record), record
    times = np.asarray(times, dtype=np.float64)
    a_gamma, a_int = first_pass_area(aif.curve, times, fit=area == "gamma")
    v_gamma, v_int = first_pass_area(vof.curve, times, fit=area == "gamma")
    if area == "gamma" and a_gamma is not None and v_gamma is not None:
        a_area, v_area, how = a_gamma, v_gamma, "gamma"
    else:
        a_area, v_area, how = a_int, v_int, "integral"
    record = PartialVolumeCorrection(False, 1.0, a_area, v_area, how, vof.voxels.tolist(), vof.saturated)
    if a_area <= 0 or v_area <= 0:
        record.reason = "the AIF or the VOF has no positive area"
        return replace(aif, correction=record), record
    scale = v_area / a_area
    tail = _tail_ratio(aif.curve, vof.curve, times) if vof.saturated else None
    if tail is not None:
        scale, record.area_method = tail, "tail"
    record.scale = scale
    lo, hi = SCALE_BOUNDS
    if not lo <= scale <= hi:
        record.reason = (f"VOF/AIF area ratio {scale:.2f} is outside {lo:g}-{hi:g}: the VOF or the AIF voxels are "
                         "wrong; not corrected (pass an AIF or check the voxels)")
        logger.warning("partial-volume correction not applied: %s", record.reason)
        return replace(aif, correction=record), record
    record.applied = True
    if vof.saturated and tail is not None:
        record.reason = (f"the VOF is saturated at its peak: scaled by the steady-state tails (from {TAIL_LAG_S:g} s "
                         "after the VOF's peak), not the areas")
    elif vof.saturated:
        record.reason = "the VOF is saturated at its peak: its area, and the scale, are lower bounds"
    logger.info("AIF scaled by %.2f (VOF/AIF %s area)", scale, how)
    scaled = replace(aif, curve=(aif.curve * np.float32(scale)).astype(np.float32), scale=float(scale), correction=record)
    return scaled, record
