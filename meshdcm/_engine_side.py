"""The node's side of its engine (``EngineHost``): what the engine calls on it (a control message it does not handle
itself, the counters, a finished sync, the ``dead.*`` requests), how the node's threads hand the engine a command
that needs no answer, and what the node opens for the engine and its handlers at start (the delivery state, the
event loop of ``async def`` handlers).

A mixin of :class:`meshdcm.node.Node`: its methods use the node's config, role, dispatcher and mailbox.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from .accepted import AcceptedMessages
from .deadletters import DeadLetters, answer_dead_request
from .errors import MeshError
from .journal import Outbox
from .message import Message
from .receipts import Inbox
from .state import open_state

log = logging.getLogger("meshdcm.node")


class EngineSide:
    """Node methods the engine calls, and what the node opens for it (mixed into the Node)."""

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
