"""Messages a resumable handler has taken on and not finished: kept on disk so that a restarted node finishes them.

A handler registered with ``Node.on(..., resume=True)`` does long work a node must not lose when it dies (a
retrieval from a PACS: minutes, hundreds of instances). Before such a handler first runs for an event, the event's
whole frame is written to ``accepted.sqlite`` under the node's data folder; it is removed once the handler has
finished with it for good (returned, or the message became a dead letter). A node that starts and finds rows there
hands each message to the same handler again (docs/delivery.md, "Resumable handlers"): the work resumes whether or
not its sender is still there to replay it. Each start counts: a message that was taken on ``max_attempts``
times by a node that never came back from it (a crash it causes, the OOM killer) becomes a dead letter instead of
a crash loop.

Work items (PUSH/PULL) are not kept here: their lease already gives them to another member, or to the same one
after its restart.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .journal import open_db
from .message import Message

__all__ = ["Accepted", "AcceptedMessages"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accepted (
    message_id BLOB NOT NULL, handler TEXT NOT NULL, topic TEXT NOT NULL, accepted REAL NOT NULL,
    starts INTEGER NOT NULL, frame BLOB NOT NULL, PRIMARY KEY (message_id, handler)
);
"""


@dataclass(frozen=True)
class Accepted:
    """One message left unfinished by an earlier run: ``starts`` counts the runs that took it on."""

    handler: str
    topic: str
    accepted: float
    starts: int
    frame: bytes

    @property
    def message(self) -> Message:
        return Message.from_bytes(self.frame)


class AcceptedMessages:
    """The store of one node (``path`` None: in memory, for nodes without durable state)."""

    def __init__(self, path: Path | None):
        self.db = open_db(path)
        self.db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def keep(self, msg: Message, handler: str) -> None:
        """Before the handler's first attempt: the message survives the node from now on."""
        with self._lock:
            self.db.execute("INSERT OR IGNORE INTO accepted VALUES (?, ?, ?, ?, 1, ?)",
                            (msg.message_id, handler, msg.topic, time.time(), msg.to_bytes()))

    def forget(self, msg: Message, handler: str) -> None:
        """The handler is done with the message (it returned, or the message is now a dead letter)."""
        with self._lock:
            self.db.execute("DELETE FROM accepted WHERE message_id = ? AND handler = ?", (msg.message_id, handler))

    def left_over(self) -> list[Accepted]:
        """At start: what earlier runs took on and did not finish, each counted as taken on once more."""
        with self._lock:
            self.db.execute("UPDATE accepted SET starts = starts + 1")
            rows = self.db.execute("SELECT handler, topic, accepted, starts, frame FROM accepted "
                                   "ORDER BY accepted").fetchall()
        return [Accepted(h, t, a, s, bytes(f)) for h, t, a, s, f in rows]

    def __len__(self) -> int:
        with self._lock:
            return self.db.execute("SELECT COUNT(*) FROM accepted").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self.db.close()
