"""C-STORE SCU on our own DICOM upper layer: files streamed from disk over one association (PS3.4 annex B).

Why hand-written: pynetdicom's requestor runs a reactor thread beside the caller and hands each response over
through a queue it polls with 1 ms sleeps; under load its reactor can take a C-STORE response off the queue that
``send_c_store`` is waiting for ("Received unexpected C-STORE service message"), and the send then stalls for the
whole DIMSE timeout and the association is aborted (docs/pacs.md, embedded PACS). Sent to a desktop viewer from
the viewer node, that stalled every association and each retry started the series again. Here one thread does
everything on one blocking socket: connect, negotiate, for each file a C-STORE-RQ whose dataset is the file's
bytes after its meta information, read the response, release. The PDUs are :mod:`meshdcm.pacs.pdu`'s; connecting
and reading the answer to the association request are :mod:`meshdcm.pacs.requestor`'s (as for C-GET/C-MOVE).

- **Presentation contexts** are proposed per (SOP class, transfer syntax) seen, one syntax each, so every file can
  go as it is stored; per SOP class one more context offers Explicit and Implicit VR Little Endian as a fallback.
  A file whose own syntax the peer refuses is converted into the fallback's syntax (pydicom: decompressed where
  a decoder is installed); one that cannot be is reported as refused, naming the syntax, never sent otherwise.
- **Bounded**: each P-DATA-TF we send respects the peer's maximum PDU length; every PDU we read is checked
  against what we announced (and 64 KiB for association PDUs and command sets) before a byte of it is stored.
- **Timeouts**: connect (at most 10 s), the association answer, every response and every send.
- **TCP_NODELAY**, ``TCP_QUICKACK`` re-armed before each read (DCMTK answers in two writes with Nagle on, then
  waits for our delayed ACK: ~40 ms an instance), and datasets go out as scatter/gather writes of up to ~256 KiB (``sendmsg``), no copies.
- **Outcomes** are reported per instance as they come (``on_outcome``), so a caller can record what was
  acknowledged before a failure cuts the association; the exceptions carry what was reached:

  StoreError
   ├── NotReached            TCP connect failed (refused, timed out, no route): the peer was never reached
   ├── AssociationRejected   reached; A-ASSOCIATE-RJ, or no answer to the association request
   └── AssociationAborted    reached and associated; A-ABORT, connection lost, or a response timed out
                             (``instance``: the SOP Instance UID in flight, if any)
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from . import pdu
from .part10 import EXPLICIT_LE, IMPLICIT_LE, InstanceFile, convert, uid_name
from .requestor import AssociationRefused, acceptance, connect

__all__ = ["StoreRequestor", "Outcome", "StoreReport", "StoreError", "NotReached", "AssociationRejected",
           "AssociationAborted", "status_meaning"]

LOGGER = logging.getLogger(__name__)

_FALLBACK = (EXPLICIT_LE, IMPLICIT_LE)
_COMMAND_LIMIT = pdu.MAX_COMMAND_SET
_BLOCK = 256 * 1024  # bytes of dataset per scatter/gather write
_IOV_LIMIT = 512
_READ_AHEAD = 1 << 16
_SUCCESS = 0x0000
_QUICKACK = getattr(socket, "TCP_QUICKACK", 0)
_WARNINGS = {0x0001, 0x0107, 0x0116, 0xB000, 0xB006, 0xB007}

_STATUS_TEXT = {
    0x0000: "Success", 0x0001: "Warning: Requested optional attributes are not supported",
    0x0107: "Warning: Attribute list error", 0x0116: "Warning: Attribute value out of range",
    0xB000: "Warning: Coercion of data elements", 0xB006: "Warning: Elements discarded",
    0xB007: "Warning: Data set does not match SOP class",
    0x0110: "Failure: Processing failure", 0x0111: "Failure: Duplicate SOP instance",
    0x0117: "Failure: Invalid SOP instance", 0x0122: "Refused: SOP class not supported",
    0x0124: "Refused: Not authorized", 0x0210: "Failure: Duplicate invocation",
    0x0211: "Failure: Unrecognized operation", 0x0212: "Failure: Mistyped argument",
    0x0213: "Failure: Resource limitation",
}


def status_meaning(code: int) -> str:
    """A C-STORE status in words (PS3.4 B.2.3, PS3.7 C)."""
    if code in _STATUS_TEXT:
        return _STATUS_TEXT[code]
    if 0xA700 <= code <= 0xA7FF:
        return "Refused: Out of resources"
    if 0xA900 <= code <= 0xA9FF:
        return "Error: Data set does not match SOP class"
    if 0xC000 <= code <= 0xCFFF:
        return "Error: Cannot understand"
    return "Failure (status not defined for C-STORE)"


@dataclass(frozen=True)
class Outcome:
    """What became of one instance: ``status`` is the C-STORE status (None: not sent, see ``reason``)."""

    sop_instance: str
    status: int | None
    reason: str = ""
    converted_to: str | None = None

    @property
    def stored(self) -> bool:
        return self.status is not None and (self.status == _SUCCESS or self.status in _WARNINGS)

    def __str__(self) -> str:
        if self.status is None:
            return f"instance {self.sop_instance} not sent: {self.reason}"
        text = f"instance {self.sop_instance}: status 0x{self.status:04X} ({status_meaning(self.status)})"
        return text + (f": {self.reason}" if self.reason else "")


@dataclass
class StoreReport:
    """Outcomes in the order they came; ``stored`` (SOP Instance UIDs) and ``refused`` derived from them."""

    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def stored(self) -> list[str]:
        return [o.sop_instance for o in self.outcomes if o.stored]

    @property
    def refused(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.stored]


class StoreError(Exception):
    """The association failed; ``report`` holds the outcomes received before, ``reached`` whether the peer was."""

    reached = True

    def __init__(self, reason: str, report: StoreReport, instance: str | None = None):
        super().__init__(reason)
        self.reason, self.report, self.instance = reason, report, instance


class NotReached(StoreError):
    reached = False


class AssociationRejected(StoreError):
    pass


class AssociationAborted(StoreError):
    pass


class _Lost(Exception):
    """The association broke under us; the message says how (becomes AssociationAborted)."""


@dataclass
class _Plan:
    contexts: list[pdu.PresentationContext]
    native: dict[tuple[str, str], int]  # (sop class, transfer syntax) -> context id
    fallback: dict[str, int]  # sop class -> context id offering Explicit/Implicit VR Little Endian


def plan_contexts(instances: Iterable[InstanceFile]) -> _Plan:
    """One context per (SOP class, transfer syntax) seen, one fallback context per SOP class."""
    native: dict[tuple[str, str], int] = {}
    fallback: dict[str, int] = {}
    contexts: list[pdu.PresentationContext] = []

    def add(abstract: str, syntaxes: tuple[str, ...]) -> int:
        if len(contexts) >= pdu.MAX_CONTEXTS:
            raise ValueError(f"more than {pdu.MAX_CONTEXTS} SOP class/transfer syntax combinations for one "
                             "association; send the files in smaller batches")
        cx = pdu.PresentationContext(2 * len(contexts) + 1, abstract, syntaxes)
        contexts.append(cx)
        return cx.id

    for inst in instances:
        key = (inst.sop_class, inst.transfer_syntax)
        if key not in native:
            native[key] = add(inst.sop_class, (inst.transfer_syntax,))
    for sop_class in dict.fromkeys(c for c, _ in native):
        fallback[sop_class] = add(sop_class, _FALLBACK)
    return _Plan(contexts, native, fallback)


OnOutcome = Callable[[Outcome], None]


class StoreRequestor:
    """Sends Part 10 files to one C-STORE SCP, one association per :meth:`send`.

    ``max_pdu`` is the largest PDU we accept (announced to the peer); ``timeout`` bounds connecting (at most 10 s),
    the association answer, each response and each write.
    """

    def __init__(self, host: str, port: int, called_ae: str, calling_ae: str = "MESHDCM", *,
                 max_pdu: int = 1 << 20, timeout: float = 30.0):
        if not 0 < len(called_ae) <= 16 or not 0 < len(calling_ae) <= 16:
            raise ValueError(f"AE titles must be 1-16 characters: {called_ae!r}, {calling_ae!r}")
        self.host, self.port, self.called_ae, self.calling_ae = host, int(port), called_ae, calling_ae
        self.max_pdu, self.timeout = int(max_pdu), float(timeout)
        self._sock: socket.socket | None = None
        self._peer_max = 0
        self._msg_id = 0
        self._buf = bytearray(_BLOCK)
        self._rbuf = bytearray()

    @property
    def where(self) -> str:
        return f"{self.called_ae} at {self.host}:{self.port}"

    # -- the whole exchange ---------------------------------------------------------------------------------------
    def send(self, instances: Sequence[InstanceFile], on_outcome: OnOutcome | None = None) -> StoreReport:
        """C-STORE each instance in turn over one association; ``on_outcome`` is called as each one's fate is known.

        Raises a :class:`StoreError` subclass if the association cannot be had or breaks; its ``report`` (and the
        ``on_outcome`` calls made before) say which instances the peer acknowledged."""
        report = StoreReport()
        if not instances:
            return report
        plan = plan_contexts(instances)

        def record(outcome: Outcome) -> None:
            report.outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(outcome)

        accepted = self._open(plan, report)
        current: str | None = None
        try:
            for inst in instances:
                current = inst.sop_instance
                record(self._store(inst, plan, accepted))
            current = None
            self._release()
        except _Lost as exc:
            self._abort()
            done = len(report.stored)
            where = f" while instance {current} was being sent" if current else ""
            raise AssociationAborted(f"{exc}{where}, after {done} of {len(instances)} instances were acknowledged",
                                     report, current) from None
        except BaseException:
            self._abort()
            raise
        return report

    # -- association ----------------------------------------------------------------------------------------------
    def _open(self, plan: _Plan, report: StoreReport) -> pdu.Acceptance:
        try:
            self._sock, self._rbuf = connect(self.host, self.port, self.timeout), bytearray()
        except AssociationRefused as exc:
            raise NotReached(str(exc), report) from None
        try:
            self._sock.sendall(pdu.associate_rq(self.called_ae, self.calling_ae, plan.contexts, self.max_pdu))
            try:
                kind, body = self._read_pdu(pdu.MAX_ASSOCIATION_PDU)
            except _Lost as exc:
                raise AssociationRefused(f"the association request got no answer: {exc}", True) from None
            accepted = acceptance(kind, body)
        except AssociationRefused as exc:
            self._abort()
            raise AssociationRejected(str(exc), report) from None
        except BaseException:
            self._abort()
            raise
        # PS3.8 D.1.1: 0 means no limit; we still send at most _BLOCK bytes per PDU
        self._peer_max = min(accepted.max_pdu or _BLOCK, _BLOCK)
        if self._peer_max < 16:
            self._abort()
            raise AssociationRejected(f"the peer's maximum PDU length {accepted.max_pdu} is too small", report)
        return accepted

    def _release(self) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            sock.sendall(pdu.release_rq())
            sock.settimeout(min(self.timeout, 5.0))
            for _ in range(4):  # a late P-DATA may come first; anything else ends it
                kind, _ = self._read_pdu(max(self.max_pdu, pdu.MAX_ASSOCIATION_PDU))
                if kind != pdu.P_DATA_TF:
                    break
        except (OSError, _Lost, pdu.PDUError) as exc:  # every outcome is known; a rude release loses nothing
            LOGGER.debug("release from %s: %s", self.where, exc)
        finally:
            self._close()

    def _abort(self) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            sock.settimeout(1.0)
            sock.sendall(pdu.abort_pdu())
        except OSError:
            pass
        self._close()

    def _close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    # -- reading ----------------------------------------------------------------------------------------------------
    def _recv_exact(self, n: int) -> bytes:
        """``n`` bytes from the peer. Reads take what is there (up to 64 KiB), so a response PDU, header and body,
        usually costs one ``recv``: each blocking call hands the GIL to the process's other threads."""
        while len(self._rbuf) < n:
            self._rbuf += self._recv_some(max(n - len(self._rbuf), _READ_AHEAD))
        out = bytes(self._rbuf[:n])
        del self._rbuf[:n]
        return out

    def _recv_some(self, most: int) -> bytes:
        sock = self._sock
        assert sock is not None
        try:
            if _QUICKACK:  # ACK at once: a peer with Nagle on (DCMTK's default) writes a response in two parts
                sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)  # and waits ~40 ms for our delayed ACK
            data = sock.recv(most)
        except TimeoutError:
            raise _Lost(f"nothing received for {self.timeout:g} s") from None
        except OSError as exc:
            raise _Lost(f"connection lost ({exc.strerror or exc})") from None
        if not data:
            raise _Lost("connection closed by the peer")
        return data

    def _read_pdu(self, limit: int) -> tuple[int, bytes]:
        try:
            kind, length = pdu.pdu_header(self._recv_exact(6), limit, limit)
        except pdu.PDUError as exc:
            raise _Lost(f"protocol error: {exc}") from None
        if not pdu.A_ASSOCIATE_RQ <= kind <= pdu.A_ABORT:
            raise _Lost(f"protocol error: unknown PDU type 0x{kind:02x}")
        return kind, self._recv_exact(length)

    def _read_response(self, msg_id: int) -> dict[int, bytes]:
        """The next complete command set; datasets (none belong to a C-STORE-RSP) are skipped."""
        command = bytearray()
        while True:
            kind, body = self._read_pdu(max(self.max_pdu, pdu.MAX_ASSOCIATION_PDU))
            if kind == pdu.A_ABORT:
                raise _Lost(f"association aborted by the peer ({pdu.abort_reason(body)})")
            if kind == pdu.A_RELEASE_RQ:
                raise _Lost("the peer asked to release the association before answering")
            if kind != pdu.P_DATA_TF:
                raise _Lost(f"protocol error: PDU type 0x{kind:02x} where a C-STORE response was due")
            try:
                for _ctx, flags, data in pdu.pdvs(body):
                    if not flags & pdu.COMMAND:
                        continue
                    command += data
                    if len(command) > _COMMAND_LIMIT:
                        raise _Lost(f"protocol error: a command set over {_COMMAND_LIMIT} bytes")
                    if flags & pdu.LAST:
                        cmd = pdu.parse_command(command)
                        field_, answered = pdu.read_us(cmd, 0x0100, 0), pdu.read_us(cmd, 0x0120, 0)
                        if field_ != pdu.C_STORE_RSP or answered != msg_id:
                            raise _Lost(f"protocol error: got command 0x{field_:04x} answering message {answered} "
                                        f"where the C-STORE response to message {msg_id} was due")
                        return cmd
            except pdu.PDUError as exc:
                raise _Lost(f"protocol error: {exc}") from None

    # -- C-STORE ------------------------------------------------------------------------------------------------
    def _store(self, inst: InstanceFile, plan: _Plan, accepted: pdu.Acceptance) -> Outcome:
        ctx = plan.native[(inst.sop_class, inst.transfer_syntax)]
        payload: bytes | None = None
        converted = None
        if accepted.results.get(ctx) != 0:
            fb = plan.fallback[inst.sop_class]
            if accepted.results.get(fb) != 0:
                why = pdu.CONTEXT_RESULTS.get(accepted.results.get(ctx, -1), "no answer for its context")
                return Outcome(inst.sop_instance, None,
                               f"the peer does not accept SOP class {uid_name(inst.sop_class)} "
                               f"in {uid_name(inst.transfer_syntax)} ({why}), nor uncompressed")
            ctx, converted = fb, accepted.syntaxes.get(fb, IMPLICIT_LE)
            try:
                payload = convert(inst, converted)
            except Exception as exc:  # noqa: BLE001 - any decoder failure is a refusal of this one instance
                return Outcome(inst.sop_instance, None,
                               f"the peer does not accept {uid_name(inst.transfer_syntax)} for SOP class "
                               f"{uid_name(inst.sop_class)}, and converting it to {uid_name(converted)} failed: {exc}")
        fh = None
        if payload is None:
            try:
                fh = open(inst.path, "rb")  # noqa: SIM115 - closed below
            except OSError as exc:
                return Outcome(inst.sop_instance, None, f"{inst.path} could not be read here: {exc.strerror or exc}")
        self._msg_id = self._msg_id % 0xFFFF + 1
        msg_id = self._msg_id
        cmd = pdu.command([
            (0x0002, pdu.even(inst.sop_class.encode())),
            (0x0100, pdu.us(pdu.C_STORE_RQ)),
            (0x0110, pdu.us(msg_id)),
            (0x0700, pdu.us(0x0000)),  # priority medium
            (0x0800, pdu.us(0x0000)),  # a dataset follows
            (0x1000, pdu.even(inst.sop_instance.encode())),
        ])
        frag = self._peer_max - 6  # PDU length = PDV item header (6) + fragment
        head: list = []
        for i in range(0, len(cmd), frag):  # the command, one PDU per fragment
            chunk = cmd[i: i + frag]
            flags = pdu.COMMAND | pdu.LAST if i + frag >= len(cmd) else pdu.COMMAND
            head += [pdu.p_data_header(ctx, flags, len(chunk)), chunk]
        if fh is None:
            self._send_blocks(ctx, head, [memoryview(payload)], len(payload), frag)
        else:
            with fh:
                fh.seek(inst.offset)
                self._send_blocks(ctx, head, _blocks(fh, self._buf, frag, inst.length, inst), inst.length, frag)
        rsp = self._read_response(msg_id)
        status = pdu.read_us(rsp, 0x0900, 0xFFFF)
        comment = pdu.uid(rsp.get(0x0902, b""))  # Error Comment: free text (LO), trimmed like a UID
        return Outcome(inst.sop_instance, status, comment, converted)

    def _send_blocks(self, ctx: int, head: list, blocks: Iterable[memoryview], total: int, frag: int) -> None:
        """``head`` (the command's PDUs) then the dataset as P-DATA-TF PDUs within the peer's limit, gathered into
        as few ``sendmsg`` calls as the iovec limit allows."""
        sent = 0
        iov = head
        for block in blocks:
            for i in range(0, len(block), frag):
                chunk = block[i: i + frag]
                sent += len(chunk)
                iov += [pdu.p_data_header(ctx, pdu.LAST if sent >= total else 0, len(chunk)), chunk]
                if len(iov) >= _IOV_LIMIT:
                    self._sendmsg_all(iov)
                    iov = []
            if iov:
                self._sendmsg_all(iov)
                iov = []
        if total == 0:  # an empty dataset still ends with a last fragment
            iov += [pdu.p_data_header(ctx, pdu.LAST, 0)]
        if iov:
            self._sendmsg_all(iov)

    def _sendmsg_all(self, buffers: list) -> None:
        sock = self._sock
        assert sock is not None
        views = [memoryview(b) for b in buffers]
        while views:
            try:
                n = sock.sendmsg(views)
            except TimeoutError:
                raise _Lost(f"the peer took no data for {self.timeout:g} s") from None
            except OSError as exc:
                raise _Lost(self._why_send_failed(exc)) from None
            while n and views:
                if n >= len(views[0]):
                    n -= len(views[0])
                    views.pop(0)
                else:
                    views[0] = views[0][n:]
                    n = 0

    def _why_send_failed(self, exc: OSError) -> str:
        """A write failed: if the peer said why (an A-ABORT waiting in our buffer), that is the reason."""
        sock = self._sock
        try:
            sock.setblocking(False)
            head = sock.recv(6, socket.MSG_PEEK)
            if len(head) == 6 and head[0] == pdu.A_ABORT:
                body = sock.recv(10)[6:]
                return f"association aborted by the peer ({pdu.abort_reason(body)})"
        except OSError:
            pass
        finally:
            try:
                sock.settimeout(self.timeout)
            except OSError:
                pass
        return f"connection lost ({exc.strerror or exc})"


def _blocks(fh, buf: bytearray, frag: int, total: int, inst: InstanceFile):
    """The file's dataset in blocks of whole fragments (one buffer, reused: each block is sent before the next)."""
    size = max(frag, len(buf) // frag * frag)
    if len(buf) < size:
        buf.extend(bytes(size - len(buf)))
    view = memoryview(buf)
    left = total
    while left > 0:
        n = fh.readinto(view[: min(size, left)])
        if not n:
            raise _Lost(f"{inst.path} ended {left} bytes early (changed while being sent?)")
        left -= n
        yield view[:n]
