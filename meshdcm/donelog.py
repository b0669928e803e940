"""``done.log``: the receiver's record of handled messages, appended by a memory copy (docs/delivery.md).

One fixed-size record per handled message (:data:`RECORD`: kind, stream or message id, sequence number, time), copied
into a memory-mapped file: about a microsecond and no system call, where a SQLite commit per message costs ~40 us.
The record's kind byte is written last, so a reader sees only whole records; the file doubles when full. The kernel
writes the pages back, so a record survives a killed process (not a power cut). :class:`meshdcm.receipts.Inbox` folds
the log into SQLite every few seconds and at start.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

__all__ = ["DoneLog", "RECORD"]

RECORD = struct.Struct("<c16sQd")  # b"e" event (stream, seq) / b"w" work item (message id, 0), unix time
_LOG_START = 1 << 22  # bytes the log file starts with (~127,000 records); it doubles when full


class DoneLog:
    """Fixed-size records in a memory-mapped file; the records in use are those before the first zero kind byte.

    An append is a memory copy, not a system call: ``os.write`` gave up the GIL once per message, and the worker
    then waited for the engine thread to hand it back, which cost a third of the receiver's throughput. A record in
    the mapping is in the page cache at once, so it survives the process being killed (not a power cut, like
    SQLite's ``synchronous=NORMAL``). Its kind byte is written last, so a record cut short by a kill is not read
    back. A log written by ``os.write`` (records back to back, no spare room) reads the same. Not thread-safe: the
    caller holds a lock."""

    def __init__(self, path: Path):
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        size = os.fstat(self._fd).st_size
        self._map(max(_LOG_START, -(-size // _LOG_START) * _LOG_START))  # whole steps; an old log keeps its records
        self.pos = self._used()

    def _map(self, size: int) -> None:
        if os.fstat(self._fd).st_size < size:
            os.ftruncate(self._fd, size)  # the new room reads as zeros (a sparse file)
        self._mm = mmap.mmap(self._fd, size)
        self.size = size

    def _used(self) -> int:
        step, mm = RECORD.size, self._mm
        pos = 0
        while pos + step <= self.size and mm[pos] != 0:
            pos += step
        return pos

    def records(self):
        """(kind, id, seq, when) of every record in use."""
        return RECORD.iter_unpack(self._mm[:self.pos])

    def append(self, record: bytes) -> None:
        pos = self.pos
        if pos + len(record) > self.size:
            self._mm.close()
            self._map(self.size * 2)
        self._mm[pos + 1:pos + len(record)] = record[1:]
        self._mm[pos] = record[0]  # last: the record counts from here
        self.pos = pos + len(record)

    def clear(self) -> None:
        """Forget every record (they are in SQLite now). A kill halfway leaves some of them readable: each says a
        message was handled, which SQLite already knows, so reading it again changes nothing."""
        if self.pos:
            self._mm[:self.pos] = bytes(self.pos)
            self.pos = 0

    def close(self) -> None:
        self._mm.close()
        os.close(self._fd)
