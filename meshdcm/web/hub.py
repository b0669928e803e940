"""Fan-out of small UI events (``{"type": ..., "key": ...}``) from the node's handler threads to every open
browser event stream (server-sent events). Each event only says what changed (the page then asks for the current
state), so an event already waiting for a stream is not queued twice: a burst of 200 ``progress.study`` messages
is one or two events for a browser, and the last change is never lost. A browser that falls behind by more than
``QUEUE_SIZE`` distinct changes loses events, never blocks the node."""

from __future__ import annotations

import asyncio
import threading

QUEUE_SIZE = 256


class Hub:
    def __init__(self) -> None:
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, Stream]] = set()
        self._lock = threading.Lock()

    def subscribe(self) -> tuple[asyncio.AbstractEventLoop, Stream]:
        sub = (asyncio.get_running_loop(), Stream())
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
        for loop, stream in subs:
            try:
                loop.call_soon_threadsafe(_offer, stream, event)
            except RuntimeError:  # that stream's loop is closed: it is going away
                self.unsubscribe((loop, stream))


def _offer(stream: "Stream", event: dict) -> None:
    stream.offer(event)


class Stream:
    """One browser's pending events, each distinct (type, key) at most once; used on its event loop only."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue(QUEUE_SIZE)
        self._pending: set[tuple[str, str]] = set()

    def offer(self, event: dict) -> None:
        item = (event["type"], event["key"])
        if item in self._pending or self._queue.full():
            return
        self._pending.add(item)
        self._queue.put_nowait(item)

    async def get(self) -> dict:
        item = await self._queue.get()
        self._pending.discard(item)
        return {"type": item[0], "key": item[1]}
