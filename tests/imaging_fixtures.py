"""Shared helpers for the imaging tests: synthetic series on disk, dcm2niix runs, layout-independent comparison."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

from meshdcm.imaging import testdata


def dcm2niix_binary() -> str:
    exe = shutil.which("dcm2niix") or ("/usr/bin/dcm2niix" if Path("/usr/bin/dcm2niix").exists() else None)
    if exe is None:
        pytest.skip("dcm2niix is not installed (pip install dcm2niix)")
    return exe


def run_dcm2niix(series_dir: Path, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([dcm2niix_binary(), "-z", "n", "-f", "%s_%d", "-o", str(out_dir), str(series_dir)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return sorted(out_dir.glob("*.nii"))


def reorient_like(img: nib.Nifti1Image, target: nib.Nifti1Image) -> tuple[np.ndarray, np.ndarray]:
    """``img``'s unscaled data and affine, flipped/permuted (losslessly) into ``target``'s voxel axes."""
    transform = ornt_transform(io_orientation(img.affine), io_orientation(target.affine))
    data = apply_orientation(np.asarray(img.dataobj.get_unscaled()), transform)
    affine = img.affine @ inv_ornt_aff(transform, img.shape)
    return data, affine


def assert_same_image(ours: Path, theirs: Path, *, atol_mm: float = 1e-3, value_atol: float = 0.0):
    a, b = nib.load(ours), nib.load(theirs)
    data, affine = reorient_like(a, b)
    ref = np.asarray(b.dataobj.get_unscaled())
    assert data.shape == ref.shape, f"{ours.name}: shape {data.shape} vs dcm2niix {ref.shape}"
    np.testing.assert_allclose(affine, b.affine, atol=atol_mm, err_msg=f"{ours.name}: affine differs from dcm2niix")
    sa, ia = a.dataobj.slope, a.dataobj.inter
    sb, ib = b.dataobj.slope, b.dataobj.inter
    np.testing.assert_allclose([sa, ia], [sb, ib], rtol=1e-6, err_msg=f"{ours.name}: rescale differs")
    if value_atol == 0.0:
        assert data.dtype == ref.dtype, f"{ours.name}: dtype {data.dtype} vs dcm2niix {ref.dtype}"
        assert np.array_equal(data, ref), f"{ours.name}: voxel values differ from dcm2niix"
    else:
        np.testing.assert_allclose(data.astype(float), ref.astype(float), atol=value_atol)


@pytest.fixture(scope="session")
def synthetic_series(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("series")
    out = {}
    for kind in testdata.KINDS:
        testdata.write_series(root / kind, kind)
        out[kind] = root / kind
    return out


