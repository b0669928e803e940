"""codec.encode/decode: Explicit VR Little Endian bodies that pydicom reads back to the same data set."""

from __future__ import annotations

import struct

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from mesh_fixtures import datasets, real_header
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian
from pydicom.valuerep import PersonName

from meshdcm import codec
from meshdcm.errors import MalformedMessage


def roundtrip(ds: Dataset) -> Dataset:
    return codec.decode(codec.encode(ds))


def _item(**kw) -> Dataset:
    item = Dataset()
    for k, v in kw.items():
        setattr(item, k, v)
    return item


def test_nested_empty_and_multi_item_sequences():
    ds = Dataset()
    ds.Modality = "MR"
    inner = Sequence([_item(CodeValue="113", CodeMeaning="inner")])
    ds.ReferencedImageSequence = Sequence([
        _item(ReferencedSOPInstanceUID="1.2.3", ReferencedFrameNumber=[1, 2]),
        _item(ReferencedSOPInstanceUID="1.2.4", PurposeOfReferenceCodeSequence=inner),
        Dataset(),
    ])
    ds.ReferencedStudySequence = Sequence([])
    out = roundtrip(ds)
    seq = out.ReferencedImageSequence
    assert len(seq) == 3
    assert seq[0].ReferencedSOPInstanceUID == "1.2.3"
    assert list(seq[0].ReferencedFrameNumber) == [1, 2]
    assert seq[1].PurposeOfReferenceCodeSequence[0].CodeMeaning == "inner"
    assert len(seq[2]) == 0
    assert len(out.ReferencedStudySequence) == 0
    assert out == ds


def test_undefined_length_sequences_round_trip():
    ds = real_header("rtplan.dcm")
    for elem in ds:
        if elem.VR == "SQ":
            elem.is_undefined_length = True
    body = codec.encode(ds)
    assert b"\xfe\xff\xdd\xe0" in body
    out = codec.decode(body)
    assert out.BeamSequence[0].BeamName == ds.BeamSequence[0].BeamName
    assert len(out.FractionGroupSequence) == len(ds.FractionGroupSequence)


def test_private_tags_with_private_creators():
    ds = Dataset()
    ds.PatientID = "P1"
    block = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
    block.add_new(0x08, "CS", "IMAGE NUM 4")
    block.add_new(0x10, "OB", b"\x01\x02\x03\x04")
    other = ds.private_block(0x0029, "MESHDCM", create=True)
    other.add_new(0x01, "LO", ["a", "b"])
    other.add_new(0x02, "SQ", Sequence([_item(CodeValue="X")]))
    out = roundtrip(ds)
    assert out[0x00290010].value == "SIEMENS CSA HEADER"
    assert out[0x00290011].value == "MESHDCM"
    got = out.private_block(0x0029, "SIEMENS CSA HEADER")
    assert got[0x08].value == "IMAGE NUM 4"
    assert got[0x10].value == b"\x01\x02\x03\x04"
    mine = out.private_block(0x0029, "MESHDCM")
    assert list(mine[0x01].value) == ["a", "b"]
    assert mine[0x02].value[0].CodeValue == "X"


def test_multi_valued_elements():
    ds = Dataset()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]  # CS
    ds.PixelSpacing = ["0.4688", "0.4688"]  # DS
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, -0.5]
    ds.EchoNumbers = ["1", "2"]  # IS
    ds.AcquisitionMatrix = [0, 256, 256, 0]  # US
    ds.add_new(0x00189089, "FD", [0.0, -0.7071, 0.7071])  # DiffusionGradientOrientation
    out = roundtrip(ds)
    assert list(out.ImageType) == ["ORIGINAL", "PRIMARY", "M", "ND"]
    assert [x.original_string for x in out.PixelSpacing] == ["0.4688", "0.4688"]
    assert [float(x) for x in out.ImageOrientationPatient] == [1, 0, 0, 0, 1, -0.5]
    assert list(out.EchoNumbers) == [1, 2]
    assert list(out.AcquisitionMatrix) == [0, 256, 256, 0]
    assert list(out.DiffusionGradientOrientation) == [0.0, -0.7071, 0.7071]
    assert b"ORIGINAL\\PRIMARY\\M\\ND" in codec.encode(ds)


def test_person_names_in_utf8():
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Müller^Jürgen"
    ds.OperatorsName = ["Søren^Ærø", "山田^太郎"]
    body = codec.encode(ds)
    assert "Müller^Jürgen".encode("utf-8") in body
    out = codec.decode(body)
    assert str(out.PatientName) == "Müller^Jürgen"
    assert out.PatientName.given_name == "Jürgen"
    assert [str(n) for n in out.OperatorsName] == ["Søren^Ærø", "山田^太郎"]


def test_person_names_in_iso_2022_japanese():
    ds = Dataset()
    ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    ds.PatientName = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    body = codec.encode(ds)
    assert b"\x1b$B" in body  # JIS X 0208 escape: really encoded in ISO 2022, not UTF-8
    out = codec.decode(body)
    assert str(out.PatientName) == "Yamada^Tarou=山田^太郎=やまだ^たろう"
    assert out.PatientName.ideographic == "山田^太郎"


def test_latin1_names():
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Gérard^Cécile"
    body = codec.encode(ds)
    assert "Gérard".encode("latin-1") in body
    assert str(codec.decode(body).PatientName) == "Gérard^Cécile"


ODD_VRS = [
    (0x00209165, "AT", [0x00200032, 0x00180050]),  # DimensionIndexPointer-like: several tags
    (0x00660023, "OB", b"\x00\x01\x02\xff"),
    (0x00660024, "OW", struct.pack("<3H", 1, 2, 65535) + b"\0\0"),
    (0x00660016, "OF", struct.pack("<2f", 1.5, -2.0)),
    (0x00720073, "OD", struct.pack("<d", 3.25)),
    (0x00091001, "UN", b"\x10\x20"),
    (0x00081190, "UR", "http://pacs.example/wado/studies/1.2"),
    (0x00080120, "UR", "https://x/y"),
    (0x00400031, "UT", "a very long text\\with a backslash"),
    (0x00189327, "FD", 12.5),
    (0x00189306, "FD", [1.0, 2.0]),
    (0x00189328, "FL", -0.25),
    (0x00189310, "FD", 0.125),
    (0x00280106, "SS", -32768),
    (0x00181310, "US", [0, 64, 64, 0]),
    (0x00209241, "FL", [0.5, 1.5]),
]


@pytest.mark.parametrize("tag,vr,value", ODD_VRS, ids=[f"{v}-{t:08X}" for t, v, _ in ODD_VRS])
def test_vr_round_trips(tag, vr, value):
    ds = Dataset()
    ds.add_new(tag, vr, value)
    out = roundtrip(ds)
    got = out[tag]
    expected = list(value) if isinstance(value, list) else value
    assert (list(got.value) if isinstance(value, list) else got.value) == expected
    if vr != "UN":
        assert got.VR == vr


@pytest.mark.parametrize("vr,value", [
    ("UC", ["unlimited", "characters"]), ("SV", [-2**63, 2**63 - 1]), ("UV", [0, 2**64 - 1]),
    ("OV", struct.pack("<Q", 2**64 - 1)), ("SL", [-2**31, 2**31 - 1]), ("OL", struct.pack("<I", 7)),
])
def test_newer_vrs_round_trip_in_a_private_block(vr, value):
    ds = Dataset()
    block = ds.private_block(0x0011, "MESHDCM VR", create=True)
    block.add_new(0x01, vr, value)
    out = roundtrip(ds)
    elem = out.private_block(0x0011, "MESHDCM VR")[0x01]
    assert elem.VR == vr
    assert (list(elem.value) if isinstance(value, list) else elem.value) == value


def test_empty_elements_round_trip():
    ds = Dataset()
    ds.PatientName = ""
    ds.PatientID = ""
    ds.SliceThickness = None
    ds.Rows = None
    ds.ImageType = []
    ds.add_new(0x00091001, "OB", b"")
    body = codec.encode(ds)
    out = codec.decode(body)
    assert out.PatientName == "" and out.PatientID == ""
    assert out.SliceThickness is None and out.Rows is None
    assert out[0x00091001].value in (b"", None)
    assert len(out) == len(ds)


def test_pixel_data_and_file_meta_are_dropped_and_the_dataset_untouched():
    ds = real_header("MR_small.dcm")
    assert "PixelData" in ds and ds.file_meta
    ds.add_new(0x00020013, "SH", "IMPL")  # a stray group 0002 element in the data set itself
    ds.add_new(0x7FE00008, "OF", b"\0" * 8)  # FloatPixelData
    ds.add_new(0x7FE00009, "OD", b"\0" * 8)  # DoubleFloatPixelData
    before = set(ds.keys())
    body = codec.encode(ds)
    assert set(ds.keys()) == before  # not modified
    out = codec.decode(body)
    for tag in (0x7FE00008, 0x7FE00009, 0x7FE00010, 0x00020013):
        assert tag not in out
    assert not any(int(t) >> 16 == 0x0002 for t in out.keys())
    assert out.PatientName == ds.PatientName and out.Rows == ds.Rows
    assert len(body) < 2000  # a 64x64x16-bit image is 8 KiB: the pixels really are not there
    assert not body.startswith(b"\0" * 128) and b"DICM" not in body[:132]


def test_body_is_explicit_vr_little_endian():
    ds = real_header("MR_small_bigendian.dcm")  # read from Explicit VR Big Endian
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    body = codec.encode(ds)
    group, elem, vr, length = struct.unpack_from("<HH2sH", body, 0)
    assert group == 0x0008 and vr.isalpha() and vr.isupper()
    ref = read_dataset(DicomBytesIO(body), is_implicit_VR=False, is_little_endian=True)
    assert ref.Rows == ds.Rows == 64
    at = body.index(b"\x28\x00\x10\x00US")
    assert struct.unpack_from("<H", body, at + 8)[0] == 64


def test_implicit_vr_source_is_reencoded_explicit():
    ds = real_header("MR_small_implicit.dcm")
    body = codec.encode(ds)
    assert b"\x08\x00\x60\x00CS" in body  # Modality with its VR written out
    assert codec.decode(body).Modality == ds.Modality


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets())
def test_generated_datasets_round_trip(ds):
    out = roundtrip(ds)
    assert set(out.keys()) == set(ds.keys())
    for elem in ds:
        if elem.VR in ("UN",):
            continue
        got, sent = _norm(out[elem.tag].value), _norm(elem.value)
        assert got == sent or (_empty(sent) and _empty(got)), (elem, got)


def _norm(value):
    """Spaces around text values are padding (PS3.5 6.2), which pydicom strips when it reads."""
    if isinstance(value, PersonName):  # not a str: PN ' ' is read back as '' and must compare equal
        value = str(value)
    if isinstance(value, str):
        return value.strip(" ")
    if isinstance(value, Sequence):
        return [{int(e.tag): _norm(e.value) for e in item} for item in value]
    if isinstance(value, list) or type(value).__name__ == "MultiValue":
        return [_norm(v) for v in value]
    return value


def _empty(value) -> bool:
    return value is None or (hasattr(value, "__len__") and len(value) == 0)


def test_decode_refuses_garbage_with_malformed_message():
    body = codec.encode(real_header())
    for bad in (body[:-3], body[: len(body) // 2], b"\x08\x00\x60\x00CS\xff\xff", b"\x08\x00\x60\x00CS\x02\x00M",
                b"\x10\x00\x10\x00PN\x00\x00" + b"\x08\x00\x60\x00CS\x00\x00", b"\x08\x00"):
        with pytest.raises(MalformedMessage):
            codec.decode(bad)


def test_decode_accepts_bytes_like():
    body = codec.encode(real_header())
    assert codec.decode(memoryview(body)).Modality == "MR"
    assert codec.decode(bytearray(body)).Modality == "MR"


def test_encode_refuses_non_datasets():
    with pytest.raises(TypeError, match="pydicom Dataset"):
        codec.encode(b"\x08\x00")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        codec.encode({"Modality": "MR"})  # type: ignore[arg-type]


def test_file_dataset_round_trip_keeps_everything_but_pixels():
    ds = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    out = roundtrip(ds)
    kept = [t for t in ds.keys() if int(t) not in codec.PIXEL_TAGS and int(t) & 0xFFFF != 0]
    assert sorted(out.keys()) == sorted(kept)
    for tag in kept:
        assert out[tag].value == ds[tag].value, tag


def rich_dataset() -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Müller^Jürgen=ミュラー^ユルゲン"
    ds.ImageType = ["DERIVED", "SECONDARY", "PERFUSION"]
    ds.PixelSpacing = ["0.9765625", "0.9765625"]
    ds.ImagePositionPatient = [-125.0, -120.5, 33.25]
    ds.Rows = 256
    ds.AcquisitionMatrix = [0, 128, 128, 0]  # US, multi-valued
    ds.add_new(0x00181310, "US", [0, 128, 128, 0])
    ds.add_new(0x00280106, "SS", -32768)
    ds.add_new(0x00189087, "FD", 1000.5)
    ds.add_new(0x00189089, "FD", [1.0, 0.0, -0.5])
    ds.add_new(0x00209158, "LT", "frame comment\nwith two lines")
    ds.add_new(0x00081199, "SQ", Sequence([Dataset(), Dataset()]))
    ds.ReferencedImageSequence = Sequence([Dataset()])
    ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = "1.2.3.4"
    ds.ReferencedImageSequence[0].ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    inner = Dataset()
    inner.CodeValue = "113076"
    inner.CodingSchemeDesignator = "DCM"
    ds.DerivationCodeSequence = Sequence([inner])
    ds.DerivationCodeSequence[0].add_new(0x00080100, "SH", "113076")
    ds.add_new(0x00091010, "LO", "MESHDCM")  # private creator
    ds.add_new(0x00091011, "UN", b"\x01\x02\x03\x04")
    ds.add_new(0x00091012, "OB", b"\x00\xff" * 5)
    ds.add_new(0x00091013, "OW", b"\x01\x00\x02\x00")
    ds.add_new(0x00091014, "OF", b"\x00\x00\x80\x3f")
    ds.add_new(0x00091015, "OD", b"\x00" * 8)
    ds.add_new(0x00091016, "AT", [0x00100010, 0x00080060])
    ds.add_new(0x00091017, "UR", "https://pacs.example/wado?x=1")
    ds.add_new(0x00091018, "UC", "a long unlimited characters value")
    ds.add_new(0x00091019, "UT", "unlimited text")
    ds.add_new(0x0009101A, "SV", -(2**40))
    ds.add_new(0x0009101B, "UV", 2**63 + 5)
    ds.add_new(0x0009101C, "OV", b"\x00" * 8)
    ds.add_new(0x0009101D, "FL", 0.25)
    ds.add_new(0x0009101E, "SL", -7)
    ds.add_new(0x0009101F, "UL", 4_000_000_000)
    ds.add_new(0x00091020, "DS", "")  # empty
    ds.add_new(0x00091021, "IS", ["1", "-2", "3"])
    ds.add_new(0x00091022, "DA", "20261125")
    ds.add_new(0x00091023, "TM", "101010.123")
    return ds


def test_round_trip_keeps_every_element():
    ds = rich_dataset()
    back = codec.decode(codec.encode(ds))
    assert len(back) == len(ds)
    for elem in ds:
        got = back[elem.tag]
        assert got.VR == elem.VR, elem.tag
        if elem.VR == "SQ":
            assert len(got.value) == len(elem.value)
        elif elem.value in ("", None, []):
            assert got.value in ("", None, [])  # pydicom reads an empty value back as None
        else:
            assert got.value == elem.value, (elem.tag, got.value, elem.value)
    assert str(back.PatientName) == "Müller^Jürgen=ミュラー^ユルゲン"
    assert back.ReferencedImageSequence[0].ReferencedSOPInstanceUID == "1.2.3.4"
    assert back.DerivationCodeSequence[0].CodeValue == "113076"
    assert back[0x00091010].value == "MESHDCM"
