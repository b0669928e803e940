"""The engine's control protocol (docs/protocol.md, "Control messages"): greeting peers (HELLO/WELCOME, gossip,
mDNS adverts), the peer table's changes, the verbs a peer's DEALER sends to this node's ROUTER and the answers that
come back, heartbeats; and forgetting what departed peers left behind.

A mixin of :class:`meshdcm._engine.Engine`: its methods run on the engine thread and use the engine's sockets and
state. What a peer can make a node remember is bounded here (docs/security.md).
"""

from __future__ import annotations

import json
import logging
import time

import zmq

from .discovery import Advert
from .journal import SEQ_MOD
from .manifest import Manifest
from .message import PROTOCOL_VERSION

log = logging.getLogger("meshdcm.node")

_CONTROL_MAX = 1024 * 1024  # bytes: manifests are small
#: Bounds on what peers can make a node remember (docs/security.md): peers at once, former streams taken from one
#: manifest (its newest), endpoints taken from one manifest's gossip.
_MAX_PEERS = 1024
_STREAMS_PER_PEER = 256
_GOSSIP_MAX = 64


class ControlProtocol:
    """Engine methods for the control sockets (mixed into the Engine)."""

    def _hello_payload(self) -> bytes:
        known = [{"control": p.manifest.control, "key": p.manifest.key} for p in self.peers if p.manifest.control]
        newest = sorted(self._streams.items(), key=lambda item: (item[0] != self.stream, -item[1][1]))
        streams = {sid.hex(): info for sid, info in newest[:1 + _STREAMS_PER_PEER]}  # what a peer takes of it
        return json.dumps({"manifest": self.node.manifest().to_dict(), "peers": known, "streams": streams}).encode()

    def _dealer(self, endpoint: str, key: str = "") -> zmq.Socket | None:
        sock = self._dealers.get(endpoint)
        if sock is None:
            if not key:
                key = self._keys_of.get(endpoint, "")
            if self.node.keys is not None and not key:
                return None  # no way to check who answers there
            sock = self._client(self.ctx.socket(zmq.DEALER))
            sock.setsockopt(zmq.IMMEDIATE, 1)
            sock.setsockopt(zmq.SNDHWM, 100)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
            # replayed frames come back this way: as large as any message
            sock.setsockopt(zmq.MAXMSGSIZE, max(_CONTROL_MAX, self.node.config.max_message_size))
            self._connect_to(sock, endpoint, key)
            self._dealers[endpoint] = sock
        return sock

    def _seed(self, endpoint: str, *, for_seconds: float | None, key: str = "") -> None:
        if key:
            self._keys_of[endpoint] = key
        current = self._seeds.get(endpoint)
        until = None if for_seconds is None else time.monotonic() + for_seconds
        if current is None:
            self._seeds[endpoint] = [0.0, until]
        elif current[1] is not None:
            current[1] = until

    def _say(self, endpoint: str, frames: list[bytes]) -> bool:
        sock = self._dealer(endpoint)
        if sock is None:
            return False
        try:
            sock.send_multipart(frames, zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False

    def _on_advert(self, advert: Advert) -> None:
        if advert.node_id == self.node.id:
            return
        if advert.mesh != self.node.config.mesh:
            log.debug("ignoring node %s of mesh %r", advert.node_id[:12], advert.mesh)
            return
        if not self._trusted(advert.key):
            self._noted("untrusted advert", "ignoring the mDNS advert of node %s (%s) at %s: its key is not in this "
                        "mesh's keyring (a node of another site, or a forgery)", advert.name, advert.node_id[:12],
                        advert.control)
            return
        peer = self.peers.get(advert.node_id)
        if peer is not None and peer.manifest.digest == advert.digest:
            return
        self._seed(advert.control, for_seconds=self.node.config.rediscover_for, key=advert.key)
        self._say(advert.control, [b"HELLO", self._hello_payload()])

    def _broadcast_hello(self) -> None:
        if self.node._stopped.is_set():
            return
        payload = self._hello_payload()
        for peer in self.peers:
            self._say(peer.manifest.control, [b"HELLO", payload])

    def _accept(self, payload: bytes, via: str) -> Manifest | None:
        try:
            data = json.loads(payload)
            manifest = Manifest.from_dict(data["manifest"])
        except (ValueError, KeyError, TypeError) as exc:
            self._noted(f"unreadable {via}", "ignoring an unreadable %s: %s", via, exc)
            return None
        if manifest.node_id == self.node.id:
            return None
        if manifest.mesh != self.node.config.mesh:
            self._noted("other mesh", "ignoring node %s (%s): it belongs to mesh %r, not %r", manifest.name,
                        manifest.node_id[:12], manifest.mesh[:64], self.node.config.mesh)
            return None
        if not self._trusted(manifest.key):
            self._noted("untrusted", "ignoring node %s (%s): its key is not in this mesh's keyring", manifest.name,
                        manifest.node_id[:12])
            return None
        major = manifest.protocol.split(".")[0]
        if major != str(PROTOCOL_VERSION[0]):
            self._noted("protocol", "ignoring node %s (%s): it speaks protocol %s, this node %d.x; upgrade the older "
                        "one", manifest.name, manifest.node_id[:12], manifest.protocol[:32], PROTOCOL_VERSION[0])
            return None
        if manifest.node_id not in self.peers and len(self.peers) >= _MAX_PEERS:
            self._noted("too_many_peers", "ignoring node %s (%s): this node already has %d peers, the most it takes",
                        manifest.name, manifest.node_id[:12], _MAX_PEERS)
            return None
        # a node restarted on the same endpoints replaces its former self
        for other in self.peers:
            if other.id != manifest.node_id and manifest.control and other.manifest.control == manifest.control:
                self._drop(other.id, "a new node took over its endpoints", close_dealer=False)
        peer, is_new = self.peers.add(manifest)
        if manifest.node_id in self._ready_ids:
            peer.subscribed = True
        self._connect(manifest)
        seed = self._seeds.get(manifest.control)
        if seed is not None and seed[1] is not None:
            self._seeds.pop(manifest.control)
        if is_new:
            log.info("peer joined: %s (%s, kind %s, group %s) at %s", manifest.name, manifest.node_id[:12],
                     manifest.kind, manifest.group or "-", manifest.control)
        gossip = data.get("peers", ())
        for entry in gossip[:_GOSSIP_MAX] if isinstance(gossip, list) else ():
            endpoint = entry.get("control") if isinstance(entry, dict) else None
            key = entry.get("key", "") if isinstance(entry, dict) else ""
            if isinstance(endpoint, str) and endpoint.startswith("tcp://") and endpoint != self.endpoints["control"] \
                    and self.peers.by_control(endpoint) is None and endpoint not in self._seeds \
                    and isinstance(key, str) and self._trusted(key):
                self._seed(endpoint, for_seconds=self.node.config.rediscover_for, key=key)
        streams = data.get("streams")
        if isinstance(streams, dict):
            self._met_streams(manifest, streams)
        self._group_route_cache.clear()
        self._changed()
        return manifest

    def _met_streams(self, manifest: Manifest, streams: dict) -> None:
        """A peer's HELLO/WELCOME lists the streams it answers replays for (its own and former incarnations')."""
        tracking = self.node._receives_events()
        met = []
        for hex_id, info in streams.items():
            try:
                sid = bytes.fromhex(hex_id)
                last, started = int(info[0]) % SEQ_MOD, float(info[1])
            except (ValueError, TypeError, IndexError):
                continue
            if len(sid) == 16 and sid != self.stream:
                met.append((started, sid, last))
        met.sort(reverse=True)  # its own stream and the newest former ones: what can still be missing here
        own = manifest.id_bytes
        for started, sid, last in [m for m in met if m[1] == own] + [m for m in met if m[1] != own][:_STREAMS_PER_PEER]:
            self._homes[sid] = manifest.node_id
            if tracking and (sid == own or sid in self.receipts.streams
                             or self.receipts.knows_sender(manifest.name, started)):
                self.receipts.meet(sid, manifest.name, last, started)

    def _connect(self, m: Manifest) -> None:
        self._sub_retire.pop(m.events, None)
        if m.events and m.events not in self._sub_connected:
            self._connect_to(self.inbox, m.events, m.key)
            self._sub_connected.add(m.events)
        if m.group and m.work and any(h.shared for h in m.handlers):
            sock = self._group_push.get(m.group)
            if sock is None:
                sock = self._client(self.ctx.socket(zmq.PUSH))
                sock.setsockopt(zmq.IMMEDIATE, 1)  # only to members whose connection is up
                sock.setsockopt(zmq.SNDHWM, self.node.config.high_water_mark)
                sock.setsockopt(zmq.LINGER, int(self.node.config.linger * 1000))
                self._group_push[m.group] = sock
                self._group_members[m.group] = set()
            if m.work not in self._group_members[m.group]:
                self._connect_to(sock, m.work, m.key)
                self._group_members[m.group].add(m.work)
            self._pump(m.group)

    def _drop(self, node_id: str, why: str, close_dealer: bool = True, forget: bool = False) -> None:
        peer = self.peers.remove(node_id)
        if peer is None:
            return
        m = peer.manifest
        if forget:  # it left on purpose: stop asking for it (static peers are asked for forever)
            seed = self._seeds.get(m.control)
            if seed is not None and seed[1] is not None:
                del self._seeds[m.control]
        log.info("peer left: %s (%s): %s", m.name, node_id[:12], why)
        if m.events in self._sub_connected:
            # keep reading what it already sent; disconnect later unless someone is back on that endpoint
            self._sub_retire[m.events] = time.monotonic() + self.node.config.linger
        if m.group in self._group_members and m.work in self._group_members[m.group]:
            if m.work not in {p.manifest.work for p in self.peers}:
                try:
                    self._group_push[m.group].disconnect(m.work)
                except zmq.ZMQError:
                    pass
                self._group_members[m.group].discard(m.work)
        if close_dealer:
            sock = self._dealers.pop(m.control, None)
            if sock is not None:
                sock.close(linger=0)
        self._group_route_cache.clear()
        self._changed()

    # Control verbs (docs/protocol.md): on the ROUTER, (identity, payload) -> None; on a DEALER (answers to what this
    # node asked), (frames) -> None. A verb not in the tables goes to the node (FETCH) or is ignored.

    def _control_verbs(self) -> dict:
        return {b"HELLO": self._on_hello, b"PING": self._on_ping, b"REPLAY": self._replay,
                b"WORK": lambda identity, payload: self._on_work_report(payload),
                b"BYE": self._on_bye}

    def _reply_verbs(self) -> dict:
        return {b"WELCOME": lambda frames: self._accept(self._payload(frames), "WELCOME"),
                b"PONG": lambda frames: self._heard(self._payload(frames)),
                b"FRAME": lambda frames: self._deliver(frames[1], False) if len(frames) == 2 else None,
                b"REPLAYED": lambda frames: self._replayed(self._payload(frames)),
                b"WHO": lambda frames: self._broadcast_hello(),
                **dict.fromkeys((b"DATA", b"LIST", b"NOFILE"), lambda frames: self.node._transfers.deliver(
                    frames[0], self._payload(frames), frames[2] if len(frames) > 2 else b""))}

    @staticmethod
    def _payload(frames: list[bytes]) -> bytes:
        return frames[1] if len(frames) > 1 else b""

    def _on_control(self, frames: list[bytes]) -> None:
        if len(frames) < 2 or len(frames) > 3:
            self.node._count("malformed")
            return
        identity, kind = frames[0], frames[1]
        payload = frames[2] if len(frames) > 2 else b""
        verb = self._control_table.get(kind)
        if verb is not None:
            verb(identity, payload)
            return
        reply = self.node._control_message(kind, payload, identity)
        if reply:
            self.control.send_multipart([identity, *reply])

    def _on_hello(self, identity: bytes, payload: bytes) -> None:
        if self.node._stopped.is_set():
            return  # leaving: do not make new friends
        manifest = self._accept(payload, "HELLO")
        if manifest is not None:
            self.control.send_multipart([identity, b"WELCOME", self._hello_payload()])
            self._dealer(manifest.control, manifest.key)

    def _on_bye(self, identity: bytes, payload: bytes) -> None:
        """``<node id hex> <last seq>`` (older nodes sent only the id): the peer leaves. Its last number tells a tail
        that never arrived from one still in flight: what is not here after the grace is asked for, and since the
        sender is gone, reported lost after ``rediscover_for`` unless it comes back to replay it."""
        node_id, _, last = payload.decode("ascii", "replace").partition(" ")
        peer = self.peers.get(node_id)
        if peer is not None and last.isdigit():
            self._announced(peer, int(last) % SEQ_MOD)
        self._drop(node_id, "it said goodbye", forget=True)

    def _on_ping(self, identity: bytes, payload: bytes) -> None:
        node_id = self._heard(payload)
        self.control.send_multipart([identity, b"PONG", self._status()])
        if node_id not in self.peers:
            # a peer that knows us but that we dropped (e.g. after a partition): ask again
            self.control.send_multipart([identity, b"WHO", b""])

    def _on_reply(self, frames: list[bytes]) -> None:
        verb = self._reply_table.get(frames[0]) if frames else None
        if verb is not None:
            verb(frames)

    def _status(self) -> bytes:
        """PING/PONG payload: our node id, the last seq of our stream, how many messages wait for handlers, and
        1 if we are behind (the engine stopped reading), else 0."""
        behind = self._behind_since is not None
        return b"%s %d %d %d" % (self.node.id.encode(), self.seq, self.node._pending(), behind)

    def _heard(self, payload: bytes) -> str:
        parts = payload.split(b" ")
        node_id = parts[0].decode("ascii", "replace")
        self.peers.heard(node_id)
        peer = self.peers.get(node_id)
        if peer is not None and len(parts) >= 4:
            try:
                seq, pending, behind = int(parts[1]) % SEQ_MOD, int(parts[2]), parts[3] == b"1"
            except ValueError:
                return node_id
            peer.pending = pending
            if peer.behind != behind:
                peer.behind = behind
                self._changed()
            self._announced(peer, seq)
        return node_id

    def _announced(self, peer, seq: int) -> None:
        """A peer said the last number of its stream (PING/PONG, BYE): one not seen here a second later is missing."""
        sid = peer.manifest.id_bytes
        if self.node._receives_events() and sid in self.receipts.streams:
            self.receipts.meet(sid, peer.manifest.name, seq, peer.manifest.started)

    def _prune_departed(self) -> None:
        """What departed peers left behind: their streams once expired (``Inbox.prune``), where to ask for them,
        the keys of endpoints no one uses any more."""
        live = {p.manifest.id_bytes for p in self.peers}
        for sid in self.receipts.prune(live):
            self._homes.pop(sid, None)
            self._orphans.pop(sid, None)
        ids = {p.id for p in self.peers} | {self.node.id}
        for sid in [sid for sid, home in self._homes.items() if home not in ids and sid not in self.receipts.streams]:
            del self._homes[sid]
        used = {p.manifest.control for p in self.peers} | set(self._seeds)
        for endpoint in [e for e in self._keys_of if e not in used]:
            del self._keys_of[endpoint]
