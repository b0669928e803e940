"""What the viewer node remembers across restarts: opened studies, the series it has heard of, what it has sent.

One SQLite file under the node's data folder (stdlib ``sqlite3``: atomic, durable, no server). Three tables:

- ``opened (study, viewer)``: studies the user opened in a viewer; every later series of them is forwarded;
- ``series (series -> study, uris, derived_from, instances)``: every ``stored.series`` heard, with its latest URIs,
  so that opening a study already stored in the mesh needs no new retrieve;
- ``sent (viewer, sop -> series)``: instances a viewer has acknowledged (C-STORE success), so a series is never
  sent twice to the same viewer unless the study is opened again.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from ..state import private_dir, private_file

__all__ = ["Ledger", "KnownSeries"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS opened (study TEXT NOT NULL, viewer TEXT NOT NULL, opened_at REAL NOT NULL,
                                   PRIMARY KEY (study, viewer));
CREATE TABLE IF NOT EXISTS series (series TEXT PRIMARY KEY, study TEXT NOT NULL, uris TEXT NOT NULL,
                                   derived_from TEXT, instances INTEGER, seen_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS series_by_study ON series (study);
CREATE TABLE IF NOT EXISTS sent (viewer TEXT NOT NULL, sop TEXT NOT NULL, series TEXT NOT NULL, sent_at REAL NOT NULL,
                                 PRIMARY KEY (viewer, sop));
CREATE INDEX IF NOT EXISTS sent_by_series ON sent (viewer, series);
"""


@dataclass(frozen=True)
class KnownSeries:
    study: str
    series: str
    uris: tuple[str, ...]
    derived_from: str | None
    instances: int | None


class Ledger:
    """Thread-safe (one connection, one lock); every change is committed before the call returns."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.parent.exists():
            private_dir(self.path.parent)
        private_file(self.path)  # which studies went to which viewer: patient data
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, args=()) -> None:
        with self._lock:
            self._db.execute(sql, args)

    def _read(self, sql: str, args=()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- opened studies ------------------------------------------------------------------------------------------
    def open(self, study: str, viewer: str) -> None:
        """Remember that ``study`` is open in ``viewer``; forget what was sent of it there (it is asked again)."""
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute("INSERT OR REPLACE INTO opened VALUES (?, ?, ?)", (study, viewer, time.time()))
            self._db.execute("DELETE FROM sent WHERE viewer = ? AND series IN (SELECT series FROM series WHERE study = ?)",
                             (viewer, study))
            self._db.execute("COMMIT")

    def viewers_for(self, study: str) -> list[str]:
        return [r[0] for r in self._read("SELECT viewer FROM opened WHERE study = ? ORDER BY viewer", (study,))]

    def opened(self) -> list[tuple[str, str]]:
        return self._read("SELECT study, viewer FROM opened ORDER BY opened_at")

    # -- series heard of -----------------------------------------------------------------------------------------
    def remember_series(self, study: str, series: str, uris: list[str], derived_from: str | None,
                        instances: int | None) -> None:
        self._write("INSERT OR REPLACE INTO series VALUES (?, ?, ?, ?, ?, ?)",
                    (series, study, json.dumps(list(uris)), derived_from, instances, time.time()))

    def series_of(self, study: str) -> list[KnownSeries]:
        rows = self._read("SELECT study, series, uris, derived_from, instances FROM series WHERE study = ? "
                          "ORDER BY seen_at", (study,))
        return [KnownSeries(r[0], r[1], tuple(json.loads(r[2])), r[3], r[4]) for r in rows]

    def known(self, series: str) -> KnownSeries | None:
        rows = self._read("SELECT study, series, uris, derived_from, instances FROM series WHERE series = ?", (series,))
        return KnownSeries(rows[0][0], rows[0][1], tuple(json.loads(rows[0][2])), rows[0][3], rows[0][4]) if rows \
            else None

    def forget_older_than(self, seconds: float) -> int:
        """Drop series heard of longer ago than ``seconds`` whose study is not open anywhere; returns how many."""
        with self._lock:
            cur = self._db.execute("DELETE FROM series WHERE seen_at < ? AND study NOT IN (SELECT study FROM opened)",
                                   (time.time() - seconds,))
            return cur.rowcount

    # -- sent instances ------------------------------------------------------------------------------------------
    def sent(self, viewer: str, series: str) -> set[str]:
        return {r[0] for r in self._read("SELECT sop FROM sent WHERE viewer = ? AND series = ?", (viewer, series))}

    def mark_sent(self, viewer: str, series: str, sops: list[str]) -> None:
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO sent VALUES (?, ?, ?, ?)",
                                 [(viewer, sop, series, now) for sop in sops])
            self._db.execute("COMMIT")

    def unsent(self) -> list[tuple[str, str, str]]:
        """(viewer, study, series) of opened studies not (fully) sent yet: the work a restart picks up again."""
        rows = self._read(
            "SELECT o.viewer, s.study, s.series, s.instances, "
            "(SELECT COUNT(*) FROM sent t WHERE t.viewer = o.viewer AND t.series = s.series) "
            "FROM opened o JOIN series s ON s.study = o.study ORDER BY s.seen_at")
        return [(v, st, se) for v, st, se, n, done in rows if done == 0 or (n is not None and done < n)]
