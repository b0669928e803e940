"""The node's engine: one thread that owns every ZeroMQ socket of a node (its parts: _sockets, _control, _delivery).

Sockets (docs/architecture.md draws them):

    events   XPUB  bound     every message this node publishes; XPUB shows who subscribed
    inbox    SUB   connects  to every peer's events endpoint, subscribed to this node's broadcast topics
    work     PULL  bound     work items for this node's worker group
    groups   PUSH  connects  one per worker group that wants what this node publishes, to each member's work
    control  ROUTER bound    HELLO / WELCOME / PING / PONG / BYE, REPLAY and WORK reports from peers
    outbox   DEALER connects one per peer control endpoint (ZRE style)
    commands PULL  inproc    publish requests and discovery news from other threads

Other threads never touch these sockets: they send commands over thread-local inproc PUSH sockets
(:class:`Mailbox`).  Received messages are parsed and filtered here, and matching (handler, message) pairs go
to the node's worker threads, so a slow handler never blocks reception; when too many are pending the engine
stops reading (ZeroMQ's queues then push back) instead of growing without bound.

Delivery (docs/delivery.md): every frame sent is journaled (:mod:`meshdcm.journal`, committed once per loop
iteration); receivers track each sender's stream (:mod:`meshdcm.receipts`), drop duplicates and ask for gaps to be
replayed over the control sockets; work items stay leased until a member acknowledges them (:mod:`meshdcm.leases`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import zmq

from ._control import ControlProtocol
from ._delivery import DeliveryDuties
from ._host import EngineHost
from ._sockets import READY_MARKER, EngineSockets
from .discovery import Advert
from .errors import MalformedMessage, VersionError
from .journal import seq_add
from .leases import Leases
from .message import FLAG_WORK, Message, stamp, topic_matches
from .peers import PeerTable

log = logging.getLogger("meshdcm.node")

_BATCH = 512
#: Seconds between the engine's timer ticks (heartbeats, replays, leases, acknowledgements): often while data moves,
#: less often at rest, so that an idle node costs little (bench/idle.py) and a silent peer is still expired in time.
_BUSY_TICK, _IDLE_TICK = 0.1, 0.25
#: Distinct (topic, work) routes remembered: beyond it the cache starts over (topics are free text).
_ROUTE_CACHE_MAX = 1024


def _worth_saying_again(n: int) -> bool:
    """A repeated warning is logged again, with its count, at the 10th, 100th and 1000th time, then every 10,000th."""
    return n in (10, 100, 1000) or n % 10000 == 0
_GROUP_BACKLOG = 10_000  # work items waiting for a group: over this, the node says so loudly (none is dropped)


class Engine(EngineSockets, ControlProtocol, DeliveryDuties, threading.Thread):
    def __init__(self, node: EngineHost):
        super().__init__(name=f"meshdcm-engine-{node.name}", daemon=True)
        self.node = node
        self.ctx = node._context
        self.cmd_endpoint = f"inproc://meshdcm-cmd-{node.id}"
        self.ready = threading.Event()
        self.failure: BaseException | None = None
        self.peers = PeerTable(node.config.timing)
        self.seq = 0
        self.stream = node.id_bytes  # this incarnation's stream: the node id
        self.outbox = node._outbox
        self.outbox.on_commit = node._synced
        self.receipts = node._inbox
        timing = node.config.timing
        self.leases = Leases(node.config.lease, claim_timeout=max(5.0, 2 * timing.expire_after))
        self._streams: dict[bytes, list] = {}  # stream -> [last seq, started]: ours and our journal's former ones
        self._homes: dict[bytes, str] = {}  # stream -> id of the peer that answers replays for it
        self._orphans: dict[bytes, float] = {}  # stream with gaps whose home is gone -> since when (monotonic)
        self._notes: dict[str, int] = {}  # warnings said once, then counted (a few keys: kind, socket + exception)
        self._last_prune = time.monotonic()
        self._control_table = self._control_verbs()
        self._reply_table = self._reply_verbs()
        self._work_reports: dict[bytes, list] = {}  # stream -> [done seqs, held-new seqs] to report to its sender
        self._last_hold = 0.0
        self._behind_since: float | None = None
        self._behind_reported = False
        self._backlog_warned: set[str] = set()
        self._syncs: list[str] = []
        self.endpoints: dict[str, str] = {}
        self._dealers: dict[str, zmq.Socket] = {}  # control endpoint -> DEALER
        # control endpoints to HELLO until a peer answers there -> [last try, give up at (None: never)]
        self._seeds: dict[str, list] = {}
        self._keys_of: dict[str, str] = {}  # control endpoint -> the CURVE public key expected there
        self._authorized: set[bytes] = set()
        self._keys_mtime = 0.0
        self._group_push: dict[str, zmq.Socket] = {}
        self._group_members: dict[str, set[str]] = {}  # group -> work endpoints connected
        self._sub_connected: set[str] = set()
        self._sub_retire: dict[str, float] = {}  # events endpoint -> when to disconnect the SUB from it
        self._ready_ids: set[str] = set()
        self._route_cache: dict[tuple[str, bool], list] = {}
        self._group_route_cache: dict[str, list[str]] = {}
        self._subscribed: set[str] = set()
        self._version_warned: set[bytes] = set()
        self._running = True
        self._last_key_check = 0.0

    # --- setup ------------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._setup()
        except BaseException as exc:
            self.failure = exc
            self.ready.set()
            return
        self.ready.set()
        try:
            self._loop()
        except BaseException as exc:  # the engine must never die silently
            log.exception("the node engine stopped on an unexpected error: %s", exc)
            self.failure = exc
        finally:
            self._teardown()

    def _loop(self) -> None:
        node = self.node
        next_tick = time.monotonic()
        busy_until = 0.0  # data moved recently: tick often (acknowledgements, replays and leases wait for ticks)
        dealer_sockets: dict[zmq.Socket, str] = {}
        while self._running:
            poller = self.poller_ctl if node._pending() >= node.config.max_pending else self.poller_all
            for sock in self._dealers.values():
                if sock not in dealer_sockets:
                    dealer_sockets[sock] = ""
                    self.poller_all.register(sock, zmq.POLLIN)
                    self.poller_ctl.register(sock, zmq.POLLIN)
            timeout = max(0.0, next_tick - time.monotonic())
            events = dict(poller.poll(timeout * 1000))
            if self.cmd in events or self.inbox in events or (self.work is not None and self.work in events):
                busy_until = time.monotonic() + 1.0
            if self.cmd in events:
                self._drain_frames(self.cmd, self._on_command)
            if self.inbox in events:
                self._drain_frames(self.inbox, self._deliver_event)
            if self.work is not None and self.work in events:
                self._drain_frames(self.work, self._deliver_work)
            if self.control in events:
                self._drain(self.control, self._on_control)
            if self.events in events:
                self._drain_subscriptions()
            for sock in list(dealer_sockets):
                if sock.closed:
                    # a closed socket left in a poller is polled as file descriptor 0: with stdin at EOF (a tool in
                    # the background) every poll returns at once and the engine spins
                    dealer_sockets.pop(sock)
                    self._unpoll(sock)
                    continue
                if sock in events:
                    self._drain(sock, self._on_reply)
            node._dispatcher.flush()  # replayed frames (FRAME over the control sockets) wait in the batch
            self.outbox.commit(self._syncs)  # what was sent in this iteration is accepted once written
            self._syncs = []
            now = time.monotonic()
            if now >= next_tick:
                busy = (now < busy_until or node._pending() or self.leases.outstanding() or self._work_reports_due()
                        or self.receipts.missing_count())
                next_tick = now + (_BUSY_TICK if busy else _IDLE_TICK)
                self._on_tick(now)
                for sock in [s for s in dealer_sockets if s.closed]:
                    dealer_sockets.pop(sock)
                    self._unpoll(sock)

    def _drain_frames(self, sock: zmq.Socket, handle) -> None:
        recv = sock.recv
        for _ in range(_BATCH):
            try:
                frame = recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            try:
                handle(frame)  # every frame is checked on its own: extra frames of a multipart message are malformed
            except Exception as exc:  # no input ends the engine
                self._input_failed(sock, exc)
        # more may be waiting: the next poll returns at once
        self.node._dispatcher.flush()

    def _drain(self, sock: zmq.Socket, handle) -> None:
        for _ in range(_BATCH):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                handle(frames)
            except Exception as exc:  # no input ends the engine
                self._input_failed(sock, exc)
            if not self._running:
                return

    def _known_sender(self, sender: bytes) -> bool:
        """A stream we already follow, one a peer announced (its own, or its former runs' from its HELLO), or a
        peer's id."""
        return (sender in self.receipts.streams or sender in self._homes
                or self.peers.get(sender.hex()) is not None)

    def _noted(self, key: str, text: str, *args) -> None:
        """A warning said the first time, then at 10, 100, 1000... times with the count: a flood of bad input
        costs a few log lines, not one per message."""
        n = self._notes[key] = self._notes.get(key, 0) + 1
        if n == 1:
            log.warning(text, *args)
        elif _worth_saying_again(n):
            log.warning(text + " (%d times so far)", *args, n)

    def _input_failed(self, sock: zmq.Socket, exc: Exception) -> None:
        """A message on ``sock`` made a handler of the engine raise: count it, log it (the first time with its
        traceback, then at 10, 100, 1000... of the same kind), and go on with the next."""
        self.node._count("malformed")
        where = ("control" if sock is self.control else "events" if sock is self.inbox else "work" if sock is self.work
                 else "commands" if sock is self.cmd else "replies")
        key = f"{where} {type(exc).__name__}"
        n = self._notes[key] = self._notes.get(key, 0) + 1
        if n == 1:
            log.error("a message on the %s socket could not be handled (%s: %s); it is dropped and the node goes on",
                      where, type(exc).__name__, exc, exc_info=exc)
        elif _worth_saying_again(n):
            log.error("%d messages on the %s socket could not be handled (%s) so far; each was dropped", n, where,
                      type(exc).__name__)

    # --- commands from other threads -------------------------------------------------------------
    def _on_command(self, frame: bytes) -> None:
        if frame[0] != 0:  # a message to publish (topics never start with a zero byte)
            self._send(frame)
            return
        kind, _, payload = frame[1:].partition(b" ")
        if kind == b"found":
            self._on_advert(Advert(**json.loads(payload)))
        elif kind == b"lost":
            self._drop(payload.decode(), "it left mDNS", forget=True)
        elif kind == b"manifest":
            self._resubscribe()
            self._broadcast_hello()
        elif kind == b"fetch":
            request = json.loads(payload)
            peer = self.peers.get(request.pop("node"))
            frames = [b"FETCH", json.dumps(request).encode()]
            if peer is None or not self._say(peer.manifest.control, frames):
                self.node._transfers.deliver(b"NOFILE", json.dumps(
                    {"req": request["req"], "reason": "the node holding it is not reachable now",
                     "unreachable": True}).encode(), b"")
        elif kind == b"acks":
            self._send_work_reports()
        elif kind == b"sync":
            self._syncs.append(payload.decode())
        elif kind == b"stop":
            self._running = False

    def _send(self, frame: bytes) -> None:
        self.seq = seq = seq_add(self.seq, 1)  # 2**64 - 1 is followed by 0 (test_node_api: between real nodes)
        stamped = stamp(frame, seq)
        self.events.send(stamped, copy=True)  # a subscriber past its high-water mark misses it: a gap it replays
        groups = ()
        if self._group_push:
            groups = self._groups_for(frame[:frame.index(b" ")].decode())
        work = stamp(frame, seq, FLAG_WORK) if groups else None
        self.outbox.append(self.stream, seq, stamped, groups, work)
        self._streams[self.stream][0] = seq
        if groups:
            for group in groups:
                self.leases.add(group, self.stream, seq, work)
                self._pump(group)

    def _pump(self, group: str) -> None:
        """Send a group's waiting work items while its window has room and a member takes them."""
        sock = self._group_push.get(group)
        if sock is None:
            return
        now = time.monotonic()
        while True:
            item = self.leases.next_to_send(group)
            if item is None:
                break
            try:
                sock.send(item.frame, zmq.NOBLOCK)
            except zmq.Again:
                break
            self.leases.sent(item, now)
        waiting = self.leases.waiting(group)
        if waiting >= _GROUP_BACKLOG and group not in self._backlog_warned:
            self._backlog_warned.add(group)
            self.node._report_backlog(group, waiting)
        elif waiting < _GROUP_BACKLOG // 2:
            self._backlog_warned.discard(group)

    def _groups_for(self, topic: str) -> list[str]:
        groups = self._group_route_cache.get(topic)
        if groups is None:
            groups = []
            for peer in self.peers:
                g = peer.manifest.group
                if g and g in self._group_push and g not in groups and peer.manifest.wants(topic, shared=True):
                    groups.append(g)
            self._group_route_cache[topic] = groups
        return groups

    # --- receiving --------------------------------------------------------------------------------
    def _deliver_event(self, frame: bytes) -> None:
        self._deliver(frame, False)

    def _deliver_work(self, frame: bytes) -> None:
        self._deliver(frame, True)

    def _deliver(self, frame: bytes, work: bool) -> None:
        node = self.node
        try:
            msg = Message.from_bytes(frame)
        except VersionError as exc:
            at = frame.find(b" ") + 1
            sender = bytes(frame[at + 40:at + 56])
            if sender not in self._version_warned and len(self._version_warned) < 256:  # bounded: ids are free
                self._version_warned.add(sender)
                log.error("refused a message from node %s: %s", sender.hex()[:12], exc)
            node._count("refused")
            return
        except MalformedMessage as exc:
            node._count("malformed")
            self._noted("malformed", "dropped a malformed message: %s", exc)
            return
        inbox = self.receipts
        if not self._known_sender(msg.sender):
            # a sender no peer announced (a forged or stray id): dropped and counted, nothing kept for it
            node._count("unknown_sender")
            self._noted("unknown_sender", "dropped a message of sender %s, which no peer announced",
                        msg.sender.hex()[:12])
            return
        if work:
            verdict = inbox.accept_work(msg.message_id, msg.sender, msg.seq)
            if verdict != "new":
                node._count("duplicates")
                if verdict == "done":  # its sender missed our acknowledgement: say it again
                    self._work_report(msg.sender)[0].append(msg.seq)
                return
            self._work_report(msg.sender)[1].append(msg.seq)
            stream = None
        else:
            stream = inbox.streams.get(msg.sender)
            if stream is None:
                peer = self.peers.get(msg.sender.hex())
                stream = inbox.first_message(msg.sender, peer.manifest.name if peer else "", msg.seq)
                if peer is not None:
                    self._homes.setdefault(msg.sender, peer.id)
            if not inbox.accept(stream, msg.seq):
                node._count("duplicates")
                return
        handlers = self._route_cache.get((msg.topic, work))
        if handlers is None:
            if len(self._route_cache) >= _ROUTE_CACHE_MAX:
                self._route_cache.clear()  # topics are free text: the cache stays bounded whatever peers send
            handlers = [h for h in node._dispatcher.handlers if h.shared == work and topic_matches(h.topic, msg.topic)]
            if not work:
                handlers += [h for h in node._dispatcher.internal if topic_matches(h.topic, msg.topic)]
            self._route_cache[(msg.topic, work)] = handlers
        matched = []
        for handler in handlers:
            flt = handler.filter
            if not flt.is_all:
                try:
                    if not flt.evaluate(msg.view.get):
                        continue
                except MalformedMessage as exc:
                    node._fail(handler, msg, exc, action="the publisher sent a DICOM body that cannot be read; "
                                                      "fix the publishing node and publish again")
                    break
            matched.append(handler)
        if not matched:
            if work:
                inbox.record_work(msg.message_id)
                self._work_report(msg.sender)[0].append(msg.seq)
            else:
                inbox.settle(stream, msg.seq)
            return
        receipt = node._dispatcher.receipt(stream, msg, len(matched))
        for handler in matched:
            node._dispatcher.dispatch(handler, msg, receipt)

    def _work_report(self, stream: bytes) -> list:
        report = self._work_reports.get(stream)
        if report is None:
            report = self._work_reports[stream] = [[], []]
        return report

    def _drain_subscriptions(self) -> None:
        for _ in range(_BATCH):
            try:
                sub = self.events.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if sub[1:1 + len(READY_MARKER)] == READY_MARKER:
                node_id = sub[1 + len(READY_MARKER):].decode("ascii", "replace")
                subscribed = sub[0] == 1
                if subscribed:
                    self._ready_ids.add(node_id)
                else:
                    self._ready_ids.discard(node_id)
                peer = self.peers.get(node_id)
                if peer is not None:
                    peer.subscribed = subscribed
                    self._changed()

    # --- control protocol -------------------------------------------------------------------------
    def _on_tick(self, now: float) -> None:
        if self.auth is not None and now - self._last_key_check > 1.0:
            self._last_key_check = now
            try:
                if self.node.keys.authorized_dir.stat().st_mtime != self._keys_mtime:
                    self._reload_keys()
                    log.info("keyring changed: %d authorized keys", len(self._authorized))
            except OSError as exc:
                log.error("cannot read the keyring: %s", exc)
        to_ping, expired = self.peers.sweep(now)
        for peer in expired:
            log.warning("peer %s (%s) stopped answering for %.1f s and was dropped", peer.manifest.name,
                        peer.id[:12], self.peers.timing.expire_after)
            self._drop(peer.id, "no answer")
            self._seed(peer.manifest.control, for_seconds=self.node.config.rediscover_for)  # it may come back
        ping = self._status()
        for peer in to_ping:
            self._say(peer.manifest.control, [b"PING", ping])
        self._delivery_tick(now)
        for endpoint, seed in list(self._seeds.items()) if not self.node._stopped.is_set() else ():
            if seed[1] is not None and now > seed[1]:
                del self._seeds[endpoint]
                if self.peers.by_control(endpoint) is None:
                    sock = self._dealers.pop(endpoint, None)
                    if sock is not None:
                        sock.close(linger=0)
                continue
            if self.peers.by_control(endpoint) is not None:
                continue
            if now - seed[0] >= self.node.config.seed_retry:
                seed[0] = now
                self._say(endpoint, [b"HELLO", self._hello_payload()])
        for endpoint, when in list(self._sub_retire.items()):
            if now >= when:
                del self._sub_retire[endpoint]
                if endpoint not in {p.manifest.events for p in self.peers}:
                    try:
                        self.inbox.disconnect(endpoint)
                    except zmq.ZMQError:
                        pass
                    self._sub_connected.discard(endpoint)

    def _changed(self) -> None:
        self.node._peers_changed(self.peers.snapshot())

    def _teardown(self) -> None:
        try:
            self._send_work_reports(force=True)
            self.receipts.flush()
        except Exception as exc:  # the sockets below must be closed whatever happens
            log.error("could not write the last delivery state: %s", exc)
        bye = b"%s %d" % (self.node.id.encode(), self.seq)  # the last number: a tail lost on the way is found
        for peer in list(self.peers):
            self._say(peer.manifest.control, [b"BYE", bye])
        for sock in list(self._dealers.values()):
            sock.close(linger=200)
        if self.leases.outstanding() and self.node.role != "tool":  # a one-shot tool says it itself (cmd_publish)
            log.warning("%d work items are not acknowledged yet; they stay in the journal and go out again when this "
                        "node restarts", self.leases.outstanding())
        try:
            self.outbox.close()
        except Exception as exc:
            log.error("could not close the journal: %s", exc)
        for sock in self._group_push.values():
            sock.close()
        for sock in (self.inbox, self.control, self.cmd) + ((self.work,) if self.work is not None else ()):
            sock.close(linger=0)
        self.events.close()
        if self.auth is not None:
            self.auth.stop()

    # --- delivery: heartbeat status, replay, work reports, lag (docs/delivery.md) -------------------------
