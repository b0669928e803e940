"""Arterial input function: automatic selection by screening and clustering, or given by hand.

Automatic selection follows the scheme of Mouridsen et al. (2006, MRM 55:524) and Peruzzo et al. (2011,
Comput Methods Programs Biomed 104:e148):

1. candidates: brain-mask voxels with the largest area under the concentration curve (top 2 %, at
   least 20 voxels);
2. early arrival: each candidate's arrival is the time its first pass reaches half its peak (linear between
   frames); only those within one frame (at least 1 s) of the earliest (2nd percentile) arrival are kept.
   Largest area alone picks the sinus' partial-volume edge (and a delayed, occluded side's artery): the sinus
   holds more tracer than a partial-volume artery, but it arrives 4-6 s later.  Arrival, not the first
   moment of the whole curve, is what separates them: over a 60-90 s series recirculation and the steady
   state bring every curve's first moment to about the same time.  With the ``baseline`` frames, an arrival
   before the baseline's last frame is a noise spike, not a bolus, and is left out first;
3. noise floor: with ``te`` and the ``baseline`` (as :func:`analyse_series` passes them), a candidate whose
   signal at the peak, ``S0 exp(-TE dR2*)``, is within 3 baseline noise standard deviations of 0 lost the top
   of its curve (an artery filling a third of the voxel, docs/studies.md); such early candidates are dropped
   when at least 5 clear ones arrive as early (else every artery is saturated, as in the noisy stroke
   phantom, and they are kept).  Without ``te`` the 25 % most irregular curves (largest integral of squared
   second difference relative to the area) are dropped instead, as before: that rule also drops the sharpest
   clean arterial curves, so it is not used when the noise floor can be tested;
4. k-means (k = 5, deterministic initialisation by first-moment quantiles) on the area-normalised
   curves; of the clusters whose mean peak is at least a quarter of the highest, the one with the smallest
   mean first moment (earliest and narrowest, as Mouridsen et al. choose) is kept; the clustering is
   repeated once on it.  (A score ``peak / first moment`` was used before: a voxel wholly inside the
   sagittal sinus peaks higher than a partial-volume artery and won it, tests/test_perfusion_core.py);
5. the AIF is the mean raw curve of the final cluster (at most ``n_voxels`` voxels of highest peak).

k-means is hand-written (a dozen lines of NumPy on at most a few thousand curves) to keep SciPy and
scikit-learn out of the dependencies.  Selection runs on NumPy: it touches only the candidates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .errors import AIFSelectionError, PerfusionError

logger = logging.getLogger(__name__)

__all__ = ["AIF", "select_aif", "manual_aif"]


@dataclass
class AIF:
    """An arterial input function: ``curve`` (T,) in concentration units and the voxels it came from.

    ``scale`` is the factor ``curve`` was multiplied by after it was measured and ``correction`` the record
    of that partial-volume correction (:class:`~.vof.PartialVolumeCorrection`; ``None`` when none was tried).
    """

    curve: np.ndarray
    voxels: np.ndarray  # (n, 3) z, y, x indices; empty for a curve given by hand
    method: str  # "auto" | "manual-curve" | "manual-voxels"
    scale: float = 1.0
    correction: object | None = None


def _kmeans(x: np.ndarray, k: int, init_order: np.ndarray, iterations: int = 50) -> np.ndarray:
    n = x.shape[0]
    k = min(k, n)
    picks = init_order[np.linspace(0, n - 1, k).astype(int)]
    centres = x[picks].copy()
    labels = np.zeros(n, dtype=int)
    for _ in range(iterations):
        d = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
        new = d.argmin(1)
        if np.array_equal(new, labels) and _ > 0:
            break
        labels = new
        for j in range(k):
            if np.any(labels == j):
                centres[j] = x[labels == j].mean(0)
    return labels


def _arrival(curves: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Each curve's arrival: the time its first pass reaches half its peak (linear between frames)."""
    n, _ = curves.shape
    peak_at = curves.argmax(1)
    half = 0.5 * curves.max(1)
    out = np.empty(n)
    for i in range(n):
        j = peak_at[i]
        while j > 0 and curves[i, j - 1] >= half[i]:
            j -= 1
        if j == 0:
            out[i] = times[0]
            continue
        lo, hi = curves[i, j - 1], curves[i, j]
        out[i] = times[j - 1] + (half[i] - lo) / (hi - lo) * (times[j] - times[j - 1])
    return out


def _best_cluster(curves: np.ndarray, times: np.ndarray, k: int) -> np.ndarray:
    area = curves.sum(1) * (times[1] - times[0])
    norm = curves / area[:, None]
    fm = (norm * times[None]).sum(1) / norm.sum(1)
    labels = _kmeans(norm, k, np.argsort(fm))
    ids = np.unique(labels)
    peak = np.array([curves[labels == j].max(1).mean() for j in ids])
    moment = np.array([fm[labels == j].mean() for j in ids])
    eligible = peak >= 0.25 * peak.max()
    return labels == ids[eligible][np.argmin(moment[eligible])]


def select_aif(conc: np.ndarray, mask: np.ndarray, times: np.ndarray, n_voxels: int = 10,
               fraction: float = 0.02, min_candidates: int = 20, k: int = 5, te: float | None = None,
               baseline: tuple[int, int] | None = None) -> AIF:
    """Select an AIF automatically from ``conc`` (T, Z, Y, X) NumPy within ``mask`` (Z, Y, X)."""
    conc = np.asarray(conc)
    times = np.asarray(times, dtype=np.float64)
    idx = np.flatnonzero(np.asarray(mask).ravel())
    if idx.size < min_candidates:
        raise AIFSelectionError(f"only {idx.size} voxels in the brain mask; pass an AIF by hand (aif=...)")
    curves = conc.reshape(conc.shape[0], -1)[:, idx].T.astype(np.float64)  # (nvox, T)
    dt = times[1] - times[0]
    area = curves.sum(1) * dt
    n_cand = max(min_candidates, int(fraction * idx.size))
    order = np.argsort(area)[::-1][:n_cand]
    order = order[area[order] > 0]
    if order.size < 5:
        raise AIFSelectionError("fewer than 5 voxels with a positive contrast passage; pass an AIF by hand (aif=...)")
    checked = bool(te and baseline is not None and baseline[1] - baseline[0] >= 2)
    arrival = _arrival(curves[order], times)
    if checked:  # half the peak before the bolus has arrived (the baseline's last frame): a noise spike
        after = arrival >= times[baseline[1] - 1]
        if after.sum() >= 5:
            order, arrival = order[after], arrival[after]
    early = arrival <= np.quantile(arrival, 0.02) + max(dt, 1.0)
    if checked:
        b0, b1 = baseline
        noise = te * curves[order, b0:b1].std(1)  # relative signal noise sigma/S0
        floor = np.exp(-te * curves[order].max(1)) < 3 * noise  # signal at the peak within 3 sigma of 0
        if (early & ~floor).sum() >= 5:  # clear arterial curves exist: the saturated ones lost their peak
            early &= ~floor
    if early.sum() >= 5:
        order = order[early]
    cand = curves[order]
    if not checked:  # no noise-floor test: drop the 25 % roughest (noise-dominated or truncated) curves instead
        rough = ((cand[:, 2:] - 2 * cand[:, 1:-1] + cand[:, :-2]) ** 2).sum(1) / area[order] ** 2
        keep = rough <= np.quantile(rough, 0.75)
        cand, order = cand[keep], order[keep]
    sel = _best_cluster(cand, times, k)
    cand, order = cand[sel], order[sel]
    if cand.shape[0] > 2 * n_voxels:
        sel = _best_cluster(cand, times, k)
        cand, order = cand[sel], order[sel]
    top = np.argsort(cand.max(1))[::-1][:n_voxels]
    chosen = idx[order[top]]
    voxels = np.column_stack(np.unravel_index(chosen, mask.shape))
    curve = cand[top].mean(0)
    logger.info("automatic AIF from %d voxels, peak %.3g at %.1f s", len(top), curve.max(), times[int(curve.argmax())])
    return AIF(curve.astype(np.float32), voxels, "auto")


def manual_aif(aif, conc: np.ndarray | None = None) -> AIF:
    """An AIF given by hand: a curve (T,), a boolean (Z, Y, X) mask, or a list of (z, y, x) voxels."""
    a = np.asarray(aif)
    if a.ndim == 1 and a.dtype != bool:
        if conc is not None and a.size != conc.shape[0]:
            raise PerfusionError(f"the AIF curve has {a.size} samples but the series has {conc.shape[0]} time points")
        return AIF(a.astype(np.float32), np.empty((0, 3), int), "manual-curve")
    if conc is None:
        raise PerfusionError("AIF voxels were given but no concentration data to read them from")
    if a.dtype == bool:
        if a.shape != conc.shape[1:]:
            raise PerfusionError(f"AIF mask shape {a.shape} differs from the series volume {conc.shape[1:]}")
        voxels = np.argwhere(a)
    else:
        voxels = np.atleast_2d(a).astype(int)
        if voxels.shape[1] != 3:
            raise PerfusionError("AIF voxels must be (z, y, x) triples")
    if voxels.size == 0:
        raise PerfusionError("the AIF voxel selection is empty")
    curve = conc[:, voxels[:, 0], voxels[:, 1], voxels[:, 2]].mean(1)
    return AIF(np.asarray(curve, np.float32), voxels, "manual-voxels")
