"""The study sets are made once and kept: ``$XDG_CACHE_HOME/meshdcm/studies/<version>/<variant>/``.

``<version>`` is the generator's version and a digest of this package's source, so that a changed generator makes
a new set instead of serving a stale one (old sets stay until removed: ``rm -r ~/.cache/meshdcm/studies``). A set is
made under a temporary name beside its place and renamed into it when complete, under a lock, so that two processes
asking at once (two nodes, two tests) make it once and never see half of it.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from .errors import StudiesError
from .make import MANIFEST, make_studies

__all__ = ["GENERATOR_VERSION", "cache_root", "studies_folder", "version_key"]

log = logging.getLogger("meshdcm.studies")
#: Raise when the studies change in a way the source digest would not show (a changed dependency's output).
GENERATOR_VERSION = "1"


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/meshdcm/studies`` (``~/.cache/meshdcm/studies`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "meshdcm" / "studies"


def version_key() -> str:
    """``<GENERATOR_VERSION>-<digest of this package's Python source>``."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return f"{GENERATOR_VERSION}-{digest.hexdigest()[:10]}"


@contextmanager
def _locked(path: Path):
    with open(path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def studies_folder(variant: str = "full", *, root: str | Path | None = None) -> Path:
    """The folder of the study set ``variant``, made first if the cache has none (``root``: another cache folder).

    Making it takes about 1.5 min for ``full`` and 5 s for ``small``; every later call returns at once.
    """
    folder = Path(root) if root is not None else cache_root()
    target = folder / version_key() / variant
    if (target / MANIFEST).is_file():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StudiesError(f"cannot create the studies cache folder {target.parent}: {exc}; set XDG_CACHE_HOME to a "
                           "writable folder") from exc
    with _locked(target.parent / f".{variant}.lock"):
        if (target / MANIFEST).is_file():  # made by another process while this one waited
            return target
        partial = target.parent / f".{variant}.part-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        log.info("making the %s study set in %s (once; later starts use it)", variant, target)
        try:
            make_studies(partial, variant)
            if target.exists():  # an unfinished set left by a killed process
                shutil.rmtree(target)
            os.rename(partial, target)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    log.info("the %s study set is ready in %s", variant, target)
    return target
