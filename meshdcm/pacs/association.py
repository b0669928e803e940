"""One association's socket as the storage acceptor (:mod:`meshdcm.pacs.upper`) and the C-GET/C-MOVE requestor
(:mod:`meshdcm.pacs.requestor`) read it, and the sink a C-STORE's dataset is streamed into (both receive C-STOREs).

Blocking reads into one reused buffer of the maximum PDU size, each length the peer sends bounded before anything
is allocated or read: a P-DATA-TF PDU by the maximum PDU length we announced, any other PDU by
:data:`~meshdcm.pacs.pdu.MAX_ASSOCIATION_PDU`, a PDV item by the PDU it is in (a :class:`~meshdcm.pacs.pdu.PDUError`
otherwise). ``TCP_QUICKACK`` is re-armed after every read: a sender with Nagle on (DCMTK's default, so Orthanc's)
would otherwise wait for our delayed ACK before each instance.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from . import pdu

__all__ = ["Association", "Closed", "IncomingInstance", "BeginCallback"]

_QUICKACK = getattr(socket, "TCP_QUICKACK", 0)


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


class Closed(Exception):
    """The association ended under us (the peer closed the connection, or sent what ends it)."""


class Association:
    """The reading and writing both ends of our own associations do on ``sock``; ``max_pdu`` is what we announced."""

    def __init__(self, sock: socket.socket | None, max_pdu: int):
        self.sock = sock
        self.max_pdu = max_pdu
        self.buf = bytearray(max_pdu + 6)
        self.view = memoryview(self.buf)

    def _read_into(self, view: memoryview) -> None:
        got, n = 0, len(view)
        while got < n:
            r = self.sock.recv_into(view[got:], n - got)
            if r == 0:
                raise Closed("connection closed by the peer")
            got += r
            if _QUICKACK:  # ACK at once: a sender with Nagle on (DCMTK's default) would wait for our delayed ACK
                self.sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)

    def _read(self, n: int) -> memoryview:
        """The next ``n`` bytes, in the buffer (valid until the next read); ``n`` is bounded by the callers."""
        if n > len(self.buf):
            self.buf = bytearray(n)
            self.view = memoryview(self.buf)
        v = self.view[:n]
        self._read_into(v)
        return v

    def _pdu_header(self) -> tuple[int, int]:
        """The next PDU's type and length; a length beyond what we accept (``max_pdu`` for P-DATA, negotiated in
        our A-ASSOCIATE-RQ/AC; :data:`~meshdcm.pacs.pdu.MAX_ASSOCIATION_PDU` for the others) is refused before
        anything is allocated."""
        return pdu.pdu_header(self._read(6), self.max_pdu)

    def _pdv_header(self, remaining: int) -> tuple[int, int, int]:
        """The next PDV item of a P-DATA-TF PDU with ``remaining`` bytes left: (data length, context, flags)."""
        return pdu.pdv_header(self._read(6), remaining)

    def _send_pdata(self, ctx: int, command: bytes) -> None:
        """A whole command set as one P-DATA-TF PDU."""
        self.sock.sendall(pdu.p_data_header(ctx, pdu.COMMAND | pdu.LAST, len(command)) + command)

    def _respond_store(self, ctx: int, cmd: dict[int, bytes], status: int) -> None:
        self._send_pdata(ctx, pdu.c_store_rsp(cmd, status))
