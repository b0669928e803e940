"""Forwarding series to one desktop viewer by C-STORE, one series at a time, with capped backoff while it is down.

A :class:`Forwarder` owns a queue of (study, series) for one viewer and a thread (run as a ``Node.task``). For each
series it asks ``prepare`` for the files (the node fetches them from wherever the mesh holds them), drops the
instances the ledger says the viewer already has, and sends the rest with our own C-STORE SCU
(:class:`meshdcm.pacs.storescu.StoreRequestor`: streamed from disk in their own transfer syntax, one association).
Each instance the viewer acknowledges is recorded in the ledger as it comes (in small batches), so a send cut
short is resumed with what was not acknowledged yet, and no instance is sent twice in one request.

Desktop viewers (Horos, Weasis, DCMTK storescp without ``--fork``) serve one association at a time, so there is
at most one association per destination (host, port) in this process, whichever viewer names share it.

A viewer that cannot be reached, rejects the association or cuts it short is retried with exponential backoff
(``retry_seconds`` doubling up to ``max_retry_seconds``) for ``give_up_seconds``; instances it refuses are retried
``refused_attempts`` times. Failures are reported through ``on_error`` (the first one of an outage, then at
attempts 2, 4, 8, ...) saying what really happened: not reached, rejected (why), aborted (after how many, during
which instance), or which instance was refused with which status. ``on_sent`` is called once per request with
every instance acknowledged during it, over all its attempts.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from meshdcm.pacs import Pacs
from meshdcm.pacs.part10 import InstanceFile, read_instance
from meshdcm.pacs.storescu import AssociationAborted, AssociationRejected, NotReached, Outcome, StoreError, \
    StoreRequestor

from .ledger import Ledger

__all__ = ["Forwarder", "Retry", "SeriesUnavailable"]

log = logging.getLogger("meshdcm.viewer")

_destinations: dict[tuple[str, int], threading.Lock] = {}
_destinations_lock = threading.Lock()


def _one_association_at_a_time(viewer: Pacs) -> threading.Lock:
    """The lock every sender to ``viewer``'s host and port holds for the length of its association."""
    key = (viewer.host.lower(), int(viewer.port))
    with _destinations_lock:
        return _destinations.setdefault(key, threading.Lock())


class SeriesUnavailable(Exception):
    """The series' files cannot be had now; ``action`` says what will (or should) happen next."""

    def __init__(self, reason: str, action: str):
        self.reason, self.action = reason, action
        super().__init__(f"{reason} (next: {action})")


class _Refused(Exception):
    """The viewer was reached and refused some instances; ``action`` says what to do about them."""

    def __init__(self, reason: str, action: str):
        super().__init__(reason)
        self.action = action


@dataclass(frozen=True)
class Retry:
    retry_seconds: float = 2.0
    max_retry_seconds: float = 60.0
    give_up_seconds: float = 3600.0
    refused_attempts: int = 3


Prepare = Callable[[str, str], list[Path]]
OnSent = Callable[[str, str, str, int], None]  # viewer, study, series, count
OnError = Callable[[str, str, str, str, str, int], None]  # viewer, study, series, reason, action, attempt


class Forwarder:
    def __init__(self, viewer: Pacs, ledger: Ledger, prepare: Prepare, on_sent: OnSent, on_error: OnError,
                 retry: Retry = Retry()):
        self.viewer = viewer
        self.ledger = ledger
        self.prepare = prepare
        self.on_sent = on_sent
        self.on_error = on_error
        self.retry = retry
        self._queue: queue.Queue[tuple[str, str]] = queue.Queue()
        self._queued: set[str] = set()
        self._lock = threading.Lock()

    def enqueue(self, study: str, series: str) -> bool:
        """Queue a series (once: a series already waiting is not queued twice); returns whether it was queued."""
        with self._lock:
            if series in self._queued:
                return False
            self._queued.add(series)
        self._queue.put((study, series))
        return True

    def run(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            try:
                study, series = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self._send_with_retry(study, series, stopping)
            except Exception as exc:  # a bug must not end the viewer's only sending thread (pynetdicom's empty answer did)
                log.exception("series %s to viewer %s failed unexpectedly", series, self.viewer.name)
                self.on_error(self.viewer.name, study, series, f"sending series {series} to viewer "
                              f"{self.viewer.name} failed unexpectedly: {exc!r}",
                              "open the study again; report this with the node's log", 0)
            finally:
                with self._lock:
                    self._queued.discard(series)

    # -------------------------------------------------------------------------------------------------------------
    def _send_with_retry(self, study: str, series: str, stopping: threading.Event) -> None:
        v, r = self.viewer, self.retry
        first, delay, attempt, refused = time.monotonic(), r.retry_seconds, 0, 0
        delivered = [0]  # acknowledged during this request, over all its attempts
        try:
            while not stopping.is_set():
                attempt += 1
                try:
                    self._send_once(study, series, delivered)
                    if attempt > 1:
                        log.info("series %s reached viewer %s after %d attempts", series, v.name, attempt)
                    return
                except SeriesUnavailable as exc:
                    self.on_error(v.name, study, series, exc.reason, exc.action, attempt)
                    return
                except ValueError as exc:  # files that are not DICOM or too many SOP class/syntax combinations
                    self.on_error(v.name, study, series, f"series {series} cannot be sent to viewer {v.name}: {exc}",
                                  "check the series' files (meshdcm filter-check '' FOLDER lists them)", attempt)
                    return
                except _Refused as exc:
                    refused += 1
                    reason, retryable = str(exc), refused < r.refused_attempts
                    action = exc.action + ("; sending is retried by itself" if retryable else
                                           "; then open the study again")
                except StoreError as exc:
                    reason, action, retryable = self._explain(exc, series), self._what_next(exc), True
                out_of_time = time.monotonic() - first + delay > r.give_up_seconds
                if not retryable or out_of_time:
                    if retryable:
                        reason += f" (gave up after {attempt} attempts in {time.monotonic() - first:.0f} s)"
                        action = action.replace("sending resumes by itself once it answers", "then open the study again")
                        action = action.replace("sending is retried by itself", "then open the study again")
                    self.on_error(v.name, study, series, reason, action, attempt)
                    return
                if attempt & (attempt - 1) == 0:  # 1, 2, 4, 8, ...: heard, without a flood
                    self.on_error(v.name, study, series, reason, action, attempt)
                log.warning("series %s to viewer %s, attempt %d failed (%s); retrying in %.1f s", series, v.name,
                            attempt, reason, delay)
                stopping.wait(delay * (0.8 + 0.4 * random.random()))  # noqa: S311 - jitter, not security
                delay = min(delay * 2, r.max_retry_seconds)
        finally:
            if delivered[0]:
                self.on_sent(v.name, study, series, delivered[0])

    def _explain(self, exc: StoreError, series: str) -> str:
        v = self.viewer
        where = f"{v.ae_title} at {v.host}:{v.port}"
        if isinstance(exc, NotReached):
            return f"viewer {v.name} could not be reached: {exc.reason}"
        if isinstance(exc, AssociationRejected):
            return f"viewer {v.name} ({where}) was reached, but {exc.reason}"
        return f"the association with viewer {v.name} ({where}) was cut short while series {series} was being sent: " \
               f"{exc.reason}"

    def _what_next(self, exc: StoreError) -> str:
        v = self.viewer
        if isinstance(exc, NotReached):
            return (f"start viewer {v.name} ({v.ae_title} at {v.host}:{v.port}) or fix its address in "
                    f"[nodes.viewer.viewers.{v.name}]; sending resumes by itself once it answers")
        if isinstance(exc, AssociationRejected):
            return (f"check that viewer {v.name} calls itself {v.ae_title} and knows our AE title {v.calling_ae} "
                    f"(Horos: Preferences > Locations; OsiriX, Weasis: DICOM nodes), and that no other sender "
                    f"holds it; sending is retried by itself")
        assert isinstance(exc, AssociationAborted)
        return (f"what viewer {v.name} acknowledged is kept and only the rest is sent again; sending is retried "
                f"by itself (if this repeats, check viewer {v.name}'s log)")

    def _send_once(self, study: str, series: str, delivered: list[int]) -> int:
        v = self.viewer
        files = self.prepare(study, series)
        already = self.ledger.sent(v.name, series)
        todo: dict[str, InstanceFile] = {}
        for path in files:
            inst = read_instance(path)
            if inst.sop_instance in todo:
                log.warning("series %s: instance %s is in %s and in %s; sent once", series, inst.sop_instance,
                            todo[inst.sop_instance].path, path)
            elif inst.sop_instance not in already:
                todo[inst.sop_instance] = inst
        if not todo:
            log.info("series %s: all %d instances already sent to viewer %s; not sent again", series, len(files), v.name)
            return 0
        acknowledged = _Acknowledged(self.ledger, v.name, series)
        requestor = StoreRequestor(v.host, v.port, v.ae_title, v.calling_ae, max_pdu=v.max_pdu, timeout=v.timeout)
        try:
            with _one_association_at_a_time(v):
                report = requestor.send(list(todo.values()), on_outcome=acknowledged.outcome)
        finally:
            acknowledged.flush()
            delivered[0] += acknowledged.count
        refused = report.refused
        if refused:
            first = refused[0]
            more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
            raise _Refused(f"viewer {v.name} refused {len(refused)} of {len(todo)} instances of series {series}: "
                           f"{first}{more}", _refusal_action(v, first))
        return len(report.stored)


def _refusal_action(v: Pacs, first: Outcome) -> str:
    if first.status is None:  # no presentation context for it, or it could not be converted
        return (f"let viewer {v.name} accept that SOP class and transfer syntax (or install the decoder "
                "for it here)")
    if 0xA700 <= first.status <= 0xA7FF:
        return f"free disk space on viewer {v.name} (it is out of resources)"
    return f"check viewer {v.name}'s log for why it refused status 0x{first.status:04X}"


class _Acknowledged:
    """Instances the viewer acknowledged, written to the ledger in batches (a commit costs ~0.5 ms, about what
    sending a small instance does) and at the end whatever happened."""

    BATCH, SECONDS = 32, 0.25

    def __init__(self, ledger: Ledger, viewer: str, series: str):
        self.ledger, self.viewer, self.series = ledger, viewer, series
        self.pending: list[str] = []
        self.count = 0
        self._since = time.monotonic()

    def outcome(self, outcome: Outcome) -> None:
        if not outcome.stored:
            return
        self.pending.append(outcome.sop_instance)
        self.count += 1
        if len(self.pending) >= self.BATCH or time.monotonic() - self._since > self.SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.ledger.mark_sent(self.viewer, self.series, self.pending)
            self.pending = []
        self._since = time.monotonic()
