"""The desktop viewer bridge (the ``viewer`` node): what it remembers and how it forwards series (docs/viewer.md)."""

from .forward import Forwarder, Retry, SeriesUnavailable
from .ledger import KnownSeries, Ledger

__all__ = ["Forwarder", "KnownSeries", "Ledger", "Retry", "SeriesUnavailable"]
