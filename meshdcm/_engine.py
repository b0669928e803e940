"""The node's engine: one thread that owns every ZeroMQ socket of a node.

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
from typing import TYPE_CHECKING, Protocol

import zmq

from .discovery import Advert
from .errors import ConfigError, MalformedMessage, MeshError, VersionError
from .manifest import Manifest
from .journal import SEQ_MOD, after, seq_add
from .leases import Leases
from .message import FLAG_REPLAY, FLAG_WORK, PROTOCOL_VERSION, Message, stamp, topic_matches
from .peers import PeerTable

if TYPE_CHECKING:
    from .config import NodeConfig
    from .dispatch import Bound, Dispatcher
    from .journal import Outbox
    from .keys import NodeKeys
    from .receipts import Inbox
    from .transfer import Transfers

log = logging.getLogger("meshdcm.node")


class EngineHost(Protocol):
    """What the engine needs of its node, and all it may touch (``meshdcm.node.Node`` is the implementation):
    identity and settings, the delivery state the node opened, the dispatcher its messages go to, and the calls
    by which the engine tells the node what happened."""

    config: NodeConfig
    keys: NodeKeys | None
    id: str
    name: str
    role: str
    _context: zmq.Context
    _outbox: Outbox
    _inbox: Inbox
    _transfers: Transfers
    _dispatcher: Dispatcher
    _stopped: threading.Event

    @property
    def id_bytes(self) -> bytes: ...
    def manifest(self) -> Manifest: ...
    def _receives_events(self) -> bool: ...
    def _has_shared_handlers(self) -> bool: ...
    def _count(self, what: str, n: int = 1) -> None: ...
    def _pending(self) -> int: ...
    def _fail(self, handler: Bound, msg: Message, exc: BaseException, action: str | None = None, *,
              attempt: int = 1, next_step: str = ..., dead_letter: dict | None = None) -> None: ...
    def _control_message(self, kind: bytes, payload: bytes, identity: bytes) -> list[bytes] | None: ...
    def _synced(self, token: str) -> None: ...
    def _peers_changed(self, snapshot: list[dict]) -> None: ...
    def _report_lost(self, sender: str, first: int, last: int, count: int, journal: bool = True,
                     why: str = "") -> None: ...
    def _report_lag(self, pending: int, seconds: float, missing: int = 0) -> None: ...
    def _report_backlog(self, group: str, size: int) -> None: ...

READY_MARKER = b"\xffready."  # sorts after every topic, so ZeroMQ sends it last when a SUB connects
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
_HOLD_EVERY = 1.0  # seconds between a member's reports of the work items it holds
_CONTROL_MAX = 1024 * 1024  # bytes: manifests are small
#: Bounds on what peers can make a node remember (docs/security.md): peers at once, former streams taken from one
#: manifest (its newest), endpoints taken from one manifest's gossip, and seconds between prunes of departed state.
_MAX_PEERS = 1024
_STREAMS_PER_PEER = 256
_GOSSIP_MAX = 64
_PRUNE_EVERY = 60.0


class Mailbox:
    """Thread-local inproc PUSH sockets into the engine (sockets are never shared between threads)."""

    def __init__(self, context: zmq.Context, endpoint: str):
        self._context = context
        self._endpoint = endpoint
        self._local = threading.local()
        self._sockets: list[zmq.Socket] = []
        self._lock = threading.Lock()

    def send(self, frame: bytes) -> None:
        sock = getattr(self._local, "sock", None)
        if sock is None:
            sock = self._context.socket(zmq.PUSH)
            sock.setsockopt(zmq.SNDHWM, 0)
            sock.connect(self._endpoint)
            self._local.sock = sock
            with self._lock:
                self._sockets.append(sock)
        try:
            # never blocks while the engine runs (no high-water mark); once it is gone a blocking send would wait
            # for ever (a PUSH without a peer), so a stopped engine is an error here, not a hang
            sock.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            raise MeshError("the node's engine is not running (it stopped, or failed: see the log)") from None
        except zmq.ZMQError as exc:
            raise MeshError(f"the node's engine cannot be reached: {exc}") from None

    def close(self) -> None:
        with self._lock:
            for s in self._sockets:
                s.close(linger=0)
            self._sockets.clear()


class Engine(threading.Thread):
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
    def _server(self, sock: zmq.Socket) -> zmq.Socket:
        """A bound socket: a CURVE server when the mesh has keys (ZAP admits only authorized keys)."""
        keys = self.node.keys
        if keys is not None:
            sock.curve_secretkey = keys.secret
            sock.curve_publickey = keys.public
            sock.curve_server = True
        return sock

    def _client(self, sock: zmq.Socket) -> zmq.Socket:
        keys = self.node.keys
        if keys is not None:
            sock.curve_secretkey = keys.secret
            sock.curve_publickey = keys.public
        return sock

    def _connect_to(self, sock: zmq.Socket, endpoint: str, key: str) -> None:
        """Connect, checking the peer's CURVE key (set per connection) when the mesh has keys."""
        if self.node.keys is not None:
            sock.curve_serverkey = key.encode()
        sock.connect(endpoint)

    def _trusted(self, key: str) -> bool:
        return self.node.keys is None or key.encode() in self._authorized

    def _bind(self, sock: zmq.Socket, port: int | None) -> str:
        address = self.node.config.address
        if port:
            sock.bind(f"tcp://{address}:{port}")
            return f"tcp://{address}:{port}"
        chosen = sock.bind_to_random_port(f"tcp://{address}", min_port=20000, max_port=60999, max_tries=200)
        return f"tcp://{address}:{chosen}"

    def _setup(self) -> None:
        ctx, cfg = self.ctx, self.node.config
        self.auth = None
        if self.node.keys is not None:
            from zmq.auth.thread import ThreadAuthenticator

            self.auth = ThreadAuthenticator(ctx, log=logging.getLogger("meshdcm.auth"))
            self.auth.start()
            self._reload_keys()
        self.cmd = ctx.socket(zmq.PULL)
        self.cmd.setsockopt(zmq.RCVHWM, 0)
        self.cmd.bind(self.cmd_endpoint)
        self.events = self._server(ctx.socket(zmq.XPUB))
        self.events.setsockopt(zmq.XPUB_VERBOSE, 1)
        self.events.setsockopt(zmq.SNDHWM, cfg.high_water_mark)
        self.events.setsockopt(zmq.LINGER, int(cfg.linger * 1000))
        self.control = self._server(ctx.socket(zmq.ROUTER))
        self.control.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.control.setsockopt(zmq.MAXMSGSIZE, _CONTROL_MAX)
        base = cfg.port
        self.endpoints["control"] = self._bind(self.control, base)
        self.endpoints["events"] = self._bind(self.events, base + 1 if base else None)
        self.inbox = self._client(ctx.socket(zmq.SUB))
        self.inbox.setsockopt(zmq.RCVHWM, cfg.high_water_mark)
        self.inbox.setsockopt(zmq.MAXMSGSIZE, cfg.max_message_size)
        self.inbox.setsockopt(zmq.RECONNECT_IVL_MAX, 5000)
        self.work = None
        if self.node._has_shared_handlers():
            self.work = self._server(ctx.socket(zmq.PULL))
            self.work.setsockopt(zmq.RCVHWM, cfg.high_water_mark)
            self.work.setsockopt(zmq.MAXMSGSIZE, cfg.max_message_size)
            self.endpoints["work"] = self._bind(self.work, base + 2 if base else None)
        else:
            self.endpoints["work"] = ""
        self._resubscribe()
        self.poller_all = zmq.Poller()
        self.poller_ctl = zmq.Poller()
        for p in (self.poller_all, self.poller_ctl):
            p.register(self.cmd, zmq.POLLIN)
            p.register(self.control, zmq.POLLIN)
            p.register(self.events, zmq.POLLIN)
        self.poller_all.register(self.inbox, zmq.POLLIN)
        if self.work is not None:
            self.poller_all.register(self.work, zmq.POLLIN)
        for spec in cfg.peers:
            endpoint, key = self._static_peer(spec)
            self._seed(endpoint, for_seconds=None, key=key)
        self._streams = {sid: [last, started] for sid, (last, started) in self.outbox.streams().items()}
        self._streams[self.stream] = [0, time.time()]
        for sid in self._streams:
            self._homes[sid] = self.node.id
        for sid, seq, group, frame in self.outbox.pending_work():
            self.leases.add(group, sid, seq, stamp(frame, seq, FLAG_WORK))
        if self.leases.outstanding():
            log.info("%d work items of former runs are not acknowledged yet: they go out again when their group is "
                     "reachable", self.leases.outstanding())

    def _static_peer(self, spec: str) -> tuple[str, str]:
        name, at, endpoint = spec.rpartition("@")
        if not at:
            endpoint, name = spec, ""
        if self.node.keys is None:
            return endpoint, ""
        if not name:
            raise ConfigError(f"in a mesh with a keyring, name the static peer's key: KEYNAME@{endpoint}")
        import zmq.auth

        cert = self.node.keys.authorized_dir / f"{name}.key"
        if not cert.exists():
            raise ConfigError(f"static peer {spec}: no authorized key named {name!r} in the keyring")
        public, _ = zmq.auth.load_certificate(cert)
        return endpoint, (public or b"").decode()

    def _reload_keys(self) -> None:
        """(Re)read authorized keys: ZAP admits them; adverts and manifests with other keys are ignored."""
        keys = self.node.keys
        assert keys is not None and self.auth is not None
        directory = keys.authorized_dir
        self._keys_mtime = directory.stat().st_mtime
        self.auth.configure_curve(domain="*", location=str(directory))
        self._authorized = keys.authorized()

    def _resubscribe(self) -> None:
        # a node that receives events takes its peers' whole streams: loss shows as a gap in the sequence numbers
        # only if every number arrives; topics are routed here (docs/delivery.md)
        wanted = {""} if self.node._receives_events() else set()
        for topic in self._subscribed - wanted:
            self.inbox.setsockopt(zmq.UNSUBSCRIBE, topic.encode())
        for topic in wanted - self._subscribed:
            self.inbox.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self._subscribed = wanted
        marker = READY_MARKER + self.node.id.encode()
        self.inbox.setsockopt(zmq.UNSUBSCRIBE, marker)
        self.inbox.setsockopt(zmq.SUBSCRIBE, marker)
        self._route_cache.clear()

    # --- main loop --------------------------------------------------------------------------------
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
        if peer is not None and last.isdigit() and self.node._receives_events():
            stream = self.receipts.streams.get(peer.manifest.id_bytes)
            if stream is not None:
                self.receipts.meet(stream.id, peer.manifest.name, int(last) % SEQ_MOD, peer.manifest.started)
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

    def _unpoll(self, sock: zmq.Socket) -> None:
        for poller in (self.poller_all, self.poller_ctl):
            try:
                poller.unregister(sock)
            except KeyError:
                pass

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
            if self.node._receives_events():
                sid = bytes.fromhex(node_id)
                if sid in self.receipts.streams:
                    self.receipts.meet(sid, peer.manifest.name, seq, peer.manifest.started)
        return node_id

    def _replay(self, identity: bytes, payload: bytes) -> None:
        """A peer missed frames of one of our streams: send them again (flagged replayed), then REPLAYED."""
        try:
            req = json.loads(payload)
            sid, first, last = bytes.fromhex(req["stream"]), int(req["first"]), int(req["last"])
        except (ValueError, KeyError, TypeError):
            self.node._count("malformed")
            return
        frames, oldest = self.outbox.replay(sid, first, last, 256)
        for seq, frame in frames:
            self.control.send_multipart([identity, b"FRAME", stamp(frame, seq, FLAG_REPLAY)])
        self.node._count("replayed", len(frames))
        self.control.send_multipart([identity, b"REPLAYED", json.dumps(
            {"stream": req["stream"], "first": first, "last": last, "oldest": oldest,
             "journal": self.outbox.enabled}).encode()])

    def _replayed(self, payload: bytes) -> None:
        try:
            info = json.loads(payload)
            sid, first = bytes.fromhex(info["stream"]), int(info["first"])
            oldest = info.get("oldest")
        except (ValueError, KeyError, TypeError):
            return
        stream = self.receipts.streams.get(sid)
        if stream is None:
            return
        if oldest is not None and after(int(oldest), first):
            count = (int(oldest) - first) % SEQ_MOD
            self.receipts.give_up(stream, first, count)
            self.node._report_lost(stream.name or sid.hex()[:12], first, seq_add(first, count - 1), count,
                                   journal=bool(info.get("journal", True)))
        self.receipts.answered(stream)

    def _on_work_report(self, payload: bytes) -> None:
        try:
            report = json.loads(payload)
            member, sid = str(report["node"]), bytes.fromhex(report["stream"])
            done = [int(s) for s in report.get("done", ())]
            held = [int(s) for s in report.get("held", ())]
        except (ValueError, KeyError, TypeError):
            self.node._count("malformed")
            return
        peer = self.peers.get(member)
        if peer is None or not peer.manifest.group:
            return
        self.peers.heard(member)
        group = peer.manifest.group
        for item in self.leases.report(group, member, sid, done, held, time.monotonic()):
            self.outbox.acknowledge(item.stream, item.seq, item.group)
        self._pump(group)

    def _work_reports_due(self) -> bool:
        return any(done or held for done, held in self._work_reports.values())

    def _send_work_reports(self, force: bool = False) -> None:
        """As a group member: tell each sender which of its items we finished, and (every second) which we hold."""
        now = time.monotonic()
        refresh = force or now - self._last_hold >= _HOLD_EVERY
        if refresh:
            self._last_hold = now
        acks = self.node._dispatcher.take_work_acks()
        for sid, seq in acks:
            self._work_report(sid)[0].append(seq)
        if refresh:
            for sid, seq in self.receipts.held_work():
                self._work_report(sid)[1].append(seq)
        for sid, (done, held) in list(self._work_reports.items()):
            if not done and not held:
                continue
            home = self.peers.get(self._homes.get(sid, sid.hex()))
            if home is None:
                continue  # its sender is not here (now): it re-sends after its restart, and we acknowledge then
            body = json.dumps({"node": self.node.id, "stream": sid.hex(), "done": done, "held": held}).encode()
            if self._say(home.manifest.control, [b"WORK", body]):
                self._work_reports[sid] = [[], []]

    def _orphaned(self, stream, now: float) -> None:
        """Messages of ``stream`` are missing here and no peer in the mesh answers replays for it: wait
        ``rediscover_for`` seconds for its sender to come back (said once), then settle them as lost (said once)."""
        since = self._orphans.setdefault(stream.id, now)
        wait = self.node.config.rediscover_for
        if since == now:
            log.warning("%d messages of stream %s (%s) are missing here and its sender is gone: waiting up to %.0f s "
                        "for it to come back and replay them", sum(c for _, c in stream.missing),
                        stream.id.hex()[:12], stream.name or "unknown sender", wait)
        elif now - since >= wait:
            del self._orphans[stream.id]
            for first, count in list(stream.missing):
                self.receipts.give_up(stream, first, count)
                self.node._report_lost(stream.name or stream.id.hex()[:12], first, seq_add(first, count - 1), count,
                                       why=f"its sender left the mesh and did not come back within {wait:.0f} s")

    def _prune_departed(self) -> None:
        """What departed peers left behind: their streams once expired (``Inbox.prune``), where to ask for them,
        the keys of endpoints no one uses any more."""
        live = {bytes.fromhex(p.id) for p in self.peers}
        for sid in self.receipts.prune(live):
            self._homes.pop(sid, None)
            self._orphans.pop(sid, None)
        ids = {p.id for p in self.peers} | {self.node.id}
        for sid in [sid for sid, home in self._homes.items() if home not in ids and sid not in self.receipts.streams]:
            del self._homes[sid]
        used = {p.manifest.control for p in self.peers} | set(self._seeds)
        for endpoint in [e for e in self._keys_of if e not in used]:
            del self._keys_of[endpoint]

    def _delivery_tick(self, now: float) -> None:
        inbox = self.receipts
        node = self.node
        # replays are asked for only while the handlers keep up: the receiver's own credit
        for stream, first, last in inbox.wanted(now) if node._pending() < node.config.max_pending else ():
            home = self.peers.get(self._homes.get(stream.id, stream.id.hex()))
            if home is None:
                self._orphaned(stream, now)
                continue
            if self._orphans.pop(stream.id, None) is not None:
                log.info("the sender of stream %s is back: asking it for what was missed", stream.id.hex()[:12])
            log.info("asking %s to replay %d..%d of stream %s (missed here)", home.manifest.name, first, last,
                     stream.id.hex()[:12])
            self._say(home.manifest.control, [b"REPLAY", json.dumps(
                {"stream": stream.id.hex(), "first": first, "last": last}).encode()])
        for sid in [sid for sid in self._orphans if not getattr(inbox.streams.get(sid), "missing", None)]:
            del self._orphans[sid]  # what was missing arrived after all
        alive = {p.id for p in self.peers}
        for item, why in self.leases.expire(now, alive):
            log.info("work item %d for group %r goes out again: %s", item.seq, item.group, why)
        for group in list(self.leases.groups):
            self._pump(group)
        self._send_work_reports()
        inbox.flush()
        self.outbox.maybe_prune(time.time())
        if now - self._last_prune >= min(_PRUNE_EVERY, max(1.0, node.config.journal_max_age / 4)):
            self._last_prune = now
            self._prune_departed()
        # a consumer that falls behind says so (docs/delivery.md): the engine has stopped reading, or what it missed
        # is still being replayed (a consumer that catches up in replayed chunks is behind all the while, even when
        # its handler queue drains between chunks)
        pending, missing = node._pending(), inbox.missing_count()
        if pending >= node.config.max_pending or missing:
            if self._behind_since is None:
                self._behind_since = now
            elif not self._behind_reported and now - self._behind_since >= node.config.lag_alarm:
                self._behind_reported = True
                node._report_lag(pending, now - self._behind_since, missing)
        elif pending < node.config.max_pending // 2:
            if self._behind_reported:
                log.warning("node %s caught up: %d messages wait for handlers", node.name, node._pending())
            self._behind_since, self._behind_reported = None, False
