"""What the storage layer says about each instance it received: stored (:class:`StoredInstance`) or not
(:class:`StoreFailure`), and the one exception a reader of a stored instance can meet (:class:`UndecodableInstance`).

C-STORE statuses answered (PS3.4 Annex B.2.3):

* ``0x0000`` success: the instance is on disk (or was already: the first copy is kept, see ``overwrite``);
* ``0xA700`` Refused, Out of Resources: it could not be written (disk full, quota, permissions, I/O error);
* ``0xC000`` Error, Cannot Understand: no usable Study/Series/SOP Instance UID in it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset

__all__ = ["StoredInstance", "StoreFailure", "UndecodableInstance", "read_header", "SUCCESS", "OUT_OF_RESOURCES",
           "CANNOT_UNDERSTAND"]

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000


class UndecodableInstance(ValueError):
    """A stored instance whose header cannot be decoded; ``path`` is the file, ``cause`` what pydicom said."""

    def __init__(self, path: Path, cause: BaseException):
        self.path, self.cause = path, cause
        super().__init__(f"{path} cannot be decoded ({type(cause).__name__}: {cause})")


def read_header(path: Path) -> Dataset:
    """Every element of a stored file before Pixel Data, each value decoded (what a node reads and publishes);
    raises :class:`UndecodableInstance`."""
    try:
        ds = dcmread(path, stop_before_pixels=True)
        for _ in ds.iterall():  # pydicom decodes a value when it is first touched: touch them all, here
            pass
    except Exception as exc:
        raise UndecodableInstance(Path(path), exc) from exc
    return ds


@dataclass
class StoredInstance:
    """One instance on disk; ``header`` (all elements before Pixel Data) is read lazily."""

    path: Path
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax: str
    calling_ae: str
    _header: Dataset | None = field(default=None, repr=False, compare=False)

    @property
    def header(self) -> Dataset:
        """Raises :class:`UndecodableInstance` if the file cannot be decoded; the storage layer that reported the
        instance then sets it aside and reports a :class:`StoreFailure`, so callbacks may just let it pass."""
        if self._header is None:
            self._header = read_header(self.path)
        return self._header


_ACTIONS = {
    "write": "make room (or fix the permissions) there; the sender was answered 0xA700 (out of resources) and keeps "
             "its copy: send it again (get.study again) once the disk can take it",
    "refused": "the sender was answered 0xC000 (cannot understand) and keeps its copy: correct the instance's UIDs and "
               "send it again",
    "lost": "the sender was answered success; retrieve the study again (the PACS keeps its copy)",
    "undecodable": "it was answered success, so the sender may not keep a copy: the file is kept at {kept}; send a "
                   "readable copy again (it will be stored), then delete that file",
}


@dataclass(frozen=True)
class StoreFailure:
    """An instance the storage layer refused, lost, or stored and then set aside. ``kind`` says which:

    * ``write``: it could not be written (answered ``0xA700``); ``reason`` names the cause and the folder, e.g.
      ``disk full at /data/store/.incoming``;
    * ``refused``: no usable UIDs in it (answered ``0xC000``);
    * ``lost``: answered success, then it could not be made durable (a sub-operation of our own retrieve);
    * ``undecodable``: answered success, then its header could not be decoded: moved to ``kept``, never announced.

    ``status`` is what the sender was answered; ``at`` is ``time.monotonic()`` when it happened.
    """

    kind: str
    sop_instance_uid: str
    calling_ae: str
    status: int
    reason: str
    study_uid: str | None = None
    kept: Path | None = None
    at: float = field(default_factory=time.monotonic)

    @property
    def action(self) -> str:
        """What an operator can do about it."""
        return _ACTIONS[self.kind].format(kept=self.kept)
