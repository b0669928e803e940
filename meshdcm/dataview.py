"""Read elements straight from a DICOM body without a full pydicom parse.

A :class:`DataView` walks the top-level elements of an Explicit VR Little Endian body lazily, element by
element, and stops as soon as it has passed the highest tag asked for.  Filters on
``Modality``/``SeriesDescription``/``ImageType`` therefore touch only the first part of group 0008.  Values
are decoded into plain Python values (see :func:`DataView.get`), with the same meaning as
:func:`values_of_element` gives for a pydicom element, so a filter means the same on the wire and on a file.

Hand-written because pydicom's reader builds a whole Dataset (~0.6 ms for an MR header) where the mesh
needs two or three values in a few microseconds; it walks, it never allocates more than the elements it is
asked about, and it refuses bodies that nest deeper than :data:`MAX_DEPTH`.
"""

from __future__ import annotations

import struct
import sys
from array import array
from bisect import bisect_left

from .errors import MalformedMessage

__all__ = ["MAX_DEPTH", "MAX_ELEMENTS", "check_body", "DataView", "IndexedView", "element_index", "values_of_element", "view_of"]

MAX_DEPTH = 16
MAX_ELEMENTS = 200_000  # in a whole body, nested ones included

_HDR = struct.Struct("<HH2sH")
_U32 = struct.Struct("<I")
_TAG_LEN = struct.Struct("<HHI")
_UNDEFINED = 0xFFFFFFFF
_VALID_VRS = frozenset(v.encode() for v in (
    "AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split()))
_SEQ_DELIMITER = b"\xfe\xff\xdd\xe0"  # (FFFE,E0DD) little endian
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"})
_SINGLE_VALUED_TEXT = frozenset({"LT", "ST", "UT", "UR"})
_CHARSET_VRS = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT"})
_NUMBER_FORMATS = {
    "US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d", "SV": "q", "UV": "Q",
}
_TEXT_VRS_B = frozenset(v.encode() for v in _TEXT_VRS)
_SINGLE_VALUED_TEXT_B = frozenset(v.encode() for v in _SINGLE_VALUED_TEXT)
_CHARSET_VRS_B = frozenset(v.encode() for v in _CHARSET_VRS)
_SPECIFIC_CHARACTER_SET = 0x00080005
_UNSEEN = object()
_BIG_ENDIAN_HOST = sys.byteorder == "big"
_SIMPLE_CHARSETS = {"": "ascii", "ISO_IR 6": "ascii", "ISO_IR 192": "utf-8", "ISO_IR 100": "latin-1"}


class DataView:
    """Lazy, read-only access to the top-level elements of a body.

    ``get(tag)`` returns ``None`` for an absent or empty element, else a ``str``/``int``/``float`` for a
    single value, or a ``tuple`` of them for several values.  Sequences and binary VRs (OB, OW, UN...)
    return ``b""``-free markers: ``True`` when present, so that ``exists`` works on them.
    """

    __slots__ = ("_buf", "_pos", "_index", "_last", "_charset")

    def __init__(self, body: bytes | memoryview):
        self._buf = body
        self._pos = 0
        self._index: dict[int, tuple[bytes, int, int]] = {}
        self._last = -1
        self._charset: str | list[str] | None = None

    def _walk_to(self, tag: int) -> None:
        buf, pos, index, last = self._buf, self._pos, self._index, self._last
        end = len(buf)
        unpack, u32, long_vrs = _HDR.unpack_from, _U32.unpack_from, _LONG_VRS
        try:
            while last < tag and pos < end:
                group, elem, vr, length = unpack(buf, pos)
                current = group << 16 | elem
                if current <= last:
                    raise MalformedMessage(f"element ({group:04X},{elem:04X}) is out of ascending order")
                if vr in long_vrs:
                    length = u32(buf, pos + 8)[0]
                    pos += 12
                elif vr in _VALID_VRS:
                    pos += 8
                else:
                    raise MalformedMessage(f"element ({group:04X},{elem:04X}) has an invalid VR {vr!r}")
                if length == _UNDEFINED:
                    if vr != b"SQ" and vr != b"UN":
                        raise MalformedMessage(f"element ({group:04X},{elem:04X}) VR {vr!r} has an undefined length")
                    start = pos
                    pos = _skip_sequence(buf, pos, vr == b"UN", 1)
                    index[current] = (vr, start, -1)
                else:
                    index[current] = (vr, pos, length)
                    pos += length
                    if pos > end:
                        raise MalformedMessage(f"element ({group:04X},{elem:04X}) runs past the end of the body")
                last = current
        except struct.error as exc:
            raise MalformedMessage(f"the DICOM body is truncated at byte {pos}") from exc
        finally:
            self._pos, self._last = pos, last

    def _find(self, tag: int):
        index = self._index
        if tag in index:
            return index[tag]
        if tag > self._last:
            self._walk_to(tag)
        return index.get(tag)

    def __contains__(self, tag: int) -> bool:
        return self._find(tag) is not None

    def raw(self, tag: int) -> tuple[str, bytes] | None:
        """``(VR, value bytes)`` of a top-level element, or None (None too for undefined-length sequences)."""
        found = self._find(tag)
        if found is None:
            return None
        vr, off, length = found
        if length == -1:
            return None
        return vr.decode("ascii", "replace"), bytes(self._buf[off:off + length])

    def get(self, tag: int):
        """The value of a top-level element (see the class docstring), or None."""
        found = self._index.get(tag, _UNSEEN)
        if found is _UNSEEN:
            found = self._find(tag)
        if found is None:
            return None
        return self._value(*found)

    def _value(self, vr: bytes, off: int, length: int):
        if length == 0:
            return None
        if length == -1:  # an undefined-length sequence: present unless it ends at once (no items)
            return None if bytes(self._buf[off:off + 4]) == _SEQ_DELIMITER else True
        if vr in _TEXT_VRS_B:
            raw = bytes(self._buf[off:off + length])  # a memoryview body has no isascii()/decode()
            if raw.isascii() and 0x1B not in raw:  # the same text in every repertoire but ISO 2022 (which has ESC)
                text = raw.decode("ascii")
            elif vr in _CHARSET_VRS_B:
                charset = self._charset
                if charset is None:
                    charset = self._charset = self._read_charset()
                text = raw.decode(charset, "replace") if isinstance(charset, str) else self._decode_exotic(raw, vr)
            else:
                text = raw.decode("latin-1")
            if vr in _SINGLE_VALUED_TEXT_B:
                return text.rstrip("\x00 ") or None
            if "\\" not in text:
                return text.strip(" \x00") or None
            return _split_text(text, vr.decode("ascii"))
        return self._binary_value(vr, off, length)

    def _binary_value(self, vr: bytes, off: int, length: int):
        fmt = _NUMBER_FORMATS.get(vr.decode("ascii", "replace"))
        if fmt is not None:
            size = struct.calcsize(fmt)
            count = length // size
            if count == 0:
                return None
            values = struct.unpack_from(f"<{count}{fmt}", self._buf, off)
            return values[0] if count == 1 else values
        if vr == b"AT":
            count = length // 4
            values = struct.unpack_from(f"<{2 * count}H", self._buf, off)
            tags = tuple(values[i] << 16 | values[i + 1] for i in range(0, 2 * count, 2))
            return tags[0] if count == 1 else tags
        return True  # SQ, OB, OW, UN...: present, not comparable

    def _decode_exotic(self, raw: bytes, vr: bytes) -> str:
        from pydicom.charset import decode_bytes  # only for ISO 2022 and other multi-term repertoires

        return decode_bytes(bytes(raw), self._charset, {"\\", "^", "=", "\r", "\n", "\t", "\f"} if vr == b"PN" else {"\\"})

    def _read_charset(self) -> str | list[str]:
        found = self.get(_SPECIFIC_CHARACTER_SET)
        if found is None:
            return "latin-1"  # default repertoire is ASCII; latin-1 never fails on stray bytes
        terms = [found] if isinstance(found, str) else list(found)
        if len(terms) == 1 and terms[0] in _SIMPLE_CHARSETS:
            return _SIMPLE_CHARSETS[terms[0]] if terms[0] not in ("", "ISO_IR 6") else "latin-1"
        from pydicom.charset import convert_encodings

        return convert_encodings(terms)


class IndexedView(DataView):
    """A :class:`DataView` over a body that came with its element index: each ``get`` is one bisection."""

    __slots__ = ("_tags", "_offsets")

    def __init__(self, body: bytes, element_index: bytes):
        self._buf = body
        self._pos = 0
        self._index = {}
        self._last = -1
        self._charset = None
        if len(element_index) % 8:
            raise MalformedMessage("the element index is not a whole number of (tag, offset) pairs")
        if _BIG_ENDIAN_HOST:
            swapped = array("I", bytes(element_index))
            swapped.byteswap()
            words = memoryview(swapped)
        else:
            words = memoryview(element_index).cast("I")
        self._tags = words  # tags are words[:n], header offsets words[n:]
        self._offsets = len(words) >> 1

    def _find(self, tag: int):
        index = self._index
        if tag not in index:
            index[tag] = self._locate(tag)
        return index[tag]

    def _locate(self, tag: int):
        words, n = self._tags, self._offsets
        i = bisect_left(words, tag, 0, n)
        if i == n or words[i] != tag:
            return None
        pos = words[n + i]
        try:
            group, elem, vr, length = _HDR.unpack_from(self._buf, pos)
            if vr in _LONG_VRS:
                length = _U32.unpack_from(self._buf, pos + 8)[0]
                pos += 12
            elif vr in _VALID_VRS:
                pos += 8
            else:
                raise MalformedMessage(f"the element at offset {pos} has an invalid VR {vr!r}")
        except struct.error as exc:
            raise MalformedMessage("the element index points past the end of the body") from exc
        if (group << 16 | elem) != tag:
            raise MalformedMessage("the element index points at the wrong element")
        if length == _UNDEFINED:
            return (vr, pos, -1)
        if pos + length > len(self._buf):
            raise MalformedMessage(f"element ({group:04X},{elem:04X}) runs past the end of the body")
        return (vr, pos, length)


def view_of(body: bytes, index: bytes | None = None) -> DataView:
    """The fastest view for a body: :class:`IndexedView` when its element index came with it."""
    return IndexedView(body, index) if index else DataView(body)


def element_index(body: bytes) -> bytes:
    """The element index of a body: the tags of its top-level elements (uint32, ascending), then the byte
    offsets of their headers (uint32), little endian.  Sent as the optional 4th frame (docs/protocol.md)."""
    view = DataView(body)
    view._walk_to(0xFFFFFFFF)
    tags, offsets = array("I"), array("I")
    for tag, (vr, off, _length) in view._index.items():
        tags.append(tag)
        offsets.append(off - (12 if vr in _LONG_VRS else 8))
    if _BIG_ENDIAN_HOST:
        tags.byteswap()
        offsets.byteswap()
    return tags.tobytes() + offsets.tobytes()


def _split_text(text: str, vr: str):
    if vr in _SINGLE_VALUED_TEXT:
        text = text.rstrip("\x00 ")
        return text or None
    parts = text.rstrip("\x00").split("\\")
    if vr == "UI":
        parts = [p.rstrip("\x00 ").strip() for p in parts]
    else:
        parts = [p.strip(" ") for p in parts]
    if len(parts) == 1:
        return parts[0] or None
    return tuple(parts)


def _skip_sequence(buf, pos: int, implicit: bool, depth: int) -> int:
    """Position after the Sequence Delimitation Item of an undefined-length sequence starting at ``pos``."""
    if depth > MAX_DEPTH:
        raise MalformedMessage(f"the DICOM body nests sequences deeper than {MAX_DEPTH} levels")
    end = len(buf)
    while True:
        if pos + 8 > end:
            raise MalformedMessage("an undefined-length sequence has no delimiter before the end of the body")
        group, elem, length = _TAG_LEN.unpack_from(buf, pos)
        pos += 8
        if group == 0xFFFE and elem == 0xE0DD:
            return pos
        if group != 0xFFFE or elem != 0xE000:
            raise MalformedMessage(f"expected a sequence item at byte {pos - 8}, found ({group:04X},{elem:04X})")
        if length == _UNDEFINED:
            pos = _skip_item(buf, pos, implicit, depth + 1)
        else:
            pos += length
            if pos > end:
                raise MalformedMessage("a sequence item runs past the end of the body")


def _skip_item(buf, pos: int, implicit: bool, depth: int) -> int:
    if depth > MAX_DEPTH:
        raise MalformedMessage(f"the DICOM body nests sequences deeper than {MAX_DEPTH} levels")
    end = len(buf)
    while True:
        if pos + 8 > end:
            raise MalformedMessage("an undefined-length item has no delimiter before the end of the body")
        group, elem = struct.unpack_from("<HH", buf, pos)
        if group == 0xFFFE and elem == 0xE00D:
            return pos + 8
        if implicit:
            length = _U32.unpack_from(buf, pos + 4)[0]
            vr = b"UN"
            pos += 8
        else:
            vr = bytes(buf[pos + 4:pos + 6])
            if vr in _LONG_VRS:
                if pos + 12 > end:
                    raise MalformedMessage("the DICOM body is truncated inside a sequence item")
                length = _U32.unpack_from(buf, pos + 8)[0]
                pos += 12
            else:
                length = struct.unpack_from("<H", buf, pos + 6)[0]
                pos += 8
        if length == _UNDEFINED:
            pos = _skip_sequence(buf, pos, implicit or vr == b"UN", depth + 1)
        else:
            pos += length
            if pos > end:
                raise MalformedMessage("an element inside a sequence item runs past the end of the body")


def check_body(body: bytes, max_elements: int = MAX_ELEMENTS, max_depth: int = MAX_DEPTH) -> int:
    """Walk a whole body, sequences included, before anything parses it; returns its element count.

    Raises :class:`MalformedMessage` for truncation, lengths past the end, items outside sequences, more than
    ``max_elements`` elements or sequences nested deeper than ``max_depth``: a hostile body cannot make pydicom
    recurse or allocate without bound.
    """
    count = 0
    # a stack of (end of the enclosing defined-length container, implicit VR?, kind) — kind: "ds" data set/item,
    # "sq" sequence; None as end means undefined length (ends at a delimitation item)
    stack: list[tuple[int | None, bool, str]] = [(len(body), False, "ds")]
    pos = 0
    last_top = -1
    end_all = len(body)
    try:
        while stack:
            end, implicit, kind = stack[-1]
            if end is not None and pos >= end:
                if pos > end:
                    raise MalformedMessage("an element runs past the end of its sequence item")
                stack.pop()
                continue
            if pos + 8 > end_all:
                raise MalformedMessage("the DICOM body is truncated")
            group, elem = struct.unpack_from("<HH", body, pos)
            if kind == "sq":
                length = _U32.unpack_from(body, pos + 4)[0]
                pos += 8
                if group == 0xFFFE and elem == 0xE0DD:
                    if end is not None:
                        raise MalformedMessage("a sequence delimiter inside a defined-length sequence")
                    stack.pop()
                    continue
                if group != 0xFFFE or elem != 0xE000:
                    raise MalformedMessage(f"expected a sequence item, found ({group:04X},{elem:04X})")
                if len(stack) > max_depth * 2:
                    raise MalformedMessage(f"the DICOM body nests sequences deeper than {max_depth} levels")
                stack.append((None if length == _UNDEFINED else pos + length, implicit, "ds"))
                continue
            if group == 0xFFFE and elem == 0xE00D:  # item delimiter
                if end is not None or len(stack) == 1:
                    raise MalformedMessage("an item delimiter where no undefined-length item is open")
                pos += 8
                stack.pop()
                continue
            if len(stack) == 1:  # top level: ascending tags, as PS3.5 7.1 requires
                tag = group << 16 | elem
                if tag <= last_top:
                    raise MalformedMessage(f"element ({group:04X},{elem:04X}) is out of ascending order")
                last_top = tag
            count += 1
            if count > max_elements:
                raise MalformedMessage(f"the DICOM body has more than {max_elements} elements")
            if implicit:
                vr = b"UN"
                length = _U32.unpack_from(body, pos + 4)[0]
                pos += 8
                is_sq = length == _UNDEFINED
            else:
                vr = bytes(body[pos + 4:pos + 6])
                if vr not in _VALID_VRS:
                    raise MalformedMessage(f"element ({group:04X},{elem:04X}) has an invalid VR {vr!r}")
                if vr in _LONG_VRS:
                    length = _U32.unpack_from(body, pos + 8)[0]
                    pos += 12
                else:
                    length = struct.unpack_from("<H", body, pos + 6)[0]
                    pos += 8
                is_sq = vr == b"SQ" or (vr == b"UN" and length == _UNDEFINED)
            if is_sq:
                stack.append((None if length == _UNDEFINED else pos + length, implicit or vr == b"UN", "sq"))
                continue
            if length == _UNDEFINED:
                raise MalformedMessage(f"element ({group:04X},{elem:04X}) has an undefined length")
            pos += length
            if pos > end_all:
                raise MalformedMessage(f"element ({group:04X},{elem:04X}) runs past the end of the body")
    except struct.error as exc:
        raise MalformedMessage("the DICOM body is truncated") from exc
    return count


def values_of_element(elem):
    """The same plain value :meth:`DataView.get` gives, for a pydicom DataElement (None if empty)."""
    vr = elem.VR
    value = elem.value
    if value is None or (hasattr(value, "__len__") and len(value) == 0):
        return None
    if vr == "SQ" or vr in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
        return True
    if vr in _TEXT_VRS:
        items = list(value) if _is_multi(value) else [value]
        parts = []
        for v in items:
            if vr == "PN":
                s = str(v)
            elif vr in ("DS", "IS"):
                s = getattr(v, "original_string", None) or str(v)
            else:
                s = str(v)
            parts.append(s.strip(" \x00") if vr not in _SINGLE_VALUED_TEXT else s.rstrip(" \x00"))
        if len(parts) == 1:
            return parts[0] or None
        return tuple(parts)
    if _is_multi(value):
        items = tuple(int(v) if vr == "AT" else v for v in value)
        return items[0] if len(items) == 1 else items
    return int(value) if vr == "AT" else value


def _is_multi(value) -> bool:
    from pydicom.multival import MultiValue

    return isinstance(value, (MultiValue, list, tuple))
