"""Series detection/loading, derived DICOM series, NIfTI, PNG and the CLI, on real files."""

from __future__ import annotations

import io
import json
import zlib

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from perfusion_fixtures import phantom, phantom_dir  # noqa: F401  (pytest fixtures)
from PIL import Image

from meshdcm.perfusion import DSC_FILTER, NotDSCSeriesError, analyse_series, is_dsc_series, load_dsc_series
from meshdcm.perfusion import write_phantom_dicom
from meshdcm.perfusion.cli import main
from meshdcm.perfusion.nifti import ras_affine
from meshdcm.perfusion.render import write_png_zlib


@pytest.fixture(scope="module")
def result(phantom_dir, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("perf_out")
    return analyse_series(phantom_dir, out, method="osvd", xp="numpy"), out


def test_phantom_uids_are_deterministic(phantom, phantom_dir, tmp_path):  # noqa: F811
    again = write_phantom_dicom(phantom, tmp_path)
    first = pydicom.dcmread(sorted(phantom_dir.iterdir())[0])
    assert pydicom.dcmread(again[0]).SeriesInstanceUID == first.SeriesInstanceUID
    assert pydicom.dcmread(again[0]).SOPInstanceUID == first.SOPInstanceUID


def test_detection_and_loading(phantom, phantom_dir):  # noqa: F811
    files = sorted(phantom_dir.iterdir())
    datasets = [pydicom.dcmread(f) for f in files]
    assert is_dsc_series(datasets)
    nz = phantom.spec.shape[0]
    assert not is_dsc_series(datasets[: 20 * nz])  # 20 time points are too few
    s = load_dsc_series(datasets[::-1])  # order of arrival must not matter
    np.testing.assert_allclose(s.signal, np.rint(phantom.signal), atol=0.5)
    np.testing.assert_allclose(s.times, phantom.times, atol=1e-3)
    assert s.te == pytest.approx(phantom.spec.te)
    assert "SeriesDescription" in DSC_FILTER and 'Modality == "MR"' in DSC_FILTER


def test_incomplete_or_foreign_input_is_refused_with_the_series_uid(phantom_dir, tmp_path):  # noqa: F811
    datasets = [pydicom.dcmread(f) for f in sorted(phantom_dir.iterdir())]
    uid = datasets[0].SeriesInstanceUID
    with pytest.raises(NotDSCSeriesError, match=uid):
        load_dsc_series(datasets[:-1], series_uid=uid)
    ct = datasets[0].copy()
    ct.Modality = "CT"
    with pytest.raises(NotDSCSeriesError, match="none of the 1 series"):
        load_dsc_series([ct])
    assert main([str(tmp_path), str(tmp_path / "o")]) == 2  # empty folder: clear error, exit 2


def test_derived_series_geometry_references_and_values(result, phantom, phantom_dir):  # noqa: F811
    res, out = result
    src = pydicom.dcmread(sorted(phantom_dir.iterdir())[0])
    cbf = res.outputs["CBF"]
    files = [pydicom.dcmread(f) for f in cbf.dicom_files]
    assert len(files) == phantom.spec.shape[0]
    for z, ds in enumerate(sorted(files, key=lambda d: d.InstanceNumber)):
        assert list(ds.ImageType[:2]) == ["DERIVED", "SECONDARY"]
        assert ds.FrameOfReferenceUID == src.FrameOfReferenceUID
        assert ds.StudyInstanceUID == src.StudyInstanceUID
        assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == src.SeriesInstanceUID
        assert ds.ImageOrientationPatient == src.ImageOrientationPatient
        assert ds.PixelSpacing == src.PixelSpacing
        assert float(ds.ImagePositionPatient[2]) == pytest.approx(z * phantom.spec.slice_thickness)
        values = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_allclose(values, res.maps.maps["CBF"][z], atol=float(ds.RescaleSlope))


def test_rerun_reuses_series_uids(result, phantom_dir, tmp_path):  # noqa: F811
    res, out = result
    again = analyse_series(phantom_dir, out, method="osvd", xp="numpy")
    assert {k: v.series_uid for k, v in again.outputs.items()} == {k: v.series_uid for k, v in res.outputs.items()}
    assert len(list((out / "dicom" / "CBF").iterdir())) == len(res.outputs["CBF"].dicom_files)
    other = analyse_series(phantom_dir, tmp_path, method="csvd", xp="numpy", write_nifti_files=False,
                           write_png_files=False)
    assert other.outputs["CBF"].series_uid != res.outputs["CBF"].series_uid


def test_nifti_affine_matches_simpleitk_reading_of_the_derived_series(result):
    res, out = result
    mo = res.outputs["CBV"]
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(out / "dicom" / "CBV")))
    img = reader.Execute()
    lps = np.eye(4)
    lps[:3, :3] = np.array(img.GetDirection()).reshape(3, 3) * np.array(img.GetSpacing())
    lps[:3, 3] = img.GetOrigin()
    nii = nib.load(mo.nifti)
    np.testing.assert_allclose(nii.affine, ras_affine(lps), atol=1e-4)
    np.testing.assert_allclose(np.asarray(nii.dataobj), res.maps.maps["CBV"].transpose(2, 1, 0), rtol=1e-6)
    sitk_vals = sitk.GetArrayFromImage(img)  # (z, y, x), rescaled
    np.testing.assert_allclose(sitk_vals, res.maps.maps["CBV"], atol=1e-3 * res.maps.maps["CBV"].max())


def test_png_renderings_and_zlib_writer(result, tmp_path):
    res, out = result
    assert res.png_encoder == "pillow"
    with Image.open(res.outputs["CBF"].png) as im:
        assert im.mode == "RGB" and im.size[0] > 0
        assert np.asarray(im).max() > 0
    rgb = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    path = write_png_zlib(rgb, tmp_path / "x.png")
    with Image.open(path) as im:
        np.testing.assert_array_equal(np.asarray(im), rgb)
    assert zlib.crc32(path.read_bytes()[12:29]) == int.from_bytes(path.read_bytes()[29:33], "big")


def test_cli_json(phantom_dir, tmp_path, capsys):  # noqa: F811
    assert main([str(phantom_dir), str(tmp_path), "--method", "csvd", "--json", "--xp", "numpy"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["method"] == "csvd" and set(doc["outputs"]) >= {"CBV", "CBF", "MTT", "Tmax", "TTP"}
    assert doc["summary"]["mean_CBF"] > 0
    assert json.loads((tmp_path / "perfusion.json").read_text())["source_series_uid"] == doc["source_series_uid"]


def test_a_rewritten_map_never_tears_what_a_reader_has_open(phantom_dir, tmp_path):  # noqa: F811
    """A redelivered message rewrites a derived series; a reader that opened a file before (the pacs node archiving
    it) still reads the whole first version: files are replaced by rename, never rewritten in place."""
    from meshdcm.perfusion.derived import write_map_series
    from meshdcm.perfusion.series import load_dsc_series

    series = load_dsc_series(phantom_dir)
    volume = np.full(series.signal.shape[1:], 40.0)  # (Z, Y, X)
    _, first = write_map_series(series, "CBF", volume, tmp_path, "osvd")
    original = first[0].read_bytes()
    with open(first[0], "rb") as reader:
        head = reader.read(200)
        _, again = write_map_series(series, "CBF", volume * 2, tmp_path, "osvd")  # the redelivery
        assert again[0] == first[0]
        assert head + reader.read() == original  # the reader's file is whole
    assert first[0].read_bytes() != original  # and the path holds the new version
    assert not list(tmp_path.rglob(".part-*"))  # no temporary file left behind


def test_maps_open_with_physiological_windows_and_an_unpainted_background(result, phantom):  # noqa: F811
    """WindowCenter/WindowWidth from each map's physiological range (not its values), in the DICOM, the PNG and the
    web viewer's thumbnail; outside the brain the stored value is the padding value and shows as background."""
    from meshdcm.perfusion.render import colourise
    from meshdcm.web.images import SeriesImages, index_series, slice_array

    res, out = result
    mask = res.maps.mask
    expected = {"CBV": (4, 8), "CBF": (50, 100), "MTT": (7.5, 15), "Tmax": (6, 12), "rCBV": (1, 2), "rCBF": (1, 2),
                "TTP": (29.5, 59)}
    for name, (center, width) in expected.items():
        ds = pydicom.dcmread(sorted(res.outputs[name].dicom_files)[0])
        assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (center, width), name
        assert ds.PixelPaddingValue == 0 and float(ds.RescaleIntercept) == 0
        z = int(ds.InstanceNumber) - 1
        assert np.all(ds.pixel_array[~mask[z]] == 0) and np.all(ds.pixel_array[mask[z]] >= 1)
        assert ds.RealWorldValueMappingSequence[0].RealWorldValueFirstValueMapped == 1
    # the PNG: coloured over 0..100 for CBF, black outside the brain
    with Image.open(res.outputs["CBF"].png) as im:
        png = np.asarray(im)
    h, w = mask.shape[1:]
    first = png[:h, :w]
    np.testing.assert_array_equal(first, colourise(res.maps.maps["CBF"][0], 0.0, 100.0, mask=mask[0]))
    assert np.all(first[~mask[0]] == 0)
    # the web viewer: the window of the file, NaN (drawn transparent) outside the brain, a black thumbnail background
    folder = out / "dicom" / "MTT"
    pixels = index_series("mtt", folder, map_unit="s")
    assert (pixels.center, pixels.width, pixels.kind) == (7.5, 15.0, "map")
    z = len(pixels.files) // 2
    values = slice_array(pixels, z)
    assert np.all(np.isnan(values[~mask[z]])) and np.all(np.isfinite(values[mask[z]]))
    thumb = SeriesImages(lambda uid: (folder, "s")).thumbnail("mtt", size=256)
    with Image.open(io.BytesIO(thumb)) as im:
        rgb = np.asarray(im.convert("RGB"))
    assert rgb.shape[:2] == mask.shape[1:] and np.all(rgb[~mask[z]] == 0)


def test_negative_map_values_are_stored_as_zero_and_inside_values_exactly(phantom_dir, tmp_path):  # noqa: F811
    from meshdcm.perfusion.derived import write_map_series
    from meshdcm.perfusion.series import load_dsc_series

    series = load_dsc_series(phantom_dir)
    shape = series.signal.shape[1:]
    volume = np.broadcast_to(np.linspace(-2.0, 12.0, shape[2], dtype=np.float32), shape).copy()
    mask = np.zeros(shape, bool)
    mask[:, 5:20, 5:20] = True
    _, files = write_map_series(series, "Tmax", volume, tmp_path, "osvd", mask=mask)
    ds = pydicom.dcmread(files[0])
    values = ds.pixel_array * float(ds.RescaleSlope)
    inside = mask[0]
    assert values[inside].min() > 0 and volume[0][inside].min() < 0  # negatives: the smallest code, not padding
    np.testing.assert_allclose(values[inside], np.clip(volume[0][inside], 0, None), atol=1.01 * float(ds.RescaleSlope))
    assert np.all(values[~inside] == 0) and (float(ds.WindowCenter), float(ds.WindowWidth)) == (6, 12)
