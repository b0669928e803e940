"""Completeness of a retrieve: how many instances of a study (or series) we expect, and waiting for them."""

from __future__ import annotations

import threading

__all__ = ["Expectation"]


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
