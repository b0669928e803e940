"""The :class:`Node` facade: everything a node author needs.

::

    from meshdcm import Node

    node = Node("perfusion", group="perfusion")

    @node.on("stored.series", where='Modality == "MR" and SeriesDescription ~ "(?i)perf|dsc"')
    def analyse(message):
        ...                                   # runs on a worker thread, never on the receive loop
        node.publish("stored.series", result_dataset, reply_to=message)

    node.run()                                # until SIGINT/SIGTERM

Handlers may be plain functions (run on ``workers`` threads) or ``async def`` coroutines (run on the
node's event loop thread).  A handler that raises never stops the node: the node logs the failure with the
message's UIDs and publishes an ``error.<node>`` event that says what failed and what to do next; the message is
retried with backoff (``max_attempts``), then kept as a dead letter (``node.dead_letters``, docs/delivery.md).
Each handler runs once per message: receivers drop duplicates and replays fill gaps.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import signal
import socket
import threading
import time
import json
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable

import zmq
from pydicom.dataset import Dataset

from . import filters as _filters
from ._engine import Engine
from ._host import Mailbox
from ._version import __version__
from .accepted import AcceptedMessages
from .config import NodeConfig, load_config
from .deadletters import DeadLetters, answer_dead_request
from .dispatch import Bound, Dispatcher, Handler
from .discovery import Advert, Discovery
from .errors import ConfigError, HandlerError, MeshError
from .journal import Outbox
from .keys import Keyring, NodeKeys
from .manifest import HandlerSpec, Manifest
from .message import Message, _check_topic
from .receipts import Inbox
from .state import StateFolder, open_state
from .fetching import FetchClient
from .transfer import FileServer, Transfers
from .transfer import TIMEOUT as TRANSFER_TIMEOUT

__all__ = ["Handler", "Node"]

log = logging.getLogger("meshdcm.node")


class Node:
    """A member of the mesh.  See the module docstring; ``config`` may come from :func:`load_config`."""

    def __init__(
        self,
        name: str | None = None,
        *,
        config: NodeConfig | None = None,
        handlers: Iterable[Handler] = (),
        kind: str | None = None,
        role: str = "node",
        capabilities: Iterable[str] = (),
        extra: dict | None = None,
        **settings: Any,
    ):
        cfg = config or load_config(kind=kind or name or "node", environ={})
        if name is not None:
            settings["name"] = name
        if kind is not None:
            settings["kind"] = kind
        if settings:
            unknown = set(settings) - set(NodeConfig.__dataclass_fields__)
            if unknown:
                raise ConfigError(f"unknown node setting(s): {', '.join(sorted(unknown))}")
            cfg = cfg.with_(**settings)
        self.config = cfg
        self.keys: NodeKeys | None = Keyring(cfg.keyring).node_keys(cfg.key) if cfg.keyring else None
        if self.keys is None and not ipaddress.ip_address(cfg.address).is_loopback and not cfg.insecure:
            raise ConfigError(
                f"node {cfg.name} would listen on {cfg.address} without a mesh key: anyone on that network could read "
                "and inject patient data. Create a keyring (meshdcm keys init DIR; meshdcm keys add NAME) and pass "
                "--keyring DIR, or pass --insecure for a network you trust")
        self.id = uuid.uuid4().hex
        self.role = role
        self.capabilities = tuple(capabilities)
        self.extra: dict = dict(extra or {})  # node-specific facts for the manifest (e.g. the PACS it reaches)
        self._stopped = threading.Event()
        self._dispatcher = Dispatcher(self.name, cfg, self._stopped, self._fail, self._acknowledge,
                                      lambda: self._engine is None or self._engine.is_alive())
        self._handlers = self._dispatcher.handlers
        self._context = zmq.Context()
        self._engine: Engine | None = None
        self._mailbox: Mailbox | None = None
        self._discovery: Discovery | None = None
        self._tasks: list[Callable[[threading.Event], Any]] = []
        self._files = FileServer()
        self._transfers = Transfers()
        self._fetcher = FetchClient(self._transfers, self._command, lambda: self.peers, self._former_name)
        self._task_threads: list[threading.Thread] = []
        self._peers_snapshot: list[dict] = []
        self._peers_cond = threading.Condition()
        self._stop_request = threading.Event()  # set by SIGINT/SIGTERM or request_stop(); run() then stops
        self._started = False
        self._started_at = 0.0
        self._manifest_cache: Manifest | None = None
        # delivery (docs/delivery.md): opened at start()
        self._state: StateFolder | None = None
        self._outbox: Outbox | None = None
        self._inbox: Inbox | None = None
        self._dead: DeadLetters | None = None
        self._accepted: AcceptedMessages | None = None
        self._dispatcher.internal.append(Bound("dead", self._dead_request, _filters.parse(""), False, False,
                                               "dead-letters"))
        self._sync_events: dict[str, threading.Event] = {}
        for h in handlers:
            self.add_handler(h)

    # --- handlers -----------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.config.name

    @property
    def error_topic(self) -> str:
        return "error." + "".join(c if c.isalnum() or c in "-_" else "-" for c in self.name)

    def on(self, topic: str, where: str | _filters.Filter = "", *, shared: bool | None = None, resume: bool = False):
        """Decorator: call the function for every message under ``topic`` that ``where`` matches.

        ``resume=True`` for long work that must not be lost when the node dies (a retrieval): an event the handler
        takes on is kept on disk until it is done with it, and a restarted node hands it to the handler again
        (:mod:`meshdcm.accepted`; the handler must be idempotent). Not for shared handlers: their work items
        already go back to the group when a member dies."""
        def register(func):
            self.add_handler(Handler(topic, func, where, shared, resume))
            return func
        return register

    def task(self, func: Callable[[threading.Event], Any]):
        """Decorator: run ``func(stopping)`` on its own thread from start() on; ``stopping`` is set at stop().

        For periodic work (timers, polling a folder): loop ``while not stopping.wait(interval): ...``.
        An exception is logged and published as an error event, like a handler's."""
        self._tasks.append(func)
        if self._started:
            self._start_task(func)
        return func

    def _start_task(self, func) -> None:
        def run():
            try:
                func(self._stopped)
            except Exception as exc:
                self._count("failed")
                log.error("task %s of node %s failed: %s", getattr(func, "__qualname__", func), self.name, exc)
                log.debug("traceback of the failure above", exc_info=exc)
        t = threading.Thread(target=run, name=f"meshdcm-{self.name}-task", daemon=True)
        t.start()
        self._task_threads.append(t)

    def add_handler(self, handler: Handler) -> None:
        if handler.topic:
            _check_topic(handler.topic)
        shared = bool(self.config.group) if handler.shared is None else handler.shared
        if shared and not self.config.group:
            raise ConfigError(f"handler {handler.name} is shared but node {self.name} has no group")
        if shared and self._started and self._engine is not None and not self._engine.endpoints.get("work"):
            raise ConfigError("add shared handlers before start(): the work socket is made at start")
        bound = Bound.of(handler, shared)
        self._handlers.append(bound)
        self._manifest_cache = None
        if bound.is_async and self._started and self._dispatcher.loop is None:
            self._start_loop()
        if self._started and self._mailbox is not None:
            self._tell(b"\x00manifest")
            self._update_advert()

    def _has_shared_handlers(self) -> bool:
        return any(h.shared for h in self._handlers)

    def _receives_events(self) -> bool:
        """Broadcast handlers, or a node (not a CLI tool): it answers ``dead.*`` requests."""
        return self.role != "tool" or any(not h.shared for h in self._handlers)

    # --- identity -----------------------------------------------------------------------------------
    def manifest(self) -> Manifest:
        if self._manifest_cache is None:
            ep = self._engine.endpoints if self._engine else {}
            self._manifest_cache = Manifest(
                node_id=self.id, name=self.name, mesh=self.config.mesh, kind=self.config.kind, role=self.role,
                group=self.config.group, host=socket.gethostname(), pid=os.getpid(), software=__version__,
                control=ep.get("control", ""), events=ep.get("events", ""), work=ep.get("work", ""),
                key=self.keys.public.decode() if self.keys else "",
                handlers=tuple(HandlerSpec(h.topic, str(h.filter), h.shared) for h in self._handlers),
                capabilities=self.capabilities, started=self._started_at, extra=self.extra,
            )
        return self._manifest_cache

    def _advert(self) -> Advert:
        m = self.manifest()
        return Advert(self.id, self.name, self.config.mesh, m.protocol, m.control, m.events, m.work, m.digest, m.key)

    def manifest_changed(self) -> None:
        """Tell the mesh that capabilities or ``extra`` changed (peers fetch the new manifest)."""
        self._manifest_cache = None
        if self._started and self._mailbox is not None:
            self._tell(b"\x00manifest")
            self._update_advert()

    def _update_advert(self) -> None:
        if self._discovery is not None:
            self._discovery.update(self._advert(), int(self.manifest().control.rsplit(":", 1)[1]))

    @property
    def endpoints(self) -> dict[str, str]:
        return dict(self._engine.endpoints) if self._engine else {}

    # --- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> "Node":
        if self._started:
            return self
        if self.keys is None and self.config.insecure and not ipaddress.ip_address(self.config.address).is_loopback:
            log.warning("INSECURE: node %s listens on %s without a mesh key; every machine on that network can read "
                        "and inject messages. Use a keyring (docs/security.md).", self.name, self.config.address)
        self._started_at = time.time()
        self._open_delivery_state()
        self._engine = Engine(self)
        self._engine.start()
        self._engine.ready.wait()
        if self._engine.failure is not None:
            exc = self._engine.failure
            self._context.destroy(linger=0)
            self._close_delivery_state()
            raise MeshError(f"node {self.name} could not open its sockets on {self.config.address}: {exc}") from exc
        self._mailbox = Mailbox(self._context, self._engine.cmd_endpoint)
        self._started = True
        self._manifest_cache = None
        self._dispatcher.start()
        if any(h.is_async for h in self._handlers):
            self._start_loop()
        self._dispatcher.resume()
        for func in self._tasks:
            self._start_task(func)
        if self.config.discovery:
            self._discovery = Discovery(self.config.address, self._on_found, self._on_lost)
            self._discovery.start(self._advert(), int(self.manifest().control.rsplit(":", 1)[1]))
        log.info("node %s (%s, kind %s, group %s) started on %s: control %s, events %s%s", self.name, self.id[:12],
                 self.config.kind, self.config.group or "-", self.config.address, self._engine.endpoints["control"],
                 self._engine.endpoints["events"],
                 f", work {self._engine.endpoints['work']}" if self._engine.endpoints["work"] else "")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Leave the mesh: say goodbye, let running handlers finish (up to ``timeout``), close sockets."""
        if not self._started or self._stopped.is_set():
            return
        self._stopped.set()
        for t in self._task_threads:
            t.join(timeout=timeout)
        if self._discovery is not None:
            self._discovery.stop()
        deadline = time.monotonic() + timeout
        while self._pending() > 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        if self._pending() > 0:
            log.warning("node %s stops with %d messages still being handled", self.name, self._pending())
        assert self._mailbox is not None and self._engine is not None
        self._tell(b"\x00stop")
        self._engine.join(timeout=max(1.0, deadline - time.monotonic()))
        self._dispatcher.stop()
        loop = self._dispatcher.loop
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        self._mailbox.close()
        # every socket is closed by now; term() waits for their linger (queued messages), but a stop never hangs:
        # after the linger the context is left to the process's exit
        term = threading.Thread(target=self._context.term, name=f"{self.name}-term", daemon=True)
        term.start()
        term.join(self.config.linger + 1.0)
        if term.is_alive():
            log.error("node %s: its sockets did not close within %.0f s (engine %s); stopping anyway", self.name,
                      self.config.linger + 1.0, "still running" if self._engine.is_alive() else "stopped")
        self._close_delivery_state()
        log.info("node %s stopped", self.name)

    def __enter__(self) -> "Node":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def run(self) -> None:
        """Start (if needed) and serve until SIGINT or SIGTERM, then stop gracefully."""
        self.start()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: self._stop_request.set())
        while not self._stop_request.wait(0.5):
            if self._engine is not None and not self._engine.is_alive():
                break
        self.stop()
        failure = self._engine.failure if self._engine is not None else None
        if failure is not None:  # so that the process exits non-zero and a supervisor (meshdcm up) restarts it
            raise MeshError(f"node {self.name} stopped on an unexpected error: {type(failure).__name__}: {failure}")

    def request_stop(self) -> None:
        """Ask :meth:`run` to return (safe from any thread or a signal handler)."""
        self._stop_request.set()

    # --- publishing ---------------------------------------------------------------------------------
    def publish(
        self,
        topic: str,
        body: Dataset | bytes | None = None,
        *,
        reply_to: Message | None = None,
        correlation_id: bytes | None = None,
        uris: Iterable[str] | None = None,
        meta: dict | None = None,
        index: bytes | None = None,
    ) -> Message:
        """Publish a message; returns it (its ``seq`` is assigned when it leaves the node).

        ``body`` is a pydicom Dataset (encoded here, once) or body bytes forwarded unchanged; ``index`` is
        the body's element index when the caller has it already (else it is made here).
        ``reply_to`` sets the correlation id to that message's id (a ``found.study`` names its ``find.studies``).
        """
        if not self._started or self._mailbox is None:
            raise MeshError(f"node {self.name} is not started: call start() or use it as a context manager")
        if reply_to is not None:
            correlation_id = reply_to.message_id
        msg = Message(topic, body, correlation_id=correlation_id, uris=uris, meta=meta, sender=self.id_bytes,
                      index=index)
        self._mailbox.send(msg.to_bytes())
        return msg

    def publish_message(self, message: Message) -> None:
        """Forward an existing message's topic, body and meta as this node's own (bytes unchanged)."""
        if self._mailbox is None:
            raise MeshError(f"node {self.name} is not started")
        msg = Message(message.topic, message.body, correlation_id=message.correlation_id, meta=message.meta,
                      sender=self.id_bytes, index=message.index)
        self._mailbox.send(msg.to_bytes())

    def sync(self, timeout: float = 10.0) -> bool:
        """Wait until everything this thread published so far is in the node's journal (*accepted*: it survives
        a killed process and reaches every live subscriber, docs/delivery.md). False on timeout."""
        if self._mailbox is None:
            raise MeshError(f"node {self.name} is not started")
        token = uuid.uuid4().hex
        event = self._sync_events[token] = threading.Event()
        try:
            self._mailbox.send(b"\x00sync " + token.encode())
            return event.wait(timeout)
        finally:
            self._sync_events.pop(token, None)

    @property
    def dead_letters(self) -> DeadLetters:
        """This node's dead letters: ``list()``, ``get(id)``, ``retry(id)``, ``drop(id)`` (docs/delivery.md)."""
        if self._dead is None:
            raise MeshError(f"node {self.name} is not started: its dead letters open at start()")
        return self._dead

    @property
    def id_bytes(self) -> bytes:
        return bytes.fromhex(self.id)

    # --- files ---------------------------------------------------------------------------------------------
    def serve(self, name: str, folder: str | os.PathLike) -> None:
        """Serve ``folder`` to the mesh as ``meshdcm://<node id>/<name>/...`` (over the control socket)."""
        self._files.add(name, folder)

    def uri_for(self, path: str | os.PathLike) -> str:
        """The ``meshdcm://`` URI of a file or folder under a served folder."""
        return self._files.uri(self.id, path)

    def fetch(self, uri: str, dest_dir: str | os.PathLike, timeout: float = TRANSFER_TIMEOUT) -> list[Path]:
        """Fetch a file or folder into ``dest_dir``; returns the local paths: the one call node authors need.

        ``meshdcm://`` URIs come from the node named in them (which must be in the mesh; when it restarted, from the
        node of the same name); ``file://`` and plain paths are used in place; ``http(s)://`` (WADO-RS) and
        ``dicom://AE@host:port/study`` (C-GET) URIs are fetched from the PACS they name. Raises
        :class:`~meshdcm.transfer.TransferError` saying what failed."""
        return self._fetcher.fetch(uri, dest_dir, timeout)

    def fetch_folder(self, uris: Iterable[str], dest_dir: str | os.PathLike, timeout: float = TRANSFER_TIMEOUT) -> Path:
        """A local folder holding what ``uris`` name (e.g. a series): a ``file://`` folder on this machine is used
        in place, else the first URI that works is fetched into ``dest_dir``. Raises TransferError naming every
        URI tried and why it failed."""
        return self._fetcher.fetch_folder(uris, dest_dir, timeout)

    def _command(self, frame: bytes) -> None:
        """Hand a command to the engine (from any thread)."""
        if self._mailbox is None:
            raise MeshError(f"node {self.name} is not started")
        self._mailbox.send(frame)

    def _former_name(self, node_id: str) -> str | None:
        """The name of the node a former node id (a stream heard here) belonged to."""
        try:
            former = self._inbox.streams.get(bytes.fromhex(node_id)) if self._inbox is not None else None
        except ValueError:
            return None
        return former.name if former is not None else None

    # --- the mesh as seen from here -------------------------------------------------------------------
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

    @property
    def counters(self) -> dict[str, int]:
        """How many messages were handled, failed (attempts), dead (letters), refused (wrong version), malformed,
        duplicates (dropped before a handler), replayed (frames sent again to peers) or lost (beyond a journal)."""
        out = self._dispatcher.counters()
        out["pending"] = self._pending()
        return out

    # --- called by the engine (engine thread) -------------------------------------------------------
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

    def _control_message(self, kind: bytes, payload: bytes, identity: bytes) -> list[bytes] | None:
        """Engine thread: a control message the engine does not handle itself; returns the reply frames."""
        if kind == b"FETCH":
            return self._files.answer(payload)
        log.debug("unknown control message %r ignored", kind[:32])
        return None

    def _count(self, what: str, n: int = 1) -> None:
        self._dispatcher.count(what, n)

    def _pending(self) -> int:
        return self._dispatcher.pending()

    def _tell(self, frame: bytes) -> None:
        """A command for the engine that needs no answer: dropped (and logged) when the engine is gone."""
        try:
            if self._mailbox is not None:
                self._mailbox.send(frame)
        except MeshError as exc:
            log.debug("node %s: %s (command %r dropped)", self.name, exc, frame[:16])

    def _acknowledge(self) -> None:
        """A worker finished a work item: the engine sends its acknowledgement at once."""
        if self._mailbox is not None and not self._stopped.is_set():
            self._tell(b"\x00acks")

    def _dead_request(self, msg: Message) -> None:
        """The ``dead.*`` requests of docs/delivery.md (an internal handler of every node that is not a tool)."""
        if self.role != "tool" and self._dead is not None:
            answer_dead_request(msg, self._dead, self.name, self.publish)

    def _synced(self, token: str) -> None:
        event = self._sync_events.get(token)
        if event is not None:
            event.set()

    def _open_delivery_state(self) -> None:
        cfg = self.config
        durable = cfg.durable if cfg.durable is not None else self.role != "tool"
        self._state = open_state(cfg, durable)
        self._outbox = Outbox(self._state.file("outbox.sqlite"), max_age=cfg.journal_max_age,
                              max_bytes=cfg.journal_max_bytes, enabled=cfg.journal)
        self._inbox = Inbox(self._state.file("inbox.sqlite"), keep=cfg.journal_max_age)
        self._dead = DeadLetters(self._state.file("dead.sqlite"), redrive=self._dispatcher.redrive)
        self._accepted = AcceptedMessages(self._state.file("accepted.sqlite"))
        self._dispatcher.inbox, self._dispatcher.dead = self._inbox, self._dead
        self._dispatcher.accepted = self._accepted

    def _close_delivery_state(self) -> None:
        for store in (self._inbox, self._dead, self._accepted):
            if store is not None:
                try:
                    store.close()
                except Exception as exc:  # closing must not hide the stop
                    log.warning("closing the delivery state of node %s: %s", self.name, exc)
        if self._state is not None:
            self._state.close()

    def _start_loop(self) -> None:
        ready = threading.Event()

        def serve():
            loop = self._dispatcher.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            ready.set()
            loop.run_forever()
            loop.close()
        t = threading.Thread(target=serve, name=f"meshdcm-{self.name}-asyncio", daemon=True)
        t.start()
        ready.wait()

    def _fail(self, handler: Bound, msg: Message, exc: BaseException, action: str | None = None, *,
              attempt: int = 1, next_step: str = "not retried", dead_letter: dict | None = None) -> None:
        """Log a handler failure (UIDs only, traceback at DEBUG) and publish ``error.<node>``."""
        self._count("failed")
        uids = msg.uids
        if action is None:
            action = exc.action if isinstance(exc, HandlerError) and exc.action else (
                "the message was not processed; fix the cause shown"
                + (", then re-drive it as the next step says" if dead_letter else
                   f" and publish it again (meshdcm publish {msg.topic} ...)"))
        reason = exc.reason if isinstance(exc, HandlerError) else f"{type(exc).__name__}: {exc}"
        log.error("handler %s failed on %s %s (study %s, series %s), attempt %d: %s; next: %s", handler.name,
                  msg.topic, msg.id[:12], uids.get("study", "-"), uids.get("series", "-"), attempt, reason, next_step)
        log.debug("traceback of the failure above", exc_info=exc)
        if msg.topic.startswith("error.") or self._stopped.is_set():
            return  # never answer an error event with another one
        body = Dataset()
        for key, keyword in (("study", "StudyInstanceUID"), ("series", "SeriesInstanceUID"),
                             ("instance", "SOPInstanceUID")):
            if key in uids:
                setattr(body, keyword, uids[key])
        error = {
            "node": self.name, "node_id": self.id, "kind": self.config.kind, "handler": handler.name,
            "topic": msg.topic, "message_id": msg.id, "sender": msg.sender.hex(), "reason": reason,
            "exception": type(exc).__name__, "attempt": attempt, "attempts": self.config.max_attempts,
            "action": action, "next": next_step,
        }
        meta: dict[str, Any] = {"error": error}
        if dead_letter is not None:
            meta["dead_letter"] = dead_letter
        try:
            self.publish(self.error_topic, body, reply_to=msg, meta=meta)
        except MeshError:
            pass

    def _error_event(self, what: str, reason: str, action: str, **extra) -> None:
        """An ``error.<node>`` event about the node itself (no message failed): lag, loss, backlog."""
        if self._stopped.is_set() or self._mailbox is None:
            return
        error = {"node": self.name, "node_id": self.id, "kind": self.config.kind, "handler": what, "topic": "",
                 "reason": reason, "action": action, "next": action, **extra}
        try:
            self.publish(self.error_topic, meta={"error": error})
        except MeshError:
            pass

    def _report_backlog(self, group: str, size: int) -> None:
        reason = f"worker group {group!r} has {size} work items waiting and its members take no more"
        action = ("none is dropped (they are in the journal); start more members of the group or check why they "
                  "are stuck (meshdcm peers)")
        log.error("%s: %s", reason, action)
        self._error_event("work backlog", reason, action, group=group, waiting=size)

    def _report_lag(self, pending: int, seconds: float, missing: int = 0) -> None:
        reason = (f"node {self.name} is falling behind: for {seconds:.1f} s its handlers have had {pending} messages "
                  f"waiting and {missing} more are still to be replayed to it")
        action = ("nothing is dropped: senders are held back and what overflows their queues is replayed from their "
                  "journals; give this node more workers, or start another member of its group")
        log.error("%s; %s", reason, action)
        self._error_event("lag", reason, action, pending=pending, missing=missing)

    def _report_lost(self, sender: str, first: int, last: int, count: int, journal: bool = True,
                     why: str = "") -> None:
        self._count("lost", count)
        why = why or ("it keeps no journal" if not journal else "they are older than its journal keeps (retention)")
        reason = f"{count} messages from {sender} (seq {first}..{last}) cannot be replayed: {why}"
        action = "ask the sending node to publish them again, or re-run the study from the PACS"
        log.error("%s; %s", reason, action)
        self._error_event("replay", reason, action, sender=sender, first=first, last=last, lost=count)
