"""The few exception types of :mod:`meshdcm.perfusion`; every message says what to do next."""

from __future__ import annotations

__all__ = ["PerfusionError", "NotDSCSeriesError", "AIFSelectionError"]


class PerfusionError(Exception):
    """A DSC perfusion analysis could not be done; the message names the series and the next step."""


class NotDSCSeriesError(PerfusionError):
    """The input is not (or not only) a usable DSC-MRI series."""


class AIFSelectionError(PerfusionError):
    """No arterial input function could be found; pass one by hand (``aif=``)."""
