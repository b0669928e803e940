"""The engine's sockets: binding and connecting them (CURVE servers and clients when the mesh has a keyring, with a
ZAP handler that admits only authorized keys), what the engine sets up at start (the journal's former streams,
static peers, unacknowledged work items) and keeping subscriptions and keys current.

A mixin of :class:`meshdcm._engine.Engine`: its methods run on the engine thread.
"""

from __future__ import annotations

import logging
import time

import zmq

from ._control import _CONTROL_MAX
from .errors import ConfigError
from .keys import Keyring
from .message import FLAG_WORK, stamp

log = logging.getLogger("meshdcm.node")

READY_MARKER = b"\xffready."  # sorts after every topic, so ZeroMQ sends it last when a SUB connects


class EngineSockets:
    """Engine methods that make and keep its sockets (mixed into the Engine)."""

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
        authorized, problems = Keyring(directory.parent).read_authorized()
        for problem in problems:  # said once per file and reason, not at every re-read
            self._noted(f"keyring {problem}", "ignoring a file of the keyring: %s; the node it was meant for cannot "
                        "join until it holds a public certificate (meshdcm keys authorize)", problem)
        self._authorized = authorized
        # ZAP asks this node's own set (one reader for ZAP and adverts: zmq.auth's directory reader raised on a
        # damaged certificate and stopped the engine, and read hidden files differently)
        self.auth.configure_curve_callback(domain="*", credentials_provider=_ZapKeys(self))

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

    def _unpoll(self, sock: zmq.Socket) -> None:
        for poller in (self.poller_all, self.poller_ctl):
            try:
                poller.unregister(sock)
            except KeyError:
                pass


class _ZapKeys:
    """zmq.auth's credentials provider: the client's public key (Z85) is admitted if the engine's keyring has it."""

    def __init__(self, engine):
        self.engine = engine

    def callback(self, domain: str, key: bytes) -> bool:
        return key in self.engine._authorized
