"""The embedded backend: one SQLite file (stdlib ``sqlite3``), no server. What ``meshdcm up`` uses.

Documents are JSON text in ``docs`` with real, indexed columns for the fields queries use (UIDs, patient ID,
upper-case patient name, study date, modality); timeline events are rows of ``events`` keyed by message id.
The file is in WAL mode; one writer connection (behind a lock) applies each message's writes in one transaction,
reads use a connection per thread and never wait for the writer.

Durability: ``synchronous = NORMAL`` (the default here) makes a committed transaction survive the death of the
process (SIGKILL included): it is in the WAL file, which the operating system writes out even if the process is
gone. Only a crash of the whole machine or a power cut may lose the last transactions; ``synchronous = "full"``
(option ``[nodes.index] synchronous``) closes that too, at the cost of an fsync per message.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Iterable

from .documents import FIELDS, Event, Writes, merge
from .store import Prefilter
from ..state import private_dir, private_file

__all__ = ["SqliteBackend"]

log = logging.getLogger("meshdcm.index")

SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    kind TEXT NOT NULL, uid TEXT NOT NULL,
    study TEXT, series TEXT, patient_id TEXT, patient_name TEXT, study_date TEXT, modality TEXT, derived_from TEXT,
    doc TEXT NOT NULL,
    PRIMARY KEY (kind, uid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS docs_study ON docs (kind, study);
CREATE INDEX IF NOT EXISTS docs_series ON docs (kind, series);
CREATE INDEX IF NOT EXISTS docs_patient_id ON docs (kind, patient_id);
CREATE INDEX IF NOT EXISTS docs_patient_name ON docs (kind, patient_name);
CREATE INDEX IF NOT EXISTS docs_study_date ON docs (kind, study_date);
CREATE INDEX IF NOT EXISTS docs_modality ON docs (kind, modality);
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, study TEXT NOT NULL, series TEXT, ts INTEGER NOT NULL, node TEXT, topic TEXT, error TEXT
);
CREATE INDEX IF NOT EXISTS events_study ON events (study, ts);
"""
_COLUMNS = ("uid",) + FIELDS
CHECKPOINT_EVERY = 1.0  # seconds between WAL checkpoints
WAL_KEEP = 64 * 2**20  # bytes of WAL file kept after a restart of the WAL
_SYNC = {"off": "OFF", "normal": "NORMAL", "full": "FULL", "extra": "EXTRA"}


class SqliteBackend:
    name = "sqlite"

    def __init__(self, path: str | Path, synchronous: str = "normal"):
        self.path = Path(path)
        if not self.path.parent.exists():
            private_dir(self.path.parent)
        private_file(self.path)  # patient data: its owner's only (and so its -wal and -shm)
        if synchronous.lower() not in _SYNC:
            raise ValueError(f"synchronous must be one of {', '.join(_SYNC)}, got {synchronous!r}")
        self._sync = _SYNC[synchronous.lower()]
        self._lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._writer = self._connect()
        self._writer.executescript(SCHEMA)
        self._writer.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints (the fsyncs) run on their own thread
        self._writer.execute(f"PRAGMA journal_size_limit={WAL_KEEP}")
        self._closing = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="meshdcm-index-checkpoint",
                                              daemon=True)
        self._checkpointer.start()

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(f"PRAGMA synchronous={self._sync}")
        return con

    def _reader(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = self._local.con = self._connect()
            with self._lock:
                self._readers.append(con)
        return con

    # --- writes -----------------------------------------------------------------------------------------
    def apply(self, writes: Writes, now: str) -> bool:
        with self._lock:
            con = self._writer
            con.execute("BEGIN IMMEDIATE")
            try:
                if writes.event is not None and con.execute(
                        "SELECT 1 FROM events WHERE id = ?", (writes.event.id,)).fetchone():
                    con.execute("ROLLBACK")
                    return False
                for up in writes.upserts:
                    row = con.execute("SELECT doc FROM docs WHERE kind = ? AND uid = ?", (up.kind, up.uid)).fetchone()
                    doc = merge(json.loads(row[0]) if row else None, up, now)
                    con.execute(
                        f"INSERT OR REPLACE INTO docs (kind, {', '.join(_COLUMNS)}, doc) "  # noqa: S608 (fixed names)
                        f"VALUES (?, {', '.join('?' * len(_COLUMNS))}, ?)",
                        (up.kind, *(doc.get(c) for c in _COLUMNS), json.dumps(doc, separators=(",", ":"))))
                e = writes.event
                if e is not None:
                    con.execute("INSERT INTO events (id, study, series, ts, node, topic, error) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?)", (e.id, e.study, e.series, e.ts, e.node, e.topic, e.error))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            return True

    # --- reads ------------------------------------------------------------------------------------------
    def candidates(self, kind: str, where: Prefilter) -> Iterable[dict]:
        sql, args = ["kind = ?"], [kind]
        for name, cond in where.items():
            if name not in _COLUMNS:
                raise ValueError(f"no indexed field {name!r}")
            op = cond[0]
            if op == "eq":
                sql.append(f"{name} = ?")
                args.append(cond[1])
            elif op == "in":
                if not cond[1]:
                    return []
                sql.append(f"{name} IN ({', '.join('?' * len(cond[1]))})")
                args.extend(cond[1])
            elif op == "prefix":
                sql.append(f"{name} >= ? AND {name} < ?")
                args += [cond[1], cond[1] + "\uffff"]
            elif op == "range":
                if cond[1]:
                    sql.append(f"{name} >= ?")
                    args.append(cond[1])
                if cond[2]:
                    sql.append(f"{name} <= ?")
                    args.append(cond[2])
            else:
                raise ValueError(f"unknown condition {op!r}")
        rows = self._reader().execute(
            f"SELECT doc FROM docs WHERE {' AND '.join(sql)}", args).fetchall()  # noqa: S608 (names checked)
        return [json.loads(r[0]) for r in rows]

    def events(self, study: str) -> list[Event]:
        rows = self._reader().execute(
            "SELECT id, study, series, ts, node, topic, error FROM events WHERE study = ? ORDER BY ts, id",
            (study,)).fetchall()
        return [Event(*r) for r in rows]

    def counts(self) -> dict[str, int]:
        con = self._reader()
        out = {kind: n for kind, n in con.execute("SELECT kind, COUNT(*) FROM docs GROUP BY kind")}
        out["events"] = con.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        return out

    def _checkpoint_loop(self) -> None:
        """Copy the WAL into the database every CHECKPOINT_EVERY seconds, off the writers' path: done by the
        committing thread (SQLite's default, every 1,000 pages) its fsyncs cost ~0.5 ms a message here, and a
        page written by many messages within a second is copied once. The first pass runs beside the writers;
        the second, short one holds them back so the checkpoint completes and the next commit starts the WAL
        from its beginning (else, under steady writes, the WAL only grows)."""
        con = self._connect()
        try:
            while not self._closing.wait(CHECKPOINT_EVERY):
                try:
                    con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    with self._lock:
                        con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:  # busy, or the disk: try again next round
                    log.debug("index checkpoint failed: %s", exc)
        finally:
            con.close()

    def close(self) -> None:
        self._closing.set()
        self._checkpointer.join(timeout=30)
        with self._lock:
            try:
                self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                log.warning("index: the last checkpoint failed (%s); SQLite finishes it at the next open", exc)
            for con in self._readers:
                con.close()
            self._readers.clear()
            self._writer.close()
