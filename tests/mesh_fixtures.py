"""Shared helpers for the mesh-core tests: real DICOM headers and hypothesis strategies for data sets.

The strategies build pydicom Datasets from random subsets of real dictionary keywords, with values that
are valid for each VR and VM (multi-values where the VM allows), in one of three character sets, plus a
private block and sequences.  They are what test_dataview.py and test_filters.py compare the three ways of
reading an element (DataView walk, IndexedView, pydicom element) on.
"""

from __future__ import annotations

import string
from datetime import date, datetime
from functools import lru_cache

import pydicom
from hypothesis import strategies as st
from pydicom.data import get_charset_files, get_testdata_file
from pydicom.datadict import DicomDictionary
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

# Real files shipped with pydicom (no network): headers of several modalities and character sets.
TESTDATA_FILES = ["MR_small.dcm", "CT_small.dcm", "rtplan.dcm", "rtstruct.dcm", "test-SR.dcm", "priv_SQ.dcm",
                  "nested_priv_SQ.dcm", "reportsi.dcm", "waveform_ecg.dcm", "image_dfl.dcm", "UN_sequence.dcm",
                  "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "examples_overlay.dcm"]
CHARSET_FILES = sorted(p for p in get_charset_files() if p.endswith(".dcm"))


def real_header(name: str = "MR_small.dcm") -> Dataset:
    """A real DICOM file from pydicom's test data, read whole (File Meta and pixel data included)."""
    return pydicom.dcmread(get_testdata_file(name), force=True)


def real_files() -> list[str]:
    return [get_testdata_file(n) for n in TESTDATA_FILES] + CHARSET_FILES


# --- value strategies per VR ---------------------------------------------------------------------------

CHARSETS = [None, "ISO_IR 100", "ISO_IR 192"]
_ASCII_TEXT = "".join(c for c in string.printable if c not in "\\\t\n\r\x0b\x0c")
_LATIN1_EXTRA = "ÄÖÜäöüßéèàçñÅåøØ"
_UNICODE_EXTRA = _LATIN1_EXTRA + "ЖжΩω漢字山田太郎やまだ한국"


def _alphabet(charset: str | None) -> str:
    if charset == "ISO_IR 192":
        return _ASCII_TEXT + _UNICODE_EXTRA
    if charset == "ISO_IR 100":
        return _ASCII_TEXT + _LATIN1_EXTRA
    return _ASCII_TEXT


def _text(charset, max_size, backslash=False):
    alphabet = _alphabet(charset) + ("\\" if backslash else "")
    return st.text(alphabet=alphabet, max_size=max_size)


_DIGITS = "0123456789"
_CS = st.text(alphabet=string.ascii_uppercase + _DIGITS + "_ ", min_size=1, max_size=16)
_UID = st.lists(st.integers(0, 99999), min_size=2, max_size=8).map(lambda p: "1.2.826." + ".".join(map(str, p)))
_DS = st.one_of(st.integers(-10**9, 10**9).map(str),
                st.floats(-1e6, 1e6, allow_nan=False).map(lambda x: f"{x:.6g}"))


def _scalar(vr: str, charset):
    """A strategy for one value of ``vr`` (text, int, float, tag)."""
    if vr == "AE":
        return st.text(alphabet=string.ascii_uppercase + _DIGITS + "_", min_size=1, max_size=16)
    if vr == "AS":
        return st.builds(lambda n, u: f"{n:03d}{u}", st.integers(0, 120), st.sampled_from("DWMY"))
    if vr == "CS":
        return _CS
    if vr == "DA":
        return st.dates(date(1900, 1, 1)).map(lambda d: d.strftime("%Y%m%d"))
    if vr == "TM":
        return st.times().map(lambda t: t.strftime("%H%M%S"))
    if vr == "DT":
        return st.datetimes(datetime(1900, 1, 1)).map(lambda t: t.strftime("%Y%m%d%H%M%S"))
    if vr == "DS":
        return _DS
    if vr == "IS":
        return st.integers(-2**31, 2**31 - 1).map(str)
    if vr == "UI":
        return _UID
    if vr == "LO":
        return _text(charset, 64)
    if vr == "SH":
        return _text(charset, 16)
    if vr == "UC":
        return _text(charset, 80)
    if vr in ("LT", "ST", "UT"):
        return _text(charset, 200, backslash=True)
    if vr == "UR":
        return st.text(alphabet=string.ascii_lowercase + "/:.", min_size=1, max_size=40).map(lambda s: "http://x/" + s)
    if vr == "PN":
        part = st.text(alphabet=_alphabet(charset).replace("^", "").replace("=", ""), max_size=12)
        return st.lists(part, min_size=1, max_size=3).map("^".join)
    ranges = {"US": (0, 2**16 - 1), "SS": (-2**15, 2**15 - 1), "UL": (0, 2**32 - 1), "SL": (-2**31, 2**31 - 1),
              "SV": (-2**63, 2**63 - 1), "UV": (0, 2**64 - 1), "AT": (0, 2**32 - 1)}
    if vr in ranges:
        return st.integers(*ranges[vr])
    if vr == "FL":
        return st.floats(width=32, allow_nan=False)
    if vr == "FD":
        return st.floats(allow_nan=False)
    raise KeyError(vr)


_BINARY = {"OB": 1, "UN": 1, "OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
_SINGLE_ONLY = {"LT", "ST", "UT", "UR"}
SCALAR_VRS = ["AE", "AS", "CS", "DA", "TM", "DT", "DS", "IS", "UI", "LO", "SH", "UC", "LT", "ST", "UT", "UR", "PN",
              "US", "SS", "UL", "SL", "SV", "UV", "AT", "FL", "FD"]


def _whole_values(b: bytes, size: int) -> bytes:
    b = b[: len(b) - len(b) % size]
    return b + b"\0" * (len(b) % 2)  # even length, as DICOM requires


def value_for(vr: str, vm: str, charset):
    """A strategy for an element value: empty, one value, or several where the VM allows it."""
    if vr in _BINARY:
        size = _BINARY[vr]
        return st.binary(max_size=24).map(lambda b: _whole_values(b, size))
    one = _scalar(vr, charset)
    empty = st.just([]) if vr not in ("AE", "AS", "CS", "DA", "TM", "DT", "UI", "UR") else st.just("")
    if vm == "1" or vr in _SINGLE_ONLY:
        return st.one_of(empty, one) if vr in _SCALAR_EMPTY_OK else one
    return st.one_of(empty, one, st.lists(one, min_size=2, max_size=4))


_SCALAR_EMPTY_OK = {"LO", "SH", "PN", "CS", "DS", "IS", "UI", "LT", "ST", "UT", "UC", "DA", "TM", "US", "FD"}


@lru_cache(maxsize=1)
def keywords_by_vr() -> dict[str, list[tuple[str, int, str]]]:
    """Non-retired, non-repeating dictionary keywords per VR: ``{vr: [(keyword, tag, vm), ...]}``."""
    out: dict[str, list[tuple[str, int, str]]] = {}
    for tag, (vr, vm, _name, retired, keyword) in DicomDictionary.items():
        group = tag >> 16
        if retired or not keyword or group in (0x0002, 0x7FE0) or tag == 0x00080005 or (tag & 0xFFFF) == 0:
            continue
        if vr in SCALAR_VRS or vr in _BINARY or vr == "SQ":
            out.setdefault(vr, []).append((keyword, tag, vm))
    for v in out.values():
        v.sort()
    return out


@st.composite
def sequences(draw, charset, depth=0):
    """An SQ value: 0-3 items, each with a couple of elements, sometimes another sequence inside."""
    items = []
    for _ in range(draw(st.integers(0, 3))):
        item = Dataset()
        item.CodeValue = draw(_CS)
        item.CodeMeaning = draw(_text(charset, 20))
        if depth < 2 and draw(st.booleans()):
            item.ConceptCodeSequence = draw(sequences(charset, depth + 1))
        items.append(item)
    return Sequence(items)


@st.composite
def datasets(draw, max_elements=12, with_private=True):
    """A Dataset of random dictionary elements with valid values per VR, a charset, maybe a private block."""
    charset = draw(st.sampled_from(CHARSETS))
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    table = keywords_by_vr()
    vrs = draw(st.lists(st.sampled_from(sorted(table)), min_size=1, max_size=max_elements))
    for vr in vrs:
        keyword, tag, vm = draw(st.sampled_from(table[vr]))
        if vr == "SQ":
            ds.add_new(tag, "SQ", draw(sequences(charset)))
        else:
            ds.add_new(tag, vr, draw(value_for(vr, vm, charset)))
    if with_private and draw(st.booleans()):
        block = ds.private_block(0x0029, "MESHDCM TEST", create=True)
        block.add_new(0x01, "LO", draw(_text(charset, 30)))
        block.add_new(0x02, "US", draw(st.lists(st.integers(0, 65535), min_size=1, max_size=3)))
        block.add_new(0x03, "DS", draw(_DS))
        block.add_new(0x04, "UN", draw(st.binary(max_size=6).map(lambda b: b + b"\0" * (len(b) % 2))))
    return ds


def write_series_files(folder, specs):
    """One small DICOM file per (modality, description) spec; returns their SeriesInstanceUIDs."""
    folder.mkdir(parents=True, exist_ok=True)
    uids = []
    for i, (modality, description) in enumerate(specs):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.PatientName = "Test^Patient"
        ds.Modality = modality
        ds.SeriesDescription = description
        ds.StudyInstanceUID = "1.2.826.0.1.3680043.10.1.1"
        ds.SeriesInstanceUID = f"1.2.826.0.1.3680043.10.1.2.{i}"
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.save_as(folder / f"{i:04d}.dcm", enforce_file_format=True)
        uids.append(ds.SeriesInstanceUID)
    return uids
