"""A minimal, fast DICOM Upper Layer acceptor for the storage SCP (C-STORE and C-ECHO only).

Why hand-written: pynetdicom's acceptor polls its queues with 1 ms sleeps in two threads per association and
assembles every dataset in memory, which measured ~10 ms per instance (about 0.12x DCMTK storescp, see
docs/pacs.md). This module implements just what a Storage SCP needs from PS3.8 (A-ASSOCIATE-RQ/AC/RJ,
P-DATA-TF, A-RELEASE-RQ/RP, A-ABORT) and PS3.7 (C-STORE-RQ/RSP, C-ECHO-RQ/RSP command sets, Implicit VR
Little Endian), with one blocking thread per association, and streams each dataset fragment straight from
the socket into the instance's file (no reassembly, no decode). Everything else (Q/R, C-GET, the embedded
PACS, all SCU roles) stays on pynetdicom.

The acceptor accepts every storage SOP class (``1.2.840.10008.5.1.4.1.1.*`` and pynetdicom's list) and
Verification, choosing the first transfer syntax the peer proposed that pydicom knows, so compressed
syntaxes are accepted and kept exactly as sent.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
from collections.abc import Callable

from pydicom.uid import UID
from pynetdicom import ALL_TRANSFER_SYNTAXES
from pynetdicom.presentation import AllStoragePresentationContexts

__all__ = ["UpperLayerServer", "IncomingInstance"]

LOGGER = logging.getLogger(__name__)

APPLICATION_CONTEXT = b"1.2.840.10008.3.1.1.1"
VERIFICATION = "1.2.840.10008.1.1"
IMPLEMENTATION_CLASS_UID = b"1.2.826.0.1.3680043.10.1452.1"
IMPLEMENTATION_VERSION = b"MESHDCM_01"
_STORAGE = {str(cx.abstract_syntax) for cx in AllStoragePresentationContexts}
_SYNTAXES = [str(ts) for ts in ALL_TRANSFER_SYNTAXES]
_QUICKACK = getattr(socket, "TCP_QUICKACK", 0)
#: Longest association PDU (A-ASSOCIATE-RQ/AC/RJ, A-RELEASE, A-ABORT) we read. A request proposing all 128
#: presentation contexts with long UIDs is under 20 KiB; a peer claiming more is not a DICOM peer.
MAX_ASSOCIATION_PDU = 64 << 10
_P_DATA = 0x04


def _uid(b: bytes) -> str:
    return b.rstrip(b"\x00 ").decode("ascii", "replace")


def _item(kind: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(payload)) + payload


def _even(b: bytes) -> bytes:
    return b + b"\x00" if len(b) % 2 else b


def _command(elements: list[tuple[int, bytes]]) -> bytes:
    """Encode a command set (group 0000, Implicit VR LE) with its group length."""
    body = b"".join(struct.pack("<HHI", 0, el, len(v)) + v for el, v in elements)
    return struct.pack("<HHII", 0, 0, 4, len(body)) + body


def _parse_command(data: bytes) -> dict[int, bytes]:
    out, i, n = {}, 0, len(data)
    while i + 8 <= n:
        _, el, length = struct.unpack_from("<HHI", data, i)
        out[el] = data[i + 8: i + 8 + length]
        i += 8 + length
    return out


class IncomingInstance:
    """Sink for one C-STORE dataset, returned by the server's ``begin`` callback.

    ``write(chunk)`` is called for each fragment, then ``finish() -> status`` (status answered to the peer)
    or ``abort()`` if the association broke.
    """

    def write(self, chunk: memoryview) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def finish(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def abort(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError


# (calling_ae, sop_class, sop_instance, ts, move_originator): the last is the C-STORE's Move Originator AE title
BeginCallback = Callable[[str, str, str, str, str], IncomingInstance]


class _Closed(Exception):
    pass


class _Malformed(_Closed):
    """The peer sent a PDU we must not read (longer than negotiated, or items that overrun it): abort."""


class _Association(threading.Thread):
    def __init__(self, server: UpperLayerServer, sock: socket.socket, peer):
        super().__init__(name=f"storage-assoc-{peer[0]}:{peer[1]}", daemon=True)
        self.server, self.sock, self.peer = server, sock, peer
        self.max_pdu = server.max_pdu
        self.buf = bytearray(server.max_pdu + 6)
        self.view = memoryview(self.buf)
        self.contexts: dict[int, tuple[str, str]] = {}
        self.calling_ae = ""

    # -- socket helpers -------------------------------------------------------------------------------
    def _read_into(self, view: memoryview) -> None:
        got, n = 0, len(view)
        while got < n:
            r = self.sock.recv_into(view[got:], n - got)
            if r == 0:
                raise _Closed()
            got += r
            if _QUICKACK:  # ACK at once: a sender with Nagle on (DCMTK's default) would wait for our delayed ACK
                self.sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)

    def _pdu_header(self) -> tuple[int, int]:
        """The next PDU's type and length; a length beyond what we accept (``max_pdu`` for P-DATA, negotiated in
        our A-ASSOCIATE-AC; :data:`MAX_ASSOCIATION_PDU` for the others) is refused before anything is allocated."""
        kind, _, length = struct.unpack(">BBI", self._read(6))
        limit = self.max_pdu if kind == _P_DATA else MAX_ASSOCIATION_PDU
        if length > limit:
            raise _Malformed(f"a PDU of type {kind:#04x} claims {length} bytes, more than the {limit} we accept")
        return kind, length

    def _pdv_header(self, remaining: int) -> tuple[int, int, int]:
        """The next PDV item of a P-DATA-TF PDU with ``remaining`` bytes left: (data length, context, flags)."""
        item_len, ctx, flags = struct.unpack(">IBB", self._read(6))
        if not 2 <= item_len <= remaining - 4:
            raise _Malformed(f"a PDV item claims {item_len} bytes in a P-DATA-TF PDU with {remaining} left")
        return item_len - 2, ctx, flags

    def _read(self, n: int) -> memoryview:
        if n > len(self.buf):
            self.buf = bytearray(n)
            self.view = memoryview(self.buf)
        v = self.view[:n]
        self._read_into(v)
        return v

    def _send_pdata(self, ctx: int, command: bytes) -> None:
        pdv = struct.pack(">IBB", len(command) + 2, ctx, 0x03) + command
        self.sock.sendall(struct.pack(">BBI", 0x04, 0, len(pdv)) + pdv)

    # -- association ----------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock.settimeout(self.server.network_timeout)
            if self._negotiate():
                self._serve()
        except _Malformed as exc:
            LOGGER.warning("storage SCP: aborted the association from %s:%d (AE %r): %s", *self.peer[:2],
                           self.calling_ae, exc)
            try:  # A-ABORT: service provider, invalid PDU parameter value (PS3.8 9.3.8)
                self.sock.sendall(struct.pack(">BBIBBBB", 0x07, 0, 4, 0, 0, 2, 6))
            except OSError:
                pass
        except (_Closed, OSError) as exc:
            LOGGER.debug("association from %s ended: %s", self.peer, exc)
        except Exception:
            LOGGER.exception("storage SCP: association from %s failed; aborting", self.peer)
            try:
                self.sock.sendall(struct.pack(">BBIBBBB", 0x07, 0, 4, 0, 0, 2, 0))
            except OSError:
                pass
        finally:
            self.sock.close()
            self.server._done(self)

    def _negotiate(self) -> bool:
        kind, length = self._pdu_header()
        body = bytes(self._read(length))
        if kind != 0x01:
            raise _Closed()
        called, calling = body[4:20], body[20:36]
        self.calling_ae = calling.decode("ascii", "replace").strip()
        i, accepted = 68, []
        while i + 4 <= len(body):
            itype, _, ilen = struct.unpack_from(">BBH", body, i)
            payload = body[i + 4: i + 4 + ilen]
            if itype == 0x20:
                accepted.append(self._presentation_context(payload))
            i += 4 + ilen
        if not any(result == 0 for _, result, _ in accepted):
            # A-ASSOCIATE-RJ: rejected-permanent, service user, no reason given
            self.sock.sendall(struct.pack(">BBIBBBB", 0x03, 0, 4, 0, 1, 1, 1))
            return False
        items = [_item(0x10, APPLICATION_CONTEXT)]
        for ctx, result, ts in accepted:
            items.append(_item(0x21, struct.pack(">BBBB", ctx, 0, result, 0) + _item(0x40, ts.encode())))
        user = (_item(0x51, struct.pack(">I", self.server.max_pdu)) + _item(0x52, IMPLEMENTATION_CLASS_UID)
                + _item(0x55, IMPLEMENTATION_VERSION))
        items.append(_item(0x50, user))
        payload = struct.pack(">HH", 1, 0) + called + calling + bytes(32) + b"".join(items)
        self.sock.sendall(struct.pack(">BBI", 0x02, 0, len(payload)) + payload)
        return True

    def _presentation_context(self, p: bytes) -> tuple[int, int, str]:
        ctx = p[0]
        j, abstract, syntaxes = 4, "", []
        while j + 4 <= len(p):
            stype, _, slen = struct.unpack_from(">BBH", p, j)
            value = _uid(p[j + 4: j + 4 + slen])
            if stype == 0x30:
                abstract = value
            elif stype == 0x40:
                syntaxes.append(value)
            j += 4 + slen
        if not (abstract == VERIFICATION or abstract in _STORAGE or abstract.startswith("1.2.840.10008.5.1.4.1.1.")):
            return ctx, 3, syntaxes[0] if syntaxes else _SYNTAXES[0]  # abstract syntax not supported
        for ts in syntaxes:
            if ts in _SYNTAXES or UID(ts).is_transfer_syntax:
                self.contexts[ctx] = (abstract, ts)
                return ctx, 0, ts
        return ctx, 4, syntaxes[0] if syntaxes else _SYNTAXES[0]  # transfer syntaxes not supported

    def _serve(self) -> None:
        command = bytearray()
        sink: IncomingInstance | None = None
        cmd: dict[int, bytes] = {}
        ctx_of_msg = 0
        try:
            while True:
                kind, length = self._pdu_header()
                if kind == _P_DATA:  # P-DATA-TF: stream its PDVs
                    remaining = length
                    while remaining > 0:
                        data_len, ctx, flags = self._pdv_header(remaining)
                        data = self._read(data_len)
                        remaining -= 6 + data_len
                        if flags & 0x01:  # command fragment
                            command += data
                            if flags & 0x02:
                                cmd = _parse_command(bytes(command))
                                command.clear()
                                ctx_of_msg = ctx
                                sink = self._on_command(ctx, cmd)
                        else:  # dataset fragment
                            if sink is None:
                                raise _Closed()
                            sink.write(data)
                            if flags & 0x02:
                                status = sink.finish()
                                sink = None
                                self._respond_store(ctx_of_msg, cmd, status)
                elif kind == 0x05:  # A-RELEASE-RQ
                    self._read(length)
                    self.sock.sendall(struct.pack(">BBII", 0x06, 0, 4, 0))
                    return
                elif kind == 0x07:  # A-ABORT
                    return
                else:
                    self._read(length)
        finally:
            if sink is not None:
                sink.abort()

    def _on_command(self, ctx: int, cmd: dict[int, bytes]) -> IncomingInstance | None:
        field = struct.unpack("<H", cmd.get(0x0100, b"\x00\x00"))[0]
        msg_id = cmd.get(0x0110, b"\x00\x00")
        if field == 0x0030:  # C-ECHO-RQ
            rsp = _command([(0x0002, _even(VERIFICATION.encode())), (0x0100, struct.pack("<H", 0x8030)),
                            (0x0120, msg_id), (0x0800, struct.pack("<H", 0x0101)), (0x0900, struct.pack("<H", 0))])
            self._send_pdata(ctx, rsp)
            return None
        if field == 0x0001:  # C-STORE-RQ
            abstract, ts = self.contexts.get(ctx, ("", ""))
            sop_class = _uid(cmd.get(0x0002, b"")) or abstract
            sop_uid = _uid(cmd.get(0x1000, b""))
            return self.server.begin(self.calling_ae, sop_class, sop_uid, ts, _uid(cmd.get(0x1030, b"")))
        raise _Closed()  # unsupported DIMSE service: drop the association

    def _respond_store(self, ctx: int, cmd: dict[int, bytes], status: int) -> None:
        rsp = _command([(0x0002, cmd.get(0x0002, b"")), (0x0100, struct.pack("<H", 0x8001)),
                        (0x0120, cmd.get(0x0110, b"\x00\x00")), (0x0800, struct.pack("<H", 0x0101)),
                        (0x0900, struct.pack("<H", status)), (0x1000, cmd.get(0x1000, b""))])
        self._send_pdata(ctx, rsp)


class UpperLayerServer:
    """Accepts associations on ``(host, port)``; ``begin(calling_ae, sop_class, sop_uid, ts)`` gives the sink."""

    def __init__(self, host: str, port: int, begin: BeginCallback, max_pdu: int = 1 << 20,
                 network_timeout: float = 60.0, max_associations: int = 32):
        self.begin, self.max_pdu, self.network_timeout = begin, max_pdu, network_timeout
        self.max_associations = max_associations  # each holds a thread and a buffer of max_pdu: bounded
        self.refused = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._sock.listen(64)
        self.server_address = self._sock.getsockname()
        self._assocs: set[_Association] = set()
        self._lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._accept_loop, name="storage-scp-accept", daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._stopping:
            try:
                conn, peer = self._sock.accept()
            except OSError:
                return
            with self._lock:
                full = len(self._assocs) >= self.max_associations
            if full:
                self._refuse(conn, peer)
                continue
            a = _Association(self, conn, peer)
            with self._lock:
                self._assocs.add(a)
            a.start()

    def _refuse(self, conn: socket.socket, peer) -> None:
        """Beyond ``max_associations``: A-ASSOCIATE-RJ, rejected-transient, service provider (presentation), local
        limit exceeded (PS3.8 9.3.4), without reading the request; the peer may try again later."""
        self.refused += 1
        if self.refused in (1, 10, 100, 1000) or self.refused % 10000 == 0:
            LOGGER.warning("storage SCP: %d association(s) refused so far: %d are open, the limit (from %s:%s, the "
                           "latest)", self.refused, self.max_associations, *peer[:2])
        try:
            conn.settimeout(1.0)
            conn.sendall(struct.pack(">BBIBBBB", 0x03, 0, 4, 0, 2, 3, 2))
        except OSError:
            pass
        finally:
            conn.close()

    def _done(self, a: _Association) -> None:
        with self._lock:
            self._assocs.discard(a)

    def shutdown(self, timeout: float = 5.0) -> None:
        self._stopping = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        with self._lock:
            assocs = list(self._assocs)
        for a in assocs:
            try:
                a.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            a.join(timeout)
        self._thread.join(timeout)


# -- requestor side: C-GET with storage sub-operations on the same association --------------------------

STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
_RSP_COUNTS = {0x1020: "remaining", 0x1021: "completed", 0x1022: "failed", 0x1023: "warning"}


class AssociationRefused(Exception):
    """The peer could not be reached, rejected or aborted the association (message says which)."""

    def __init__(self, reason: str, connected: bool):
        super().__init__(reason)
        self.connected = connected


def _pad_ae(ae: str) -> bytes:
    return ae.encode("ascii")[:16].ljust(16, b" ")


class GetRequestor(_Association):
    """One C-GET (PS3.4 C.4.3) -- or C-MOVE with ``move_destination`` -- over our own association.

    C-GET storage sub-operations are streamed to sinks from ``begin``. Hand-written for the same reason as
    the acceptor: pynetdicom's requestor handles each sub-operation and each pending response through its
    polling reactor (~20 ms per instance measured against Orthanc).
    """

    def __init__(self, host: str, port: int, called_ae: str, calling_ae: str, storage_classes: list[str],
                 transfer_syntaxes: list[str], begin: BeginCallback | None, max_pdu: int = 1 << 20,
                 timeout: float = 30.0, move_destination: str | None = None):
        self.move_destination = move_destination
        self.model = STUDY_ROOT_MOVE if move_destination else STUDY_ROOT_GET
        self.host, self.port, self.called_ae, self.calling_ae_ = host, port, called_ae, calling_ae
        self.storage_classes, self.transfer_syntaxes = storage_classes, transfer_syntaxes
        self.begin, self.max_pdu, self.timeout = begin, max_pdu, timeout  # max_pdu: what we announce, and accept
        self.buf = bytearray(max_pdu + 6)
        self.view = memoryview(self.buf)
        self.contexts = {}
        self.peer = (host, port)
        self.calling_ae = called_ae  # the AE that sends us C-STORE sub-operations

    def _connect(self) -> None:
        try:
            self.sock = socket.create_connection((self.host, self.port), timeout=min(self.timeout, 10))
        except OSError as exc:
            raise AssociationRefused(f"no answer at {self.host}:{self.port} ({exc.strerror or exc}; is the PACS up?)",
                                     False) from exc
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(self.timeout)

    def _request_association(self) -> tuple[int, str]:
        items = [_item(0x10, APPLICATION_CONTEXT)]
        proposed: dict[int, str] = {}
        ctx = 1
        items.append(_item(0x20, struct.pack(">BBBB", ctx, 0, 0, 0) + _item(0x30, self.model.encode())
                           + _item(0x40, b"1.2.840.10008.1.2.1") + _item(0x40, b"1.2.840.10008.1.2")))
        proposed[ctx] = self.model
        for uid in self.storage_classes:
            for ts in self.transfer_syntaxes:
                ctx += 2
                if ctx > 255:
                    break
                items.append(_item(0x20, struct.pack(">BBBB", ctx, 0, 0, 0) + _item(0x30, uid.encode())
                                   + _item(0x40, ts.encode())))
                proposed[ctx] = uid
        user = (_item(0x51, struct.pack(">I", self.max_pdu)) + _item(0x52, IMPLEMENTATION_CLASS_UID)
                + _item(0x55, IMPLEMENTATION_VERSION))
        for uid in self.storage_classes:
            u = uid.encode()
            user += _item(0x54, struct.pack(">H", len(u)) + u + bytes([0, 1]))
        items.append(_item(0x50, user))
        payload = (struct.pack(">HH", 1, 0) + _pad_ae(self.called_ae) + _pad_ae(self.calling_ae_) + bytes(32)
                   + b"".join(items))
        self.sock.sendall(struct.pack(">BBI", 0x01, 0, len(payload)) + payload)
        try:
            kind, length = self._pdu_header()
            body = bytes(self._read(length))
        except (_Closed, OSError) as exc:
            raise AssociationRefused(f"association aborted or timed out during negotiation ({exc})", True) from exc
        if kind == 0x03:
            raise AssociationRefused(f"association rejected (result {body[1]}, source {body[2]}, reason {body[3]}; "
                                     "is our AE title known to the PACS?)", True)
        if kind != 0x02:
            raise AssociationRefused("association aborted by the PACS", True)
        i, get_ctx, get_ts = 68, 0, ""
        while i + 4 <= len(body):
            itype, _, ilen = struct.unpack_from(">BBH", body, i)
            p = body[i + 4: i + 4 + ilen]
            if itype == 0x21 and p[2] == 0:
                c = p[0]
                ts = _uid(p[8: 8 + struct.unpack_from(">H", p, 6)[0]])
                if proposed.get(c) == self.model:
                    get_ctx, get_ts = c, ts
                elif c in proposed:
                    self.contexts[c] = (proposed[c], ts)
            i += 4 + ilen
        if not get_ctx:
            what = "C-MOVE" if self.move_destination else "C-GET"
            raise AssociationRefused(f"the PACS does not accept {what} (Study Root) from us", True)
        return get_ctx, get_ts

    def get(self, identifier: bytes | Callable[[str], bytes], on_pending=None) -> dict[str, int]:
        """Run the C-GET; ``identifier(ts)`` encodes the query in the accepted syntax. Returns final counts + status."""
        self._connect()
        try:
            get_ctx, get_ts = self._request_association()
            ident = identifier(get_ts) if callable(identifier) else identifier
            elements = [(0x0002, _even(self.model.encode())),
                        (0x0100, struct.pack("<H", 0x0021 if self.move_destination else 0x0010)),
                        (0x0110, struct.pack("<H", 1))]
            if self.move_destination:
                elements.append((0x0600, _pad_ae(self.move_destination).rstrip(b" ").ljust(16, b" ")))
            elements += [(0x0700, struct.pack("<H", 0)), (0x0800, struct.pack("<H", 0x0001))]
            cmd = _command(elements)
            self._send_pdata(get_ctx, cmd)
            pdv = struct.pack(">IBB", len(ident) + 2, get_ctx, 0x02) + ident
            self.sock.sendall(struct.pack(">BBI", 0x04, 0, len(pdv)) + pdv)
            final = self._serve_get(on_pending)
            try:
                self.sock.sendall(struct.pack(">BBII", 0x05, 0, 4, 0))
                self._read(self._pdu_header()[1])
            except (OSError, _Closed):
                pass
            return final
        finally:
            self.sock.close()

    def _serve_get(self, on_pending) -> dict[str, int]:
        command = bytearray()
        sink = None
        cmd: dict[int, bytes] = {}
        ctx_of_msg = 0
        final = None
        skip_data = False
        try:
            while True:
                try:
                    kind, length = self._pdu_header()
                except (_Closed, OSError) as exc:  # named by the caller (PacsError says "C-MOVE" or "C-GET")
                    raise AssociationRefused(f"the association was aborted or timed out ({exc})", True) from exc
                if kind == 0x07:
                    raise AssociationRefused("the PACS aborted the association", True)
                if kind != _P_DATA:
                    self._read(length)
                    continue
                remaining = length
                while remaining > 0:
                    try:
                        data_len, ctx, flags = self._pdv_header(remaining)
                    except _Malformed as exc:
                        raise AssociationRefused(f"protocol error from the PACS: {exc}", True) from exc
                    data = self._read(data_len)
                    remaining -= 6 + data_len
                    if flags & 0x01:
                        command += data
                        if not flags & 0x02:
                            continue
                        cmd = _parse_command(bytes(command))
                        command.clear()
                        ctx_of_msg = ctx
                        field = struct.unpack("<H", cmd.get(0x0100, b"\x00\x00"))[0]
                        has_data = struct.unpack("<H", cmd.get(0x0800, b"\x01\x01"))[0] != 0x0101
                        if field == 0x0001 and self.begin is not None:
                            abstract, ts = self.contexts.get(ctx, ("", ""))
                            sink = self.begin(self.called_ae, _uid(cmd.get(0x0002, b"")) or abstract,
                                              _uid(cmd.get(0x1000, b"")), ts)
                        elif field in (0x8010, 0x8021):  # C-GET-RSP, C-MOVE-RSP
                            counts = {name: struct.unpack("<H", cmd[el])[0] for el, name in _RSP_COUNTS.items()
                                      if el in cmd}
                            counts["status"] = struct.unpack("<H", cmd.get(0x0900, b"\x00\x00"))[0]
                            skip_data = has_data
                            if counts["status"] in (0xFF00, 0xFF01):
                                if on_pending:
                                    on_pending(counts)
                            else:
                                final = counts
                                if not has_data:
                                    return final
                    else:
                        if skip_data:
                            if flags & 0x02:
                                skip_data = False
                                if final is not None:
                                    return final
                            continue
                        if sink is None:
                            raise AssociationRefused("protocol error: dataset without a C-STORE command", True)
                        sink.write(data)
                        if flags & 0x02:
                            status = sink.finish()
                            sink = None
                            self._respond_store(ctx_of_msg, cmd, status)
        finally:
            if sink is not None:
                sink.abort()
