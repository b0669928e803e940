"""Helpers of the delivery chaos tests: ledgers written by tests/nodes/ledger.py, logs of tests/nodes/burst.py."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

from conftest import Proc, wait_until


def ledger(folder: Path, name: str) -> Counter:
    """How many times the node's handler did its side effect, per SeriesInstanceUID."""
    path = folder / f"{name}.sqlite"
    if not path.exists():
        return Counter()
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return Counter(dict(db.execute("SELECT key, count FROM seen")))
    except sqlite3.OperationalError:  # the node has not created its table yet
        return Counter()
    finally:
        db.close()


def burst_log(path: Path) -> dict:
    """The publisher's log: accepted (highest accepted n), chunks [(first, last)], done."""
    lines = path.read_text().split("\n") if path.exists() else []
    out = {"accepted": 0, "chunks": [], "done": False}
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[0] == "accepted":
            out["accepted"] = max(out["accepted"], int(parts[1]))
        elif len(parts) == 3 and parts[0] == "chunk":
            out["chunks"].append((int(parts[1]), int(parts[2])))
        elif len(parts) == 2 and parts[0] == "done":
            out["done"] = True
    return out


def kill_mid_message(proc: Proc, gate: Path, timeout: float = 30) -> None:
    """SIGKILL a ledger node while its handler is inside a message (held at its gate, before the side effect)."""
    waiting = Path(f"{gate}.waiting")
    waiting.unlink(missing_ok=True)
    gate.touch()
    try:
        wait_until(waiting.exists, timeout, what="the node's handler to be inside a message")
        proc.kill()
    finally:
        gate.unlink(missing_ok=True)


def report(title: str, sent: int, seen: Counter, expected: set[str]) -> tuple[int, int]:
    """Print sent / delivered / duplicates / lost; returns (duplicates, lost)."""
    duplicates = sum(c - 1 for c in seen.values() if c > 1)
    lost = len(expected - set(seen))
    print(f"{title}: sent {sent}, delivered {len(seen)}, duplicates seen by handlers {duplicates}, lost {lost}")
    return duplicates, lost
