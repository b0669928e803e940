"""Retention of a node's working folders: one subfolder per series, kept within a size and an age.

Nodes that fetch or write series (the web node's image cache, the analysis nodes' inputs and outputs) would otherwise fill
their disk over weeks. A :class:`FolderRetention` watches one folder whose entries are per-series subfolders and
removes the least recently used ones first — those older than ``max_age`` seconds, then, while the folder holds
more than ``max_bytes``, the oldest of the rest. "Used" is the subfolder's modification time: :meth:`used` sets it
whenever the node reads the series, so a series a radiologist keeps open is never the first to go. Subfolders
named in ``keep`` (being written, or still needed) are never removed. Removal is by name under the watched
folder only; symbolic links are removed as links, never followed.

Node authors run :meth:`sweeper` as a ``Node.task`` (it prunes at start, then every hour) and call :meth:`nudge`
after writing a new series, so the size limit is applied soon, on the sweeper's thread: measuring a folder walks
all its files (~150 ms for 20,000), which must not delay the request that fetched the series. What was removed
comes back, so the node can forget what it held for those series::

    outputs = FolderRetention(work / "out", max_age=7 * 86400)
    node.task(outputs.sweeper())
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from .errors import ConfigError

__all__ = ["OUTPUT_DAYS", "FolderRetention", "days_option"]

log = logging.getLogger("meshdcm.retention")
SWEEP_EVERY = 3600.0  # seconds between two sweeps of a folder
OUTPUT_DAYS = 7.0  # default ``keep_days`` of the analysis nodes' work folders


class FolderRetention:
    """Keeps the subfolders of ``root`` within ``max_bytes`` and ``max_age`` seconds (None: no limit)."""

    def __init__(self, root: str | os.PathLike, *, max_bytes: int | None = None, max_age: float | None = None):
        if max_bytes is not None and max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, not {max_bytes}")
        if max_age is not None and max_age <= 0:
            raise ValueError(f"max_age must be > 0 seconds, not {max_age}")
        self.root = Path(root)
        self.max_bytes, self.max_age = max_bytes, max_age
        self._wake = threading.Event()

    def nudge(self) -> None:
        """Ask the sweeper to prune now (after a new series was written)."""
        self._wake.set()

    def used(self, name: str) -> None:
        """Mark the subfolder ``name`` as just used (it becomes the last to be removed)."""
        try:
            os.utime(self.root / name)
        except FileNotFoundError:
            pass

    def usage(self) -> list[tuple[str, float, int]]:
        """(name, last used, bytes) of every subfolder, least recently used first."""
        out = []
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        for entry in entries:
            try:
                if not entry.is_dir(follow_symlinks=False):
                    continue
                out.append((entry.name, entry.stat(follow_symlinks=False).st_mtime, _size(entry.path)))
            except FileNotFoundError:  # removed meanwhile
                continue
        out.sort(key=lambda item: item[1])
        return out

    def prune(self, keep: Iterable[str] = (), now: float | None = None) -> list[str]:
        """Remove what is too old, then the least recently used until within ``max_bytes``; the names removed."""
        if self.max_bytes is None and self.max_age is None:
            return []
        keep = set(keep)
        now = time.time() if now is None else now
        usage = self.usage()
        total = sum(size for _, _, size in usage)
        removed = []
        for name, last_used, size in usage:
            too_old = self.max_age is not None and now - last_used > self.max_age
            too_big = self.max_bytes is not None and total > self.max_bytes
            if not (too_old or too_big) or name in keep:
                continue
            shutil.rmtree(self.root / name, ignore_errors=True)
            total -= size
            removed.append(name)
        if removed:
            log.info("removed %d series folder(s) from %s (least recently used; now %.1f MiB)", len(removed),
                     self.root, total / 2**20)
        return removed

    def sweeper(self, every: float = SWEEP_EVERY, keep: Callable[[], Iterable[str]] = tuple,
                removed: Callable[[list[str]], None] | None = None) -> Callable:
        """A ``Node.task``: prune at start, every ``every`` seconds and when nudged; ``keep()`` names what must
        stay, ``removed(names)`` is told what went. A failed sweep is logged and tried again at the next one."""
        def sweep(stopping) -> None:
            threading.Thread(target=lambda: (stopping.wait(), self._wake.set()), name=f"sweep {self.root.name} stop",
                             daemon=True).start()
            while not stopping.is_set():
                try:
                    gone = self.prune(keep())
                    if gone and removed is not None:
                        removed(gone)
                except Exception as exc:  # a full or read-only disk must not end the node's sweeps
                    log.warning("sweeping %s failed: %s; trying again in %.0f s", self.root, exc, every)
                self._wake.wait(every)
                self._wake.clear()
        sweep.__name__ = sweep.__qualname__ = f"sweep {self.root.name}"
        return sweep


def _size(path: str) -> int:
    """Bytes of the regular files below ``path`` (links neither followed nor counted)."""
    total = 0
    stack = [path]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                continue
    return total


def days_option(options: dict, key: str = "keep_days", default: float = OUTPUT_DAYS) -> float:
    """``options[key]`` in days (a node's ``[nodes.KIND]`` option) as seconds; ConfigError if not a positive number."""
    value = options.get(key, default)
    try:
        days = float(value)
    except (TypeError, ValueError):
        days = -1.0
    if not days > 0:
        raise ConfigError(f"{key} must be a number of days > 0, not {value!r}")
    return days * 86400
