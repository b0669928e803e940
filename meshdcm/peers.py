"""The peer table: who is in the mesh, and whether they are alive.

States follow ZRE (rfc.zeromq.org/spec/36): a peer heard from recently is ``alive``; one silent for
``evasive_after`` seconds is ``evasive`` and gets pinged; one silent for ``expire_after`` is ``expired``
and dropped.  Any traffic from a peer (HELLO, WELCOME, PING, PONG) counts as proof of life.
The table is owned by the node's engine thread; other threads read :meth:`PeerTable.snapshot`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .manifest import Manifest

__all__ = ["ALIVE", "EVASIVE", "EXPIRED", "Peer", "PeerTable", "Timing"]

ALIVE, EVASIVE, EXPIRED = "alive", "evasive", "expired"


@dataclass(frozen=True)
class Timing:
    """Heartbeat timing, in seconds (docs/discovery.md explains the choice)."""

    ping_interval: float = 0.5
    evasive_after: float = 1.5
    expire_after: float = 2.5


@dataclass
class Peer:
    manifest: Manifest
    first_seen: float = field(default_factory=time.monotonic)
    last_seen: float = field(default_factory=time.monotonic)
    last_ping: float = 0.0
    state: str = ALIVE
    subscribed: bool = False  # its SUB socket has all its subscriptions on our XPUB
    pending: int = 0  # messages waiting for its handlers, as its last PING/PONG said (docs/delivery.md)
    behind: bool = False  # its handler queue is full: it stopped reading (a slow consumer)

    @property
    def id(self) -> str:
        return self.manifest.node_id

    def describe(self, now: float | None = None) -> dict:
        now = time.monotonic() if now is None else now
        m = self.manifest
        return {
            "id": m.node_id, "name": m.name, "kind": m.kind, "role": m.role, "host": m.host, "group": m.group,
            "state": self.state, "age": round(now - self.first_seen, 3), "silent": round(now - self.last_seen, 3),
            "subscribed": self.subscribed, "pending": self.pending, "behind": self.behind, "endpoints": {"control": m.control, "events": m.events, "work": m.work},
            "handlers": [h.to_dict() for h in m.handlers], "capabilities": list(m.capabilities),
            "software": m.software, "protocol": m.protocol, "extra": m.extra,
        }


class PeerTable:
    def __init__(self, timing: Timing = Timing()):
        self.timing = timing
        self._peers: dict[str, Peer] = {}

    def __contains__(self, node_id: str) -> bool:
        return node_id in self._peers

    def __iter__(self):
        return iter(list(self._peers.values()))

    def __len__(self) -> int:
        return len(self._peers)

    def get(self, node_id: str) -> Peer | None:
        return self._peers.get(node_id)

    def by_control(self, endpoint: str) -> Peer | None:
        for p in self._peers.values():
            if p.manifest.control == endpoint:
                return p
        return None

    def add(self, manifest: Manifest) -> tuple[Peer, bool]:
        """Insert or refresh a peer; returns (peer, is_new)."""
        peer = self._peers.get(manifest.node_id)
        if peer is None:
            peer = Peer(manifest)
            self._peers[manifest.node_id] = peer
            return peer, True
        peer.manifest = manifest
        self.heard(manifest.node_id)
        return peer, False

    def remove(self, node_id: str) -> Peer | None:
        return self._peers.pop(node_id, None)

    def heard(self, node_id: str) -> None:
        peer = self._peers.get(node_id)
        if peer is not None:
            peer.last_seen = time.monotonic()
            peer.state = ALIVE

    def sweep(self, now: float) -> tuple[list[Peer], list[Peer]]:
        """Update states; returns (peers to ping now, peers that expired: the caller drops them)."""
        to_ping, expired = [], []
        t = self.timing
        for peer in list(self._peers.values()):
            silent = now - peer.last_seen
            if silent >= t.expire_after:
                peer.state = EXPIRED
                expired.append(peer)
                continue
            if silent >= t.evasive_after:
                peer.state = EVASIVE
            if silent >= t.ping_interval and now - peer.last_ping >= t.ping_interval:
                peer.last_ping = now
                to_ping.append(peer)
        return to_ping, expired

    def snapshot(self) -> list[dict]:
        now = time.monotonic()
        return [p.describe(now) for p in self._peers.values()]
