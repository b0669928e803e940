"""Exceptions raised by meshdcm.

Every message says what failed and what to do next. The tree::

    MeshError
    ├── ProtocolError            a frame or envelope that does not follow docs/protocol.md
    │   ├── VersionError         the envelope's major protocol version is not one this node speaks
    │   └── MalformedMessage     truncated frames, bad magic, a DICOM body that cannot be walked
    ├── FilterError
    │   └── FilterSyntaxError    a filter expression that does not parse (has .column and .expected)
    ├── ConfigError              a configuration file, variable or argument that is wrong
    └── HandlerError             raised by node authors to fail a message with a clear action
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "FilterError",
    "FilterSyntaxError",
    "HandlerError",
    "MalformedMessage",
    "MeshError",
    "ProtocolError",
    "VersionError",
]


class MeshError(Exception):
    """Base class of every error meshdcm raises on purpose."""


class ProtocolError(MeshError):
    """A message that does not follow the wire protocol (docs/protocol.md)."""


class VersionError(ProtocolError):
    """The message's major protocol version is not understood by this node."""

    def __init__(self, major: int, minor: int, supported: int):
        self.major, self.minor, self.supported = major, minor, supported
        super().__init__(
            f"message uses meshdcm protocol {major}.{minor}, this node speaks major version {supported}; "
            f"the message was refused: upgrade the older of the two nodes so that both speak {max(major, supported)}.x"
        )


class MalformedMessage(ProtocolError):
    """Frames, envelope or DICOM body that cannot be read."""


class FilterError(MeshError):
    """A DICOM input filter that cannot be used."""


class FilterSyntaxError(FilterError):
    """A filter expression that does not parse.

    ``column`` is 1-based; ``expected`` says what the parser was looking for.
    """

    def __init__(self, text: str, column: int, expected: str, found: str | None = None):
        self.text, self.column, self.expected, self.found = text, column, expected, found
        got = f", found {found}" if found else ""
        caret = " " * (column - 1) + "^"
        super().__init__(f"filter syntax error at column {column}: expected {expected}{got}\n  {text}\n  {caret}")


class ConfigError(MeshError):
    """Configuration that is missing, malformed or contradictory."""


class HandlerError(MeshError):
    """Raise from a handler to fail a message with an explicit next step for the operator.

    >>> raise HandlerError("series has only 12 time points", action="check the DSC protocol; need at least 30")

    The message is not retried (the handler says it cannot succeed as it is) unless ``retry=True`` (a passing
    condition, e.g. a PACS that is down): it goes to the node's dead letters at once (docs/delivery.md).
    """

    def __init__(self, reason: str, *, action: str | None = None, retry: bool = False):
        self.reason, self.action, self.retry = reason, action, retry
        super().__init__(reason if not action else f"{reason} (next: {action})")
