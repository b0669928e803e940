"""The mesh as seen from the node's threads: the snapshot of the peer table the engine keeps current, waiting for
peers and for subscribers, who might miss a message published now, and the adverts discovery finds or loses.

A mixin of :class:`meshdcm.node.Node`: its methods use the node's peer snapshot and condition, its engine and its
mailbox.
"""

from __future__ import annotations

import json
import time
from typing import Callable

from .discovery import Advert


class PeerWatch:
    """Node methods about the other members of the mesh (mixed into the Node)."""

    @property
    def peers(self) -> list[dict]:
        """A snapshot of the peer table (see :meth:`meshdcm.peers.Peer.describe`)."""
        with self._peers_cond:
            return list(self._peers_snapshot)

    def wait_for(self, predicate: Callable[[list[dict]], bool], timeout: float) -> bool:
        """Wait until ``predicate(peers)`` is true; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._peers_cond:
            while not predicate(self._peers_snapshot):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._peers_cond.wait(min(left, 0.1))
            return True

    def wait_for_peers(self, count: int = 1, timeout: float = 5.0, *, role: str | None = "node") -> bool:
        return self.wait_for(lambda ps: sum(1 for p in ps if role is None or p["role"] == role) >= count, timeout)

    def wait_for_subscribers(self, topic: str, timeout: float = 5.0, at_least: int = 1) -> bool:
        """Wait until at least ``at_least`` known peers want ``topic`` and every known peer that wants it can receive
        it from this node (broadcast subscribers have their subscriptions in place). ``at_least=0`` waits only for
        the peers known now: with none known, that is at once, which is why it is not the default (a node just
        started has not discovered anyone yet)."""
        from .message import topic_matches

        def ready(peers):
            wanting = 0
            for p in peers:
                wants = [h for h in p["handlers"] if topic_matches(h["topic"], topic)]
                if any(not h["shared"] for h in wants) and not p["subscribed"]:
                    return False
                wanting += bool(wants)
            return wanting >= at_least
        return self.wait_for(ready, timeout)

    def unconfirmed(self, topic: str) -> list[str]:
        """Who might miss a message on ``topic`` published now: known peers that want it but whose subscription is not
        in place yet (by name), and control endpoints that were announced (mDNS adverts, static peers) but have not
        answered the handshake yet. Empty: every node this one knows of can receive it."""
        from .message import topic_matches

        names = [p["name"] for p in self.peers
                 if not p["subscribed"] and any(not h["shared"] and topic_matches(h["topic"], topic)
                                                for h in p["handlers"])]
        engine = self._engine
        if engine is not None:
            known = {p["endpoints"]["control"] for p in self.peers}
            names += [endpoint for endpoint in list(engine._seeds) if endpoint not in known]
        return names

    def unclaimed_work(self) -> dict[str, int]:
        """Per worker group, the work items this node sent that no member has taken (held or finished) yet."""
        return self._engine.leases.unclaimed() if self._engine is not None else {}

    def settle(self, quiet: float = 0.3, minimum: float = 0.5, maximum: float = 3.0) -> None:
        """Wait for discovery to go quiet: at least ``minimum`` s, until no peer joined for ``quiet`` s."""
        start = time.monotonic()
        last_change = start
        seen = len(self.peers)
        while True:
            now = time.monotonic()
            if now - start >= maximum or (now - start >= minimum and now - last_change >= quiet):
                return
            self.wait_for(lambda ps, n=seen: len(ps) != n, min(0.05, maximum))
            if len(self.peers) != seen:
                seen = len(self.peers)
                last_change = time.monotonic()

    # --- called by the engine (the peer table changed) and by discovery (an advert found or lost) ----------
    def _peers_changed(self, snapshot: list[dict]) -> None:
        with self._peers_cond:
            self._peers_snapshot = snapshot
            self._peers_cond.notify_all()

    def _on_found(self, advert: Advert) -> None:
        if self._mailbox is not None and not self._stopped.is_set():
            from dataclasses import asdict

            self._tell(b"\x00found " + json.dumps(asdict(advert)).encode())

    def _on_lost(self, node_id: str) -> None:
        if self._mailbox is not None and not self._stopped.is_set():
            self._tell(b"\x00lost " + node_id.encode())
