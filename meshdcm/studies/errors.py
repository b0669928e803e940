"""The one error the realistic studies raise: what could not be made, and what to do about it."""

from __future__ import annotations

from ..errors import MeshError

__all__ = ["StudiesError"]


class StudiesError(MeshError):
    """The realistic studies cannot be made or read (the brain template is missing, a cache folder is unusable)."""
