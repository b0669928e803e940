"""NIfTI -> derived DICOM series: geometry round trip through dcm2niix, references, provenance, real Orthanc."""

from __future__ import annotations

import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from meshdcm.imaging import NiftiError, nifti_to_series, series_to_nifti
from meshdcm.imaging.provenance import is_own_output, produced_by
from imaging_fixtures import reorient_like, run_dcm2niix, synthetic_series  # noqa: F401
from pacs_fixtures import orthanc  # noqa: F401

KW = dict(series_description="T1 axial [test]", node_name="convert", node_version="0.1.0")


def _roundtrip(kind, synthetic_series, tmp_path, *, as_float: bool):  # noqa: F811
    nii = series_to_nifti(synthetic_series[kind], tmp_path / "nii").paths[0]
    if as_float:
        img = nib.load(nii)
        nii = tmp_path / "map.nii.gz"
        nib.Nifti1Image(img.get_fdata().astype(np.float32) * 0.37 + 0.5, img.affine).to_filename(nii)
    paths = nifti_to_series(nii, synthetic_series[kind], tmp_path / "dcm", **KW)
    back = run_dcm2niix(tmp_path / "dcm", tmp_path / "back")
    return nib.load(nii), nib.load(back[0]), paths


@pytest.mark.parametrize("kind", ["axial", "oblique", "ct", "enhanced"])
@pytest.mark.parametrize("as_float", [False, True], ids=["stored", "float-map"])
def test_geometry_and_values_survive_dcm2niix(kind, as_float, synthetic_series, tmp_path):  # noqa: F811
    original, back, _ = _roundtrip(kind, synthetic_series, tmp_path, as_float=as_float)
    data, affine = reorient_like(back, original)
    np.testing.assert_allclose(affine, original.affine, atol=1e-3)
    values = data * back.dataobj.slope + back.dataobj.inter
    expected = original.get_fdata()
    step = np.ptp(expected) / 65000.0 if as_float else 0.0  # quantisation of a float map
    np.testing.assert_allclose(values, expected, atol=step * 0.51 + 1e-6)


def test_derived_series_attributes(synthetic_series, tmp_path):  # noqa: F811
    _, _, paths = _roundtrip("axial", synthetic_series, tmp_path, as_float=True)
    src = pydicom.dcmread(next(synthetic_series["axial"].iterdir()))
    dss = [pydicom.dcmread(p) for p in paths]
    assert len({d.SeriesInstanceUID for d in dss}) == 1
    d = dss[0]
    assert list(d.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert d.SeriesInstanceUID != src.SeriesInstanceUID
    assert d.StudyInstanceUID == src.StudyInstanceUID and d.FrameOfReferenceUID == src.FrameOfReferenceUID
    assert d.ReferencedSeriesSequence[0].SeriesInstanceUID == src.SeriesInstanceUID
    assert len(d.ReferencedSeriesSequence[0].ReferencedInstanceSequence) == 20
    sources = {p.name: pydicom.dcmread(p) for p in synthetic_series["axial"].iterdir()}
    by_uid = {s.SOPInstanceUID: s for s in sources.values()}
    for ds in dss:  # each slice names the source image in the same plane
        s = by_uid[ds.SourceImageSequence[0].ReferencedSOPInstanceUID]
        assert np.allclose([float(v) for v in s.ImagePositionPatient],
                           [float(v) for v in ds.ImagePositionPatient], atol=1e-3)
    # slices keep the source's row/column directions, so viewers do not show them upside down
    assert np.allclose([float(v) for v in d.ImageOrientationPatient], [float(v) for v in src.ImageOrientationPatient])
    assert float(d.RescaleSlope) != 1.0, "a float map is stored with a rescale"
    prov = produced_by(d)
    assert prov is not None and prov.node_name == "convert" and prov.source_series_uid == src.SeriesInstanceUID
    assert is_own_output(d, "convert") and not is_own_output(src)
    del d[0x00710010]  # a PACS/anonymiser dropping private tags: the standard sequence still tells
    for tag in [t for t in d.keys() if t.group == 0x0071]:
        del d[tag]
    assert is_own_output(d, "convert")


def test_a_derived_series_opens_at_a_window_spanning_its_head(tmp_path):
    """A registered or reformatted volume is mostly background: its window must span the head's values, as the
    scanner's does (it was centred on the volume's median, the background, and showed the brain saturated)."""
    from meshdcm.imaging.derived import display_window

    rng = np.random.default_rng(3)
    volume = np.zeros((40, 40, 40))
    volume[10:30, 10:30, 10:30] = rng.normal(600.0, 60.0, (20, 20, 20))  # an eighth of the volume is head
    center, width = display_window(volume)
    head = volume[10:30, 10:30, 10:30]
    assert center - width / 2 <= 0 and np.mean(head >= center + width / 2) < 0.01
    assert center + width / 2 < 1.2 * head.max()  # not stretched by the background either


def test_uids_are_deterministic(synthetic_series, tmp_path):  # noqa: F811
    nii = series_to_nifti(synthetic_series["ct"], tmp_path / "nii").paths[0]
    a = nifti_to_series(nii, synthetic_series["ct"], tmp_path / "a", **KW)
    b = nifti_to_series(nii, synthetic_series["ct"], tmp_path / "b", **KW)
    c = nifti_to_series(nii, synthetic_series["ct"], tmp_path / "c", **{**KW, "node_version": "0.2.0"})
    assert [p.name for p in a] == [p.name for p in b]
    assert {p.name for p in a}.isdisjoint(p.name for p in c)


def test_foreign_nifti_is_refused(synthetic_series, tmp_path):  # noqa: F811
    img = nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.diag([1.0, 1.0, 1.0, 1.0]) @ _far())
    img.to_filename(tmp_path / "far.nii")
    with pytest.raises(NiftiError, match="does not overlap"):
        nifti_to_series(tmp_path / "far.nii", synthetic_series["axial"], tmp_path / "out", **KW)


def _far() -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = [5000.0, 5000.0, 5000.0]
    return m


def test_orthanc_accepts_the_derived_series(orthanc, synthetic_series, tmp_path):  # noqa: F811
    _, _, paths = _roundtrip("oblique", synthetic_series, tmp_path, as_float=True)
    statuses = {orthanc.rest("/instances", "POST", p.read_bytes())["Status"] for p in paths}
    assert statuses <= {"Success", "AlreadyStored"}
    uid = pydicom.dcmread(paths[0]).SeriesInstanceUID
    series = [s for s in orthanc.rest("/series?expand") if s["MainDicomTags"]["SeriesInstanceUID"] == uid]
    assert len(series) == 1 and len(series[0]["Instances"]) == len(paths)
    tags = orthanc.rest(f"/instances/{series[0]['Instances'][0]}/simplified-tags")
    assert tags["ImageType"].startswith("DERIVED\\SECONDARY")


def test_dcmdump_parses_every_instance(synthetic_series, tmp_path):  # noqa: F811
    if not Path("/usr/bin/dcmdump").exists():
        pytest.skip("DCMTK dcmdump not installed")
    _, _, paths = _roundtrip("ct", synthetic_series, tmp_path, as_float=False)
    r = subprocess.run(["/usr/bin/dcmdump", "-q", "+E", *map(str, paths)], capture_output=True, text=True)
    assert r.returncode == 0 and "E:" not in r.stderr, r.stderr
