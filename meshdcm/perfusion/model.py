"""Model-based (parametric) deconvolution: each voxel's residue from a family of physiological shapes, with a bolus
delay, fitted by least squares against a dictionary of candidate tissue curves.

Model (indicator dilution): ``C_t(t) = F (C_a (*) R_eff)(t - d)`` with

- ``R(t) = 1 - G(t; alpha, MTT/alpha)``: the residue of gamma-distributed capillary transit times, shape ``alpha``,
  mean ``MTT`` (Mouridsen et al. 2006, NeuroImage 33:570; Jespersen & Østergaard 2012, JCBFM 32:264).  ``alpha = 1`` is
  the exponential residue of a well-mixed compartment, larger ``alpha`` narrower transit-time distributions, up to
  plug flow (``alpha = inf``, a box: every transit time equal to MTT); :data:`ALPHAS` spans them, so no one shape is
  assumed.  (``alpha < 1``, heavy tails, was tried and left out: its MTT lies in a tail hidden by recirculation and
  the end of the series, and in normal tissue the noise chose it often, with CBF up to 1.2x the truth.)
- ``R_eff = h_s (*) R``, ``h_s(t) = exp(-t/s)/s``: dispersion of the bolus on its way from the AIF's artery to the
  tissue (the exponential vascular transport function of Calamante et al. 2000, MRM 44:466; ``s = 0``: none).  Its
  area is 1, so CBV and MTT keep their meaning; ``R_eff`` rises from 0 and peaks after ``t = 0``, and that peak
  moves fastest at small ``s`` (MTT 5 s: 1.6 s at s = 0.7, 2.5 at 1.4, 3.7 at 2.8), so :data:`DISPERSIONS` is none
  and then a doubling series: with 0, 1.5 and 3 s a 1 s dispersion fitted best as no dispersion a second later, and
  its Tmax read 5.9 for 7.0 s;
- ``d``: the bolus delay between the AIF and the tissue (also negative: tissue leading the AIF's voxels).

Fit.  With a global AIF the candidate curves ``k_j = (C_a (*) R_eff,j)(t - d_j)`` are the same for every voxel: they
are computed once (on a 0.05 s grid from the AIF interpolated linearly between its samples, so delays need not be
whole frames), normalised, and every voxel's least-squares fit against all of them is one matrix product ``C^T K``
(the fit of candidate j is ``proj_j k_j``, its residual ``|C|^2 - proj_j^2``: the best candidate has the largest
projection).  Within each *shape class* (alpha, s) the best grid point (MTT 20 % apart, delay half a frame apart)
is refined by a quadratic through the projections of its 3 x 3 neighbours in delay and log MTT, cross term included
(the two trade off), and the classes are compared at their refined maxima (on the grid alone a wrong class nearer a
voxel's off-grid delay can beat the right one).

Estimates.  Per class: CBF = the maximum of the fitted ``F R_eff(t)`` (Østergaard et al. 1996, MRM 36:715: ``F``
without dispersion, less where the bolus arrives dispersed, as any deconvolution measures it) and Tmax = ``d`` + the
time of that maximum (``d`` without dispersion).  Which class fits is often not decided by the data at clinical SNR
(a dispersed residue and a later, undispersed one fit a noisy curve alike; measured: the realistic study's
penumbra split between them, Tmax 6 s against 8-9 s), so the reported CBF and Tmax are the *posterior means* over
the classes (flat prior, Gaussian noise with the best fit's residual variance; Bayesian model averaging, Hoeting et
al. 1999, Stat Sci 14:382) rather than the values of the single best class, which in ambiguous voxels is as often
the wrong one.  MTT = CBV/CBF follows in :mod:`.maps` (central volume theorem), as for the SVD methods.  There is no
SVD offset: zero delay reads Tmax ~0 (docs/perfusion.md, "Tmax").

Cost: about ``2 T J`` flops per voxel (T time points; J candidates: 16 classes x 16 MTT x 27 delays = 6,912 at
TR 1.5 s) and no per-voxel Python; the candidates are built once with NumPy/SciPy, the products run on the array
module given (NumPy or CuPy).
"""

from __future__ import annotations

import numpy as np
from scipy.signal import fftconvolve
from scipy.special import gammaincc

from ._xp import get_xp

__all__ = ["ALPHAS", "DISPERSIONS", "MTT_RANGE", "DELAY_RANGE", "ResidueDictionary", "residue_function", "fit_model"]

ALPHAS = (1.0, 2.0, 4.0, np.inf)  # transit-time shape: exponential .. narrower .. plug flow (a box)
DISPERSIONS = (0.0, 0.7, 1.4, 2.8)  # s, exponential dispersion time constant: none, then doubling (see above)
MTT_RANGE = (1.5, 24.0, 16)  # s: first, last, number (log-spaced, 20 % apart)
DELAY_RANGE = (-4.0, 16.0)  # s; step: half a frame
FRAMES_PER_DELAY = 0.5  # the delay grid's step, in frames
FINE = 0.05  # s, the grid the candidate curves are computed on


def residue_function(t, alpha: float, mtt: float, dispersion: float = 0.0, fine: float = FINE) -> np.ndarray:
    """``R_eff(t)`` on the sample times ``t`` (s, >= 0): the gamma-transit residue, dispersed when ``dispersion`` > 0."""
    t = np.asarray(t, dtype=np.float64)
    grid = np.arange(0.0, float(t.max()) + 2 * fine, fine)
    r = _residues(grid, [(alpha, dispersion, mtt)])[0]
    return np.interp(t, grid, r)


def _residues(tau: np.ndarray, shapes) -> np.ndarray:
    """(S, L) effective residues on the uniform grid ``tau`` (starting at 0) for (alpha, dispersion, mtt) triples."""
    step = tau[1] - tau[0]
    out = np.empty((len(shapes), tau.size))
    for i, (alpha, s, mtt) in enumerate(shapes):
        r = (tau < mtt).astype(float) if np.isinf(alpha) else gammaincc(alpha, tau * alpha / mtt)
        if s > 0:
            h = np.exp(-tau / s) * (step / s)
            h /= h.sum()  # unit area on the grid: the dispersion moves tracer, never adds or loses it
            r = fftconvolve(r, h)[:tau.size]
        out[i] = r
    return out


class ResidueDictionary:
    """The normalised candidate curves for one AIF and time grid, with each candidate's parameters.

    ``atoms`` (J, T) unit-norm; ``norms`` (J,); the candidate index is ``((a * NS + s) * NM + m) * ND + d`` over
    ``alphas``, ``dispersions``, ``mtts`` and ``delays``; ``peak_time``/``peak_value`` (per shape, i.e. per
    (a, s, m)) are the time and height of the maximum of ``R_eff``.
    """

    def __init__(self, aif, dt: float, alphas=ALPHAS, dispersions=DISPERSIONS, mtt_range=MTT_RANGE,
                 delay_range=DELAY_RANGE, frames_per_delay: float = FRAMES_PER_DELAY, fine: float = FINE):
        aif = np.asarray(aif, dtype=np.float64).ravel()
        n = aif.size
        t = np.arange(n) * dt
        self.alphas, self.dispersions = tuple(alphas), tuple(dispersions)
        self.mtts = np.geomspace(*mtt_range[:2], int(mtt_range[2]))
        step = dt * frames_per_delay
        self.delay_step = step
        self.delays = np.arange(np.ceil(delay_range[0] / step), np.floor(delay_range[1] / step) + 1) * step
        lead = max(0.0, -float(self.delays.min()))
        length = int(np.ceil((t[-1] + lead) / fine)) + 2
        tau = np.arange(length) * fine
        shapes = [(a, s, m) for a in self.alphas for s in self.dispersions for m in self.mtts]
        res = _residues(tau, shapes)
        self.peak_time = tau[res.argmax(axis=1)]
        self.peak_value = res.max(axis=1)
        # the AIF between its samples (linear), held at its last value after the end (the steady state)
        af = np.interp(tau, t, aif)
        curves = fftconvolve(res, af[None], axes=1)[:, :length] * fine
        idx = np.rint((t[None, :] - self.delays[:, None]) / fine).astype(int)  # (D, T): C(t - d)
        atoms = np.where(idx >= 0, curves[:, np.clip(idx, 0, length - 1)], 0.0)  # (S, D, T)
        atoms = atoms.reshape(-1, n)
        self.norms = np.linalg.norm(atoms, axis=1)
        self.norms[self.norms == 0] = 1.0  # a candidate wholly after the series: all zeros, never chosen
        self.atoms = atoms / self.norms[:, None]
        self.shape = (len(self.alphas), len(self.dispersions), self.mtts.size, self.delays.size)


def _vertex(f, ok_x, ok_y, xp):
    """Vertex of the quadratic through a 3 x 3 stencil ``f[(i, j)]``, i, j in -1, 0, 1 (x: delay, y: log MTT, with
    their cross term: the two trade off).  Returns (x, y, gain), offsets clipped to +-1 step; where the quadratic has
    no maximum, the 1D parabolas along each axis that have one; nothing along an axis at the grid's edge."""
    f0 = f[0, 0]
    bx = xp.where(ok_x, 0.5 * (f[1, 0] - f[-1, 0]), 0)
    by = xp.where(ok_y, 0.5 * (f[0, 1] - f[0, -1]), 0)
    fxx = xp.where(ok_x, f[1, 0] - 2 * f0 + f[-1, 0], -1)
    fyy = xp.where(ok_y, f[0, 1] - 2 * f0 + f[0, -1], -1)
    fxy = xp.where(ok_x & ok_y, 0.25 * (f[1, 1] - f[1, -1] - f[-1, 1] + f[-1, -1]), 0)
    det = fxx * fyy - fxy * fxy
    joint = (fxx < 0) & (fyy < 0) & (det > 0)
    safe = xp.where(joint, det, 1)
    x = xp.where(joint, (-bx * fyy + by * fxy) / safe, xp.where(fxx < 0, -bx / xp.where(fxx < 0, fxx, -1), 0))
    y = xp.where(joint, (-by * fxx + bx * fxy) / safe, xp.where(fyy < 0, -by / xp.where(fyy < 0, fyy, -1), 0))
    x, y = xp.clip(x, -1, 1), xp.clip(y, -1, 1)
    gain = bx * x + by * y + 0.5 * (fxx * x * x + fyy * y * y) + fxy * x * y
    return x.astype(xp.float32), y.astype(xp.float32), xp.maximum(gain, 0).astype(xp.float32)


def _take(proj, idx, xp):
    """``proj[v, c, idx[v, c]]`` (indices clipped to the grid)."""
    return xp.take_along_axis(proj, xp.clip(idx, 0, proj.shape[2] - 1)[..., None], axis=2)[..., 0]


def _pick(a, best, xp):
    """``a[v, best[v]]``."""
    return xp.take_along_axis(a, best[:, None], axis=1)[:, 0]


def fit_model(conc, aif, dt: float, xp=None, chunk: int | None = None, dictionary: ResidueDictionary | None = None):
    """Fit every voxel's curve (``conc`` (T, nvox)) against the candidates for ``aif`` (module docstring).

    Returns a dict of (nvox,) arrays on the array module: ``flow`` (posterior mean of the maximum of ``F R_eff``,
    1/s) and ``tmax`` (its posterior mean time, s); of the best-fitting class: ``mtt`` (s), ``delay`` (s), ``alpha``,
    ``dispersion`` (s) and ``fit`` (the fraction of the curve's energy it explains, 0..1).  Voxels no candidate fits
    with a positive scale get flow and Tmax 0.
    """
    xp = get_xp(xp)
    conc = xp.asarray(conc, dtype=xp.float32)
    n, nvox = conc.shape
    d = dictionary or ResidueDictionary(aif, dt)
    na, ns, nm, nd = d.shape
    ncls = na * ns
    atoms_t = xp.asarray(d.atoms.T, dtype=xp.float32)  # (T, J)
    peak_time = xp.asarray(d.peak_time.reshape(ncls, nm), dtype=xp.float32)
    peak_value = xp.asarray(d.peak_value.reshape(ncls, nm), dtype=xp.float32)
    log_mtt = xp.asarray(np.log(d.mtts), dtype=xp.float32)
    log_step = xp.float32(np.log(d.mtts[1] / d.mtts[0]) if nm > 1 else 0.0)
    delays = xp.asarray(d.delays, dtype=xp.float32)
    cls_alpha = xp.asarray(np.repeat(d.alphas, ns), dtype=xp.float32)
    cls_disp = xp.asarray(np.tile(d.dispersions, na), dtype=xp.float32)
    if chunk is None:
        chunk = 4096 if xp is np else 1 << 15
    out = {k: xp.zeros(nvox, dtype=xp.float32) for k in ("flow", "tmax", "mtt", "delay", "alpha", "dispersion", "fit")}

    log_norms = xp.asarray(np.log(d.norms.reshape(ncls, nm, nd)), dtype=xp.float32)
    cls = xp.arange(ncls)[None, :]
    for c0 in range(0, nvox, chunk):
        c = conc[:, c0:c0 + chunk]
        m = c.shape[1]
        proj = (c.T @ atoms_t).reshape(m, ncls, nm * nd)  # least squares: candidate j fits with scale proj_j
        k = proj.argmax(axis=2)  # (m, ncls): the best grid point of each shape class
        mi, di = k // nd, k % nd
        stencil = {(i, j): _take(proj, k + i + j * nd, xp) for i in (-1, 0, 1) for j in (-1, 0, 1)}
        ok_d, ok_m = (di > 0) & (di < nd - 1), (mi > 0) & (mi < nm - 1)
        off_d, off_m, gain = _vertex(stencil, ok_d, ok_m, xp)
        yk = stencil[0, 0] + gain  # (m, ncls): each class's refined best projection
        mtt_k = xp.exp(log_mtt[mi] + off_m * log_step)
        delay_k = delays[di] + off_d * xp.float32(d.delay_step)
        # the candidate's norm at the refined point (log-linear between the grid's), for the scale F = proj / norm
        ln = {(i, j): log_norms[cls, xp.clip(mi + j, 0, nm - 1), xp.clip(di + i, 0, nd - 1)]
              for i, j in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))}
        norm_k = xp.exp(ln[0, 0] + 0.5 * off_d * (ln[1, 0] - ln[-1, 0]) * ok_d
                        + 0.5 * off_m * (ln[0, 1] - ln[0, -1]) * ok_m)
        flow_k = yk / norm_k * peak_value[cls, mi]
        tmax_k = delay_k + peak_time[cls, mi]
        best = yk.argmax(axis=1)
        y = _pick(yk, best, xp)
        energy = (c * c).sum(axis=0)
        # posterior weights of the shape classes (flat prior, Gaussian noise of the best fit's residual variance)
        sig2 = xp.maximum(energy - y * y, xp.float32(1e-12)) / xp.float32(max(n - 4, 1))
        w = xp.exp(xp.maximum((yk * yk - (y * y)[:, None]) / (2 * sig2[:, None]), xp.float32(-80)))
        w = w / w.sum(axis=1, keepdims=True)
        flow, tmax = (w * flow_k).sum(axis=1), (w * tmax_k).sum(axis=1)
        positive = y > 0
        sl = slice(c0, c0 + m)
        out["flow"][sl] = xp.where(positive, flow, xp.float32(0))
        out["tmax"][sl] = xp.where(positive, tmax, xp.float32(0))
        out["mtt"][sl] = xp.where(positive, _pick(mtt_k, best, xp), xp.float32(0))
        out["delay"][sl] = _pick(delay_k, best, xp)
        out["alpha"][sl] = cls_alpha[best]
        out["dispersion"][sl] = cls_disp[best]
        out["fit"][sl] = xp.where(positive & (energy > 0), xp.minimum(y * y / xp.where(energy > 0, energy, 1), 1), 0)
    return out
