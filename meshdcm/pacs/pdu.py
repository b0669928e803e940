"""DICOM Upper Layer PDUs and DIMSE command sets as bytes (PS3.8 section 9, PS3.7 section 9 and annex E).

Only encoding and decoding, no sockets: the requestors (:mod:`meshdcm.pacs.storescu`, and later
:mod:`meshdcm.pacs.upper`'s acceptor and C-GET requestor, which still carry private copies of ``_item``,
``_command``, ``_parse_command``) build and read their PDUs here. Every length read from the peer is checked
against the bytes actually there; nothing here allocates more than it was given.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

__all__ = [
    "APPLICATION_CONTEXT", "IMPLEMENTATION_CLASS_UID", "IMPLEMENTATION_VERSION",
    "A_ASSOCIATE_RQ", "A_ASSOCIATE_AC", "A_ASSOCIATE_RJ", "P_DATA_TF", "A_RELEASE_RQ", "A_RELEASE_RP", "A_ABORT",
    "PresentationContext", "Acceptance", "item", "even", "uid", "pad_ae", "associate_rq", "parse_associate_ac",
    "rejection_reason", "abort_reason", "abort_pdu", "release_rq", "release_rp", "command", "parse_command",
    "PDUError",
]

APPLICATION_CONTEXT = b"1.2.840.10008.3.1.1.1"
IMPLEMENTATION_CLASS_UID = b"1.2.826.0.1.3680043.10.1452.1"
IMPLEMENTATION_VERSION = b"MESHDCM_01"

A_ASSOCIATE_RQ, A_ASSOCIATE_AC, A_ASSOCIATE_RJ = 0x01, 0x02, 0x03
P_DATA_TF, A_RELEASE_RQ, A_RELEASE_RP, A_ABORT = 0x04, 0x05, 0x06, 0x07

# PS3.8 9.3.3.2: result of a presentation context in an A-ASSOCIATE-AC
CONTEXT_RESULTS = {0: "accepted", 1: "rejected by the user", 2: "rejected, no reason given",
                   3: "SOP class (abstract syntax) not supported", 4: "transfer syntax not supported"}

# PS3.8 9.3.4: A-ASSOCIATE-RJ (result, source, reason)
_RJ_RESULT = {1: "rejected-permanent", 2: "rejected-transient"}
_RJ_REASON = {
    1: {1: "no reason given", 2: "application context name not supported", 3: "calling AE title not recognized",
        7: "called AE title not recognized"},
    2: {1: "no reason given", 2: "protocol version not supported"},
    3: {1: "temporary congestion", 2: "local limit exceeded"},
}
_RJ_SOURCE = {1: "by the service user", 2: "by the service provider (ACSE)", 3: "by the service provider (presentation)"}

# PS3.8 9.3.8: A-ABORT (source, reason)
_ABORT_SOURCE = {0: "the peer's application", 1: "reserved source", 2: "the peer's DICOM upper layer"}
_ABORT_REASON = {0: "reason not specified", 1: "unrecognized PDU", 2: "unexpected PDU", 4: "unrecognized PDU parameter",
                 5: "unexpected PDU parameter", 6: "invalid PDU parameter value"}


class PDUError(Exception):
    """The peer sent bytes that are not the PDU they claim to be (the association is aborted)."""


def item(kind: int, payload: bytes) -> bytes:
    """One item or sub-item: type, reserved, 2-byte length, payload."""
    return struct.pack(">BBH", kind, 0, len(payload)) + payload


def even(b: bytes) -> bytes:
    """UI values are padded with NUL to an even length (PS3.5 9.1)."""
    return b + b"\x00" if len(b) % 2 else b


def uid(b: bytes) -> str:
    return bytes(b).rstrip(b"\x00 ").decode("ascii", "replace")


def pad_ae(ae: str) -> bytes:
    return ae.encode("ascii")[:16].ljust(16, b" ")


@dataclass(frozen=True)
class PresentationContext:
    """One proposed presentation context: an odd ``id`` (1..255), the SOP class, the transfer syntaxes offered."""

    id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


@dataclass
class Acceptance:
    """What an A-ASSOCIATE-AC says: per context id, the result and the transfer syntax chosen; the peer's limit."""

    results: dict[int, int] = field(default_factory=dict)
    syntaxes: dict[int, str] = field(default_factory=dict)
    max_pdu: int = 0  # 0: the peer set no limit (PS3.8 D.1.1)


def associate_rq(called_ae: str, calling_ae: str, contexts: list[PresentationContext], max_pdu: int) -> bytes:
    """A whole A-ASSOCIATE-RQ PDU."""
    items = [item(0x10, APPLICATION_CONTEXT)]
    for cx in contexts:
        sub = item(0x30, cx.abstract_syntax.encode()) + b"".join(item(0x40, ts.encode()) for ts in cx.transfer_syntaxes)
        items.append(item(0x20, struct.pack(">BBBB", cx.id, 0, 0, 0) + sub))
    user = (item(0x51, struct.pack(">I", max_pdu)) + item(0x52, IMPLEMENTATION_CLASS_UID)
            + item(0x55, IMPLEMENTATION_VERSION))
    items.append(item(0x50, user))
    body = struct.pack(">HH", 1, 0) + pad_ae(called_ae) + pad_ae(calling_ae) + bytes(32) + b"".join(items)
    return struct.pack(">BBI", A_ASSOCIATE_RQ, 0, len(body)) + body


def _items(body: bytes, start: int):
    """(type, payload) of each item from ``start``; a length running past the end is a PDUError."""
    i, n = start, len(body)
    while i < n:
        if i + 4 > n:
            raise PDUError("truncated item header")
        kind, _, length = struct.unpack_from(">BBH", body, i)
        if i + 4 + length > n:
            raise PDUError(f"item 0x{kind:02x} claims {length} bytes, {n - i - 4} are there")
        yield kind, body[i + 4: i + 4 + length]
        i += 4 + length


def parse_associate_ac(body: bytes) -> Acceptance:
    """The variable part of an A-ASSOCIATE-AC (``body`` is the PDU without its 6-byte header)."""
    if len(body) < 68:
        raise PDUError(f"A-ASSOCIATE-AC of {len(body)} bytes (at least 68 expected)")
    out = Acceptance()
    for kind, payload in _items(body, 68):
        if kind == 0x21:
            if len(payload) < 4:
                raise PDUError("presentation context item too short")
            ctx, result = payload[0], payload[2]
            out.results[ctx] = result
            for sub, value in _items(payload, 4):
                if sub == 0x40:
                    out.syntaxes[ctx] = uid(value)
        elif kind == 0x50:
            for sub, value in _items(payload, 0):
                if sub == 0x51 and len(value) == 4:
                    out.max_pdu = struct.unpack(">I", value)[0]
    return out


def rejection_reason(body: bytes) -> str:
    """An A-ASSOCIATE-RJ's (result, source, reason) in words, e.g. 'calling AE title not recognized (...)'."""
    if len(body) < 4:
        return "association rejected (malformed A-ASSOCIATE-RJ)"
    result, source, reason = body[1], body[2], body[3]
    words = _RJ_REASON.get(source, {}).get(reason, f"reason {reason}")
    return (f"{words} ({_RJ_RESULT.get(result, f'result {result}')}, "
            f"{_RJ_SOURCE.get(source, f'source {source}')})")


def abort_reason(body: bytes) -> str:
    if len(body) < 4:
        return "A-ABORT"
    source, reason = body[2], body[3]
    who = _ABORT_SOURCE.get(source, f"source {source}")
    return f"A-ABORT from {who}" + (f": {_ABORT_REASON.get(reason, f'reason {reason}')}" if source == 2 else "")


def abort_pdu(source: int = 0, reason: int = 0) -> bytes:
    return struct.pack(">BBIBBBB", A_ABORT, 0, 4, 0, 0, source, reason)


def release_rq() -> bytes:
    return struct.pack(">BBII", A_RELEASE_RQ, 0, 4, 0)


def release_rp() -> bytes:
    return struct.pack(">BBII", A_RELEASE_RP, 0, 4, 0)


def command(elements: list[tuple[int, bytes]]) -> bytes:
    """A command set (group 0000, Implicit VR Little Endian) with its group length; elements in tag order."""
    body = b"".join(struct.pack("<HHI", 0, el, len(v)) + v for el, v in elements)
    return struct.pack("<HHII", 0, 0, 4, len(body)) + body


def parse_command(data: bytes) -> dict[int, bytes]:
    """Element number -> value of a command set; a length running past the end is a PDUError."""
    out, i, n = {}, 0, len(data)
    while i + 8 <= n:
        group, el, length = struct.unpack_from("<HHI", data, i)
        if group != 0 or i + 8 + length > n:
            raise PDUError(f"command element (0000,{el:04x}) of {length} bytes runs past the command's {n} bytes")
        out[el] = bytes(data[i + 8: i + 8 + length])
        i += 8 + length
    return out
