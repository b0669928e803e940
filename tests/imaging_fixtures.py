"""Shared helpers for the imaging tests: synthetic series on disk, dcm2niix runs, layout-independent comparison."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

from meshdcm.imaging import testdata


#: The dcm2niix the tests compare against: the PyPI wheel pinned in constraints.txt, in this Python's own environment,
#: never whichever is first on PATH. Our JSON sidecar follows this version: Debian 12's v1.0.20220720, for one, writes
#: no MAGNITUDE in ImageType and formats an enhanced series' AcquisitionTime differently.
DCM2NIIX_VERSION = "v1.0.20260724"


@functools.cache
def dcm2niix_binary() -> str:
    exe = Path(sys.executable).parent / "dcm2niix"
    if not exe.exists():
        pytest.fail(f"dcm2niix is not installed beside {sys.executable}: run `make test` (it installs the pinned "
                    "versions of constraints.txt), or pip install -c constraints.txt dcm2niix")
    out = subprocess.run([str(exe), "-v"], capture_output=True, text=True, timeout=30).stdout
    if DCM2NIIX_VERSION not in out:
        pytest.fail(f"the tests compare against dcm2niix {DCM2NIIX_VERSION} (constraints.txt); {exe} is "
                    f"{out.strip().splitlines()[-1] if out.strip() else 'of unknown version'}")
    return str(exe)


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


