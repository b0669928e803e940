"""A test node: records every message it handles as a line in a file.

Options ([nodes.recorder] in its TOML config): out (file), topic, where (filter), fail_when (a filter: raise on
messages it matches), delay (seconds of work per message).
"""

from __future__ import annotations

import os
import threading
import time

from meshdcm import HandlerError, Message, Node, NodeConfig, parse_filter


def create(config: NodeConfig) -> Node:
    opts = dict(config.options)
    out = opts["out"]
    fail_when = parse_filter(opts.get("fail_when", ""))
    delay = float(opts.get("delay", 0))
    node = Node(config=config)
    lock = threading.Lock()
    with open(out, "a") as fh:
        fh.write(f"# started {node.name} {time.time_ns()}\n")

    @node.on(opts.get("topic", "stored"), where=opts.get("where", ""))
    def record(msg: Message) -> None:
        if not fail_when.is_all and fail_when.matches(msg):
            raise HandlerError(f"refusing series {msg.get('SeriesDescription')}", action="this is a test failure")
        if delay:
            time.sleep(delay)
        line = f"{node.name} {msg.topic} {msg.get('SeriesInstanceUID')} {msg.seq} {msg.timestamp_ns} {time.time_ns()}\n"
        with lock, open(out, "a") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    return node
