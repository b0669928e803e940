"""Dead letters: messages whose handler kept failing after its bounded retries, kept until an operator acts.

Each node keeps its own, in SQLite under its data folder (``dead.sqlite``), with the failed message's whole frame,
the handler, the last error text, the attempt count and the first and last failure times. ``Node.dead_letters``
is a :class:`DeadLetters`; ``meshdcm dead list|show|retry|drop`` and the web UI reach it over the mesh
(``dead.*`` topics, docs/delivery.md). ``retry`` hands the message to the same handler again (the letter is removed;
if it fails again it comes back as a new letter).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from . import topics
from .errors import MeshError
from .journal import open_db
from .message import Message

__all__ = ["REQUESTS", "DeadLetter", "DeadLetters", "answer_dead_request", "iso_utc"]

log = logging.getLogger("meshdcm.node")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS letters (
    id TEXT PRIMARY KEY, topic TEXT NOT NULL, handler TEXT NOT NULL, error TEXT NOT NULL,
    attempts INTEGER NOT NULL, first_failed REAL NOT NULL, last_failed REAL NOT NULL, frame BLOB NOT NULL
);
"""


def iso_utc(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class DeadLetter:
    id: str
    topic: str
    handler: str
    error: str
    attempts: int
    first_failed: float
    last_failed: float
    frame: bytes

    @property
    def message(self) -> Message:
        return Message.from_bytes(self.frame)

    def describe(self, node: str) -> dict:
        """The meta of a ``dead.letter`` answer (the shared contract in docs/delivery.md)."""
        return {"node": node, "id": self.id, "topic": self.topic, "handler": self.handler, "error": self.error,
                "attempts": self.attempts, "first_failed": iso_utc(self.first_failed),
                "last_failed": iso_utc(self.last_failed)}


class DeadLetters:
    """The dead-letter store of one node: ``list()``, ``get(id)``, ``retry(id)``, ``drop(id)``."""

    def __init__(self, path: Path | None, redrive: Callable[[DeadLetter], bool] | None = None):
        self.db = open_db(path)
        self.db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._redrive = redrive

    def add(self, message: Message, handler: str, error: str, attempts: int, first_failed: float) -> DeadLetter:
        letter = DeadLetter(uuid.uuid4().hex[:12], message.topic, handler, error, attempts, first_failed, time.time(),
                            message.to_bytes())
        with self._lock:
            self.db.execute("INSERT INTO letters VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            (letter.id, letter.topic, letter.handler, letter.error, letter.attempts,
                             letter.first_failed, letter.last_failed, letter.frame))
        return letter

    def list(self) -> list[DeadLetter]:
        with self._lock:
            rows = self.db.execute("SELECT * FROM letters ORDER BY last_failed").fetchall()
        return [DeadLetter(*r[:7], bytes(r[7])) for r in rows]

    def get(self, letter_id: str) -> DeadLetter | None:
        with self._lock:
            row = self.db.execute("SELECT * FROM letters WHERE id = ?", (letter_id,)).fetchone()
        return DeadLetter(*row[:7], bytes(row[7])) if row else None

    def drop(self, letter_id: str) -> bool:
        with self._lock:
            return self.db.execute("DELETE FROM letters WHERE id = ?", (letter_id,)).rowcount > 0

    def retry(self, letter_id: str) -> bool:
        """Hand the message to its handler again; False if there is no such letter (or no such handler now)."""
        letter = self.get(letter_id)
        if letter is None or self._redrive is None or not self._redrive(letter):
            return False
        self.drop(letter_id)
        return True

    def __len__(self) -> int:
        with self._lock:
            return self.db.execute("SELECT COUNT(*) FROM letters").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self.db.close()


#: The requests every node answers (docs/delivery.md, "The dead-letter contract").
REQUESTS = (topics.DEAD_LIST, topics.DEAD_SHOW, topics.DEAD_RETRY, topics.DEAD_DROP)


def answer_dead_request(msg: Message, store: DeadLetters, node: str, publish: Callable[..., object]) -> None:
    """Answer one ``dead.*`` request addressed to node ``node`` (or to every node) from ``store``, with
    ``publish(topic, body=None, *, reply_to, meta, index=None)``."""
    if msg.topic not in REQUESTS:
        return
    meta = msg.meta
    if meta.get("node") not in (None, node):
        return
    answer: dict = {"node": node}
    try:
        if msg.topic == topics.DEAD_LIST:
            letters = store.list()
        elif msg.topic == topics.DEAD_SHOW:
            letter = store.get(str(meta.get("id", "")))
            if letter is None:
                raise KeyError(f"node {node} has no dead letter {meta.get('id')!r}")
            letters = [letter]
        else:
            letter_id = str(meta.get("id", ""))
            ok = store.retry(letter_id) if msg.topic == topics.DEAD_RETRY else store.drop(letter_id)
            if not ok:
                raise KeyError(f"node {node} has no dead letter {letter_id!r}"
                               + (" whose handler it still has" if msg.topic == topics.DEAD_RETRY else ""))
            topic = topics.DEAD_RETRIED if msg.topic == topics.DEAD_RETRY else topics.DEAD_DROPPED
            log.info("dead letter %s of node %s: %s on request", letter_id, node, topic.split(".")[1])
            publish(topic, reply_to=msg, meta={"node": node, "id": letter_id})
            return
        for letter in letters:
            failed = letter.message
            publish(topics.DEAD_LETTER, failed.body, index=failed.index, reply_to=msg, meta=letter.describe(node))
        answer["count"] = len(letters)
    except (KeyError, MeshError, ValueError) as exc:
        answer["error"] = str(exc.args[0]) if isinstance(exc, KeyError) else str(exc)
    publish(topics.DEAD_END, reply_to=msg, meta=answer)
