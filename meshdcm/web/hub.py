"""Fan-out of small UI events (``{"type": ..., "key": ...}``) from the node's handler threads to every open
browser event stream (server-sent events). A browser that falls behind loses events, never blocks the node:
each event only says what changed, and the page then asks for the current state."""

from __future__ import annotations

import asyncio
import threading

QUEUE_SIZE = 256


class Hub:
    def __init__(self) -> None:
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = set()
        self._lock = threading.Lock()

    def subscribe(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Queue]:
        sub = (asyncio.get_running_loop(), asyncio.Queue(QUEUE_SIZE))
        with self._lock:
            self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub) -> None:
        with self._lock:
            self._subscribers.discard(sub)

    def emit(self, kind: str, key: str = "") -> None:
        event = {"type": kind, "key": key}
        with self._lock:
            subs = list(self._subscribers)
        for loop, q in subs:
            try:
                loop.call_soon_threadsafe(_offer, q, event)
            except RuntimeError:  # that stream's loop is closed: it is going away
                self.unsubscribe((loop, q))


def _offer(q: asyncio.Queue, event: dict) -> None:
    if not q.full():
        q.put_nowait(event)
