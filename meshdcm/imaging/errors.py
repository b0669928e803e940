"""Exceptions raised by :mod:`meshdcm.imaging`.

Few types, each message naming the series (by UID, never by patient) and what to do next::

    ImagingError
    ├── SeriesError          a DICOM series that cannot be read as one image (mixed series, missing geometry)
    ├── NiftiError           a NIfTI file that cannot be used (unreadable, grid not matching the reference)
    └── RegistrationError    registration that did not converge or inputs that cannot be registered
"""

from __future__ import annotations

__all__ = ["ImagingError", "NiftiError", "RegistrationError", "SeriesError"]


class ImagingError(Exception):
    """Base class of every error :mod:`meshdcm.imaging` raises on purpose."""


class SeriesError(ImagingError):
    """A DICOM series that cannot be turned into an image volume."""


class NiftiError(ImagingError):
    """A NIfTI image that cannot be read or does not fit its reference series."""


class RegistrationError(ImagingError):
    """A registration that failed or inputs that cannot be registered."""
