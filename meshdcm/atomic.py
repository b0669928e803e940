"""Files replaced whole: written under a temporary name beside the target, then renamed over it.

A reader (another node archiving a series, a viewer, a fetch over the mesh) that opens the file sees the old version
or the new one, never a half-written one, also when a redelivered message rewrites a series in place. The temporary
name starts with a dot (hidden from globs such as ``*.dcm``) and keeps the target's suffixes (nibabel chooses the
format from them).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["replacing"]


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on leaving the block without an error it replaces ``path`` (one rename),
    on an error it is removed and ``path`` is untouched."""
    path = Path(path)
    tmp = path.with_name(f".part-{os.getpid()}-{threading.get_ident()}-{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
