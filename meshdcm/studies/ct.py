"""The non-contrast head CT: attenuation (HU) of each tissue summed over the voxel's fractions, plus CT noise.

Attenuation (Hounsfield units) of adult brain at 120 kV: grey matter 38, white matter 29, CSF 7, skull 1200 (tables
and diploe averaged), scalp 45, fat -95, flowing blood 45, the dural sinus 55. Early ischaemic change in the core:
grey matter 4 HU and white matter 2 HU lower (loss of grey-white differentiation, the insular ribbon sign; a 1 HU
drop per percent of water uptake, Dzialowski et al. 2004, Stroke 35:1167). The occluded left middle cerebral artery
holds a clot of 75 HU (the hyperdense artery sign). Noise is white noise smoothed by the reconstruction kernel, 8 HU
on 1 mm and 3.5 HU on 5 mm slices.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .anatomy import HeadView
from .geometry import Grid
from .tissues import mix, to_grid, work_grid

__all__ = ["HU", "ct_image"]

HU = {"gm": 38.0, "wm": 29.0, "csf": 7.0, "bone": 1200.0, "soft": 45.0, "fat": -95.0, "air": -1000.0}
_CORE_CHANGE = {"gm": -4.0, "wm": -2.0}


def ct_image(view: HeadView, zones, grid: Grid, vessels: list[tuple[np.ndarray, float]],
             rng: np.random.Generator) -> np.ndarray:
    """HU of every voxel of ``grid``, with noise; ``vessels`` pairs each vessel's field
    (:func:`meshdcm.studies.vessels.vessel_field`) with the HU of its content."""
    core = {(t, "core"): change for t, change in _CORE_CHANGE.items()}
    field = mix(view.anatomy, zones, {c: v for c, v in HU.items() if c != "air"}, rest=HU["air"],
                zone_change=core, vessels=tuple(vessels))
    hu = view.sample(field, work_grid(grid), fill=HU["air"])
    del field
    hu = to_grid(hu, grid)
    sigma = 8.0 * np.sqrt(1.0 / grid.thickness)
    noise = rng.normal(0.0, 1.0, hu.shape).astype(np.float32)
    noise = ndimage.gaussian_filter(noise, (0, 0.8, 0.8))
    noise *= np.float32(sigma / max(float(noise.std()), 1e-6))
    return hu + noise
