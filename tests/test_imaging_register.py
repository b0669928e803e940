"""Registration accuracy on known rigid motions (target registration error), outputs, and the xp path on NumPy."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from meshdcm.imaging import testdata
from meshdcm.imaging.register import choose_reference, register_series, register_volumes
from meshdcm.imaging.series import load_series

RADIUS = 40.0  # phantom head radius (mm): fits a 100 x 110 x 90 mm field of view at 1 mm


def _pair(tmp_path, fixed_contrast, moving_contrast, truth, *, spacing=1.0, shape=(100, 110, 90)):
    modality = {"t1": "MR", "t2": "MR", "ct": "CT"}
    g_fix = testdata.grid(shape, (spacing,) * 3)
    g_mov = testdata.grid(shape, (spacing,) * 3, centre=(4.0, -6.0, 3.0))
    fixed_dir, moving_dir = tmp_path / "fixed", tmp_path / "moving"
    testdata.write_volume_series(fixed_dir, lambda p: testdata.phantom(p, radius=RADIUS, contrast=fixed_contrast),
                                 g_fix, modality=modality[fixed_contrast], description="T1 3D", seed=1)
    testdata.write_volume_series(moving_dir, testdata.moved_phantom(truth, radius=RADIUS, contrast=moving_contrast),
                                 g_mov, modality=modality[moving_contrast], description="moving", seed=1,
                                 series_number=2)
    return fixed_dir, moving_dir


def _tre(estimated: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Mean and max target registration error (mm) over points spread through the brain."""
    axes = np.array([0.66, 0.86, 0.71]) * RADIUS
    pts = np.random.default_rng(7).uniform(-1, 1, (4000, 3))
    pts = pts[(pts**2).sum(1) < 1] * axes
    h = np.c_[pts, np.ones(len(pts))]
    err = np.linalg.norm((h @ estimated.T - h @ truth.T)[:, :3], axis=1)
    return float(err.mean()), float(err.max())


CASES = {
    "mr-mr": ("t1", "t1", testdata.rigid_matrix((10.0, 5.0, -15.0), (-8.0, 14.0, 10.0))),
    "ct-ct": ("ct", "ct", testdata.rigid_matrix((-12.0, 15.0, 6.0), (15.0, 8.0, -10.0))),
    "t1-ct": ("t1", "ct", testdata.rigid_matrix((15.0, -8.0, 12.0), (12.0, -12.0, 9.0))),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", list(CASES))
def test_known_rigid_motion_is_recovered(case, tmp_path):
    fixed_contrast, moving_contrast, truth = CASES[case]
    fixed_dir, moving_dir = _pair(tmp_path, fixed_contrast, moving_contrast, truth)
    fixed, moving = load_series(fixed_dir)[0], load_series(moving_dir)[0]
    matrix, _, backend = register_volumes(fixed, moving, backend="simpleitk")
    mean, worst = _tre(matrix, truth)
    assert backend == "simpleitk"
    assert mean <= 0.5, f"{case}: mean TRE {mean:.2f} mm (max {worst:.2f})"


@pytest.mark.timeout(120)
def test_register_series_writes_a_derived_series_on_the_fixed_grid(tmp_path):
    truth = testdata.rigid_matrix((6.0, 0.0, -9.0), (5.0, -10.0, 4.0))
    fixed_dir, moving_dir = _pair(tmp_path, "t1", "t1", truth, spacing=2.0, shape=(50, 55, 45))
    result = register_series(fixed_dir, moving_dir, tmp_path / "out", backend="simpleitk")
    assert _tre(result.matrix, truth)[0] <= 1.0  # 2 mm data here: half a voxel
    fixed_ds = [pydicom.dcmread(p) for p in sorted(fixed_dir.iterdir())]
    out = [pydicom.dcmread(p) for p in result.paths]
    assert len(out) == len(fixed_ds)
    assert {d.SeriesDescription for d in out} == {"moving [reg]"}
    assert {d.FrameOfReferenceUID for d in out} == {fixed_ds[0].FrameOfReferenceUID}
    refs = {item.SeriesInstanceUID for item in out[0].ReferencedSeriesSequence}
    assert refs == {result.moving_series_uid, result.fixed_series_uid}
    assert sorted(tuple(float(v) for v in d.ImagePositionPatient) for d in out) == \
        sorted(tuple(float(v) for v in d.ImagePositionPatient) for d in fixed_ds)
    reg = load_series(tmp_path / "out")[0].real()[..., 0]
    fix = load_series(fixed_dir)[0].real()[..., 0]
    inside = fix > 100
    assert np.corrcoef(reg[inside], fix[inside])[0, 1] > 0.95


@pytest.mark.timeout(120)
def test_xp_backend_on_numpy_recovers_motion(tmp_path):
    """The array-module (CuPy on GPU nodes) implementation, run here on NumPy, from scratch."""
    truth = testdata.rigid_matrix((8.0, -5.0, 10.0), (10.0, -8.0, 6.0))
    fixed_dir, moving_dir = _pair(tmp_path, "t1", "t1", truth, spacing=2.0, shape=(50, 55, 45))
    matrix, _, backend = register_volumes(load_series(fixed_dir)[0], load_series(moving_dir)[0], backend="numpy")
    assert backend == "numpy"
    assert _tre(matrix, truth)[0] <= 1.0


def test_reference_choice_prefers_3d_t1_then_thinnest_ct(tmp_path):
    vols = []
    for name, kind in [("ct", "ct"), ("t1", "axial"), ("dsc", "dsc")]:
        testdata.write_series(tmp_path / name, kind, shape=(16, 16, 6))
        vols.append(load_series(tmp_path / name)[0])
    assert choose_reference(vols) == 1  # the 3D T1 ("T1 axial", MRAcquisitionType 3D)
    assert choose_reference([vols[0], vols[2]]) == 0  # no 3D T1: the CT


@pytest.mark.timeout(120)
def test_affine_option_recovers_a_scaled_motion(tmp_path):
    """Affine (12 parameters) after rigid: a 4 % scaling plus rotation is recovered (measured TRE 0.16 mm;
    rigid alone cannot, 0.94 mm)."""
    truth = testdata.rigid_matrix((5.0, 0.0, 8.0), (6.0, -4.0, 3.0)) @ np.diag([1.04, 1.04, 1.04, 1.0])
    fixed_dir, moving_dir = _pair(tmp_path, "t1", "t1", truth, spacing=2.0, shape=(50, 55, 45))
    fixed, moving = load_series(fixed_dir)[0], load_series(moving_dir)[0]
    affine, _, _ = register_volumes(fixed, moving, transform="affine", backend="simpleitk")
    rigid, _, _ = register_volumes(fixed, moving, transform="rigid", backend="simpleitk")
    assert _tre(affine, truth)[0] <= 0.5 < _tre(rigid, truth)[0]


@pytest.mark.timeout(120)
def test_register_study_puts_every_series_on_the_3d_t1(tmp_path):
    from meshdcm.imaging.register import register_study

    g = testdata.grid((50, 55, 45), (2.0, 2.0, 2.0))
    motion_ct = testdata.rigid_matrix((0.0, 4.0, -6.0), (3.0, 5.0, -4.0))
    testdata.write_volume_series(tmp_path / "ct", testdata.moved_phantom(motion_ct, radius=RADIUS, contrast="ct"),
                                 g, modality="CT", description="Head CT", seed=5, series_number=3)
    testdata.write_volume_series(tmp_path / "t1", lambda p: testdata.phantom(p, radius=RADIUS), g,
                                 description="T1 3D MPRAGE", seed=5, series_number=1)
    results = register_study([tmp_path / "ct", tmp_path / "t1"], tmp_path / "out", backend="simpleitk")
    assert len(results) == 1  # the T1 is the reference, only the CT moves
    (res,) = results
    assert _tre(res.matrix, motion_ct)[0] <= 1.0
    assert (tmp_path / "out" / res.moving_series_uid).is_dir()
    assert pydicom.dcmread(res.paths[0]).SeriesDescription == "Head CT [reg]"
