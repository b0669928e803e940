"""DataView / IndexedView read the same values as pydicom, and refuse malformed bodies with MalformedMessage."""

from __future__ import annotations

import struct

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mesh_fixtures import CHARSET_FILES, datasets, real_files, real_header
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from meshdcm import codec
from meshdcm.dataview import MAX_DEPTH, DataView, IndexedView, element_index, values_of_element, view_of
from meshdcm.errors import MalformedMessage

HYPO = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _same(a, b) -> bool:
    """Equality that also says 0.0 == -0.0 is not a difference worth failing on but nan is (none generated)."""
    return type(a) is type(b) and a == b if not isinstance(a, tuple) else (
        isinstance(b, tuple) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True)))


def assert_three_ways(ds: Dataset) -> None:
    """Every top-level element: walk, index and pydicom (original and decoded) give the same value."""
    body = codec.encode(ds)
    index = element_index(body)
    decoded = codec.decode(body)
    walk = DataView(body)
    indexed = view_of(body, index)
    assert isinstance(indexed, IndexedView)
    for elem in ds:
        tag = int(elem.tag)
        if tag >> 16 == 0x0002 or tag in codec.PIXEL_TAGS or tag & 0xFFFF == 0:
            continue  # File Meta, pixel data and group lengths are not carried (test_codec.py)
        expected = values_of_element(elem)
        got_walk, got_index = walk.get(tag), indexed.get(tag)
        assert _same(got_walk, expected), (elem, got_walk, expected)
        assert _same(got_index, expected), (elem, got_index, expected)
        if elem.VR != "UN":  # pydicom turns UN with a known tag into its dictionary VR on reading
            assert _same(values_of_element(decoded[tag]), expected), (elem, decoded[tag])
        # an in-order fresh walk, a fresh index lookup and tag membership agree too
        assert _same(DataView(body).get(tag), expected)
        assert (tag in walk) is True


@HYPO
@given(datasets())
def test_generated_datasets_read_the_same_three_ways(ds):
    assert_three_ways(ds)


@pytest.mark.parametrize("path", real_files(), ids=lambda p: p.rsplit("/", 1)[-1])
def test_real_files_read_the_same_three_ways(path):
    assert_three_ways(pydicom.dcmread(path, force=True))


def test_charset_files_are_exercised():
    assert len(CHARSET_FILES) >= 15  # Japanese, Korean, Chinese, Greek, Hebrew, Arabic, Russian...


def test_absent_tags_are_none_in_both_views():
    body = codec.encode(real_header())
    index = element_index(body)
    for tag in (0x00000000, 0x00080001, 0x00100011, 0x7FE00010, 0xFFFFFFFF):
        assert DataView(body).get(tag) is None
        assert view_of(body, index).get(tag) is None
        assert tag not in DataView(body)


def test_walk_stops_early_and_resumes_in_any_order():
    body = codec.encode(real_header())
    view = DataView(body)
    assert view.get(0x00080060) == "MR"
    assert view._pos < len(body)  # lazy: group 0008 only
    assert view.get(0x00280010) == 64  # Rows, further on
    assert view.get(0x00080060) == "MR"  # earlier tag, from the cache
    assert view.get(0x00100010) == "CompressedSamples^MR1"


def test_undefined_length_sequence_is_present_in_every_view():
    ds = Dataset()
    ds.Modality = "MR"
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3"
    ds.ReferencedImageSequence = Sequence([item, Dataset()])
    ds["ReferencedImageSequence"].is_undefined_length = True
    ds.SeriesDescription = "after"
    body = codec.encode(ds)
    assert b"\xff\xff\xff\xff" in body
    for view in (DataView(body), view_of(body, element_index(body))):
        assert view.get(0x00081140) is True
        assert view.get(0x0008103E) == "after"
        assert view.raw(0x00081140) is None  # documented: no raw bytes for an undefined length
    assert values_of_element(ds["ReferencedImageSequence"]) is True


def test_memoryview_and_bytearray_bodies():
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Müller^Jürgen"
    ds.Rows = 5
    body = codec.encode(ds)
    for buf in (memoryview(body), bytearray(body)):
        view = DataView(buf)
        assert view.get(0x00100010) == "Müller^Jürgen"
        assert view.get(0x00280010) == 5
        assert IndexedView(buf, element_index(body)).get(0x00100010) == "Müller^Jürgen"


def test_raw_gives_vr_and_value_bytes():
    ds = Dataset()
    ds.Modality = "CT"
    ds.Rows = 7
    body = codec.encode(ds)
    for view in (DataView(body), view_of(body, element_index(body))):
        assert view.raw(0x00080060) == ("CS", b"CT")
        assert view.raw(0x00280010) == ("US", struct.pack("<H", 7))
        assert view.raw(0x00280011) is None


def test_element_index_layout():
    ds = Dataset()
    ds.Modality = "MR"  # (0008,0060) at offset 0, short VR
    ds.ReferencedImageSequence = Sequence([])  # (0008,1140) at 10, long VR header
    ds.Rows = 1  # (0028,0010) at 10 + 12
    body = codec.encode(ds)
    index = element_index(body)
    assert index == struct.pack("<3I3I", 0x00080060, 0x00081140, 0x00280010, 0, 10, 22)
    assert element_index(b"") == b""


def test_empty_body():
    assert DataView(b"").get(0x00080060) is None
    assert element_index(b"") == b""
    assert view_of(b"", None).get(0x00080060) is None


# --- malformed bodies ------------------------------------------------------------------------------------


def _probe(view_factory, tags) -> None:
    """Every get either answers or raises MalformedMessage; anything else fails the test."""
    view = view_factory()
    for tag in tags:
        try:
            view.get(tag)
        except MalformedMessage:
            view = view_factory()


@pytest.mark.timeout(60)
def test_truncation_at_every_byte_offset_of_a_real_header():
    full = codec.encode(real_header("MR_small.dcm"))
    index = element_index(full)
    tags = list(struct.unpack(f"<{len(index) // 8}I", index[: len(index) // 2]))
    boundaries = set(struct.unpack(f"<{len(tags)}I", index[len(index) // 2:])) | {len(full)}
    for cut in range(len(full)):
        body = full[:cut]
        if cut in boundaries:  # whole elements: a valid, shorter body
            assert len(element_index(body)) == 8 * sum(1 for o in boundaries if o < cut)
        else:
            with pytest.raises(MalformedMessage):
                element_index(body)
            with pytest.raises(MalformedMessage):
                DataView(body).get(0xFFFFFFFF)
        _probe(lambda b=body: DataView(b), tags)
        _probe(lambda b=body: IndexedView(b, index), tags)  # the full body's index on a truncated body


@pytest.mark.timeout(60)
def test_truncation_inside_undefined_length_sequences():
    ds = real_header("rtplan.dcm")
    for elem in ds:
        if elem.VR == "SQ":
            elem.is_undefined_length = True
            for item in elem.value:
                item.is_undefined_length_sequence_item = True
    full = codec.encode(ds)
    assert full.count(b"\xfe\xff\xdd\xe0") > 0
    full_index = element_index(full)
    ends = set(struct.unpack(f"<{len(full_index) // 8}I", full_index[len(full_index) // 2:])) | {len(full)}
    for cut in range(0, len(full), 3):
        body = full[:cut]
        if cut in ends:
            element_index(body)
        else:
            with pytest.raises(MalformedMessage):
                element_index(body)


def _element(tag: int, vr: bytes, value: bytes) -> bytes:
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT", b"UC", b"UR", b"OD", b"OF", b"OL", b"OV", b"SV", b"UV"):
        return struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value


def test_elements_out_of_order_are_refused():
    body = _element(0x00100010, b"PN", b"A^B ") + _element(0x00080060, b"CS", b"MR")
    with pytest.raises(MalformedMessage, match="out of ascending order"):
        DataView(body).get(0x00100020)
    with pytest.raises(MalformedMessage, match="out of ascending order"):
        element_index(body)
    duplicate = _element(0x00080060, b"CS", b"MR") + _element(0x00080060, b"CS", b"CT")
    with pytest.raises(MalformedMessage):
        element_index(duplicate)


@pytest.mark.parametrize("vr", [b"OB", b"UT", b"OW"])
def test_undefined_length_non_sequence_is_refused(vr):
    body = struct.pack("<HH2sHI", 0x0009, 0x0010, vr, 0, 0xFFFFFFFF) + b"\0" * 16
    with pytest.raises(MalformedMessage, match="undefined length"):
        DataView(body).get(0x00100010)


def test_undefined_length_un_is_walked_as_implicit_sequence():
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF) + struct.pack("<HHI", 0x0008, 0x0100, 2) + b"AB" \
        + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
    un = struct.pack("<HH2sHI", 0x0009, 0x1010, b"UN", 0, 0xFFFFFFFF) + item + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    body = un + _element(0x00100010, b"PN", b"A^B ")
    view = DataView(body)
    assert view.get(0x00100010) == "A^B"
    assert view.get(0x00091010) is True
    with pytest.raises(MalformedMessage):
        element_index(un[:-4])


def _nested_sequence(depth: int) -> bytes:
    """``depth`` undefined-length sequences, each in an undefined-length item of the one above."""
    inner = _element(0x00080100, b"SH", b"X ")
    for _ in range(depth):
        seq = struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF)
        item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF) + inner + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
        inner = seq + item + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return inner


def test_sequences_nested_up_to_max_depth_are_walked_deeper_are_refused():
    ok_depth = MAX_DEPTH // 2  # each level is a sequence and an item: two steps of depth
    after = _element(0x00990010, b"LO", b"AFTER ")  # sorts after (0040,A730)
    body = _nested_sequence(ok_depth) + after
    assert DataView(body).get(0x00990010) == "AFTER"
    assert DataView(body).get(0x0040A730) is True
    deep = _nested_sequence(MAX_DEPTH // 2 + 1)
    with pytest.raises(MalformedMessage, match=f"deeper than {MAX_DEPTH}"):
        DataView(deep + after).get(0x00990010)


def test_very_deep_nesting_does_not_overflow_the_stack():
    deep = _nested_sequence(2000)
    with pytest.raises(MalformedMessage):
        element_index(deep)


def test_sequence_without_delimiter_and_bad_item_tag():
    seq = struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF)
    with pytest.raises(MalformedMessage, match="no delimiter"):
        element_index(seq + struct.pack("<HHI", 0xFFFE, 0xE000, 0))
    with pytest.raises(MalformedMessage, match="expected a sequence item"):
        element_index(seq + _element(0x00100010, b"PN", b"A^B "))
    with pytest.raises(MalformedMessage, match="runs past the end"):
        element_index(seq + struct.pack("<HHI", 0xFFFE, 0xE000, 100) + b"\0" * 8)


def test_element_length_past_the_end():
    body = struct.pack("<HH2sH", 0x0008, 0x0060, b"CS", 40) + b"MR"
    with pytest.raises(MalformedMessage, match="past the end"):
        DataView(body).get(0x00080060)


# --- element index that does not match the body ------------------------------------------------------------


def _body_and_index():
    ds = Dataset()
    ds.Modality = "MR"
    ds.SeriesDescription = "perf"
    ds.Rows = 64
    body = codec.encode(ds)
    return body, element_index(body)


def test_index_with_odd_length_is_refused():
    body, index = _body_and_index()
    for bad in (index[:-1], index + b"\0" * 4, b"\0" * 3):
        with pytest.raises(MalformedMessage, match="whole number"):
            IndexedView(body, bad)


def test_index_pointing_at_the_wrong_offset():
    body, index = _body_and_index()
    n = len(index) // 8
    tags = struct.unpack(f"<{n}I", index[: 4 * n])
    offsets = list(struct.unpack(f"<{n}I", index[4 * n:]))
    offsets[0], offsets[1] = offsets[1], offsets[0]
    wrong = index[: 4 * n] + struct.pack(f"<{n}I", *offsets)
    for view in (IndexedView(body, wrong),):
        with pytest.raises(MalformedMessage, match="wrong element"):
            view.get(tags[0])
    shifted = index[: 4 * n] + struct.pack(f"<{n}I", *(o + 1 for o in offsets))
    with pytest.raises(MalformedMessage):
        IndexedView(body, shifted).get(tags[2])


def test_index_pointing_past_the_end():
    body, index = _body_and_index()
    n = len(index) // 8
    past = index[: 4 * n] + struct.pack(f"<{n}I", *([len(body) + 100] * n))
    for view in (IndexedView(body, past),):
        with pytest.raises(MalformedMessage, match="past the end"):
            view.get(0x00080060)
    with pytest.raises(MalformedMessage, match="past the end"):
        IndexedView(body[:-1], index).get(0x00280010)  # header there, value cut short


def test_index_naming_an_absent_tag_is_none_not_an_error():
    body, index = _body_and_index()
    assert IndexedView(body, index).get(0x00100010) is None
    assert DataView(body).get(0x00100010) is None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.binary(max_size=64).map(lambda b: b[: len(b) - len(b) % 8]))
def test_random_bytes_never_raise_anything_but_malformed(body, index):
    for factory in (lambda: DataView(body), lambda: IndexedView(body, index) if index else DataView(body)):
        for tag in (0x00080060, 0x00100010, 0x00280010, 0xFFFFFFFF):
            try:
                factory().get(tag)
            except MalformedMessage:
                pass
    try:
        element_index(body)
    except MalformedMessage:
        pass


def test_empty_undefined_length_sequence_is_none_in_every_view():
    ds = Dataset()
    ds.ReferencedStudySequence = Sequence([])
    ds["ReferencedStudySequence"].is_undefined_length = True
    ds.PatientID = "after"
    body = codec.encode(ds)
    assert b"\xfe\xff\xdd\xe0" in body
    assert values_of_element(ds["ReferencedStudySequence"]) is None
    for view in (DataView(body), view_of(body, element_index(body))):
        assert view.get(0x00081110) is None
        assert view.get(0x00100020) == "after"


@pytest.mark.parametrize("make", ["rich", "mr", "ct", "dsc"])
def test_synthetic_headers_read_the_same_three_ways(make):
    from test_codec import rich_dataset

    from meshdcm.synthetic import ct_header, mr_header

    ds = {"rich": rich_dataset, "mr": mr_header, "ct": ct_header, "dsc": lambda: mr_header(series="dsc")}[make]()
    assert_three_ways(ds)
