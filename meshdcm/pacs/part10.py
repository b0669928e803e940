"""What a sender needs to know of a DICOM Part 10 file before it streams it: SOP class and instance, transfer
syntax, and where the dataset starts (PS3.10 7.1).

:func:`read_instance` reads the first few KiB of the file: the File Meta Information (always Explicit VR Little
Endian) gives the transfer syntax and the dataset's offset; the dataset's own SOP Class UID and SOP Instance
UID (0008,0016/0018, what a receiver such as DCMTK storescp checks against the C-STORE request) and the Study
Instance UID (for messages) are scanned from the first dataset bytes. pydicom is the fallback (deflated or big
endian datasets, an undefined length before (0008,0018), a header longer than what was read): it costs ~1 ms a
file, about as much as sending a 130 KB instance, so the scan is hand-written.

:func:`convert` re-encodes a file's dataset in Explicit or Implicit VR Little Endian (pydicom; decompressed where
a decoder is installed), for a receiver that refuses the file's own transfer syntax.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

__all__ = ["InstanceFile", "read_instance", "convert", "uid_name", "EXPLICIT_LE", "IMPLICIT_LE"]

EXPLICIT_LE, IMPLICIT_LE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"

_HEAD = 16384
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_SOP_CLASS, _SOP_INSTANCE, _STUDY = 0x00080016, 0x00080018, 0x0020000D
_NOT_LITTLE_ENDIAN_SCANNABLE = ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2")  # deflated, big endian


@dataclass(frozen=True)
class InstanceFile:
    """A Part 10 file to send: its dataset is the file's bytes from ``offset`` on, in ``transfer_syntax``."""

    path: Path
    sop_class: str
    sop_instance: str
    transfer_syntax: str
    offset: int
    size: int
    study: str = ""  # StudyInstanceUID when the scan saw it (for messages only)

    @property
    def length(self) -> int:
        return self.size - self.offset


def _text(b: bytes) -> str:
    return bytes(b).rstrip(b"\x00 ").decode("ascii", "replace")


def _elements(data: bytes, i: int, implicit: bool, stop_group: int):
    """(tag, value start, length) of each element from ``i`` while the group is < ``stop_group``.

    Stops (returns) at an undefined length or data that ends; the caller can tell by what it found."""
    n = len(data)
    while i + 8 <= n:
        group, elem = struct.unpack_from("<HH", data, i)
        if group >= stop_group:
            return
        if implicit:
            length, start = struct.unpack_from("<I", data, i + 4)[0], i + 8
        elif data[i + 4: i + 6] in _LONG_VRS:
            if i + 12 > n:
                return
            length, start = struct.unpack_from("<I", data, i + 8)[0], i + 12
        else:
            length, start = struct.unpack_from("<H", data, i + 6)[0], i + 8
        if length == 0xFFFFFFFF or start + length > n:
            return
        yield group << 16 | elem, start, length
        i = start + length


def read_instance(path: str | Path) -> InstanceFile:
    """The header of a Part 10 file; ``ValueError`` naming the file when it is not one or lacks its SOP UIDs."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(_HEAD)
            size = fh.seek(0, 2)
    except OSError as exc:
        raise ValueError(f"{path} cannot be read: {exc.strerror or exc}") from exc
    if len(head) < 144 or head[128:132] != b"DICM":
        raise ValueError(f"{path} is not a DICOM Part 10 file (no 'DICM' after the 128-byte preamble)")
    meta, offset = {}, 132
    for tag, start, length in _elements(head, 132, implicit=False, stop_group=0x0003):
        if tag >> 16 != 0x0002:
            break
        meta[tag] = head[start: start + length]
        offset = start + length
    ts = _text(meta.get(0x00020010, b""))
    if not ts:
        raise ValueError(f"{path} has no Transfer Syntax UID in its file meta information")
    found = {}
    if ts not in _NOT_LITTLE_ENDIAN_SCANNABLE:
        for tag, start, length in _elements(head, offset, implicit=ts == "1.2.840.10008.1.2", stop_group=0x0021):
            if tag in (_SOP_CLASS, _SOP_INSTANCE, _STUDY):
                found[tag] = _text(head[start: start + length])
            if tag >= _STUDY:
                break
    if _SOP_CLASS not in found or _SOP_INSTANCE not in found:
        found = _with_pydicom(path)
    return InstanceFile(path, found[_SOP_CLASS], found[_SOP_INSTANCE], ts, offset, size, found.get(_STUDY, ""))


def _with_pydicom(path: Path) -> dict[int, str]:
    from pydicom import dcmread

    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID"])
        return {_SOP_CLASS: str(ds.SOPClassUID), _SOP_INSTANCE: str(ds.SOPInstanceUID),
                _STUDY: str(ds.get("StudyInstanceUID", ""))}
    except Exception as exc:
        raise ValueError(f"{path} is not a DICOM file with SOPClassUID and SOPInstanceUID: {exc}") from exc


def convert(inst: InstanceFile, ts: str) -> bytes:
    """The dataset re-encoded in ``ts`` (Explicit or Implicit VR Little Endian), decompressed if need be."""
    from pydicom import dcmread
    from pydicom.uid import UID
    from pynetdicom.dsutils import encode

    ds = dcmread(inst.path)
    if UID(inst.transfer_syntax).is_compressed:
        ds.decompress(generate_instance_uid=False)  # the same instance in another transfer syntax (PS3.5 10)
    data = encode(ds, ts == IMPLICIT_LE, True, False)
    if data is None:
        raise ValueError(f"pydicom could not encode it in {uid_name(ts)}")
    return data


def uid_name(uid: str) -> str:
    """A UID with its name where pydicom knows it, e.g. 'JPEG Baseline (Process 1) (1.2.840.10008.1.2.4.50)'."""
    from pydicom.uid import UID

    name = UID(uid).name
    return f"{name} ({uid})" if name and name != uid else uid
