"""Storage SCP: receive C-STORE pushes (from scanners, from a PACS answering our C-MOVE) and write them durably.

The network side is :mod:`meshdcm.pacs.upper` (a small hand-written DICOM upper-layer acceptor; see there
why), one thread per association so several senders are served at once. For each instance:

* the dataset fragments are streamed from the socket into ``<dir>/.incoming/<n>.<thread>.part`` behind a preamble
  and a File Meta Information group carrying the accepted transfer syntax (PS3.10) -- never decoded and
  re-encoded, so compressed transfer syntaxes (JPEG-LS, RLE, JPEG 2000, deflate...) stay byte-identical;
* the file is ``fdatasync``-ed and renamed to ``<dir>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``
  *before* success is answered, so a success status means the instance is on disk;
* only the Study/Series UIDs are scanned from the first bytes (:func:`scan_study_series`); the full header
  (up to Pixel Data) is parsed lazily when a callback asks for ``StoredInstance.header``.

What cannot be stored (disk full, no usable UIDs) is answered at once with a failure status, what is stored twice keeps
its first copy (``overwrite``), what proves undecodable is set aside; each is a :class:`StoreFailure` told to
``on_failed`` (:mod:`meshdcm.pacs.incoming` says how). Partial files an interrupted run left are removed at start.

Completeness: :meth:`StorageSCP.expect` registers how many instances of a study (or series) are expected
(from C-FIND counts or a retrieve's sub-operation counts); its :class:`Expectation` completes when they have
arrived. For data pushed without warning, a quiet timer (``quiet_seconds``) reports a study as settled once
nothing new arrived for it for that long (``on_quiet``).

The parts live in their own modules: :mod:`meshdcm.pacs.incoming` (a dataset into a file, shared with C-GET),
:mod:`meshdcm.pacs.instances` (what is said about each instance), :mod:`meshdcm.pacs.dicomfile` (the bytes),
:mod:`meshdcm.pacs.durable` (fsync and rename), :mod:`meshdcm.pacs.expectations` (completeness).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .dicomfile import encode_file_meta
from .durable import make_durable, remove_partial_files, write_durably
from .expectations import Expectation
from .incoming import DirectorySink, IncomingFolder, InstanceWriter, _FileSink
from .instances import StoredInstance, StoreFailure, UndecodableInstance, read_header

__all__ = ["StorageSCP", "StoredInstance", "StoreFailure", "Expectation", "InstanceWriter", "DirectorySink",
           "make_durable", "write_durably", "encode_file_meta"]

LOGGER = logging.getLogger(__name__)

# a pushed study waiting for its quiet time: series UID -> SOP Instance UID -> instance (without its header)
_Pushed = dict[str, dict[str, StoredInstance]]


class StorageSCP(IncomingFolder):
    """A C-STORE SCP writing every received instance under ``directory``.

    ``on_stored(instance: StoredInstance)`` is called after each instance is safely on disk (in the
    association's thread; keep it short). ``on_quiet(study_uid, counts)`` is called once a study that no
    :class:`Expectation` covers has received nothing new for ``quiet_seconds`` (``counts``: series UID ->
    number of instances received since the study was last reported). Before that call each of those instances is
    decoded (on the quiet timer's thread, not the association's): one that cannot be is set aside and not counted.

    ``overwrite`` (default False): a second copy of an instance already stored is answered success and dropped; the
    first is kept. ``on_failed(failure: StoreFailure)`` hears of instances refused, lost or set aside (see
    :class:`~meshdcm.pacs.incoming.IncomingFolder`); ``last_failure`` is the latest.
    """

    def __init__(self, directory: str | Path, ae_title: str = "MESHDCM", host: str = "127.0.0.1", port: int = 0,
                 on_stored: Callable[[StoredInstance], None] | None = None,
                 on_quiet: Callable[[str, dict[str, int]], None] | None = None,
                 quiet_seconds: float = 10.0, fsync: bool = True, max_pdu: int = 4 << 20, overwrite: bool = False,
                 on_failed: Callable[[StoreFailure], None] | None = None, max_associations: int = 32):
        super().__init__(directory, fsync, overwrite, on_failed)
        self.max_associations = max_associations
        self.ae_title, self.host, self.port = ae_title, host, port
        self.on_stored, self.on_quiet, self.quiet_seconds = on_stored, on_quiet, quiet_seconds
        self.max_pdu = max_pdu
        self._server = None
        self._lock = threading.Lock()
        self._expect: dict[tuple[str, str | None], list[Expectation]] = {}
        self._recent: dict[str, tuple[float, _Pushed]] = {}
        self._listeners: list[Callable[[StoredInstance], None]] = []
        self._stop = threading.Event()
        self._quiet_thread: threading.Thread | None = None
        self.count = 0

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> tuple[str, int]:
        """Start listening (non-blocking); returns the bound ``(host, port)``."""
        from .upper import UpperLayerServer

        self.directory.mkdir(parents=True, exist_ok=True)
        self._incoming.mkdir(exist_ok=True)
        removed = remove_partial_files(self._incoming)  # nothing else writes there before we listen
        if removed:
            LOGGER.warning("storage SCP: removed %d partial files an interrupted run left in %s", removed,
                           self._incoming)
        self._server = UpperLayerServer(self.host, self.port, self.begin, max_pdu=self.max_pdu,
                                        max_associations=self.max_associations)
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
                    if not self._report(inst, fn):
                        break  # undecodable: set aside, and no one else hears of it
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
                _, pushed = self._recent.get(inst.study_uid, (0.0, {}))
                pushed.setdefault(inst.series_uid, {})[inst.sop_instance_uid] = dataclasses.replace(inst, _header=None)
                self._recent[inst.study_uid] = (time.monotonic(), pushed)
        return waiting

    def _set_aside(self, inst: StoredInstance, exc: UndecodableInstance) -> None:
        with self._lock:
            _, pushed = self._recent.get(inst.study_uid, (0.0, {}))
            pushed.get(inst.series_uid, {}).pop(inst.sop_instance_uid, None)
        super()._set_aside(inst, exc)

    def _readable(self, pushed: _Pushed) -> dict[str, int]:
        """Per series, how many of the pushed instances can be decoded; the others are set aside (and told)."""
        counts = {}
        for series_uid, instances in pushed.items():
            n = 0
            for inst in instances.values():
                try:
                    read_header(inst.path)
                    n += 1
                except UndecodableInstance as exc:
                    if not isinstance(exc.cause, FileNotFoundError):  # removed meanwhile: nothing to announce
                        self._set_aside(inst, exc)
            if n:
                counts[series_uid] = n
        return counts

    def _quiet_loop(self) -> None:
        tick = min(1.0, max(0.05, self.quiet_seconds / 4))
        while not self._stop.wait(tick):
            now = time.monotonic()
            with self._lock:
                settled = [(s, c) for s, (t, c) in self._recent.items() if now - t >= self.quiet_seconds]
                for s, _ in settled:
                    del self._recent[s]
            for study_uid, pushed in settled:
                counts = self._readable(pushed)
                if not counts:
                    continue
                try:
                    self.on_quiet(study_uid, counts)
                except Exception:
                    LOGGER.exception("storage SCP: on_quiet callback failed for study %s", study_uid)
