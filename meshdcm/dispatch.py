"""Handlers and the workers that run them: dispatch, receipts, retries with backoff, dead letters.

The engine thread matches a message to its handlers and hands each (handler, message) pair to the
:class:`Dispatcher`, which runs plain handlers on ``workers`` threads (in batches: one queue operation per batch,
not per message) and ``async def`` handlers on the node's event loop. When the last handler of a message returns,
the message is recorded as handled (``Inbox``: it is never handled again, even after a restart) and, for a work
item, acknowledged to its sender. A handler that raises is retried with backoff when the failure can pass
(:func:`can_succeed_later`), else — or after the last attempt — the message becomes a dead letter
(docs/delivery.md). Every failure is reported through the node's ``report`` callback (a log line and an
``error.<node>`` event).
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import filters as _filters
from .accepted import AcceptedMessages
from .deadletters import DeadLetter, DeadLetters
from .errors import HandlerError, MalformedMessage
from .message import Message
from .receipts import Inbox, Stream
from .transfer import TransferError

__all__ = ["Bound", "Dispatcher", "Handler", "Receipt", "can_succeed_later"]

log = logging.getLogger("meshdcm.node")


@dataclass(frozen=True)
class Handler:
    """A function bound to a topic prefix and a filter.  ``shared`` handlers take work items of the node's
    group (each handled by one member); the others receive every matching event."""

    topic: str
    func: Callable[[Message], Any]
    where: str | _filters.Filter = ""
    shared: bool | None = None  # None: shared when the node has a group
    resume: bool = False  # events it takes on are kept until it is done with them (meshdcm.accepted)

    @property
    def filter(self) -> _filters.Filter:
        return self.where if isinstance(self.where, _filters.Filter) else _filters.parse(self.where)

    @property
    def name(self) -> str:
        return getattr(self.func, "__qualname__", repr(self.func))


@dataclass(frozen=True)
class Bound:
    """A handler as the engine uses it: filter compiled, sharing decided."""

    topic: str
    func: Callable[[Message], Any]
    filter: _filters.Filter
    shared: bool
    is_async: bool
    name: str
    resume: bool = False

    @classmethod
    def of(cls, handler: Handler, shared: bool) -> Bound:
        return cls(handler.topic, handler.func, handler.filter, shared, inspect.iscoroutinefunction(handler.func),
                   handler.name, handler.resume and not shared)


class Receipt:
    """One received message's bookkeeping: settled (recorded, acknowledged) when its last handler is done."""

    __slots__ = ("stream", "sender", "seq", "message_id", "work", "left", "first_failed")

    def __init__(self, stream: Stream | None, msg: Message, work: bool, left: int):
        self.stream, self.sender, self.seq, self.message_id = stream, msg.sender, msg.seq, msg.message_id
        self.work, self.left = work, left
        self.first_failed: float | None = None


def can_succeed_later(exc: BaseException) -> bool:
    """Whether a handler's failure is worth retrying (with backoff) rather than a dead letter at once: a
    TransferError (a busy or restarting peer), also when a handler wrapped it in a HandlerError, a HandlerError that
    says ``retry=True``, or an unexpected exception; never a message that cannot be read (MalformedMessage) nor a
    HandlerError that says the message cannot succeed as it is."""
    if isinstance(exc, TransferError) or isinstance(exc.__cause__, TransferError):
        return True
    if isinstance(exc, HandlerError):
        return exc.retry
    return not isinstance(exc, MalformedMessage)


#: report(handler, msg, exc, action=None, *, attempt, next_step, dead_letter): log a failure, publish error.<node>
Report = Callable[..., None]


class Dispatcher:
    """Runs one node's handlers. ``stopped`` is the node's stop flag; ``report`` says a failure; ``acknowledge``
    wakes the engine to send work acknowledgements; ``engine_alive`` tells the retry thread when to end."""

    def __init__(self, name: str, config, stopped: threading.Event, report: Report,
                 acknowledge: Callable[[], None], engine_alive: Callable[[], bool]):
        self.name, self.config = name, config
        self._stopped, self._report, self._acknowledge, self._engine_alive = stopped, report, acknowledge, engine_alive
        self.handlers: list[Bound] = []
        self.internal: list[Bound] = []  # the node's own (dead.*): never dead-lettered, never retried
        self.inbox: Inbox | None = None
        self.dead: DeadLetters | None = None
        self.accepted: AcceptedMessages | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._work: queue.SimpleQueue = queue.SimpleQueue()
        self._batch: list = []
        self._threads: list[threading.Thread] = []
        self._submitted = 0
        self._done_value = 0
        self._redriven = 0
        self._lock = threading.Lock()
        self._counters: dict[str, int] = {}
        self._work_acks: list[tuple[bytes, int]] = []
        self._retries: list = []  # heap of (due, n, item)
        self._retry_cond = threading.Condition()
        self._retry_n = 0

    # --- counters -------------------------------------------------------------------------------------
    def count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self._counters[what] = self._counters.get(what, 0) + n

    def counters(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counters)

    def pending(self) -> int:
        """Messages given to handlers (or waiting for a retry) and not finished."""
        return self._submitted + self._redriven - self._done_value

    # --- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        for i in range(self.config.workers):
            t = threading.Thread(target=self._worker, name=f"meshdcm-{self.name}-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        threading.Thread(target=self._retry_loop, name=f"meshdcm-{self.name}-retry", daemon=True).start()

    def stop(self) -> None:
        for _ in self._threads:
            self._work.put(None)
        for t in self._threads:
            t.join(timeout=1.0)
        with self._retry_cond:
            self._retry_cond.notify_all()

    # --- engine thread ----------------------------------------------------------------------------------
    def receipt(self, stream: Stream | None, msg: Message, handlers: int) -> Receipt:
        return Receipt(stream, msg, stream is None, handlers)

    def dispatch(self, handler: Bound, msg: Message, receipt: Receipt | None = None, attempt: int = 1) -> None:
        """Queue a matching message for its handler (sent on at the end of the batch)."""
        self._submitted += 1
        if handler.is_async:
            self._run_async(handler, msg, receipt, attempt)
        else:
            self._batch.append((handler, msg, receipt, attempt))

    def flush(self) -> None:
        """Hand the batch to the workers in up to ``workers`` chunks (one queue operation each, not one per
        message: that is what keeps reception fast)."""
        batch = self._batch
        if not batch:
            return
        self._batch = []
        chunks = min(len(batch), self.config.workers)
        if chunks == 1:
            self._work.put(batch)
        else:
            for i in range(chunks):
                self._work.put(batch[i::chunks])

    def take_work_acks(self) -> list[tuple[bytes, int]]:
        with self._lock:
            acks, self._work_acks = self._work_acks, []
        return acks

    # --- workers ----------------------------------------------------------------------------------------
    def _run_async(self, handler: Bound, msg: Message, receipt: Receipt | None, attempt: int) -> None:
        assert self.loop is not None
        if handler.resume and attempt == 1:
            self._keep(handler, msg)
        fut = asyncio.run_coroutine_threadsafe(handler.func(msg), self.loop)
        fut.add_done_callback(lambda f: self._finished_async(f, handler, msg, receipt, attempt))

    def _finished(self, count: int = 1) -> None:
        with self._lock:
            self._done_value += count

    def _finished_async(self, fut, handler: Bound, msg: Message, receipt: Receipt | None, attempt: int) -> None:
        exc = fut.exception()
        if exc is None:
            self.count("handled")
        elif not self._failed(handler, msg, receipt, attempt, exc):
            return  # retried later: still pending
        self._complete(receipt)
        if handler.resume:
            self._forget(handler, msg)
        self._finished()

    def _worker(self) -> None:
        get = self._work.get
        while True:
            batch = get()
            if batch is None:
                return
            handled = completed = 0
            for handler, msg, receipt, attempt in batch:
                if handler.resume and attempt == 1:
                    self._keep(handler, msg)
                try:
                    handler.func(msg)
                    handled += 1
                except Exception as exc:
                    if not self._failed(handler, msg, receipt, attempt, exc):
                        continue  # retried later: still pending
                completed += 1
                if receipt is not None:
                    self._complete(receipt)
                if handler.resume:  # after the receipt: a node killed in between finds it settled at its restart
                    self._forget(handler, msg)
            self.count("handled", handled)
            self._finished(completed)

    def _complete(self, receipt: Receipt | None) -> None:
        """One handler of the message is done; after the last one the message is recorded (so it is never handled
        again, even after a restart) and, for a work item, acknowledged to its sender."""
        if receipt is None or self.inbox is None:
            return
        with self._lock:
            receipt.left -= 1
            if receipt.left:
                return
        if receipt.work:
            self.inbox.record_work(receipt.message_id)
            with self._lock:
                self._work_acks.append((receipt.sender, receipt.seq))
            if not self._stopped.is_set():
                self._acknowledge()  # at once: the sender must not give the item to another member
        elif receipt.stream is not None:
            self.inbox.record(receipt.stream, receipt.seq)

    # --- failures -------------------------------------------------------------------------------------
    def _failed(self, handler: Bound, msg: Message, receipt: Receipt | None, attempt: int,
                exc: BaseException) -> bool:
        """A handler raised: retry later (False) or keep the message as a dead letter (True: it is settled)."""
        cfg = self.config
        if receipt is not None and receipt.first_failed is None:
            receipt.first_failed = time.time()
        first_failed = receipt.first_failed if receipt is not None else time.time()
        retry = can_succeed_later(exc)
        if handler in self.internal or msg.topic.startswith("error."):
            retry = False
        if retry and attempt < cfg.max_attempts and not self._stopped.is_set():
            delay = cfg.retry_backoff * 2 ** (attempt - 1)
            self._report(handler, msg, exc, attempt=attempt,
                         next_step=f"retrying in {delay:g} s (attempt {attempt + 1} of {cfg.max_attempts})")
            with self._retry_cond:
                self._retry_n += 1
                heapq.heappush(self._retries, (time.monotonic() + delay, self._retry_n,
                                               (handler, msg, receipt, attempt + 1)))
                self._retry_cond.notify()
            return False
        if self._stopped.is_set() and retry and attempt < cfg.max_attempts:
            self._report(handler, msg, exc, attempt=attempt, next_step="the node is stopping: it gets the message "
                         "again after its restart")
            return False
        if isinstance(exc, MalformedMessage):
            # unreadable: counted, not kept one by one (a flood of bad frames must not fill the dead letters)
            self.count("malformed")
            n = self.counters().get("malformed", 0)
            if n == 1 or n % 100 == 0:
                self._report(handler, msg, exc, attempt=attempt,
                             next_step=f"dropped: it cannot be read ({n} unreadable so far, counted as malformed); "
                                       "fix the node that published it")
            return True
        reason = exc.reason if isinstance(exc, HandlerError) else f"{type(exc).__name__}: {exc}"
        letter = None
        if self.dead is not None and handler not in self.internal:
            try:
                letter = self.dead.add(msg, handler.name, reason, attempt, first_failed)
                self.count("dead")
            except Exception as store_exc:  # a full disk must not lose the message silently
                log.error("could not keep message %s as a dead letter: %s", msg.id[:12], store_exc)
        if letter is not None:
            self._report(handler, msg, exc, attempt=attempt,
                         next_step=f"gave up after {attempt} attempt{'s' if attempt != 1 else ''}; kept as dead "
                                   f"letter {letter.id}: fix the cause, then meshdcm dead retry {self.name} "
                                   f"{letter.id}",
                         dead_letter={"node": self.name, "id": letter.id})
        else:
            self._report(handler, msg, exc, attempt=attempt, next_step="not retried")
        return True

    def _retry_loop(self) -> None:
        cond = self._retry_cond
        while not (self._stopped.is_set() and not self._engine_alive()):
            with cond:
                if not self._retries:
                    cond.wait(0.5)
                    continue
                due, _, item = self._retries[0]
                wait = due - time.monotonic()
                if wait > 0:
                    cond.wait(min(wait, 0.5))
                    continue
                heapq.heappop(self._retries)
            handler = item[0]
            if handler.is_async:
                self._run_async(*item)
            else:
                self._work.put([item])

    # --- resumable handlers (meshdcm.accepted) -------------------------------------------------------
    def _keep(self, handler: Bound, msg: Message) -> None:
        if self.accepted is None:
            return
        try:
            self.accepted.keep(msg, handler.name)
        except Exception as exc:  # a full disk: the work still runs, it just cannot resume after a restart
            log.error("could not keep message %s (%s) for %s across a restart: %s; it is handled anyway", msg.id[:12],
                      msg.topic, handler.name, exc)

    def _forget(self, handler: Bound, msg: Message) -> None:
        if self.accepted is None:
            return
        try:
            self.accepted.forget(msg, handler.name)
        except Exception as exc:
            log.error("could not forget finished message %s (%s): %s; it may be handled again after a restart",
                      msg.id[:12], msg.topic, exc)

    def resume(self) -> int:
        """At start, workers running: hand the messages an earlier run took on and did not finish to their handlers
        again. A message whose stream is known is marked in flight, so that its sender's replay of it is a
        duplicate, and recorded as handled when the handler is done. Returns how many were resumed."""
        if self.accepted is None:
            return 0
        resumed = 0
        for item in self.accepted.left_over():
            try:
                msg = item.message
            except Exception as exc:
                log.error("an unfinished message kept for %s cannot be read (%s); it is dropped", item.handler, exc)
                continue
            handler = next((h for h in self.handlers if h.name == item.handler and h.resume), None)
            if handler is None:
                log.warning("message %s (%s) was left unfinished by handler %s, which this node no longer has; it is "
                            "kept in accepted.sqlite", msg.id[:12], msg.topic, item.handler)
                continue
            receipt = None
            stream = self.inbox.streams.get(msg.sender) if self.inbox is not None else None
            if stream is not None:
                if not self.inbox.accept(stream, msg.seq):  # recorded as handled just before the node stopped
                    self._forget(handler, msg)
                    continue
                receipt = Receipt(stream, msg, False, 1)
            attempts = self.config.max_attempts
            if item.starts > attempts:
                exc = HandlerError(f"the node stopped {item.starts - 1} times while handling it (killed, crashed or "
                                   "out of memory)", action="find why the node stopped (its log), then retry it")
                with self._lock:
                    self._redriven += 1  # counted as pending until settled, like any message
                if self._failed(handler, msg, receipt, attempts, exc):
                    self._complete(receipt)
                    self._forget(handler, msg)
                self._finished()
                continue
            log.warning("resuming %s (message %s) for %s: this node took it on before it stopped (start %d of at "
                        "most %d)", msg.topic, msg.id[:12], handler.name, item.starts, attempts)
            with self._lock:
                self._redriven += 1
            if handler.is_async:
                self._run_async(handler, msg, receipt, 1)
            else:
                self._work.put([(handler, msg, receipt, 1)])
            resumed += 1
        return resumed

    def redrive(self, letter: DeadLetter) -> bool:
        """``dead retry``: hand a dead letter's message to its handler again (attempts start over)."""
        wants = [h for h in self.handlers
                 if not h.topic or letter.topic == h.topic or letter.topic.startswith(h.topic + ".")]
        # by its name; else by the function's own name, for letters kept before a node's handlers moved (a closure's
        # "create.<locals>.on_get" became "PacsBridge.on_get"), when that names exactly one handler
        handler = next((h for h in wants if h.name == letter.handler), None)
        if handler is None:
            same = [h for h in wants if h.name.rsplit(".", 1)[-1] == letter.handler.rsplit(".", 1)[-1]]
            handler = same[0] if len(same) == 1 else None
        if handler is None or self._stopped.is_set() or not self._threads:
            return False
        msg = letter.message
        with self._lock:
            self._redriven += 1
        if handler.is_async:
            self._run_async(handler, msg, None, 1)
        else:
            self._work.put([(handler, msg, None, 1)])
        return True
