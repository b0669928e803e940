"""UIDs that arrive over the network and become file names: checked, never trusted.

A DICOM UID is at most 64 characters of digits and dots. Storage layouts such as ``<study>/<series>/<sop>.dcm``
use UIDs as path components, so a UID like ``../../etc`` from a hostile or broken peer must never reach
:class:`pathlib.Path`. Real-world UIDs are sometimes non-conformant (leading zeros, letters from old equipment):
those are harmless as file names and are accepted; only what could leave the folder or hide a file is refused.
"""

from __future__ import annotations

import re

from .errors import HandlerError

__all__ = ["UnsafeUID", "path_part"]

_SAFE = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,63}")


class UnsafeUID(HandlerError):
    """A UID that cannot name a file: too long, empty, or with characters outside ``0-9 A-Z a-z . _ -``."""


def path_part(uid: object, what: str = "UID") -> str:
    """``uid`` as a string that is safe as one path component; raises :class:`UnsafeUID` otherwise."""
    text = "" if uid is None else str(uid)
    if not _SAFE.fullmatch(text):
        raise UnsafeUID(f"{what} {text[:80]!r} is not a usable UID (a DICOM UID is 1-64 digits and dots)",
                        action="fix the sending system's UIDs; nothing was written")
    return text
