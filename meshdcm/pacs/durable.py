"""Durable file writing: the data and the name of a file on disk before anyone is told it is there.

Every writer of instances in :mod:`meshdcm.pacs` (the storage SCP, C-GET sub-operations, WADO-RS, the embedded
PACS) ends with these: ``fdatasync`` the file, rename it into place, ``fsync`` its folder.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

__all__ = ["flush", "make_durable", "write_durably", "remove_partial_files"]


def flush(path, data_only: bool = True) -> None:
    """``fdatasync`` a file (or ``fsync`` a folder, ``data_only=False``) by its path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        (os.fdatasync if data_only else os.fsync)(fd)
    finally:
        os.close(fd)


def make_durable(path: Path) -> None:
    """The file's data and its name in its folder on disk (fdatasync the file, fsync the folder)."""
    flush(path)
    flush(path.parent, data_only=False)



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
        flush(path.parent, data_only=False)  # the new name is on disk too


def remove_partial_files(folder: Path) -> int:
    """Remove the ``*.part`` files a writer killed mid-write left in ``folder``; returns how many."""
    removed = 0
    for part in folder.glob("*.part"):
        try:
            part.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed
