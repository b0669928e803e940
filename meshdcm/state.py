"""Where a node keeps its delivery state, and making sure only one live node uses it.

A node's identity across restarts is its name in its mesh: its journal (``outbox.sqlite``), receive state
(``inbox.sqlite``) and dead letters (``dead.sqlite``) live in ``state_dir`` or ``data_dir(name)/mesh-<mesh>``, so a
restarted node finds them again. The folder is locked (``flock``) while a node uses it; a second node of the same
name and mesh on the same machine keeps its state in memory and says so (it cannot survive a restart).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .config import NodeConfig, data_dir

__all__ = ["StateFolder", "folder_name", "open_state", "private_dir", "private_file"]

log = logging.getLogger("meshdcm.node")


@dataclass
class StateFolder:
    """The folder (None: in memory) and its lock's file descriptor."""

    path: Path | None
    fd: int | None = None

    def file(self, name: str) -> Path | None:
        return self.path / name if self.path is not None else None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # releases the flock
            self.fd = None


def private_dir(path: Path) -> Path:
    """``path`` as a folder only its owner can read (state holds patient data): made 0700 with any missing parents
    (those 0700 too), or chmod-ed to 0700 if it exists."""
    path = Path(path)
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for p in missing:
        p.chmod(0o700)  # mkdir's parents= ignores mode for the parents
    path.chmod(0o700)
    return path


def private_file(path: Path) -> Path:
    """``path`` created (empty, if missing) readable by its owner only, before anyone writes patient data to it.
    SQLite gives its -wal and -shm files the permissions of the database file."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)
    return Path(path)


def folder_name(mesh: str) -> str:
    """A mesh name (free text) as one safe folder name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", mesh) or "default"


def open_state(config: NodeConfig, durable: bool) -> StateFolder:
    if not durable:
        return StateFolder(None)
    path = Path(config.state_dir) if config.state_dir else data_dir(config.name) / f"mesh-{folder_name(config.mesh)}"
    private_dir(path)
    fd = os.open(path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        log.warning("another node named %s of mesh %r runs on this machine and uses %s: this one keeps its journal "
                    "and receive state in memory (lost if it stops); give each node its own name", config.name,
                    config.mesh, path)
        return StateFolder(None)
    return StateFolder(path, fd)
