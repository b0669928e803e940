"""Bodies: encode/decode round trips, and reading elements from the bytes exactly as pydicom reads them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from meshdcm import MalformedMessage, codec
from meshdcm.dataview import MAX_DEPTH, DataView, check_body, element_index, values_of_element, view_of
from meshdcm.synthetic import ct_header, mr_header


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


def test_pixel_data_and_file_meta_never_travel():
    ds = mr_header()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PixelData = b"\x00" * 512
    ds.add_new(0x00020010, "UI", ExplicitVRLittleEndian)
    body = codec.encode(ds)
    back = codec.decode(body)
    assert "PixelData" not in back and 0x00020010 not in back
    assert len(body) < 4000 and "PixelData" in ds  # the caller's dataset is untouched


def test_body_is_explicit_vr_little_endian_without_preamble():
    body = codec.encode(mr_header())
    assert body[:4] == b"\x08\x00\x05\x00" and body[4:6] == b"CS"  # (0008,0005) CS first
    assert b"DICM" not in body[:132]


@pytest.mark.parametrize("make", [rich_dataset, mr_header, ct_header, lambda: mr_header(series="dsc")])
def test_views_read_what_pydicom_reads(make):
    ds = make()
    body = codec.encode(ds)
    walked, indexed = DataView(body), view_of(body, element_index(body))
    parsed = codec.decode(body)
    for elem in parsed:
        expected = values_of_element(elem)
        assert walked.get(int(elem.tag)) == expected, elem
        assert indexed.get(int(elem.tag)) == expected, elem
    assert walked.get(0x00100011) is None and indexed.get(0x7FE00010) is None


def test_charsets_latin1_and_iso2022():
    for charset, name in (("ISO_IR 100", "Müller^Jürgen"), (["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎")):
        ds = Dataset()
        ds.SpecificCharacterSet = charset
        ds.PatientName = name
        body = codec.encode(ds)
        assert DataView(body).get(0x00100010) == name
        assert view_of(body, element_index(body)).get(0x00100010) == name


TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_characters="\\"),
               max_size=20).map(str.strip)
VALUES = {
    "Modality": st.sampled_from(["MR", "CT", "PT", "SR"]),
    "SeriesDescription": TEXT,
    "PatientName": TEXT.map(lambda t: t.replace("=", "")),
    "ImageType": st.lists(st.sampled_from(["ORIGINAL", "DERIVED", "PRIMARY", "M", "NORM"]), min_size=1, max_size=4),
    "SeriesNumber": st.integers(-1000, 100000).map(str),
    "SliceThickness": st.floats(0.1, 10, allow_nan=False).map(lambda f: f"{f:.4g}"),
    "Rows": st.integers(0, 65535),
    "EchoTrainLength": st.integers(0, 300).map(str),
    "PixelSpacing": st.lists(st.floats(0.1, 5).map(lambda f: f"{f:.4g}"), min_size=2, max_size=2),
    "StudyDate": st.dates().map(lambda d: d.strftime("%Y%m%d")),
}


@settings(max_examples=200, deadline=None)
@given(st.fixed_dictionaries({}, optional=VALUES))
def test_random_datasets_read_the_same_three_ways(values):
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    body = codec.encode(ds)
    walked, indexed = DataView(body), view_of(body, element_index(body))
    for elem in codec.decode(body):
        assert walked.get(int(elem.tag)) == values_of_element(elem) == indexed.get(int(elem.tag))


def test_truncation_anywhere_is_a_clear_error():
    import struct

    body = codec.encode(rich_dataset())
    index = element_index(body)
    n = len(index) // 8
    boundaries = set(struct.unpack_from(f"<{n}I", index, 4 * n))  # a cut there leaves a shorter, valid data set
    cuts = [c for c in range(1, len(body)) if c not in boundaries]
    assert len(cuts) > 300
    for cut in cuts:
        piece = body[:cut]
        try:
            view = DataView(piece)
            view.get(0xFFFFFFF0)
        except MalformedMessage:
            pass
        with pytest.raises(MalformedMessage):
            check_body(piece) if cut % 8 else codec.decode(piece)  # decode runs check_body first


def test_out_of_order_and_undefined_lengths_are_refused():
    a, b = Dataset(), Dataset()
    a.Modality = "MR"
    b.PatientName = "X"
    swapped = codec.encode(b) + codec.encode(a)  # (0010,0010) before (0008,0060)
    with pytest.raises(MalformedMessage, match="ascending"):
        DataView(swapped).get(0x00200000)
    bad = b"\x08\x00\x60\x00OB\x00\x00\xff\xff\xff\xff"
    with pytest.raises(MalformedMessage, match="undefined length"):
        DataView(bad).get(0x00080070)


def test_nesting_deeper_than_the_limit_is_refused():
    inner = Dataset()
    inner.Modality = "MR"
    for _ in range(MAX_DEPTH + 2):
        outer = Dataset()
        outer.ReferencedSeriesSequence = Sequence([inner])
        inner = outer
    body = codec.encode(inner)
    with pytest.raises(MalformedMessage, match="deeper than"):
        codec.decode(body)


def test_a_lying_element_index_is_caught():
    body = codec.encode(mr_header())
    index = bytearray(element_index(body))
    n = len(index) // 8
    # point Modality's offset at another element
    import struct
    tags = struct.unpack_from(f"<{n}I", index)
    i = tags.index(0x00080060)
    struct.pack_into("<I", index, 4 * (n + i), 0)
    with pytest.raises(MalformedMessage, match="wrong element"):
        view_of(body, bytes(index)).get(0x00080060)
    struct.pack_into("<I", index, 4 * (n + i), len(body) + 10)
    with pytest.raises(MalformedMessage):
        view_of(body, bytes(index)).get(0x00080060)
    with pytest.raises(MalformedMessage, match="whole number"):
        view_of(body, b"\x00" * 7)
