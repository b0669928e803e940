"""A node's manifest: what it is, where it listens, and what it wants — sent in HELLO/WELCOME.

The mDNS advert stays tiny (docs/discovery.md); the full manifest travels over the control socket. Its
``digest`` is put in the advert, so a peer sees that a manifest changed and asks for it again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from .message import PROTOCOL_VERSION, topic_matches

__all__ = ["HandlerSpec", "Manifest"]


@dataclass(frozen=True)
class HandlerSpec:
    """What one handler wants: a topic prefix, a filter (its text) and whether work is shared in the group."""

    topic: str
    where: str = ""
    shared: bool = False

    def to_dict(self) -> dict:
        return {"topic": self.topic, "where": self.where, "shared": self.shared}


@dataclass(frozen=True)
class Manifest:
    node_id: str
    name: str
    mesh: str
    kind: str = "node"
    role: str = "node"  # "node", or "tool" for short-lived CLI helpers (tail, publish, peers)
    group: str | None = None
    host: str = ""
    pid: int = 0
    software: str = ""
    protocol: str = f"{PROTOCOL_VERSION[0]}.{PROTOCOL_VERSION[1]}"
    control: str = ""
    events: str = ""
    work: str = ""
    key: str = ""  # the node's CURVE public key (Z85) in a mesh with a keyring
    handlers: tuple[HandlerSpec, ...] = ()
    capabilities: tuple[str, ...] = ()
    started: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "id": self.node_id, "name": self.name, "mesh": self.mesh, "kind": self.kind, "role": self.role,
            "group": self.group, "host": self.host, "pid": self.pid, "software": self.software,
            "protocol": self.protocol,
            "endpoints": {"control": self.control, "events": self.events, "work": self.work}, "key": self.key,
            "handlers": [h.to_dict() for h in self.handlers], "capabilities": list(self.capabilities),
            "started": self.started, "extra": self.extra,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode("utf-8")

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.to_json()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: dict) -> "Manifest":
        ep = d.get("endpoints") or {}
        node_id = str(d["id"])
        if len(node_id) != 32 or bytes.fromhex(node_id).hex() != node_id:  # ValueError: not lower-case hex
            raise ValueError(f"a node id is 32 lower-case hex digits, not {node_id[:40]!r}")
        return cls(
            node_id=node_id, name=str(d.get("name", "")), mesh=str(d.get("mesh", "")),
            kind=str(d.get("kind", "node")), role=str(d.get("role", "node")), group=d.get("group") or None,
            host=str(d.get("host", "")), pid=int(d.get("pid", 0)), software=str(d.get("software", "")),
            protocol=str(d.get("protocol", "")), control=str(ep.get("control", "")),
            events=str(ep.get("events", "")), work=str(ep.get("work", "")), key=str(d.get("key", "")),
            handlers=tuple(HandlerSpec(str(h["topic"]), str(h.get("where", "")), bool(h.get("shared", False)))
                           for h in d.get("handlers", ())),
            capabilities=tuple(str(c) for c in d.get("capabilities", ())), started=float(d.get("started", 0.0)),
            extra=dict(d.get("extra") or {}),
        )

    @property
    def id_bytes(self) -> bytes:
        """The node id as the 16 bytes that name its stream."""
        return bytes.fromhex(self.node_id)

    def wants(self, topic: str, *, shared: bool) -> list[HandlerSpec]:
        """The handlers that want ``topic`` (shared ones, or broadcast ones)."""
        return [h for h in self.handlers if h.shared == shared and topic_matches(h.topic, topic)]
