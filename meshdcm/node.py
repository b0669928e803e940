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

The node's parts (mixins of :class:`Node`): the other members of the mesh as seen from here (``_peer_watch.py``:
``peers``, the ``wait_for...`` methods, ``settle``), its side of the engine (``_engine_side.py``) and its error
events (``_error_events.py``).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable

import zmq
from pydicom.dataset import Dataset

from . import filters as _filters
from ._engine import Engine
from ._engine_side import EngineSide
from ._error_events import ErrorEvents
from ._host import Mailbox
from ._peer_watch import PeerWatch
from ._version import __version__
from .accepted import AcceptedMessages
from .config import NodeConfig, load_config
from .deadletters import DeadLetters
from .dispatch import Bound, Dispatcher, Handler
from .discovery import Advert, Discovery
from .errors import ConfigError, MeshError
from .journal import Outbox
from .keys import Keyring, NodeKeys
from .manifest import HandlerSpec, Manifest
from .message import Message, _check_topic
from .receipts import Inbox
from .state import StateFolder
from .fetching import FetchClient
from .transfer import FileServer, Transfers
from .transfer import TIMEOUT as TRANSFER_TIMEOUT

__all__ = ["Handler", "Node"]

log = logging.getLogger("meshdcm.node")


class Node(PeerWatch, EngineSide, ErrorEvents):
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

    # --- what the node counted ----------------------------------------------------------------------------
    @property
    def counters(self) -> dict[str, int]:
        """How many messages were handled, failed (attempts), dead (letters), refused (wrong version), malformed,
        duplicates (dropped before a handler), replayed (frames sent again to peers) or lost (beyond a journal)."""
        out = self._dispatcher.counters()
        out["pending"] = self._pending()
        return out
