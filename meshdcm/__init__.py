"""meshdcm: a brokerless ZeroMQ mesh of DICOM-aware nodes.

The public API::

    Node, Handler            a member of the mesh and its handlers       (meshdcm.node)
    Message                  topic + envelope + DICOM body               (meshdcm.message)
    Filter, parse_filter, attribute, ALL                                  (meshdcm.filters)
    NodeConfig, load_config                                               (meshdcm.config)
    FolderRetention, days_option   a work folder kept within a size and an age (meshdcm.retention)
    topics                   every topic's name and kind                 (meshdcm.topics)
    TransferError            a file could not be fetched (retried later) (meshdcm.transfer)
    data_dir, path_part      a node's data folder; a UID checked to name a folder safely
    node_options             a node kind's [nodes.KIND] options as a checked dataclass (meshdcm.options)
    errors: MeshError, ProtocolError, VersionError, MalformedMessage, FilterError, FilterSyntaxError,
            ConfigError, HandlerError
"""

from ._version import __version__
from . import topics
from .config import NodeConfig, data_dir, load_config
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
from .options import node_options
from .retention import FolderRetention, days_option
from .transfer import TransferError
from .uids import path_part

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
    "TransferError",
    "VersionError",
    "__version__",
    "attribute",
    "data_dir",
    "days_option",
    "load_config",
    "node_options",
    "parse_filter",
    "path_part",
    "topic_matches",
    "topics",
]
