"""Contrast-leakage correction of Boxerman, Schmainda and Weisskoff (2006, AJNR 27:859).

Each voxel's curve is fitted by linear least squares as ``dR2*(t) = K1 ref(t) - K2 int_0^t ref``, with
``ref`` the mean curve of non-leaky tissue, here the mean over the whole brain mask (a common
simplification when no enhancement map is available).  The corrected curve is
``dR2*(t) + K2 int_0^t ref``.  The 2 x 2 normal equations are shared by every voxel, so the fit is one
batched matrix product (xp-generic).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._xp import get_xp

__all__ = ["LeakageCorrection", "boxerman_correction"]


@dataclass
class LeakageCorrection:
    corrected: object  # (T, nvox)
    k1: object
    k2: object  # > 0: T1 leakage (signal enhancement), < 0: T2* dominant extravasation


def boxerman_correction(conc, dt: float, reference=None, xp=None) -> LeakageCorrection:
    """Correct curves ``conc`` (T, nvox); ``reference`` (T,) defaults to the mean over the voxels."""
    xp = get_xp(xp)
    c = xp.asarray(conc, dtype=xp.float32)
    ref = c.mean(axis=1) if reference is None else xp.asarray(reference, dtype=xp.float32)
    ref_np = np.asarray(ref.get() if hasattr(ref, "get") else ref, dtype=np.float64)
    integ = np.concatenate([[0.0], np.cumsum(0.5 * (ref_np[1:] + ref_np[:-1]) * dt)])
    design = np.column_stack([ref_np, -integ])  # (T, 2)
    solve = np.linalg.pinv(design)  # (2, T)
    beta = xp.asarray(solve, dtype=xp.float32) @ c
    corrected = c + xp.asarray(integ, dtype=xp.float32)[:, None] * beta[1][None, :]
    return LeakageCorrection(corrected, beta[0], beta[1])
