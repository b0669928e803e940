"""A test node for the delivery chaos tests: each message it handles is counted in a SQLite ledger (its side effect).

Options ([nodes.ledger]): ledger (a folder: the ledger is <folder>/<node name>.sqlite, kept across restarts), topic,
where, delay (seconds of work per message), gate (a file: while it exists, the handler waits *before* its side effect
and appends a line to <gate>.waiting — the test kills the node then, in the middle of a message), hwm and
max_pending (node settings, to make a slow consumer), max_attempts and retry_backoff, fail_when (a filter: raise on
those messages) and fail_while (a file: raise on them only while it exists).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

from meshdcm import Message, Node, NodeConfig, parse_filter


def create(config: NodeConfig) -> Node:
    opts = dict(config.options)
    changes = {}
    for option, setting in (("hwm", "high_water_mark"), ("max_pending", "max_pending"),
                            ("max_attempts", "max_attempts")):
        if option in opts:
            changes[setting] = int(opts[option])
    if "retry_backoff" in opts:
        changes["retry_backoff"] = float(opts["retry_backoff"])
    node = Node(config=config.with_(**changes) if changes else config)
    folder = Path(opts["ledger"])
    folder.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(folder / f"{config.name}.sqlite"), check_same_thread=False, isolation_level=None,
                         timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")  # survives a killed process (what the tests do), not a power cut
    db.execute("CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, count INTEGER NOT NULL, pid INTEGER)")
    lock = threading.Lock()
    gate = Path(opts["gate"]) if opts.get("gate") else None
    delay = float(opts.get("delay", 0))
    fail_when = parse_filter(opts.get("fail_when", ""))
    fail_while = Path(opts["fail_while"]) if opts.get("fail_while") else None

    @node.on(opts.get("topic", "stored"), where=opts.get("where", ""))
    def count(msg: Message) -> None:
        if gate is not None and gate.exists():
            # what this thread already did (acknowledgements of finished work items) goes out first: the test kills
            # the node while it is inside this message, not in the instant after the previous one
            node.sync()
            with open(f"{gate}.waiting", "a") as fh:
                fh.write(f"{os.getpid()} {msg.get('SeriesInstanceUID')}\n")
            while gate.exists():
                time.sleep(0.005)
        if not fail_when.is_all and fail_when.matches(msg) and (fail_while is None or fail_while.exists()):
            raise RuntimeError(f"cannot handle series {msg.get('SeriesInstanceUID')} (test failure)")
        if delay:
            time.sleep(delay)
        with lock:
            db.execute("INSERT INTO seen (key, count, pid) VALUES (?, 1, ?) "
                       "ON CONFLICT(key) DO UPDATE SET count = count + 1", (msg.get("SeriesInstanceUID"), os.getpid()))

    return node
