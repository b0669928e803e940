"""NIfTI-1 copies of the maps (nibabel), with the DICOM LPS geometry converted to the NIfTI RAS affine.

Voxel (i = column, j = row, k = slice) maps to LPS by the Image Plane module (PS3.3 C.7.6.2.1.1);
NIfTI's world is RAS, so the affine is ``diag(-1, -1, 1, 1) @ affine_lps`` and the array is stored as
``volume.transpose(2, 1, 0)`` (i, j, k order).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import replacing

__all__ = ["ras_affine", "write_nifti"]

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def ras_affine(affine_lps: np.ndarray) -> np.ndarray:
    return LPS_TO_RAS @ np.asarray(affine_lps, dtype=np.float64)


def write_nifti(volume: np.ndarray, affine_lps: np.ndarray, path: str | Path, description: str = "") -> Path:
    """Write a (Z, Y, X) float map as ``path`` (.nii or .nii.gz)."""
    import nibabel as nib

    img = nib.Nifti1Image(np.ascontiguousarray(volume.transpose(2, 1, 0), dtype=np.float32), ras_affine(affine_lps))
    img.header.set_xyzt_units("mm", "sec")
    img.header["descrip"] = description[:79].encode("ascii", "replace")
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        nib.save(img, str(tmp))
    return path
