"""Incoming instances: one C-STORE dataset streamed from the socket into a file, then moved into the layout.

Shared by the storage SCP (:mod:`meshdcm.pacs.storage`) and by our C-GET (sub-operations on our own association,
:class:`DirectorySink`), both an :class:`IncomingFolder`. The dataset fragments go into
``<dir>/.incoming/<n>.<thread>.part`` behind a preamble and a File Meta Information group carrying the accepted
transfer syntax (PS3.10) -- never decoded and re-encoded --, then the file is moved to
``<dir>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``. Only the Study/Series UIDs are scanned from
the first bytes (:func:`scan_study_series`); the header is decoded lazily (``StoredInstance.header``).

What cannot be stored is answered at once and reported as a :class:`~meshdcm.pacs.instances.StoreFailure`:

* a write that fails (disk full...): the rest of the dataset is read and dropped, the partial file removed, the
  instance answered ``0xA700``; one log line per run of such failures (not one per instance), one more when
  writing works again;
* no usable UIDs: ``0xC000``;
* an instance already stored: the first copy is kept (unless ``overwrite``), the sender answered success;
* an instance answered success whose header a reader cannot decode: moved to ``<dir>/.undecodable/``.

:class:`InstanceWriter` writes C-STORE requests that arrive through pynetdicom (the embedded PACS).
"""

from __future__ import annotations

import errno
import io
import itertools
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydicom import dcmread

from ..uids import path_part
from .dicomfile import encode_file_meta, same_dataset, scan_study_series
from .durable import flush, make_durable, write_durably
from .instances import (
    CANNOT_UNDERSTAND, OUT_OF_RESOURCES, SUCCESS, StoredInstance, StoreFailure, UndecodableInstance,
)

__all__ = ["IncomingFolder", "DirectorySink", "InstanceWriter", "UNDECODABLE_FOLDER"]

LOGGER = logging.getLogger("meshdcm.pacs.storage")  # one logger for everything the storage layer says

_SYNC_THREADS = 16
_PART_NAMES = itertools.count()  # temporary file names never come from the (untrusted) UIDs
_HEAD = 16384  # first dataset bytes kept to scan the UIDs from
#: where instances that were answered success but cannot be decoded are moved (out of the layout)
UNDECODABLE_FOLDER = ".undecodable"
_WRITE_CAUSES = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded"}


def _write_failure_reason(exc: OSError, where: Path) -> str:
    cause = _WRITE_CAUSES.get(exc.errno)
    return f"{cause} at {where}" if cause else f"cannot write at {where} ({exc.strerror or exc})"


class IncomingFolder:
    """The folder incoming instances are written into: what the storage SCP and a C-GET's sink share.

    ``overwrite`` (default False): an instance already stored is kept, a second copy dropped (and answered success);
    ``on_failed(failure)`` is told of each instance refused for its content or set aside as undecodable, and of the
    first failed write of a run (disk full), not of every instance that run refuses. ``last_failure`` is the last
    :class:`StoreFailure` of any kind, ``refused`` counts instances answered with a failure status and ``failures``
    those answered success and then lost or set aside (a retrieve counts them missing).
    """

    def __init__(self, directory: str | Path, fsync: bool = True, overwrite: bool = False,
                 on_failed: Callable[[StoreFailure], None] | None = None):
        self.directory = Path(directory)
        self._incoming = self.directory / ".incoming"
        self._made_dirs: set[Path] = set()
        self.fsync, self.overwrite, self.on_failed = fsync, overwrite, on_failed
        self.syncer = _Syncer()
        self.failures = 0
        self.refused = 0
        self.last_failure: StoreFailure | None = None
        self._failing: StoreFailure | None = None  # the run of write failures now going on (logged once)
        self._failing_count = 0
        self._failure_lock = threading.Lock()

    def begin(self, calling_ae: str, sop_class: str, sop_uid: str, ts: str, move_originator: str = "") -> _FileSink:
        return _FileSink(self, calling_ae, sop_class, sop_uid, ts, move_originator)

    def _defer_sync(self, sink: _FileSink, study_uid: str) -> bool:
        """Whether the instance is answered before it is durable (our own retrieve's) and reported once it is."""
        return False

    def _stored(self, inst: StoredInstance) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def _report(self, inst: StoredInstance, callback: Callable[[StoredInstance], None]) -> bool:
        """Call ``callback(inst)``; False if it found the instance undecodable (then set aside and told)."""
        try:
            callback(inst)
        except UndecodableInstance as exc:
            self._set_aside(inst, exc)
            return False
        return True

    # -- failures -------------------------------------------------------------------------------------
    def _failed(self, failure: StoreFailure) -> int:
        """Count, log and tell a failure; returns the status the sender gets."""
        with self._failure_lock:
            self.last_failure = failure
            if failure.status == SUCCESS:
                self.failures += 1
            else:
                self.refused += 1
            disk = failure.kind in ("write", "lost")  # the disk: one run of failures is said once
            repeated = disk and self._failing is not None and self._failing.reason == failure.reason
            if disk:
                self._failing = failure
                self._failing_count += 1
        if repeated:
            LOGGER.debug("storage: instance %s from %s not stored either: %s", failure.sop_instance_uid,
                         failure.calling_ae, failure.reason)
            return failure.status
        if failure.kind == "write":
            LOGGER.error("storage: %s: instance %s from %s answered %#06x (out of resources), and so will every "
                         "instance until it can write again", failure.reason, failure.sop_instance_uid,
                         failure.calling_ae, failure.status)
        elif failure.kind == "lost":
            LOGGER.error("storage: %s: instance %s from %s, answered success, could not be made durable (nor will others "
                         "until it can write again); the retrieve counts them missing", failure.reason,
                         failure.sop_instance_uid, failure.calling_ae)
        else:
            LOGGER.error("storage: %s; %s", failure.reason, failure.action)
        if self.on_failed is not None:
            try:
                self.on_failed(failure)
            except Exception:
                LOGGER.exception("storage: on_failed callback failed for instance %s", failure.sop_instance_uid)
        return failure.status

    def _write_failed(self, sink: _FileSink, exc: OSError, where: Path, answered: int = OUT_OF_RESOURCES) -> int:
        kind = "write" if answered != SUCCESS else "lost"
        return self._failed(StoreFailure(kind, sink.sop_uid, sink.calling_ae, answered,
                                         _write_failure_reason(exc, where)))

    def _writing_again(self) -> None:
        with self._failure_lock:
            failing, count = self._failing, self._failing_count
            self._failing, self._failing_count = None, 0
        if failing is not None:
            LOGGER.warning("storage: writing under %s again; %d instances were not stored meanwhile (%s)",
                           self.directory, count, failing.reason)

    def _set_aside(self, inst: StoredInstance, exc: UndecodableInstance) -> None:
        """An instance answered success whose header cannot be decoded: moved out of the layout, so that it is never
        announced and a readable copy sent again is stored; then counted, logged and told."""
        aside = self.directory / UNDECODABLE_FOLDER
        kept = aside / inst.path.name
        try:
            aside.mkdir(exist_ok=True)
            os.replace(inst.path, kept)
        except OSError as err:
            LOGGER.error("storage: could not move undecodable instance %s out of the way: %s", inst.path, err)
            kept = inst.path
        self._failed(StoreFailure(
            "undecodable", inst.sop_instance_uid, inst.calling_ae, SUCCESS,
            f"instance {inst.sop_instance_uid} of study {inst.study_uid} (series {inst.series_uid}) from "
            f"{inst.calling_ae} cannot be decoded ({type(exc.cause).__name__}: {exc.cause}); it is not announced",
            inst.study_uid, kept))


class _Syncer:
    """Makes instances of our own retrieves durable off the association's thread, then reports them.

    The PACS keeps its copy until the retrieve is over, so the C-STORE response need not wait for the disk; what
    must wait is the announcement: an instance is reported (listeners, expectations, ``stored.*``) only once its
    data and its directory entry are on disk. Concurrent flushes share journal commits."""

    def __init__(self):
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def submit(self, sink: _FileSink, inst: StoredInstance) -> None:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=_SYNC_THREADS, thread_name_prefix="durable")
            self._pool.submit(self._durable_then_report, sink, inst)

    @staticmethod
    def _durable_then_report(sink: _FileSink, inst: StoredInstance) -> None:
        try:
            make_durable(inst.path)
        except OSError as exc:  # not reported: the retrieve counts it missing and fails loudly
            sink.folder._write_failed(sink, exc, inst.path.parent, answered=SUCCESS)
            return
        try:
            sink.folder._stored(inst)
        except Exception:  # a pool thread: nobody else would see it
            LOGGER.exception("storage: reporting instance %s failed", inst.sop_instance_uid)

    def drain(self) -> None:
        """Wait until every submitted instance is durable and reported."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


class DirectorySink(IncomingFolder):
    """Where incoming instances go outside a StorageSCP (e.g. C-GET sub-operations): same layout and writes."""

    def __init__(self, directory: str | Path, on_stored: Callable[[StoredInstance], None], fsync: bool = True,
                 own_retrieve: bool = False, overwrite: bool = False):
        super().__init__(directory, fsync, overwrite)
        self._incoming.mkdir(parents=True, exist_ok=True)
        self.own_retrieve = own_retrieve  # every instance comes from our retrieve: durable before reported
        self._on_stored = on_stored

    def _defer_sync(self, sink: _FileSink, study_uid: str) -> bool:
        return self.own_retrieve

    def _stored(self, inst: StoredInstance) -> None:
        self._report(inst, self._on_stored)


class _FileSink:
    """Streams one incoming C-STORE dataset into a temporary file, then fsync + rename into the layout."""

    def __init__(self, folder: IncomingFolder, calling_ae: str, sop_class: str, sop_uid: str, ts: str,
                 move_originator: str = ""):
        self.folder, self.calling_ae, self.sop_class, self.sop_uid, self.ts = folder, calling_ae, sop_class, sop_uid, ts
        self.move_originator = move_originator
        self.tmp = folder._incoming / f"{next(_PART_NAMES)}.{threading.get_ident()}.part"
        self.head = b""
        self.fd = -1
        self.error: OSError | None = None  # set: the rest of the dataset is read off the socket and dropped
        try:
            self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
            self._write(memoryview(encode_file_meta(sop_class, sop_uid, ts, calling_ae)))
        except OSError as exc:
            self._fail(exc)

    def write(self, chunk) -> None:
        if self.error is not None:
            return
        if len(self.head) < _HEAD:
            self.head += bytes(chunk[: _HEAD - len(self.head)])
        try:
            self._write(chunk)
        except OSError as exc:
            self._fail(exc)

    def _write(self, chunk) -> None:
        view = memoryview(chunk)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]

    def _fail(self, exc: OSError) -> None:
        self.error = exc
        self.abort()  # the space goes back at once, not when the dataset ends

    def abort(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            self.tmp.unlink(missing_ok=True)
        except OSError as exc:
            LOGGER.error("storage: could not remove the partial file %s: %s", self.tmp, exc)

    def finish(self) -> int:
        folder = self.folder
        if self.error is None:
            fd, self.fd = self.fd, -1
            try:
                os.close(fd)
            except OSError as exc:  # delayed allocation: a full disk can show here first
                self._fail(exc)
        if self.error is not None:
            return folder._write_failed(self, self.error, self.tmp.parent)
        try:
            uids = scan_study_series(self.head, self.ts)
            if uids is None:
                header = dcmread(self.tmp, stop_before_pixels=True)
                uids = str(header.StudyInstanceUID), str(header.SeriesInstanceUID)
            study_uid = path_part(uids[0], "StudyInstanceUID")
            series_uid = path_part(uids[1], "SeriesInstanceUID")
            path_part(self.sop_uid, "SOPInstanceUID")
        except Exception as exc:
            self.abort()
            return folder._failed(StoreFailure(
                "refused", self.sop_uid, self.calling_ae, CANNOT_UNDERSTAND,
                f"instance {self.sop_uid} from {self.calling_ae} has no usable study/series/SOP UIDs ({exc})"))
        layout = folder.directory / study_uid / series_uid
        path = layout / f"{self.sop_uid}.dcm"
        deferred = folder.fsync and folder._defer_sync(self, study_uid)
        try:
            if folder.fsync and not deferred:
                flush(self.tmp)
            if layout not in folder._made_dirs:
                layout.mkdir(parents=True, exist_ok=True)
                folder._made_dirs.add(layout)
            try:
                placed = self._place(path)
            except FileNotFoundError:  # the folder was removed behind our back: make it again
                layout.mkdir(parents=True, exist_ok=True)
                placed = self._place(path)
            if placed and folder.fsync and not deferred:
                flush(layout, data_only=False)  # the name too, before success is answered
        except OSError as exc:
            self.abort()
            return folder._write_failed(self, exc, layout)
        if folder._failing is not None:
            folder._writing_again()
        inst = StoredInstance(path, study_uid, series_uid, self.sop_uid, self.sop_class, self.ts, self.calling_ae)
        if deferred:
            folder.syncer.submit(self, inst)
        else:
            folder._stored(inst)
        return SUCCESS

    def _place(self, path: Path) -> bool:
        """Move the file to ``path``; False if an instance is there already and is kept (``overwrite`` off)."""
        if self.folder.overwrite:
            os.replace(self.tmp, path)
            return True
        try:
            os.link(self.tmp, path)  # create-if-absent in one step: of two copies arriving at once, one wins
        except FileExistsError:
            self._kept_first(path)
            self.tmp.unlink()
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            if path.exists():  # no hard links on this file system: look, then rename
                self._kept_first(path)
                self.tmp.unlink()
                return False
            os.replace(self.tmp, path)
            return True
        self.tmp.unlink()
        return True

    def _kept_first(self, path: Path) -> None:
        if same_dataset(path, self.tmp):  # the same instance sent again (a retrieve repeated): nothing to say
            LOGGER.debug("storage: instance %s from %s is already stored", self.sop_uid, self.calling_ae)
            return
        LOGGER.warning("storage: %s sent instance %s again with different content; the first copy (%s) is kept, the "
                       "new one dropped and answered success (overwrite is off)", self.calling_ae, self.sop_uid, path)


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
            return CANNOT_UNDERSTAND, None
        folder = self.directory / study_uid / series_uid
        path = folder / f"{sop_uid}.dcm"
        try:
            if folder not in self._made_dirs:
                folder.mkdir(parents=True, exist_ok=True)
                self._made_dirs.add(folder)
            write_durably(path, raw, self.fsync)
        except OSError as exc:
            LOGGER.error("could not write instance %s of study %s: %s", sop_uid, study_uid, exc)
            return OUT_OF_RESOURCES, None
        peer = event.assoc.requestor if event.assoc.is_acceptor else event.assoc.acceptor
        return SUCCESS, StoredInstance(path, study_uid, series_uid, sop_uid, str(event.request.AffectedSOPClassUID),
                                        str(event.context.transfer_syntax), peer.ae_title, header)
