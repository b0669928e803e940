"""DICOM -> NIfTI against dcm2niix and against the analytic phantom, on every kind of synthetic series."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from meshdcm.imaging import SeriesError, series_to_nifti, testdata
from meshdcm.imaging.nifti import LPS_TO_RAS
from imaging_fixtures import assert_same_image, run_dcm2niix, synthetic_series  # noqa: F401

# kinds where our output must equal dcm2niix's file for file (enhanced_reversed: see test below)
SAME_AS_DCM2NIIX = ["axial", "ct", "oblique", "enhanced", "dsc", "multiecho", "float_map"]
SIDECAR_IGNORED = {"Manufacturer", "ConversionSoftware", "ConversionSoftwareVersion"}


def _truth_error(path, contrast: str) -> np.ndarray:
    """|voxel value - phantom value at the voxel's world position| for a NIfTI file."""
    img = nib.load(path)
    data = img.get_fdata()
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in data.shape[:3]], indexing="ij"), -1).reshape(-1, 3)
    ras = ijk @ img.affine[:3, :3].T + img.affine[:3, 3]
    lps = (np.c_[ras, np.ones(len(ras))] @ np.linalg.inv(LPS_TO_RAS).T)[:, :3]
    return np.abs(testdata.phantom(lps, contrast=contrast) - data.reshape(-1))


@pytest.mark.parametrize("kind", SAME_AS_DCM2NIIX)
def test_same_files_affine_and_voxels_as_dcm2niix(kind, synthetic_series, tmp_path):  # noqa: F811
    ours = series_to_nifti(synthetic_series[kind], tmp_path / "ours")
    theirs = run_dcm2niix(synthetic_series[kind], tmp_path / "dcm2niix")
    assert [p.name for p in ours.paths] == [p.name for p in theirs]
    for a, b in zip(ours.paths, theirs, strict=True):
        assert_same_image(a, b, atol_mm=1e-3)


def test_4d_and_echo_shapes(synthetic_series, tmp_path):  # noqa: F811
    dsc = series_to_nifti(synthetic_series["dsc"], tmp_path / "dsc")
    img = nib.load(dsc.paths[0])
    assert img.shape == (64, 64, 20, 10)
    assert img.header.get_zooms()[3] == pytest.approx(1.5)
    me = series_to_nifti(synthetic_series["multiecho"], tmp_path / "me")
    assert [c["EchoTime"] for c in me.sidecars] == [0.01, 0.02, 0.03]
    means = [nib.load(p).get_fdata().mean() for p in me.paths]
    assert means[0] > means[1] > means[2], "echoes must be in echo-time order (signal decays)"


@pytest.mark.parametrize("kind", SAME_AS_DCM2NIIX)
def test_sidecar_agrees_with_dcm2niix(kind, synthetic_series, tmp_path):  # noqa: F811
    ours = series_to_nifti(synthetic_series[kind], tmp_path / "ours")
    run_dcm2niix(synthetic_series[kind], tmp_path / "dcm2niix")
    for path, car in zip(ours.sidecar_paths, ours.sidecars, strict=True):
        theirs = json.loads((tmp_path / "dcm2niix" / path.name).read_text())
        shared = (set(car) & set(theirs)) - SIDECAR_IGNORED
        assert {"Modality", "SeriesNumber", "ImageOrientationPatientDICOM"} <= shared
        assert {k: car[k] for k in shared} == {k: theirs[k] for k in shared}
        assert json.loads(path.read_text()) == car
        assert car["SeriesInstanceUID"] == ours.series_uid


@pytest.mark.parametrize("kind,contrast", [("axial", "t1"), ("ct", "ct"), ("oblique", "t1"), ("enhanced", "t1"),
                                           ("enhanced_reversed", "t1"), ("tilted_ct", "ct")])
def test_voxels_sit_where_the_phantom_is(kind, contrast, synthetic_series, tmp_path):  # noqa: F811
    """Ground truth, independent of dcm2niix: each voxel holds the phantom's value at its world position."""
    result = series_to_nifti(synthetic_series[kind], tmp_path)
    err = _truth_error(result.paths[0], contrast)  # the exact (for tilted CT: sheared) file
    # rounding to integers (0.5) plus the 6-decimal DS rounding of positions on steep edges; one voxel of
    # misplacement would cost hundreds
    assert err.max() <= 1.0, f"{kind}: worst voxel off by {err.max():.1f}"


def test_enhanced_frames_stored_out_of_order(synthetic_series, tmp_path):  # noqa: F811
    """Frames stored in reverse In-Stack order: we follow the per-frame positions (dcm2niix pairs them wrongly)."""
    ours = series_to_nifti(synthetic_series["enhanced_reversed"], tmp_path / "ours")
    plain = series_to_nifti(synthetic_series["enhanced"], tmp_path / "plain")
    a, b = nib.load(ours.paths[0]), nib.load(plain.paths[0])
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-3)
    assert np.array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))


def test_gantry_tilt_is_flagged_and_resampled_like_dcm2niix(synthetic_series, tmp_path):  # noqa: F811
    ours = series_to_nifti(synthetic_series["tilted_ct"], tmp_path / "ours")
    theirs = run_dcm2niix(synthetic_series["tilted_ct"], tmp_path / "dcm2niix")
    assert [p.name for p in ours.paths] == ["5_Head_CT_tilted.nii", "5_Head_CT_tilted_Tilt_1.nii"]
    assert [p.name for p in theirs] == [p.name for p in ours.paths]
    # the resampled, orthogonal grid equals dcm2niix's _Tilt_1 output voxel for voxel
    assert_same_image(ours.paths[1], theirs[1], atol_mm=1e-3)
    corrected = nib.load(ours.paths[1]).affine[:3, :3]
    assert abs(corrected[:, 2] @ corrected[:, 1]) < 1e-6, "corrected grid must be orthogonal"
    # the raw file keeps the true sheared slice vector (dcm2niix writes the slice thickness along z instead)
    raw = nib.load(ours.paths[0]).affine
    step = np.linalg.norm(raw[:3, 2])
    assert step == pytest.approx(5.0 / np.cos(np.deg2rad(15.0)), abs=1e-3)
    assert ours.sidecar["GantryTiltSheared"] is True
    assert ours.sidecar["GantryTiltDegrees"] == pytest.approx(15.0, abs=0.01)
    assert any("tilt" in w for w in ours.warnings)


def test_mixed_series_folder_is_refused(synthetic_series, tmp_path):  # noqa: F811
    mixed = tmp_path / "mixed"
    shutil.copytree(synthetic_series["axial"], mixed)
    for p in synthetic_series["ct"].iterdir():
        shutil.copy(p, mixed / ("ct_" + p.name))
    with pytest.raises(SeriesError, match="holds 2 series"):
        series_to_nifti(mixed, tmp_path / "out")


def test_missing_slice_is_refused(synthetic_series, tmp_path):  # noqa: F811
    broken = tmp_path / "broken"
    shutil.copytree(synthetic_series["dsc"], broken)
    sorted(broken.iterdir())[0].unlink()
    with pytest.raises(SeriesError, match="incomplete"):
        series_to_nifti(broken, tmp_path / "out")


def test_empty_folder_is_refused(tmp_path):
    with pytest.raises(SeriesError, match="no DICOM image"):
        series_to_nifti(tmp_path, tmp_path / "out")


def test_compressed_series_gives_the_same_image(synthetic_series, tmp_path):  # noqa: F811
    """RLE Lossless instances go through pydicom's decoder instead of the raw-buffer fast path."""
    import pydicom
    from pydicom.uid import RLELossless

    rle = tmp_path / "rle"
    rle.mkdir()
    for p in synthetic_series["ct"].iterdir():
        ds = pydicom.dcmread(p)
        ds.compress(RLELossless)
        ds.save_as(rle / p.name)
    a = series_to_nifti(rle, tmp_path / "a").paths[0]
    b = series_to_nifti(synthetic_series["ct"], tmp_path / "b").paths[0]
    assert_same_image(a, b)
