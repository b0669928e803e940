"""What the engine and its node share: :class:`EngineHost`, all the engine may touch of its node (``meshdcm.node.Node``
implements it), and :class:`Mailbox`, by which the node's other threads hand the engine their commands.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Protocol

import zmq

from .errors import MeshError

if TYPE_CHECKING:
    from .config import NodeConfig
    from .dispatch import Bound, Dispatcher
    from .journal import Outbox
    from .keys import NodeKeys
    from .manifest import Manifest
    from .message import Message
    from .receipts import Inbox
    from .transfer import Transfers

__all__ = ["EngineHost", "Mailbox"]


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
