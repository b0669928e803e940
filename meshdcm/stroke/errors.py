"""Exceptions raised by :mod:`meshdcm.stroke`::

    StrokeError          maps or inputs the analysis cannot use (the message names the map or series and what to do)
    └── ADCError         an ADC series that cannot be read, placed on the DSC grid, or whose units are unknown
"""

from __future__ import annotations

__all__ = ["ADCError", "StrokeError"]


class StrokeError(Exception):
    """The stroke analysis cannot be done on these inputs; the message says why and what to do next."""


class ADCError(StrokeError):
    """An ADC series that cannot be used as the diffusion core."""
