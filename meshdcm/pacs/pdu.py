"""DICOM Upper Layer PDUs and DIMSE command sets as bytes (PS3.8 section 9, PS3.7 section 9 and annex E).

Only encoding and decoding, no sockets: the acceptor (:mod:`meshdcm.pacs.upper`), the C-GET/C-MOVE requestor
(:mod:`meshdcm.pacs.requestor`) and the C-STORE SCU (:mod:`meshdcm.pacs.storescu`) build and read their PDUs
here. Every length read from the peer is checked against the bytes actually there (and a PDU's length against
the limit the reader gives) before anything is allocated; nothing here allocates more than it was given. A
length that lies is a :class:`PDUError`: the reader aborts the association.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

__all__ = [
    "APPLICATION_CONTEXT", "IMPLEMENTATION_CLASS_UID", "IMPLEMENTATION_VERSION", "VERIFICATION", "MAX_ASSOCIATION_PDU",
    "MAX_CONTEXTS",
    "A_ASSOCIATE_RQ", "A_ASSOCIATE_AC", "A_ASSOCIATE_RJ", "P_DATA_TF", "A_RELEASE_RQ", "A_RELEASE_RP", "A_ABORT",
    "PresentationContext", "AssociateRequest", "Acceptance", "item", "even", "uid", "pad_ae", "us", "read_us",
    "associate_rq", "parse_associate_rq", "associate_ac", "associate_rj", "parse_associate_ac", "rejection_reason",
    "abort_reason", "abort_pdu", "release_rq", "release_rp", "pdu_header", "pdv_header", "pdvs", "p_data_header",
    "command", "parse_command", "c_store_rsp", "c_echo_rsp", "PDUError",
]

APPLICATION_CONTEXT = b"1.2.840.10008.3.1.1.1"
IMPLEMENTATION_CLASS_UID = b"1.2.826.0.1.3680043.10.1452.1"
IMPLEMENTATION_VERSION = b"MESHDCM_01"
VERIFICATION = "1.2.840.10008.1.1"
#: Longest association PDU (A-ASSOCIATE-RQ/AC/RJ, A-RELEASE, A-ABORT) we read. A request proposing all 128
#: presentation contexts with long UIDs is under 20 KiB; a peer claiming more is not a DICOM peer.
MAX_ASSOCIATION_PDU = 64 << 10
MAX_COMMAND_SET = 64 << 10  # a command set (group 0000) is a few hundred bytes; more, in fragments, is an attack
MAX_CONTEXTS = 128  # presentation contexts in one association: odd ids 1..255 (PS3.8 9.3.2.2)

A_ASSOCIATE_RQ, A_ASSOCIATE_AC, A_ASSOCIATE_RJ = 0x01, 0x02, 0x03
P_DATA_TF, A_RELEASE_RQ, A_RELEASE_RP, A_ABORT = 0x04, 0x05, 0x06, 0x07

# PS3.8 E.2: message control header of a PDV
COMMAND, LAST = 0x01, 0x02

# PS3.7 E.1: Command Field (0000,0100); Command Data Set Type (0000,0800) when no dataset follows
C_STORE_RQ, C_STORE_RSP, C_GET_RQ, C_GET_RSP = 0x0001, 0x8001, 0x0010, 0x8010
C_MOVE_RQ, C_MOVE_RSP, C_ECHO_RQ, C_ECHO_RSP = 0x0021, 0x8021, 0x0030, 0x8030
NO_DATASET = 0x0101

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


def us(value: int) -> bytes:
    """A US value of a command set (Implicit VR Little Endian)."""
    return struct.pack("<H", value)


def read_us(cmd: dict[int, bytes], el: int, default: int) -> int:
    """The US element ``el`` of a parsed command set, ``default`` when it is absent."""
    value = cmd.get(el)
    return default if value is None else struct.unpack_from("<H", value)[0]


@dataclass(frozen=True)
class PresentationContext:
    """One proposed presentation context: an odd ``id`` (1..255), the SOP class, the transfer syntaxes offered."""

    id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


@dataclass(frozen=True)
class AssociateRequest:
    """What an A-ASSOCIATE-RQ asks: the AE title fields as sent (echoed in the answer), the contexts proposed."""

    called: bytes
    calling: bytes
    contexts: list[PresentationContext]


@dataclass
class Acceptance:
    """What an A-ASSOCIATE-AC says: per context id, the result and the transfer syntax chosen; the peer's limit."""

    results: dict[int, int] = field(default_factory=dict)
    syntaxes: dict[int, str] = field(default_factory=dict)
    max_pdu: int = 0  # 0: the peer set no limit (PS3.8 D.1.1)


def _association_pdu(kind: int, called: bytes, calling: bytes, items: list[bytes]) -> bytes:
    """An A-ASSOCIATE-RQ or -AC: protocol version, the two 16-byte AE title fields, the items (PS3.8 9.3.2-3)."""
    body = struct.pack(">HH", 1, 0) + called + calling + bytes(32) + b"".join(items)
    return struct.pack(">BBI", kind, 0, len(body)) + body


def _user_information(max_pdu: int, scp_roles: tuple[str, ...] | list[str] = ()) -> bytes:
    """Maximum length, implementation class UID and version, then an SCP/SCU role selection (we are the SCP, PS3.7
    D.3.3.4) per SOP class of ``scp_roles``."""
    user = (item(0x51, struct.pack(">I", max_pdu)) + item(0x52, IMPLEMENTATION_CLASS_UID)
            + item(0x55, IMPLEMENTATION_VERSION))
    for sop_class in scp_roles:
        u = sop_class.encode()
        user += item(0x54, struct.pack(">H", len(u)) + u + bytes([0, 1]))
    return item(0x50, user)


def associate_rq(called_ae: str, calling_ae: str, contexts: list[PresentationContext], max_pdu: int,
                 scp_roles: tuple[str, ...] | list[str] = ()) -> bytes:
    """A whole A-ASSOCIATE-RQ PDU; ``scp_roles``: the SOP classes we offer to take C-STOREs of (C-GET)."""
    items = [item(0x10, APPLICATION_CONTEXT)]
    for cx in contexts:
        sub = item(0x30, cx.abstract_syntax.encode()) + b"".join(item(0x40, ts.encode()) for ts in cx.transfer_syntaxes)
        items.append(item(0x20, struct.pack(">BBBB", cx.id, 0, 0, 0) + sub))
    items.append(_user_information(max_pdu, scp_roles))
    return _association_pdu(A_ASSOCIATE_RQ, pad_ae(called_ae), pad_ae(calling_ae), items)


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


def parse_associate_rq(body: bytes) -> AssociateRequest:
    """The variable part of an A-ASSOCIATE-RQ (``body`` is the PDU without its 6-byte header)."""
    if len(body) < 68:
        raise PDUError(f"A-ASSOCIATE-RQ of {len(body)} bytes (at least 68 expected)")
    contexts = []
    for kind, payload in _items(body, 68):
        if kind == 0x20:
            if len(payload) < 4:
                raise PDUError("presentation context item too short")
            abstract, syntaxes = "", []
            for sub, value in _items(payload, 4):
                if sub == 0x30:
                    abstract = uid(value)
                elif sub == 0x40:
                    syntaxes.append(uid(value))
            contexts.append(PresentationContext(payload[0], abstract, tuple(syntaxes)))
    return AssociateRequest(bytes(body[4:20]), bytes(body[20:36]), contexts)


def associate_ac(rq: AssociateRequest, answers: list[tuple[int, int, str]], max_pdu: int) -> bytes:
    """A whole A-ASSOCIATE-AC answering ``rq``: ``answers`` are (context id, result, transfer syntax) per context."""
    items = [item(0x10, APPLICATION_CONTEXT)]
    for ctx, result, ts in answers:
        items.append(item(0x21, struct.pack(">BBBB", ctx, 0, result, 0) + item(0x40, ts.encode())))
    items.append(_user_information(max_pdu))
    return _association_pdu(A_ASSOCIATE_AC, rq.called, rq.calling, items)


def associate_rj(result: int, source: int, reason: int) -> bytes:
    """A whole A-ASSOCIATE-RJ (PS3.8 9.3.4; the words are in :func:`rejection_reason`)."""
    return struct.pack(">BBIBBBB", A_ASSOCIATE_RJ, 0, 4, 0, result, source, reason)


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


def pdu_header(head: bytes, p_data_limit: int, other_limit: int = MAX_ASSOCIATION_PDU) -> tuple[int, int]:
    """A PDU's type and length from its 6-byte header; a length over the limit (``p_data_limit`` for a P-DATA-TF,
    ``other_limit`` for the others) is a PDUError, before a byte of the PDU is read."""
    kind, _, length = struct.unpack(">BBI", head)
    limit = p_data_limit if kind == P_DATA_TF else other_limit
    if length > limit:
        raise PDUError(f"a PDU of {length} bytes (type 0x{kind:02x}; at most {limit} allowed)")
    return kind, length


def pdv_header(head: bytes, remaining: int) -> tuple[int, int, int]:
    """(data length, context id, flags) from a PDV item's 6-byte header, with ``remaining`` bytes of its P-DATA-TF
    PDU left (this header included); an item running past the PDU is a PDUError."""
    item_len, ctx, flags = struct.unpack(">IBB", head)
    if not 2 <= item_len <= remaining - 4:
        raise PDUError(f"a PDV item claims {item_len} bytes in a P-DATA-TF PDU with {remaining} left")
    return item_len - 2, ctx, flags


def pdvs(body: bytes):
    """(context id, flags, data) of each PDV item of a whole P-DATA-TF PDU's body."""
    i, n = 0, len(body)
    while i < n:
        if i + 6 > n:
            raise PDUError("truncated PDV item")
        length, ctx, flags = pdv_header(body[i: i + 6], n - i)
        yield ctx, flags, body[i + 6: i + 6 + length]
        i += 6 + length


def p_data_header(ctx: int, flags: int, length: int) -> bytes:
    """The 12 bytes before ``length`` bytes of data sent as a P-DATA-TF PDU of one PDV item (PS3.8 9.3.5)."""
    return struct.pack(">BBIIBB", P_DATA_TF, 0, length + 6, length + 2, ctx, flags)


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


def c_store_rsp(rq: dict[int, bytes], status: int) -> bytes:
    """The C-STORE-RSP to the C-STORE-RQ command ``rq`` (PS3.7 9.3.1.2)."""
    return command([(0x0002, rq.get(0x0002, b"")), (0x0100, us(C_STORE_RSP)), (0x0120, rq.get(0x0110, b"\x00\x00")),
                    (0x0800, us(NO_DATASET)), (0x0900, us(status)), (0x1000, rq.get(0x1000, b""))])


def c_echo_rsp(rq: dict[int, bytes]) -> bytes:
    """The C-ECHO-RSP (success) to the C-ECHO-RQ command ``rq`` (PS3.7 9.3.5.2)."""
    return command([(0x0002, even(VERIFICATION.encode())), (0x0100, us(C_ECHO_RSP)),
                    (0x0120, rq.get(0x0110, b"\x00\x00")), (0x0800, us(NO_DATASET)), (0x0900, us(0))])
