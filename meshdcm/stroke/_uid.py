"""Deterministic DICOM UIDs (``2.25.`` + a name-based UUID, PS3.5 B.2): a re-run writes the same objects again."""

from __future__ import annotations

import uuid

__all__ = ["stable_uid"]

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "meshdcm.stroke")


def stable_uid(*parts: object) -> str:
    return f"2.25.{uuid.uuid5(_NAMESPACE, chr(31).join(str(p) for p in parts)).int}"
