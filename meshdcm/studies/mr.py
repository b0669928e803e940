"""The MR images of the stroke protocol: 3D T1, T2, FLAIR, diffusion (b0, b1000 trace) and the ADC map.

Signal equations at 3 T (Bernstein et al. 2004, Handbook of MRI Pulse Sequences), summed over the tissue fractions
of each voxel, with relaxation times of Wansapura et al. 1999 (JMRI 9:531) and Stanisz et al. 2005 (MRM 54:507):

* spin echo (T2 TSE, diffusion b0): ``PD (1 - exp(-TR/T1)) exp(-TE/T2)``;
* inversion recovery (FLAIR): ``PD |1 - 2 exp(-TI/T1) + exp(-TR/T1)| exp(-TE/T2)`` (CSF is nulled);
* diffusion weighting: times ``exp(-b ADC)`` (fat suppressed);
* 3D T1: the template's own T1-weighted intensity inside the skull (a real MPRAGE contrast), skull dark, scalp and
  fat bright.

Noise is Rician (the magnitude of complex Gaussian noise), as in every magnitude MR image; echo-planar images
(diffusion, DSC) are brighter near the coil (a smooth receive bias). The hyperacute core shows on diffusion only
(restricted diffusion: low ADC, bright b1000), not yet on T2 or FLAIR (the DWI-FLAIR mismatch of a stroke under
4.5 h; Thomalla et al. 2011, Lancet Neurol 10:978).
"""

from __future__ import annotations

import math

import numpy as np

from .anatomy import HeadView
from .geometry import Grid
from .physiology import adc
from .protocol import Acquisition
from .tissues import mix, to_grid, work_grid

__all__ = ["RELAXATION", "adc_map", "coil_bias", "diffusion_images", "flair_image", "magnitude", "t1_image",
           "t2_image"]

#: (proton density, T1 ms, T2 ms) at 3 T.
RELAXATION = {"gm": (0.82, 1400.0, 100.0), "wm": (0.70, 850.0, 70.0), "csf": (1.0, 4000.0, 1500.0),
              "soft": (0.70, 1400.0, 45.0), "fat": (0.90, 380.0, 130.0), "bone": (0.05, 300.0, 1.0)}
_ADC_OTHER = {"soft": 1400.0, "fat": 50.0, "bone": 0.0}


def magnitude(clean: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``clean`` with complex Gaussian noise of ``sigma``, magnitude taken (Rician)."""
    re = clean + rng.normal(0.0, sigma, clean.shape).astype(np.float32)
    im = rng.normal(0.0, sigma, clean.shape).astype(np.float32)
    return np.hypot(re, im)


def coil_bias(grid: Grid, strength: float = 0.2) -> np.ndarray:
    """A head coil's receive profile: brighter away from the scanner's centre (1 at the centre, 1 + ``strength``
    110 mm out)."""
    nz, ny, nx = grid.shape
    a = grid.affine
    k, j, i = (np.arange(n, dtype=np.float32) for n in (nz, ny, nx))
    r2 = sum((a[d, 0] * i[None, None, :] + a[d, 1] * j[None, :, None] + a[d, 2] * k[:, None, None] + a[d, 3]) ** 2
             for d in range(3))
    return (1.0 + strength * r2 / 110.0**2).astype(np.float32)


def _spin_echo(tr: float, te: float) -> dict[str, float]:
    return {c: pd * (1 - math.exp(-tr / t1)) * math.exp(-te / t2) for c, (pd, t1, t2) in RELAXATION.items()}


def t1_image(view: HeadView, zones, grid: Grid) -> np.ndarray:
    """3D T1 (MPRAGE) signal, noise-free: the template's T1 inside the skull (white matter about 800 of 4095)."""
    value = {"t1": 3.6 * 255.0, "bone": 3.6 * 15.0, "soft": 3.6 * 85.0, "fat": 3.6 * 240.0}
    return view.sample(mix(view.anatomy, zones, value), grid)


def t2_image(view: HeadView, zones, a: Acquisition, grid: Grid) -> np.ndarray:
    """T2 TSE signal, noise-free (12-bit scale: CSF about 1400, grey matter 560)."""
    value = {c: 1900.0 * v for c, v in _spin_echo(a.mr["tr"], a.mr["te"]).items()}
    return to_grid(view.sample(mix(view.anatomy, zones, value), work_grid(grid)), grid)


def flair_image(view: HeadView, zones, a: Acquisition, grid: Grid) -> np.ndarray:
    """FLAIR signal, noise-free (grey matter about 700, CSF nulled)."""
    tr, te, ti = a.mr["tr"], a.mr["te"], a.mr["ti"]
    value = {c: 3000.0 * pd * abs(1 - 2 * math.exp(-ti / t1) + math.exp(-tr / t1)) * math.exp(-te / t2)
             for c, (pd, t1, t2) in RELAXATION.items()}
    return to_grid(view.sample(mix(view.anatomy, zones, value), work_grid(grid)), grid)


def diffusion_images(view: HeadView, zones, a: Acquisition, grid: Grid) -> dict[int, np.ndarray]:
    """Diffusion-weighted signal per b-value (s/mm2), noise-free, coil bias applied (grey matter b0 about 500)."""
    spin = _spin_echo(a.mr["tr"], a.mr["te"])
    spin["fat"] *= 0.05  # fat suppression
    bias = coil_bias(grid)
    out = {}
    for b in a.b_values:
        value = {c: 1300.0 * spin[c] * math.exp(-b * (adc(c) if c in ("gm", "wm", "csf") else _ADC_OTHER[c]) * 1e-6)
                 for c in RELAXATION}
        core = {(t, "core"): 1300.0 * spin[t] * (math.exp(-b * adc(t, "core") * 1e-6) - math.exp(-b * adc(t) * 1e-6))
                for t in ("gm", "wm")}  # only the core's diffusion differs
        out[b] = view.sample(mix(view.anatomy, zones, value, zone_change=core), grid) * bias
    return out


def adc_map(b0: np.ndarray, b1000: np.ndarray, *, b: float = 1000.0, threshold: float = 40.0) -> np.ndarray:
    """The apparent diffusion coefficient (10^-6 mm2/s) the scanner computes from its two noisy images:
    ``ln(S0 / Sb) / b``, zero where b0 is below ``threshold`` (air), within 0-4095."""
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.log(np.maximum(b0, 1.0) / np.maximum(b1000, 1.0)) / b * 1e6
    return np.where(b0 >= threshold, np.clip(value, 0.0, 4095.0), 0.0).astype(np.float32)
