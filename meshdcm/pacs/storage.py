"""Storage SCP: receive C-STORE pushes (from scanners, from a PACS answering our C-MOVE) and write them durably.

The network side is :mod:`meshdcm.pacs.upper` (a small hand-written DICOM upper-layer acceptor; see there
why), one thread per association so several senders are served at once. For each instance:

* the dataset fragments are streamed from the socket into ``<dir>/.incoming/<sop>.part`` behind a preamble
  and a File Meta Information group carrying the accepted transfer syntax (PS3.10) -- never decoded and
  re-encoded, so compressed transfer syntaxes (JPEG-LS, RLE, JPEG 2000, deflate...) stay byte-identical;
* the file is ``fdatasync``-ed and renamed to ``<dir>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``
  *before* success is answered, so a success status means the instance is on disk;
* only the Study/Series UIDs are scanned from the first bytes (:func:`scan_study_series`); the full header
  (up to Pixel Data) is parsed lazily when a callback asks for ``StoredInstance.header``.

Completeness: :meth:`StorageSCP.expect` registers how many instances of a study (or series) are expected
(from C-FIND counts or a retrieve's sub-operation counts); its :class:`Expectation` completes when they have
arrived. For data pushed without warning, a quiet timer (``quiet_seconds``) reports a study as settled once
nothing new arrived for it for that long (``on_quiet``).

:class:`InstanceWriter` does the same for C-STORE requests that arrive through pynetdicom (e.g. the
embedded PACS).
"""

from __future__ import annotations

import io
import itertools
import logging
import os
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset

from ..uids import path_part

__all__ = ["StorageSCP", "StoredInstance", "Expectation", "InstanceWriter", "DirectorySink", "make_durable", "write_durably", "encode_file_meta"]

LOGGER = logging.getLogger(__name__)

#: Status codes (PS3.4 Annex B.2.3)
_SUCCESS = 0x0000
_OUT_OF_RESOURCES = 0xA700
_CANNOT_UNDERSTAND = 0xC000
_SYNC_THREADS = 16
_PART_NAMES = itertools.count()  # temporary file names never come from the (untrusted) UIDs

_HEADER_TAGS = None  # parse everything up to Pixel Data, lazily


@dataclass
class StoredInstance:
    """One instance written by the storage SCP; ``header`` (all elements before Pixel Data) is read lazily."""

    path: Path
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax: str
    calling_ae: str
    _header: Dataset | None = field(default=None, repr=False, compare=False)

    @property
    def header(self) -> Dataset:
        if self._header is None:
            self._header = dcmread(self.path, stop_before_pixels=True)
        return self._header


_EXPLICIT_LONG = {b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"OD", b"OL", b"OV", b"UC", b"UR", b"SV", b"UV"}
_STUDY_TAG, _SERIES_TAG = 0x0020000D, 0x0020000E


def scan_study_series(data: bytes, transfer_syntax: str) -> tuple[str, str] | None:
    """Study and Series Instance UIDs from the first bytes of a dataset, without building a Dataset.

    Handles Implicit VR LE and Explicit VR LE (which covers every encapsulated syntax); returns None
    (callers then fall back to pydicom) for other encodings, undefined lengths before group 0020, or when
    ``data`` is too short. Hand-written because a full pydicom parse was ~60% of the SCP's CPU per instance.
    """
    if transfer_syntax == "1.2.840.10008.1.2":
        implicit = True
    elif transfer_syntax.startswith("1.2.840.10008.1.2.") and transfer_syntax not in (
            "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2"):
        implicit = False
    else:
        return None
    i, n, study = 0, len(data), None
    while i + 8 <= n:
        group, elem = struct.unpack_from("<HH", data, i)
        tag = group << 16 | elem
        if implicit:
            length = struct.unpack_from("<I", data, i + 4)[0]
            i += 8
        else:
            vr = data[i + 4: i + 6]
            if vr in _EXPLICIT_LONG:
                if i + 12 > n:
                    return None
                length = struct.unpack_from("<I", data, i + 8)[0]
                i += 12
            else:
                length = struct.unpack_from("<H", data, i + 6)[0]
                i += 8
        if length == 0xFFFFFFFF or i + length > n:
            return None
        if tag == _STUDY_TAG:
            study = data[i: i + length].rstrip(b"\x00 ").decode("ascii")
        elif tag == _SERIES_TAG:
            series = data[i: i + length].rstrip(b"\x00 ").decode("ascii")
            return (study, series) if study else None
        elif tag > _SERIES_TAG:
            return None
        i += length
    return None


class Expectation:
    """A count of instances we expect for a study (optionally one series); ``wait()`` until they arrived.

    ``done`` counts an instance as soon as it is on disk; ``wait()`` returns only once the storage SCP's
    callbacks for every counted instance have returned too, so a retrieve that waits has seen them all.
    """

    def __init__(self, study_uid: str, total: int, series_uid: str | None = None):
        self.study_uid, self.series_uid, self.total = study_uid, series_uid, int(total)
        self.uids: set[str] = set()
        self._reporting = 0  # instances counted whose callbacks are still running
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._check()

    @property
    def done(self) -> int:
        return len(self.uids)

    @property
    def complete(self) -> bool:
        return self._event.is_set()

    def set_total(self, total: int) -> None:
        """Correct the expected count (e.g. from the retrieve's final sub-operation counts)."""
        with self._lock:
            self.total = int(total)
            self._check()

    def _add(self, sop_uid: str, reporting: bool = False) -> None:
        with self._lock:
            self.uids.add(sop_uid)
            self._reporting += reporting
            self._check()

    def _reported(self) -> None:
        with self._lock:
            self._reporting -= 1
            self._check()

    def _check(self) -> None:
        if len(self.uids) >= self.total and not self._reporting:
            self._event.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)


def _flush(path, data_only: bool = True) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        (os.fdatasync if data_only else os.fsync)(fd)
    finally:
        os.close(fd)


def make_durable(path: Path) -> None:
    """The file's data and its name in its folder on disk (fdatasync the file, fsync the folder)."""
    _flush(path)
    _flush(path.parent, data_only=False)


class _Syncer:
    """Makes instances of our own retrieves durable off the association's thread, then reports them.

    The PACS keeps its copy until the retrieve is over, so the C-STORE response need not wait for the disk; what
    must wait is the announcement: an instance is reported (listeners, expectations, ``stored.*``) only once its
    data and its directory entry are on disk. Concurrent flushes share journal commits."""

    def __init__(self):
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def submit(self, sink: "_FileSink", inst: StoredInstance) -> None:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=_SYNC_THREADS, thread_name_prefix="durable")
            self._pool.submit(self._durable_then_report, sink, inst)

    @staticmethod
    def _durable_then_report(sink: "_FileSink", inst: StoredInstance) -> None:
        try:
            make_durable(inst.path)
        except OSError as exc:  # not reported: the retrieve counts it missing and fails loudly
            LOGGER.error("storage: instance %s of study %s could not be made durable: %s", inst.sop_instance_uid,
                         inst.study_uid, exc)
            sink.scp.failures += 1
            return
        sink.scp._stored(inst)

    def drain(self) -> None:
        """Wait until every submitted instance is durable and reported."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


def write_durably(path: Path, data: bytes | memoryview, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` via a temporary file, fdatasync, atomic rename and folder fsync (no partial files)."""
    tmp = path.with_name(f".{path.name}.{threading.get_ident()}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if fsync:
            os.fdatasync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if fsync:
        _flush(path.parent, data_only=False)  # the new name is on disk too


class InstanceWriter:
    """Writes C-STORE requests (from our SCP, or C-GET sub-operations) to ``<dir>/<study>/<series>/<sop>.dcm``."""

    def __init__(self, directory: str | Path, fsync: bool = True):
        self.directory = Path(directory)
        self.fsync = fsync
        self._made_dirs: set[Path] = set()

    def handle(self, event) -> tuple[int, StoredInstance | None]:
        try:
            raw = event.encoded_dataset(include_meta=True)
            header = dcmread(io.BytesIO(raw), stop_before_pixels=True)
            study_uid = path_part(header.StudyInstanceUID, "StudyInstanceUID")
            series_uid = path_part(header.SeriesInstanceUID, "SeriesInstanceUID")
            sop_uid = path_part(event.request.AffectedSOPInstanceUID, "SOPInstanceUID")
        except Exception as exc:  # a dataset we cannot even find (usable) UIDs in
            LOGGER.error("could not read the header of an instance from %s: %s",
                         event.assoc.requestor.ae_title, exc)
            return _CANNOT_UNDERSTAND, None
        folder = self.directory / study_uid / series_uid
        path = folder / f"{sop_uid}.dcm"
        try:
            if folder not in self._made_dirs:
                folder.mkdir(parents=True, exist_ok=True)
                self._made_dirs.add(folder)
            write_durably(path, raw, self.fsync)
        except OSError as exc:
            LOGGER.error("could not write instance %s of study %s: %s", sop_uid, study_uid, exc)
            return _OUT_OF_RESOURCES, None
        peer = event.assoc.requestor if event.assoc.is_acceptor else event.assoc.acceptor
        return _SUCCESS, StoredInstance(path, study_uid, series_uid, sop_uid, str(event.request.AffectedSOPClassUID),
                                        str(event.context.transfer_syntax), peer.ae_title, header)


def _el(group: int, elem: int, vr: bytes, value: bytes) -> bytes:
    if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT"):
        return struct.pack("<HH", group, elem) + vr + b"\x00\x00" + struct.pack("<I", len(value)) + value
    return struct.pack("<HH", group, elem) + vr + struct.pack("<H", len(value)) + value


def _pad(b: bytes, pad: bytes) -> bytes:
    return b + pad if len(b) % 2 else b


def encode_file_meta(sop_class: str, sop_uid: str, transfer_syntax: str, source_ae: str = "") -> bytes:
    """Preamble, ``DICM`` and the File Meta Information group (PS3.10 7.1), Explicit VR Little Endian."""
    from .upper import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION

    body = (_el(2, 1, b"OB", b"\x00\x01") + _el(2, 2, b"UI", _pad(sop_class.encode(), b"\x00"))
            + _el(2, 3, b"UI", _pad(sop_uid.encode(), b"\x00")) + _el(2, 0x10, b"UI", _pad(transfer_syntax.encode(), b"\x00"))
            + _el(2, 0x12, b"UI", _pad(IMPLEMENTATION_CLASS_UID, b"\x00"))
            + _el(2, 0x13, b"SH", _pad(IMPLEMENTATION_VERSION, b" ")))
    if source_ae:
        body += _el(2, 0x16, b"AE", _pad(source_ae.encode("ascii", "replace")[:16], b" "))
    return bytes(128) + b"DICM" + _el(2, 0, b"UL", struct.pack("<I", len(body))) + body


class DirectorySink:
    """Where incoming instances go outside a StorageSCP (e.g. C-GET sub-operations): same layout and writes."""

    def __init__(self, directory: str | Path, on_stored: Callable[[StoredInstance], None], fsync: bool = True,
                 own_retrieve: bool = False):
        self.directory = Path(directory)
        self._incoming = self.directory / ".incoming"
        self._incoming.mkdir(parents=True, exist_ok=True)
        self._made_dirs: set[Path] = set()
        self.fsync = fsync
        self.own_retrieve = own_retrieve  # every instance comes from our retrieve: durable before reported
        self.failures = 0
        self._on_stored = on_stored
        self.syncer = _Syncer()

    def begin(self, calling_ae: str, sop_class: str, sop_uid: str, ts: str, move_originator: str = "") -> _FileSink:
        return _FileSink(self, calling_ae, sop_class, sop_uid, ts)

    def _defer_sync(self, sink: _FileSink, study_uid: str) -> bool:
        return self.own_retrieve

    def _stored(self, inst: StoredInstance) -> None:
        self._on_stored(inst)


class _FileSink:
    """Streams one incoming C-STORE dataset into a temporary file, then fsync + rename into the layout."""

    def __init__(self, scp: StorageSCP | DirectorySink, calling_ae: str, sop_class: str, sop_uid: str, ts: str,
                 move_originator: str = ""):
        self.scp, self.calling_ae, self.sop_class, self.sop_uid, self.ts = scp, calling_ae, sop_class, sop_uid, ts
        self.move_originator = move_originator
        self.tmp = scp._incoming / f"{next(_PART_NAMES)}.{threading.get_ident()}.part"
        self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        self.head = b""
        self._write(memoryview(encode_file_meta(sop_class, sop_uid, ts, calling_ae)))

    def write(self, chunk) -> None:
        if len(self.head) < 16384:
            self.head += bytes(chunk[: 16384 - len(self.head)])
        self._write(chunk)

    def _write(self, chunk) -> None:
        view = memoryview(chunk)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]

    def abort(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass
        self.tmp.unlink(missing_ok=True)

    def finish(self) -> int:
        scp = self.scp
        try:
            os.close(self.fd)
            self.fd = -1
        except OSError as exc:
            LOGGER.error("storage SCP: could not write instance %s: %s", self.sop_uid, exc)
            self.abort()
            scp.failures += 1
            return _OUT_OF_RESOURCES
        header = None
        try:
            uids = scan_study_series(self.head, self.ts)
            if uids is None:
                header = dcmread(self.tmp, stop_before_pixels=True)
                uids = str(header.StudyInstanceUID), str(header.SeriesInstanceUID)
            study_uid = path_part(uids[0], "StudyInstanceUID")
            series_uid = path_part(uids[1], "SeriesInstanceUID")
            path_part(self.sop_uid, "SOPInstanceUID")
        except Exception as exc:
            LOGGER.error("storage SCP: instance %s from %s has no usable study/series/SOP UIDs: %s", self.sop_uid,
                         self.calling_ae, exc)
            self.tmp.unlink(missing_ok=True)
            scp.failures += 1
            return _CANNOT_UNDERSTAND
        folder = scp.directory / study_uid / series_uid
        path = folder / f"{self.sop_uid}.dcm"
        deferred = scp.fsync and scp._defer_sync(self, study_uid)
        try:
            if scp.fsync and not deferred:
                _flush(self.tmp)
            if folder not in scp._made_dirs:
                folder.mkdir(parents=True, exist_ok=True)
                scp._made_dirs.add(folder)
            try:
                os.replace(self.tmp, path)
            except FileNotFoundError:  # the folder was removed behind our back: make it again
                folder.mkdir(parents=True, exist_ok=True)
                os.replace(self.tmp, path)
            if scp.fsync and not deferred:
                _flush(folder, data_only=False)  # the name too, before success is answered
        except OSError as exc:
            LOGGER.error("storage SCP: could not move instance %s of study %s into place: %s", self.sop_uid,
                         study_uid, exc)
            self.tmp.unlink(missing_ok=True)
            scp.failures += 1
            return _OUT_OF_RESOURCES
        inst = StoredInstance(path, study_uid, series_uid, self.sop_uid, self.sop_class, self.ts, self.calling_ae,
                              header)
        if deferred:
            scp.syncer.submit(self, inst)
        else:
            scp._stored(inst)
        return _SUCCESS


class StorageSCP:
    """A C-STORE SCP writing every received instance under ``directory``.

    ``on_stored(instance: StoredInstance)`` is called after each instance is safely on disk (in the
    association's thread; keep it short). ``on_quiet(study_uid, counts)`` is called once a study that no
    :class:`Expectation` covers has received nothing new for ``quiet_seconds`` (``counts``: series UID ->
    number of instances received since the study was last reported).
    """

    def __init__(self, directory: str | Path, ae_title: str = "MESHDCM", host: str = "127.0.0.1", port: int = 0,
                 on_stored: Callable[[StoredInstance], None] | None = None,
                 on_quiet: Callable[[str, dict[str, int]], None] | None = None,
                 quiet_seconds: float = 10.0, fsync: bool = True, max_pdu: int = 4 << 20):
        self.directory = Path(directory)
        self.ae_title, self.host, self.port = ae_title, host, port
        self.on_stored, self.on_quiet, self.quiet_seconds = on_stored, on_quiet, quiet_seconds
        self.fsync = fsync
        self.max_pdu = max_pdu
        self._server = None
        self._incoming = self.directory / ".incoming"
        self._made_dirs: set[Path] = set()
        self.syncer = _Syncer()
        self._lock = threading.Lock()
        self._expect: dict[tuple[str, str | None], list[Expectation]] = {}
        self._recent: dict[str, tuple[float, dict[str, int]]] = {}
        self._listeners: list[Callable[[StoredInstance], None]] = []
        self._stop = threading.Event()
        self._quiet_thread: threading.Thread | None = None
        self.count = 0
        self.failures = 0

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> tuple[str, int]:
        """Start listening (non-blocking); returns the bound ``(host, port)``."""
        from .upper import UpperLayerServer

        self.directory.mkdir(parents=True, exist_ok=True)
        self._incoming.mkdir(exist_ok=True)
        self._server = UpperLayerServer(self.host, self.port, self._begin, max_pdu=self.max_pdu)
        self.port = self._server.server_address[1]
        self._stop.clear()
        if self.on_quiet is not None:
            self._quiet_thread = threading.Thread(target=self._quiet_loop, name="storage-scp-quiet", daemon=True)
            self._quiet_thread.start()
        LOGGER.info("storage SCP %s listening on %s:%d, writing to %s", self.ae_title, self.host, self.port,
                    self.directory)
        return self.host, self.port

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self.syncer.drain()
        if self._quiet_thread is not None:
            self._quiet_thread.join(timeout=5)
            self._quiet_thread = None

    def __enter__(self) -> StorageSCP:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- completeness ---------------------------------------------------------------------------------
    def expect(self, study_uid: str, total: int, series_uid: str | None = None) -> Expectation:
        """Register that ``total`` instances of a study (or one series) are on their way.

        Instances that already arrived (in this SCP's folder) count, so calling this after the retrieve
        started loses nothing.
        """
        exp = Expectation(study_uid, total, series_uid)
        folder = self.directory / study_uid
        if series_uid:
            folder = folder / series_uid
        with self._lock:
            if folder.is_dir():
                for p in folder.glob("*.dcm") if series_uid else folder.glob("*/*.dcm"):
                    exp._add(p.stem)
            self._expect.setdefault((study_uid, series_uid), []).append(exp)
        return exp

    def forget(self, exp: Expectation) -> None:
        with self._lock:
            lst = self._expect.get((exp.study_uid, exp.series_uid), [])
            if exp in lst:
                lst.remove(exp)

    def path_for(self, study_uid: str, series_uid: str, sop_uid: str) -> Path:
        return self.directory / study_uid / series_uid / f"{sop_uid}.dcm"

    # -- C-STORE --------------------------------------------------------------------------------------
    def add_listener(self, fn: Callable[[StoredInstance], None]) -> None:
        """Also call ``fn(instance)`` for every stored instance (e.g. a running retrieve)."""
        with self._lock:
            self._listeners.append(fn)

    def remove_listener(self, fn: Callable[[StoredInstance], None]) -> None:
        with self._lock:
            if fn in self._listeners:
                self._listeners.remove(fn)

    def _begin(self, calling_ae: str, sop_class: str, sop_uid: str, ts: str, move_originator: str = "") -> _FileSink:
        return _FileSink(self, calling_ae, sop_class, sop_uid, ts, move_originator)

    def _defer_sync(self, sink: _FileSink, study_uid: str) -> bool:
        """A sub-operation of our own C-MOVE (we are its originator and expect the study): made durable off the
        association's thread and reported once on disk. Anything else (a push) is on disk before success."""
        if sink.move_originator != self.ae_title:
            return False
        with self._lock:
            return any(key[0] == study_uid for key in self._expect)

    def _stored(self, inst: StoredInstance) -> None:
        waiting = self._note(inst)
        try:
            for fn in [self.on_stored, *self._listeners]:
                if fn is None:
                    continue
                try:
                    fn(inst)
                except Exception:
                    LOGGER.exception("storage SCP: callback failed for instance %s", inst.sop_instance_uid)
        finally:
            for exp in waiting:  # only now may a retrieve waiting for this instance go on
                exp._reported()

    def _note(self, inst: StoredInstance) -> list[Expectation]:
        with self._lock:
            self.count += 1
            waiting = [exp for key in ((inst.study_uid, None), (inst.study_uid, inst.series_uid))
                       for exp in self._expect.get(key, ())]
            for exp in waiting:
                exp._add(inst.sop_instance_uid, reporting=True)
            if not waiting and self.on_quiet is not None:
                _, counts = self._recent.get(inst.study_uid, (0.0, {}))
                counts[inst.series_uid] = counts.get(inst.series_uid, 0) + 1
                self._recent[inst.study_uid] = (time.monotonic(), counts)
        return waiting

    def _quiet_loop(self) -> None:
        tick = min(1.0, max(0.05, self.quiet_seconds / 4))
        while not self._stop.wait(tick):
            now = time.monotonic()
            with self._lock:
                settled = [(s, c) for s, (t, c) in self._recent.items() if now - t >= self.quiet_seconds]
                for s, _ in settled:
                    del self._recent[s]
            for study_uid, counts in settled:
                try:
                    self.on_quiet(study_uid, counts)
                except Exception:
                    LOGGER.exception("storage SCP: on_quiet callback failed for study %s", study_uid)
