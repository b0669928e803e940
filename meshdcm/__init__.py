"""meshdcm: a brokerless ZeroMQ mesh of DICOM-aware nodes.

The public API::

    Node, Handler            a member of the mesh and its handlers       (meshdcm.node)
    Message                  topic + envelope + DICOM body               (meshdcm.message)
    Filter, parse_filter, attribute, ALL                                  (meshdcm.filters)
    NodeConfig, load_config                                               (meshdcm.config)
    FolderRetention          a work folder kept within a size and an age (meshdcm.retention)
    errors: MeshError, ProtocolError, VersionError, MalformedMessage, FilterError, FilterSyntaxError,
            ConfigError, HandlerError
"""

from ._version import __version__
from .config import NodeConfig, load_config
from .errors import (
    ConfigError,
    FilterError,
    FilterSyntaxError,
    HandlerError,
    MalformedMessage,
    MeshError,
    ProtocolError,
    VersionError,
)
from .filters import ALL, Filter, attribute
from .filters import parse as parse_filter
from .message import PROTOCOL_VERSION, Message, topic_matches
from .node import Handler, Node
from .retention import FolderRetention

__all__ = [
    "ALL",
    "PROTOCOL_VERSION",
    "ConfigError",
    "Filter",
    "FilterError",
    "FilterSyntaxError",
    "FolderRetention",
    "Handler",
    "HandlerError",
    "MalformedMessage",
    "MeshError",
    "Message",
    "Node",
    "NodeConfig",
    "ProtocolError",
    "VersionError",
    "__version__",
    "attribute",
    "load_config",
    "parse_filter",
    "topic_matches",
]
