"""Forwarding series to one desktop viewer by C-STORE, one series at a time, with capped backoff while it is down.

A :class:`Forwarder` owns a queue of (study, series) for one viewer and a thread (run as a ``Node.task``). For each
series it asks ``prepare`` for the files (the node fetches them from wherever the mesh holds them), drops the
instances the ledger says the viewer already has, sends the rest with :func:`meshdcm.pacs.store` (streamed from disk
in their own transfer syntax) and records what the viewer acknowledged. A viewer that is down or refuses the
association is retried with exponential backoff (``retry_seconds`` doubling up to ``max_retry_seconds``) for
``give_up_seconds``; instances it refuses are retried ``refused_attempts`` times. Failures are reported through
``on_error`` (the first one of an outage, then at attempts 2, 4, 8, ...) so the mesh hears of them without a flood.
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

from pydicom import dcmread

from meshdcm.pacs import Pacs, PacsError, store

from .ledger import Ledger

__all__ = ["Forwarder", "Retry", "SeriesUnavailable"]

log = logging.getLogger("meshdcm.viewer")


class SeriesUnavailable(Exception):
    """The series' files cannot be had now; ``action`` says what will (or should) happen next."""

    def __init__(self, reason: str, action: str):
        self.reason, self.action = reason, action
        super().__init__(f"{reason} (next: {action})")


class _Refused(Exception):
    pass


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
            finally:
                with self._lock:
                    self._queued.discard(series)

    # -------------------------------------------------------------------------------------------------------------
    def _send_with_retry(self, study: str, series: str, stopping: threading.Event) -> None:
        v, r = self.viewer, self.retry
        first, delay, attempt, refused = time.monotonic(), r.retry_seconds, 0, 0
        while not stopping.is_set():
            attempt += 1
            try:
                self._send_once(study, series)
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
                action = (f"check viewer {v.name}'s log for why it refused them (SOP class or transfer syntax not "
                          "accepted, disk full); " + ("sending is retried by itself" if retryable else
                                                      "then open the study again"))
            except PacsError as exc:
                reason, retryable = f"viewer {v.name} could not be reached: {exc}", exc.retryable
                action = (f"start viewer {v.name} ({v.ae_title} at {v.host}:{v.port}) or fix its address in "
                          "[nodes.viewer.viewers]; " + ("sending resumes by itself once it answers" if retryable
                                                        else "then open the study again"))
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
            log.warning("series %s to viewer %s, attempt %d failed; retrying in %.1f s", series, v.name, attempt, delay)
            stopping.wait(delay * (0.8 + 0.4 * random.random()))  # noqa: S311 - jitter, not security
            delay = min(delay * 2, r.max_retry_seconds)

    def _send_once(self, study: str, series: str) -> int:
        files = self.prepare(study, series)
        already = self.ledger.sent(self.viewer.name, series)
        todo = []
        for path in files:
            sop = str(dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
            if sop not in already:
                todo.append(path)
        if not todo:
            log.info("series %s: all %d instances already sent to viewer %s; not sent again", series, len(files),
                     self.viewer.name)
            return 0
        result = store(self.viewer, todo)
        self.ledger.mark_sent(self.viewer.name, series, result.stored)
        if result.stored:
            self.on_sent(self.viewer.name, study, series, len(result.stored))
        if result.failed:
            first = next(iter(result.failed.values()))
            raise _Refused(f"viewer {self.viewer.name} refused {len(result.failed)} of {len(todo)} instances of "
                           f"series {series}: {first}")
        return len(result.stored)
