"""What a retrieve or an upload produced (shared by the DIMSE and the DICOMweb paths)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["RetrieveResult", "StoreResult"]


@dataclass
class RetrieveResult:
    """What a retrieve produced: ``paths`` of the instances on disk, ``done`` of ``total`` announced."""

    study_uid: str
    method: str
    paths: list[Path] = field(default_factory=list)
    done: int = 0
    total: int = 0
    failed: int = 0
    seconds: float = 0.0
    #: why instances failed on our side, when we know (e.g. ``disk full at /data/store/.incoming``)
    storage_failure: str = ""

    @property
    def complete(self) -> bool:
        return self.failed == 0 and self.done >= self.total


@dataclass
class StoreResult:
    """Outcome of an upload: SOP Instance UIDs stored and failed (with the reason)."""

    stored: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed
