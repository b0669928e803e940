"""Deterministic DICOM UIDs: ``2.25.<UUID as integer>`` (PS3.5 B.2) with a name-based (SHA-1) UUID.

pydicom's ``generate_uid(prefix=None, ...)`` ignores ``entropy_srcs`` and returns a random UUID, so
re-runs would mint new UIDs; a UUIDv5 of the parts is stable and still globally unique in practice.
"""

from __future__ import annotations

import uuid

__all__ = ["stable_uid"]

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "meshdcm.perfusion")


def stable_uid(*parts: object) -> str:
    return f"2.25.{uuid.uuid5(_NAMESPACE, chr(31).join(str(p) for p in parts)).int}"
