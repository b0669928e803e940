"""The one image writer: a built instance is valid DICOM (written with validation raising) and reads back as built."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import config
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

from meshdcm import imagewriter as w
from meshdcm.synthetic import mr_brain

STUDY = {"SpecificCharacterSet": "ISO_IR 192", "PatientName": "Müller^Jürgen", "PatientID": "P1",
         "StudyInstanceUID": "2.25.1", "StudyDate": "20240301", "StudyTime": "093000"}


@pytest.fixture(autouse=True)
def strict(monkeypatch):
    monkeypatch.setattr(config.settings, "writing_validation_mode", config.RAISE)
    monkeypatch.setattr(config.settings, "reading_validation_mode", config.RAISE)


def _instance(number: int = 1):
    header = w.series_header(STUDY, sop_class_uid=MRImageStorage, modality="MR", series_uid="2.25.2",
                             series_number=3, series_description="T2 map", image_type=["DERIVED", "SECONDARY"],
                             frame_of_reference_uid="2.25.3")
    return w.image_instance(header, sop_instance_uid=f"2.25.4{number}", instance_number=number)


def test_a_float_map_reads_back_where_and_as_it_was_written(tmp_path):
    values = np.linspace(-37.5, 912.25, 12 * 10).reshape(12, 10)
    stored, slope, intercept = w.encode_values(values)
    ds = _instance()
    w.image_plane(ds, position=[w.ds_text(-20.5), "0", "7.25"], orientation=[1, 0, 0, 0, 0.8, -0.6],
                  pixel_spacing=["0.5", "2"], slice_thickness="3", slice_location="7.25")
    w.image_pixels(ds, stored)
    w.rescale(ds, w.ds_text(slope), w.ds_text(intercept), "US")
    w.window(ds, "400", "900")
    path = w.write_instance(ds, tmp_path / "a" / "1.dcm")

    back = pydicom.dcmread(path)
    meta = back.file_meta
    assert meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert (meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID) == (MRImageStorage, "2.25.41")
    assert (back.Rows, back.Columns, back.PixelRepresentation, back.BitsStored) == (12, 10, 1, 16)
    assert [float(v) for v in back.ImagePositionPatient] == [-20.5, 0.0, 7.25]
    assert [float(v) for v in back.PixelSpacing] == [0.5, 2.0]  # rows, then columns
    assert (back.PatientName, back.FrameOfReferenceUID, back.PositionReferenceIndicator) == (
        "Müller^Jürgen", "2.25.3", "")
    real = back.pixel_array * float(back.RescaleSlope) + float(back.RescaleIntercept)
    assert np.abs(real - values).max() <= float(back.RescaleSlope)  # one quantisation step
    assert not list(tmp_path.rglob(".part-*"))


@pytest.mark.parametrize("dtype, vr, representation", [(np.int16, "SS", 1), (np.uint16, "US", 0)])
def test_the_dtype_chooses_the_pixel_representation(dtype, vr, representation, tmp_path):
    ds = _instance()
    w.image_plane(ds, position=[0, 0, 0], orientation=[1, 0, 0, 0, 1, 0], pixel_spacing=[1, 1])
    stored = np.arange(-3 if dtype is np.int16 else 0, 9, dtype=dtype).reshape(3, -1)
    w.image_pixels(ds, stored, bits_stored=12, pixel_range=True)
    back = pydicom.dcmread(w.write_instance(ds, tmp_path / "1.dcm"))
    assert (back.PixelRepresentation, back.BitsStored, back.HighBit) == (representation, 12, 11)
    assert back["SmallestImagePixelValue"].VR == vr and back.SmallestImagePixelValue == stored.min()
    assert np.array_equal(back.pixel_array, stored)


def test_a_header_has_the_pixel_module_of_its_images():
    header, image = _instance(), _instance()
    w.pixel_module(header, 4, 6, np.uint16, bits_stored=12)
    w.image_pixels(image, np.zeros((4, 6), np.uint16), bits_stored=12)
    assert "PixelData" not in header
    assert {e.keyword: e.value for e in header} == {e.keyword: e.value for e in image if e.keyword != "PixelData"}


def test_instances_share_no_element_with_their_header():
    a = _instance(1)
    a.ImageType[1] = "CHANGED"
    a.SeriesDescription = "changed"
    b = _instance(2)
    assert (list(b.ImageType), b.SeriesDescription) == (["DERIVED", "SECONDARY"], "T2 map")


def test_held_synthetic_instances_keep_their_own_values():
    """Before the writer, every DWI instance shared the series header's SequenceName: the b0 images held in a list
    read the b1000 name."""
    names = {(int(ds.DiffusionBValue), ds.SequenceName) for ds in mr_brain(0, size="small", series=("dwi",))}
    assert names == {(0, "*ep_b0"), (1000, "*ep_b1000t")}


def test_a_failed_write_leaves_the_previous_file(tmp_path, monkeypatch):
    ds = _instance()
    w.image_pixels(ds, np.zeros((2, 2), np.uint16))
    path = w.write_instance(ds, tmp_path / "1.dcm")
    before = path.read_bytes()

    def disk_full(self, filename, **kwargs):
        Path(filename).write_bytes(b"half a file")
        raise OSError("no space left on device")

    monkeypatch.setattr(Dataset, "save_as", disk_full)
    with pytest.raises(OSError):
        w.write_instance(ds, path)
    assert path.read_bytes() == before and not list(tmp_path.glob(".part-*"))


def test_implementation_version_names_the_writer(tmp_path):
    ds = _instance()
    w.image_pixels(ds, np.zeros((2, 2), np.uint16))
    w.file_meta(ds, implementation_version="MESHDCM_TEST")
    assert pydicom.dcmread(w.write_instance(ds, tmp_path / "1.dcm")).file_meta.ImplementationVersionName == (
        "MESHDCM_TEST")


@pytest.mark.parametrize("value, text", [(-0.0000001, "0"), (2.5, "2.5"), (1 / 3, "0.333333"), (-1024.0, "-1024"),
                                         (1e17 / 3, "3.33333333e+16")])
def test_ds_text_fits_a_decimal_string(value, text):
    assert w.ds_text(value) == text and len(text) <= 16


def test_a_diffusion_weighted_image_says_its_b_value(tmp_path):
    b0, trace = _instance(1), _instance(2)
    w.diffusion(b0, 0)
    w.diffusion(trace, 1000)
    for ds in (b0, trace):
        w.image_pixels(ds, np.zeros((4, 4), np.uint16))
    back = [pydicom.dcmread(w.write_instance(ds, tmp_path / f"{ds.InstanceNumber}.dcm")) for ds in (b0, trace)]
    assert [(ds.DiffusionBValue, ds.DiffusionDirectionality) for ds in back] == [(0.0, "NONE"), (1000.0, "ISOTROPIC")]
