"""A minimal, fast DICOM Upper Layer acceptor for the storage SCP (C-STORE and C-ECHO only).

Why hand-written: pynetdicom's acceptor polls its queues with 1 ms sleeps in two threads per association and
assembles every dataset in memory, which measured ~10 ms per instance (about 0.12x DCMTK storescp, see
docs/pacs.md). This module implements just what a Storage SCP needs from PS3.8 (A-ASSOCIATE-RQ/AC/RJ,
P-DATA-TF, A-RELEASE-RQ/RP, A-ABORT) and PS3.7 (C-STORE-RQ/RSP, C-ECHO-RQ/RSP command sets, Implicit VR
Little Endian), with one blocking thread per association, and streams each dataset fragment straight from
the socket into the instance's file (no reassembly, no decode).

The PDUs and command sets are encoded and parsed in :mod:`meshdcm.pacs.pdu`, the socket is read as
:mod:`meshdcm.pacs.association` reads it (every length bounded before it is read; a PDU that lies is answered
with an A-ABORT). The requestors are our own too: C-GET/C-MOVE in :mod:`meshdcm.pacs.requestor`, C-STORE in
:mod:`meshdcm.pacs.storescu`; C-ECHO, C-FIND and the embedded PACS stay on pynetdicom.

The acceptor accepts every storage SOP class (``1.2.840.10008.5.1.4.1.1.*`` and pynetdicom's list) and
Verification, choosing the first transfer syntax the peer proposed that pydicom knows, so compressed
syntaxes are accepted and kept exactly as sent.
"""

from __future__ import annotations

import logging
import socket
import threading

from pydicom.uid import UID
from pynetdicom import ALL_TRANSFER_SYNTAXES
from pynetdicom.presentation import AllStoragePresentationContexts

from . import pdu
from .association import Association, BeginCallback, Closed, IncomingInstance
# importable from here as before the requestor moved out (meshdcm.pacs.requestor) and the encodings to pdu.py
from .pdu import (  # noqa: F401
    APPLICATION_CONTEXT, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION, MAX_ASSOCIATION_PDU, VERIFICATION,
)
from .requestor import STUDY_ROOT_GET, STUDY_ROOT_MOVE, AssociationRefused, GetRequestor  # noqa: F401

__all__ = ["UpperLayerServer", "IncomingInstance"]

LOGGER = logging.getLogger(__name__)

_STORAGE = {str(cx.abstract_syntax) for cx in AllStoragePresentationContexts}
_SYNTAXES = [str(ts) for ts in ALL_TRANSFER_SYNTAXES]


class _Accepted(Association, threading.Thread):
    """One association a peer opened with us, served by its own thread."""

    def __init__(self, server: UpperLayerServer, sock: socket.socket, peer):
        threading.Thread.__init__(self, name=f"storage-assoc-{peer[0]}:{peer[1]}", daemon=True)
        Association.__init__(self, sock, server.max_pdu)
        self.server, self.peer = server, peer
        self.contexts: dict[int, tuple[str, str]] = {}
        self.calling_ae = ""

    def run(self) -> None:
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock.settimeout(self.server.network_timeout)
            if self._negotiate():
                self._serve()
        except pdu.PDUError as exc:  # a length beyond what we accept, or items that overrun their PDU
            LOGGER.warning("storage SCP: aborted the association from %s:%d (AE %r): %s", *self.peer[:2],
                           self.calling_ae, exc)
            try:  # A-ABORT: service provider, invalid PDU parameter value (PS3.8 9.3.8)
                self.sock.sendall(pdu.abort_pdu(2, 6))
            except OSError:
                pass
        except (Closed, OSError) as exc:
            LOGGER.debug("association from %s ended: %s", self.peer, exc)
        except Exception:
            LOGGER.exception("storage SCP: association from %s failed; aborting", self.peer)
            try:
                self.sock.sendall(pdu.abort_pdu(2, 0))
            except OSError:
                pass
        finally:
            self.sock.close()
            self.server._done(self)

    def _negotiate(self) -> bool:
        kind, length = self._pdu_header()
        body = bytes(self._read(length))
        if kind != pdu.A_ASSOCIATE_RQ:
            raise Closed(f"PDU type 0x{kind:02x} where an A-ASSOCIATE-RQ was due")
        self.calling_ae = body[20:36].decode("ascii", "replace").strip()  # named in the log if what follows lies
        rq = pdu.parse_associate_rq(body)
        answers = [self._presentation_context(cx) for cx in rq.contexts]
        if not any(result == 0 for _, result, _ in answers):
            # A-ASSOCIATE-RJ: rejected-permanent, service user, no reason given
            self.sock.sendall(pdu.associate_rj(1, 1, 1))
            return False
        self.sock.sendall(pdu.associate_ac(rq, answers, self.max_pdu))
        return True

    def _presentation_context(self, cx: pdu.PresentationContext) -> tuple[int, int, str]:
        abstract, syntaxes = cx.abstract_syntax, cx.transfer_syntaxes
        if not (abstract == VERIFICATION or abstract in _STORAGE or abstract.startswith("1.2.840.10008.5.1.4.1.1.")):
            return cx.id, 3, syntaxes[0] if syntaxes else _SYNTAXES[0]  # abstract syntax not supported
        for ts in syntaxes:
            if ts in _SYNTAXES or UID(ts).is_transfer_syntax:
                self.contexts[cx.id] = (abstract, ts)
                return cx.id, 0, ts
        return cx.id, 4, syntaxes[0] if syntaxes else _SYNTAXES[0]  # transfer syntaxes not supported

    def _serve(self) -> None:
        command = bytearray()
        sink: IncomingInstance | None = None
        cmd: dict[int, bytes] = {}
        ctx_of_msg = 0
        try:
            while True:
                kind, length = self._pdu_header()
                if kind == pdu.P_DATA_TF:  # stream its PDVs
                    remaining = length
                    while remaining > 0:
                        data_len, ctx, flags = self._pdv_header(remaining)
                        data = self._read(data_len)
                        remaining -= 6 + data_len
                        if flags & pdu.COMMAND:
                            command += data
                            if len(command) > pdu.MAX_COMMAND_SET:
                                raise pdu.PDUError(f"a command set of over {pdu.MAX_COMMAND_SET} bytes")
                            if flags & pdu.LAST:
                                cmd = pdu.parse_command(command)
                                command.clear()
                                ctx_of_msg = ctx
                                sink = self._on_command(ctx, cmd)
                        else:  # dataset fragment
                            if sink is None:
                                raise Closed("a dataset without a C-STORE command")
                            sink.write(data)
                            if flags & pdu.LAST:
                                status = sink.finish()
                                sink = None
                                self._respond_store(ctx_of_msg, cmd, status)
                elif kind == pdu.A_RELEASE_RQ:
                    self._read(length)
                    self.sock.sendall(pdu.release_rp())
                    return
                elif kind == pdu.A_ABORT:
                    return
                else:
                    self._read(length)
        finally:
            if sink is not None:
                sink.abort()

    def _on_command(self, ctx: int, cmd: dict[int, bytes]) -> IncomingInstance | None:
        field = pdu.read_us(cmd, 0x0100, 0)
        if field == pdu.C_ECHO_RQ:
            self._send_pdata(ctx, pdu.c_echo_rsp(cmd))
            return None
        if field == pdu.C_STORE_RQ:
            abstract, ts = self.contexts.get(ctx, ("", ""))
            sop_class = pdu.uid(cmd.get(0x0002, b"")) or abstract
            sop_uid = pdu.uid(cmd.get(0x1000, b""))
            return self.server.begin(self.calling_ae, sop_class, sop_uid, ts, pdu.uid(cmd.get(0x1030, b"")))
        raise Closed(f"DIMSE command 0x{field:04x} is not served here")  # drop the association


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
        self._assocs: set[_Accepted] = set()
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
            a = _Accepted(self, conn, peer)
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
            conn.sendall(pdu.associate_rj(2, 3, 2))
        except OSError:
            pass
        finally:
            conn.close()

    def _done(self, a: _Accepted) -> None:
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
