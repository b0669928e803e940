"""The requestor side of our own associations: opening one (shared by the C-STORE SCU, :mod:`meshdcm.pacs.storescu`)
and C-GET/C-MOVE with storage sub-operations on the same association (:class:`GetRequestor`).

:func:`connect` and :func:`acceptance` are what both requestors do to open an association: a TCP connection
bounded in time, then the answer to our A-ASSOCIATE-RQ read as accepted or as an :class:`AssociationRefused`
saying why (rejected in words, aborted, another PDU, malformed).
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from . import pdu
from .association import Association, BeginCallback, Closed
from .part10 import EXPLICIT_LE, IMPLICIT_LE

__all__ = ["AssociationRefused", "GetRequestor", "connect", "acceptance", "STUDY_ROOT_GET", "STUDY_ROOT_MOVE"]

STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
_RSP_COUNTS = {0x1020: "remaining", 0x1021: "completed", 0x1022: "failed", 0x1023: "warning"}


class AssociationRefused(Exception):
    """The peer could not be reached, rejected or aborted the association (message says which)."""

    def __init__(self, reason: str, connected: bool):
        super().__init__(reason)
        self.connected = connected


def connect(host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection (at most 10 s to connect) with ``TCP_NODELAY``, every later call bounded by ``timeout``;
    :class:`AssociationRefused` (not connected) when there is none."""
    try:
        sock = socket.create_connection((host, port), timeout=min(timeout, 10.0))
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc)).lower()
        raise AssociationRefused(f"no connection to {host}:{port} ({why})", False) from None
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(timeout)
    except OSError:
        sock.close()
        raise
    return sock


def acceptance(kind: int, body: bytes) -> pdu.Acceptance:
    """What the answer (PDU type ``kind``, ``body``) to our A-ASSOCIATE-RQ accepted; :class:`AssociationRefused`
    (connected) for an A-ASSOCIATE-RJ, an A-ABORT, another PDU or a malformed A-ASSOCIATE-AC."""
    if kind == pdu.A_ASSOCIATE_RJ:
        raise AssociationRefused(f"the association was rejected: {pdu.rejection_reason(body)}", True)
    if kind == pdu.A_ABORT:
        raise AssociationRefused(f"the association request was answered with an {pdu.abort_reason(body)}", True)
    if kind != pdu.A_ASSOCIATE_AC:
        raise AssociationRefused(f"the association request was answered with PDU type 0x{kind:02x}", True)
    try:
        return pdu.parse_associate_ac(body)
    except pdu.PDUError as exc:
        raise AssociationRefused(f"the answer to the association request was malformed: {exc}", True) from None


class GetRequestor(Association):
    """One C-GET (PS3.4 C.4.3) -- or C-MOVE with ``move_destination`` -- over our own association.

    C-GET storage sub-operations are streamed to sinks from ``begin``. Hand-written for the same reason as
    the acceptor: pynetdicom's requestor handles each sub-operation and each pending response through its
    polling reactor (~20 ms per instance measured against Orthanc).
    """

    def __init__(self, host: str, port: int, called_ae: str, calling_ae: str, storage_classes: list[str],
                 transfer_syntaxes: list[str], begin: BeginCallback | None, max_pdu: int = 1 << 20,
                 timeout: float = 30.0, move_destination: str | None = None):
        super().__init__(None, max_pdu)  # max_pdu: what we announce, and accept
        self.move_destination = move_destination
        self.model = STUDY_ROOT_MOVE if move_destination else STUDY_ROOT_GET
        self.host, self.port, self.called_ae, self.calling_ae = host, port, called_ae, calling_ae
        self.storage_classes, self.transfer_syntaxes = storage_classes, transfer_syntaxes
        self.begin, self.timeout = begin, timeout
        self.contexts: dict[int, tuple[str, str]] = {}  # accepted storage context id -> (SOP class, syntax)

    def _request_association(self) -> tuple[int, str]:
        contexts = [pdu.PresentationContext(1, self.model, (EXPLICIT_LE, IMPLICIT_LE))]
        for uid in self.storage_classes:
            for ts in self.transfer_syntaxes:
                if len(contexts) >= pdu.MAX_CONTEXTS:
                    break
                contexts.append(pdu.PresentationContext(2 * len(contexts) + 1, uid, (ts,)))
        proposed = {cx.id: cx.abstract_syntax for cx in contexts}
        self.sock.sendall(pdu.associate_rq(self.called_ae, self.calling_ae, contexts, self.max_pdu,
                                           scp_roles=self.storage_classes))
        try:
            kind, length = self._pdu_header()
            body = bytes(self._read(length))
        except (Closed, OSError, pdu.PDUError) as exc:
            raise AssociationRefused(f"the association request got no answer: {exc}", True) from exc
        accepted = acceptance(kind, body)
        get_ctx, get_ts = 0, ""
        for c, result in accepted.results.items():
            if result != 0 or c not in proposed:
                continue
            if proposed[c] == self.model:
                get_ctx, get_ts = c, accepted.syntaxes.get(c, "")
            else:
                self.contexts[c] = (proposed[c], accepted.syntaxes.get(c, ""))
        if not get_ctx:
            what = "C-MOVE" if self.move_destination else "C-GET"
            raise AssociationRefused(f"the PACS does not accept {what} (Study Root) from us", True)
        return get_ctx, get_ts

    def get(self, identifier: bytes | Callable[[str], bytes], on_pending=None) -> dict[str, int]:
        """Run the C-GET; ``identifier(ts)`` encodes the query in the accepted syntax. Returns final counts + status."""
        self.sock = connect(self.host, self.port, self.timeout)
        try:
            get_ctx, get_ts = self._request_association()
            ident = identifier(get_ts) if callable(identifier) else identifier
            elements = [(0x0002, pdu.even(self.model.encode())),
                        (0x0100, pdu.us(pdu.C_MOVE_RQ if self.move_destination else pdu.C_GET_RQ)),
                        (0x0110, pdu.us(1))]
            if self.move_destination:
                elements.append((0x0600, pdu.pad_ae(self.move_destination)))
            elements += [(0x0700, pdu.us(0)), (0x0800, pdu.us(0x0001))]  # priority medium, a dataset follows
            self._send_pdata(get_ctx, pdu.command(elements))
            self.sock.sendall(pdu.p_data_header(get_ctx, pdu.LAST, len(ident)) + ident)
            final = self._serve_get(on_pending)
            try:
                self.sock.sendall(pdu.release_rq())
                self._read(self._pdu_header()[1])
            except (OSError, Closed, pdu.PDUError):
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
                except (Closed, OSError, pdu.PDUError) as exc:  # named by the caller (PacsError says "C-MOVE" or "C-GET")
                    raise AssociationRefused(f"the association was aborted or timed out ({exc})", True) from exc
                if kind == pdu.A_ABORT:
                    raise AssociationRefused("the PACS aborted the association", True)
                if kind != pdu.P_DATA_TF:
                    self._read(length)
                    continue
                remaining = length
                while remaining > 0:
                    try:
                        data_len, ctx, flags = self._pdv_header(remaining)
                    except pdu.PDUError as exc:
                        raise AssociationRefused(f"protocol error from the PACS: {exc}", True) from exc
                    try:
                        data = self._read(data_len)
                    except (Closed, OSError) as exc:  # lost inside a PDU: as lost between two
                        raise AssociationRefused(f"the association was aborted or timed out ({exc})", True) from exc
                    remaining -= 6 + data_len
                    if flags & pdu.COMMAND:
                        command += data
                        if len(command) > pdu.MAX_COMMAND_SET:
                            raise AssociationRefused(f"protocol error from the PACS: a command set of over "
                                                     f"{pdu.MAX_COMMAND_SET} bytes", True)
                        if not flags & pdu.LAST:
                            continue
                        try:
                            cmd = pdu.parse_command(command)
                        except pdu.PDUError as exc:
                            raise AssociationRefused(f"protocol error from the PACS: {exc}", True) from exc
                        command.clear()
                        ctx_of_msg = ctx
                        field = pdu.read_us(cmd, 0x0100, 0)
                        has_data = pdu.read_us(cmd, 0x0800, pdu.NO_DATASET) != pdu.NO_DATASET
                        if field == pdu.C_STORE_RQ and self.begin is not None:
                            abstract, ts = self.contexts.get(ctx, ("", ""))
                            sink = self.begin(self.called_ae, pdu.uid(cmd.get(0x0002, b"")) or abstract,
                                              pdu.uid(cmd.get(0x1000, b"")), ts)
                        elif field in (pdu.C_GET_RSP, pdu.C_MOVE_RSP):
                            counts = {name: pdu.read_us(cmd, el, 0) for el, name in _RSP_COUNTS.items() if el in cmd}
                            counts["status"] = pdu.read_us(cmd, 0x0900, 0)
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
                            if flags & pdu.LAST:
                                skip_data = False
                                if final is not None:
                                    return final
                            continue
                        if sink is None:
                            raise AssociationRefused("protocol error: dataset without a C-STORE command", True)
                        sink.write(data)
                        if flags & pdu.LAST:
                            status = sink.finish()
                            sink = None
                            self._respond_store(ctx_of_msg, cmd, status)
        finally:
            if sink is not None:
                sink.abort()
