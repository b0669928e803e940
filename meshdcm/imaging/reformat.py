"""Multiplanar reformats (axial / coronal / sagittal) at a chosen slice thickness.

The source volume is resampled (trilinear, xp-generic ``ndimage.affine_transform``: SciPy on CPU, CuPy on GPU
nodes) onto a fine grid in the target plane whose spacing is the source's smallest voxel spacing, then
consecutive fine slices are averaged into slabs of the chosen thickness ("average" thick-slab MPR); slabs are
contiguous, so the slice spacing equals the thickness.  Planes use the usual patient-aligned orientations
(DICOM PS3.3 C.7.6.2.1.1, LPS):

* axial: rows along +x (patient left), columns along +y (posterior), slices foot to head;
* coronal: rows along +x, columns along -z (head to foot), slices anterior to posterior;
* sagittal: rows along +y (anterior to posterior), columns along -z, slices left to right.

Outputs are derived series whose SeriesDescription gets a suffix such as ``" COR 3mm"``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from .._version import __version__
from ._xp import get_xp, to_numpy
from .derived import write_derived_series
from .errors import ImagingError
from .nifti import correct_tilt
from .register import resample_volume
from .series import SeriesVolume, load_series

__all__ = ["PLANES", "reformat_series", "reformat_volume"]

log = logging.getLogger(__name__)

PLANES = {
    "axial": ("AX", np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])),
    "coronal": ("COR", np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, -1.0])),
    "sagittal": ("SAG", np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0])),
}


def reformat_volume(vol: SeriesVolume, plane: str, thickness_mm: float, *, in_plane_mm: float | None = None,
                    backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """(values (nx, ny, nz), LPS affine) of ``vol`` reformatted in ``plane`` with slabs ``thickness_mm`` thick."""
    if plane not in PLANES:
        raise ImagingError(f"unknown plane {plane!r}; use one of {', '.join(PLANES)}")
    if not thickness_mm or thickness_mm <= 0:
        raise ImagingError(f"slice thickness must be positive, got {thickness_mm!r}")
    vol = correct_tilt(vol)
    xp = get_xp(backend if backend != "simpleitk" else "numpy")
    _, row, col = PLANES[plane]
    normal = np.cross(row, col)
    axes = np.stack([row, col, normal], axis=1)
    src_spacing = min(vol.spacing)
    fine = min(src_spacing, thickness_mm)
    step_in = in_plane_mm or src_spacing
    shape = np.array(vol.stored.shape[:3])
    corners = np.array([[i, j, k, 1.0] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1)
                        for k in (0, shape[2] - 1)]) @ vol.affine_lps.T
    proj = corners[:, :3] @ axes  # coordinates along row, col, normal
    lo, hi = proj.min(0), proj.max(0)
    n_in = [int(math.floor((hi[a] - lo[a]) / step_in + 1e-6)) + 1 for a in (0, 1)]
    per_slab = max(1, int(round(thickness_mm / fine)))
    fine = thickness_mm / per_slab
    n_fine = int(math.floor((hi[2] - lo[2]) / fine + 1e-6)) + 1
    n_slabs = max(1, n_fine // per_slab)
    fine_affine = np.eye(4)
    fine_affine[:3, 0] = row * step_in
    fine_affine[:3, 1] = col * step_in
    fine_affine[:3, 2] = normal * fine
    fine_affine[:3, 3] = axes @ lo
    air = float(vol.real().min())
    values = resample_volume(vol.real()[..., 0], vol.affine_lps, (n_in[0], n_in[1], n_slabs * per_slab),
                             fine_affine, cval=air, xp=xp)
    slabs = values.reshape(n_in[0], n_in[1], n_slabs, per_slab).mean(axis=3)
    affine = fine_affine.copy()
    affine[:3, 2] = normal * thickness_mm
    affine[:3, 3] = fine_affine[:3, 3] + normal * fine * (per_slab - 1) / 2.0  # slab centre
    return to_numpy(slabs), affine


def reformat_series(series_dir: str | Path, out_dir: str | Path, *, plane: str = "coronal", thickness_mm: float = 3.0,
                    in_plane_mm: float | None = None, node_name: str = "reformat", node_version: str = __version__,
                    backend: str = "auto") -> list[Path]:
    """Write the ``plane`` reformat of the series in ``series_dir`` (slabs ``thickness_mm`` thick) to ``out_dir``."""
    vol = load_series(series_dir)[0]
    values, affine = reformat_volume(vol, plane, thickness_mm, in_plane_mm=in_plane_mm, backend=backend)
    if np.issubdtype(vol.stored.dtype, np.integer) and vol.slope == 1.0:
        values = np.rint(values)
    abbr = PLANES[plane][0]
    desc = f"{vol.reference.get('SeriesDescription', '')} {abbr} {thickness_mm:g}mm".strip()
    return write_derived_series(values, affine, vol, out_dir, series_description=desc, node_name=node_name,
                                node_version=node_version,
                                derivation=f"{plane} reformat, {thickness_mm:g} mm average slabs",
                                entropy=[plane, f"{thickness_mm:g}", f"{in_plane_mm}"], slice_thickness=thickness_mm)
