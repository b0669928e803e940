"""A receiver's record of what it got: per sending stream, what was handled, what is missing, what came twice.

Per stream (one incarnation of a sender, named by its node id) the receiver keeps

* ``upto``: every sequence number up to here is settled (its handlers returned, or none wanted it);
* ``done``: settled numbers above ``upto``; ``inflight``: given to handlers, not yet returned;
* ``highest``: the highest number seen, and ``missing``: ranges below it that never arrived (gaps), which the
  engine asks the sender to replay (docs/delivery.md).

A message is a duplicate if it is settled or in flight; duplicates never reach a handler. A handled message is
written, right after its handlers return and *before* it counts as settled, as one 33-byte record in
``<state>/done.log`` (:class:`DoneLog`: a memory copy into a memory-mapped file, ~1 us, where a SQLite commit per
message costs ~40 us); the engine folds the log into SQLite (WAL, ``synchronous=NORMAL``) every few seconds and at
start, with the streams' ``upto``. A node killed between a handler's side effect and that record sees the message
again after its restart: the one window where a handler can run twice (docs/delivery.md says why outputs are
idempotent).

Work items (one member of a group handles each) are remembered by message id for ``keep`` seconds, so a re-sent
item is acknowledged again instead of being handled twice.

What is kept is bounded: :meth:`Inbox.prune` forgets, in memory and on disk, the streams of senders that left and were
not heard of for ``keep`` seconds (their journals no longer hold those frames either), and beyond ``MAX_STREAMS``
the settled streams of departed senders heard of least recently.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from .donelog import RECORD as _RECORD
from .donelog import DoneLog
from .journal import SEQ_MOD, after, open_db, seq_add, to_signed, to_unsigned

__all__ = ["DoneLog", "Inbox", "Stream"]

_ASK_AGAIN = 1.0  # seconds before a replay request that got no answer is sent again
_ASK_MAX = 256  # frames per replay request: the answer must fit the control socket's queue
_ANNOUNCE_GRACE = 1.0  # a sender's announced seq counts as missing here only if still not seen after this

_FOLD_EVERY = 5.0  # seconds between folds of the log into SQLite
MAX_STREAMS = 4096  # streams remembered at most (a departed sender's settled ones are forgotten first)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (stream BLOB PRIMARY KEY, name TEXT NOT NULL, upto INTEGER NOT NULL,
                                    seen REAL NOT NULL);
CREATE TABLE IF NOT EXISTS done (stream BLOB NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (stream, seq))
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS work (id BLOB PRIMARY KEY, at REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS senders (name TEXT PRIMARY KEY, since REAL NOT NULL);
"""


class Stream:
    __slots__ = ("id", "name", "upto", "done", "inflight", "highest", "missing", "asked", "announced", "dirty",
                 "absorbed", "lost", "heard", "seen", "saved")

    def __init__(self, stream_id: bytes, name: str, upto: int):
        self.id, self.name, self.upto = stream_id, name, upto
        self.done: set[int] = set()
        self.inflight: set[int] = set()
        self.highest = upto
        self.missing: list[list[int]] = []  # [first, count], in order
        self.asked = 0.0
        self.announced: tuple[int, float] | None = None
        self.dirty = True
        self.absorbed: list[int] = []
        self.lost = 0
        self.heard = 0.0  # when a message of this stream last arrived (monotonic)
        self.seen = time.time()  # when the stream was last announced or heard (unix time; kept with the record)
        self.saved = self.seen  # the ``seen`` its record on disk has

    # --- gaps (caller holds the inbox lock) ------------------------------------------------------------
    def _add_missing(self, first: int, count: int) -> None:
        if count > 0:
            self.missing.append([first, count])

    def _take_missing(self, seq: int) -> None:
        for i, (first, count) in enumerate(self.missing):
            off = (seq - first) % SEQ_MOD
            if off < count:
                if off == 0:
                    if count == 1:
                        del self.missing[i]
                    else:
                        self.missing[i] = [seq_add(first, 1), count - 1]
                elif off == count - 1:
                    self.missing[i][1] = count - 1
                else:
                    self.missing[i:i + 1] = [[first, off], [seq_add(seq, 1), count - off - 1]]
                return

    def _settle(self, seq: int) -> None:
        self.inflight.discard(seq)
        if seq == seq_add(self.upto, 1):
            self.upto = seq
            while seq_add(self.upto, 1) in self.done:
                self.upto = seq_add(self.upto, 1)
                self.done.discard(self.upto)
                self.absorbed.append(self.upto)
            self.dirty = True
        elif after(seq, self.upto):
            self.done.add(seq)
        if after(self.upto, self.highest):
            self.highest = self.upto


class Inbox:
    """Receive state of one node (``path`` None: in memory, for short-lived tools)."""

    def __init__(self, path: Path | None, *, keep: float = 86400.0):
        self.durable = path is not None
        self.keep = keep
        self.db = open_db(path)
        self.log = DoneLog(path.with_name("done.log")) if path is not None else None
        self.log_lock = threading.Lock()
        self._last_fold = time.monotonic()
        self.db.executescript(_SCHEMA)
        self.lock = threading.Lock()
        self.db_lock = threading.Lock()
        self.streams: dict[bytes, Stream] = {}
        self.senders: dict[str, float] = dict(self.db.execute("SELECT name, since FROM senders"))
        self.work_done: dict[bytes, float] = {}  # message id -> when it was finished
        self.work_inflight: dict[bytes, tuple[bytes, int]] = {}  # message id -> (sender stream, seq)
        self.duplicates = 0
        now = time.time()
        self.db.execute("DELETE FROM streams WHERE seen < ?", (now - keep,))
        self.db.execute("DELETE FROM work WHERE at < ?", (now - keep,))
        for sid, name, upto, seen in self.db.execute("SELECT stream, name, upto, seen FROM streams"):
            st = Stream(bytes(sid), name, to_unsigned(upto))
            st.dirty, st.seen, st.saved = False, seen, seen
            self.streams[st.id] = st
        stale = []
        for sid, seq in self.db.execute("SELECT stream, seq FROM done").fetchall():
            st = self.streams.get(bytes(sid))
            if st is not None and after(to_unsigned(seq), st.upto):
                st.done.add(to_unsigned(seq))
            else:
                stale.append((sid, seq))
        if stale:
            self._write_many("DELETE FROM done WHERE stream = ? AND seq = ?", stale)
        for mid, at in self.db.execute("SELECT id, at FROM work"):
            self.work_done[bytes(mid)] = at
        if self.log is not None:
            self._apply_log()
            self.fold()
        for st in self.streams.values():
            self._rebuild_gaps(st)

    def _apply_log(self) -> None:
        """At start: records appended since the last fold (the node may have been killed)."""
        for kind, sid, seq, when in self.log.records():
            if kind == b"w":
                self.work_done[sid] = when
            else:
                st = self.streams.get(sid)
                if st is not None and after(seq, st.upto):
                    st.done.add(seq)
        for st in self.streams.values():
            if st.done:
                while seq_add(st.upto, 1) in st.done:
                    st.upto = seq_add(st.upto, 1)
                    st.done.discard(st.upto)
                    st.dirty = True
            st.highest = st.upto

    @staticmethod
    def _rebuild_gaps(st: Stream) -> None:
        """After a restart: every number between ``upto`` and the highest done one that is not done is missing."""
        if not st.done:
            return
        top = max(st.done, key=lambda s: (s - st.upto) % SEQ_MOD)
        st.highest = top
        seq = seq_add(st.upto, 1)
        first, count = None, 0
        while seq != top:
            if seq in st.done:
                if count:
                    st._add_missing(first, count)
                first, count = None, 0
            else:
                if first is None:
                    first = seq
                count += 1
            seq = seq_add(seq, 1)
        if count:
            st._add_missing(first, count)

    # --- streams ---------------------------------------------------------------------------------------
    def knows_sender(self, name: str, stream_started: float) -> bool:
        """True if this node met ``name`` before that stream started (so it wants the stream from its start)."""
        since = self.senders.get(name)
        return since is not None and stream_started >= since - 1.0

    def meet(self, stream_id: bytes, name: str, last_seq: int, started: float) -> Stream | None:
        """A sender announced a stream (HELLO, WELCOME, PING, PONG): open or update our record of it.

        A stream we have no record of starts *now* (at ``last_seq``), unless we knew the sender's name before the
        stream started: then we want all of it (a restarted sender's new incarnation)."""
        with self.lock:
            st = self.streams.get(stream_id)
            if st is None:
                if self.knows_sender(name, started):
                    st = Stream(stream_id, name, 0)
                    st._add_missing(1, last_seq)
                    st.highest = last_seq
                else:
                    st = Stream(stream_id, name, last_seq)
                if name and name not in self.senders:
                    self.senders[name] = time.time()
                    self._write("INSERT OR IGNORE INTO senders (name, since) VALUES (?, ?)",
                                (name, self.senders[name]))
                self._add(st)
                return st
            st.seen = time.time()
            if st.seen - st.saved > min(3600.0, self.keep / 4):
                st.dirty = True  # a quiet but live sender: its record on disk must not look expired at our restart
            if st.announced is None and after(last_seq, st.highest):
                st.announced = (last_seq, time.monotonic())
            return st

    def first_message(self, stream_id: bytes, name: str, seq: int) -> Stream:
        """A message from a stream we never met (it came before the handshake): start just before it."""
        with self.lock:
            st = self.streams.get(stream_id)
            if st is None:
                st = Stream(stream_id, name, seq_add(seq, -1))
                self._add(st)
            return st

    def _add(self, st: Stream) -> None:
        """A new stream, written at once: records of its messages in the log are only read back for known streams."""
        self.streams[st.id] = st
        st.dirty = False
        self._write("INSERT OR REPLACE INTO streams (stream, name, upto, seen) VALUES (?, ?, ?, ?)",
                    (st.id, st.name, to_signed(st.upto), time.time()))

    # --- events ----------------------------------------------------------------------------------------
    def accept(self, st: Stream, seq: int) -> bool:
        """Engine thread: True if the message is new (it is then in flight), False for a duplicate."""
        with self.lock:
            st.heard = time.monotonic()
            st.seen = time.time()
            if not after(seq, st.upto) or seq in st.done or seq in st.inflight:
                self.duplicates += 1
                return False
            nxt = seq_add(st.highest, 1)
            if seq == nxt:
                st.highest = seq
            elif after(seq, nxt):
                st._add_missing(nxt, (seq - nxt) % SEQ_MOD)
                st.highest = seq
            else:
                st._take_missing(seq)
            st.inflight.add(seq)
            return True

    def settle(self, st: Stream, seq: int) -> None:
        """A message no handler wanted (or one already recorded): settled at once."""
        with self.lock:
            st._settle(seq)

    def record(self, st: Stream, seq: int) -> None:
        """Worker thread: the handlers of this message returned; write that down, then count it settled."""
        if self.log is not None:
            with self.log_lock:
                self.log.append(_RECORD.pack(b"e", st.id, seq, 0.0))
        with self.lock:
            st._settle(seq)

    def give_up(self, st: Stream, first: int, count: int) -> None:
        """The sender no longer has these (beyond its journal's retention): settle them as lost."""
        with self.lock:
            seq = first
            for _ in range(count):
                if seq not in st.done and seq not in st.inflight and after(seq, st.upto):
                    st._take_missing(seq)
                    st._settle(seq)
                    st.lost += 1
                seq = seq_add(seq, 1)

    def missing_count(self) -> int:
        """How many messages of all streams are known missing here (still to be replayed)."""
        with self.lock:
            return sum(count for st in self.streams.values() for _, count in st.missing)

    def wanted(self, now: float) -> list[tuple[Stream, int, int]]:
        """Engine tick: replay requests to send now, (stream, first, last) — gaps, and announced tails."""
        out = []
        with self.lock:
            for st in self.streams.values():
                # a tail loss shows only once the stream is quiet here: while its messages still arrive (or wait in
                # our queues because we are behind), the next one reveals any gap
                if st.announced is not None and now - st.announced[1] >= _ANNOUNCE_GRACE \
                        and now - st.heard >= _ANNOUNCE_GRACE:
                    seq = st.announced[0]
                    st.announced = None
                    if after(seq, st.highest):
                        nxt = seq_add(st.highest, 1)
                        st._add_missing(nxt, (seq - nxt) % SEQ_MOD + 1)
                        st.highest = seq
                if st.missing and now - st.asked >= _ASK_AGAIN:
                    first, count = st.missing[0]
                    st.asked = now
                    out.append((st, first, seq_add(first, min(count, _ASK_MAX) - 1)))
        return out

    def answered(self, st: Stream) -> None:
        with self.lock:
            st.asked = 0.0  # ask for the next range at the next tick

    # --- work items ------------------------------------------------------------------------------------
    def accept_work(self, message_id: bytes, stream_id: bytes, seq: int) -> str:
        """"new", "done" (acknowledge it again) or "inflight" (being handled here)."""
        with self.lock:
            if message_id in self.work_done:
                self.duplicates += 1
                return "done"
            if message_id in self.work_inflight:
                self.duplicates += 1
                return "inflight"
            self.work_inflight[message_id] = (stream_id, seq)
            return "new"

    def record_work(self, message_id: bytes) -> None:
        now = time.time()
        if self.log is not None:
            with self.log_lock:
                self.log.append(_RECORD.pack(b"w", message_id, 0, now))
        with self.lock:
            self.work_inflight.pop(message_id, None)
            self.work_done[message_id] = now

    def held_work(self) -> list[tuple[bytes, int]]:
        """(stream, seq) of the work items being handled here."""
        with self.lock:
            return list(self.work_inflight.values())

    # --- persistence -----------------------------------------------------------------------------------
    def _write(self, sql: str, args: tuple) -> None:
        if self.durable:
            with self.db_lock:
                self.db.execute(sql, args)

    def _write_many(self, sql: str, rows: list) -> None:
        with self.db_lock:
            self.db.execute("BEGIN")
            try:
                self.db.executemany(sql, rows)
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def flush(self) -> None:
        """Engine tick: fold the log into SQLite every few seconds."""
        if self.durable and time.monotonic() - self._last_fold >= _FOLD_EVERY:
            self.fold()

    def fold(self) -> None:
        """Write the log's records, the streams' ``upto`` and the forgotten done rows to SQLite, then empty the log
        (holding the log's lock throughout, so no record appended meanwhile is lost)."""
        if not self.durable:
            return
        self._last_fold = time.monotonic()
        with self.log_lock:
            events, work = [], []
            with self.lock:
                upto = {sid: st.upto for sid, st in self.streams.items()}
            for kind, sid, seq, when in self.log.records():
                if kind == b"w":
                    work.append((sid, when))
                elif sid in upto and after(seq, upto[sid]):  # at or below upto: the streams row says it; a
                    # stream not known (any more) is not read back
                    events.append((sid, to_signed(seq)))
            with self.db_lock:
                self.db.execute("BEGIN")
                try:
                    self.db.executemany("INSERT OR IGNORE INTO done (stream, seq) VALUES (?, ?)", events)
                    self.db.executemany("INSERT OR REPLACE INTO work (id, at) VALUES (?, ?)", work)
                    self.db.execute("COMMIT")
                except BaseException:
                    self.db.execute("ROLLBACK")
                    raise
            self._write_streams()
            self.log.clear()

    def _write_streams(self) -> None:
        """The streams' ``upto``, and done rows below it deleted."""
        with self.lock:
            rows, gone = [], []
            for st in self.streams.values():
                if st.dirty:
                    st.dirty = False
                    rows.append((st.id, st.name, to_signed(st.upto), st.seen))
                    st.saved = st.seen
                    gone.extend((st.id, to_signed(s)) for s in st.absorbed)
                    st.absorbed = []
        if not self.durable or not (rows or gone):
            return
        with self.db_lock:
            self.db.execute("BEGIN")
            try:
                self.db.executemany("INSERT OR REPLACE INTO streams (stream, name, upto, seen) VALUES (?, ?, ?, ?)",
                                    rows)
                self.db.executemany("DELETE FROM done WHERE stream = ? AND seq = ?", gone)
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def prune(self, live: set[bytes], now: float | None = None) -> list[bytes]:
        """Engine, every minute: forget finished work items older than ``keep``, the streams of senders not in
        ``live`` (the streams of the peers in the mesh now) that were not heard of for ``keep`` seconds and have
        nothing missing or in flight, and beyond :data:`MAX_STREAMS` such streams heard of least recently; then the
        names of senders none of whose streams is left. Returns the ids of the streams forgotten."""
        now = time.time() if now is None else now
        cutoff = now - self.keep
        with self.lock:
            old = [k for k, at in self.work_done.items() if at < cutoff]
            for k in old:
                del self.work_done[k]
            settled = sorted((st for st in self.streams.values()
                              if st.id not in live and not st.missing and not st.inflight), key=lambda st: st.seen)
            over = max(0, len(self.streams) - MAX_STREAMS)
            gone = [st.id for i, st in enumerate(settled) if i < over or st.seen < cutoff]
            for sid in gone:
                del self.streams[sid]
            names = {st.name for st in self.streams.values()}
            forgotten = [n for n, since in self.senders.items() if n not in names and since < cutoff]
            for name in forgotten:
                del self.senders[name]
        if self.durable and (old or gone or forgotten):
            with self.db_lock:
                self.db.execute("BEGIN")
                try:
                    self.db.execute("DELETE FROM work WHERE at < ?", (cutoff,))
                    self.db.executemany("DELETE FROM streams WHERE stream = ?", [(sid,) for sid in gone])
                    self.db.executemany("DELETE FROM done WHERE stream = ?", [(sid,) for sid in gone])
                    self.db.executemany("DELETE FROM senders WHERE name = ?", [(n,) for n in forgotten])
                    self.db.execute("COMMIT")
                except BaseException:
                    self.db.execute("ROLLBACK")
                    raise
        return gone

    def close(self) -> None:
        try:
            self.fold()
        finally:
            if self.log is not None:
                self.log.close()
                self.log = None
            with self.db_lock:
                self.db.close()
