"""Incoming instances: one C-STORE dataset streamed from the socket into a file, then moved into the layout.

Shared by the storage SCP (:mod:`meshdcm.pacs.storage`) and by our C-GET (sub-operations on our own association,
:class:`DirectorySink`). The dataset fragments go into ``<dir>/.incoming/<n>.<thread>.part`` behind a preamble and
a File Meta Information group carrying the accepted transfer syntax (PS3.10) -- never decoded and re-encoded --,
then the file is renamed to ``<dir>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``. Only the
Study/Series UIDs are scanned from the first bytes (:func:`scan_study_series`); the header is parsed lazily
(``StoredInstance.header``).

:class:`InstanceWriter` does the same for C-STORE requests that arrive through pynetdicom (the embedded PACS).
"""

from __future__ import annotations

import io
import itertools
import logging
import os
import struct
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom import dcmread
from pydicom.dataset import Dataset

from ..uids import path_part
from .durable import flush, make_durable, write_durably

if TYPE_CHECKING:
    from .storage import StorageSCP

__all__ = ["StoredInstance", "DirectorySink", "InstanceWriter", "scan_study_series", "encode_file_meta"]

LOGGER = logging.getLogger("meshdcm.pacs.storage")  # one logger for everything the storage layer says

#: Status codes (PS3.4 Annex B.2.3)
_SUCCESS = 0x0000
_OUT_OF_RESOURCES = 0xA700
_CANNOT_UNDERSTAND = 0xC000
_SYNC_THREADS = 16
_PART_NAMES = itertools.count()  # temporary file names never come from the (untrusted) UIDs


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
                flush(self.tmp)
            if folder not in scp._made_dirs:
                folder.mkdir(parents=True, exist_ok=True)
                scp._made_dirs.add(folder)
            try:
                os.replace(self.tmp, path)
            except FileNotFoundError:  # the folder was removed behind our back: make it again
                folder.mkdir(parents=True, exist_ok=True)
                os.replace(self.tmp, path)
            if scp.fsync and not deferred:
                flush(folder, data_only=False)  # the name too, before success is answered
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
