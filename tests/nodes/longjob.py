"""A test node with a resumable handler (``Node.on(..., resume=True)``): long work that must survive the node.

Options ([nodes.longjob]): out (a file: one line "start UID" when the handler begins, "done UID" when it ends),
gate (a folder: the handler of UID waits until the file gate/UID exists, so a test decides when work ends).
Publishes ``job.done`` (correlated with the job) when a job is done.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from meshdcm import Message, Node, NodeConfig


def create(config: NodeConfig) -> Node:
    out, gate = Path(config.options["out"]), Path(config.options["gate"])
    node = Node(config=config)

    def note(text: str) -> None:
        with open(out, "a") as fh:
            fh.write(text + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    @node.on("job.run", resume=True)
    def run(msg: Message) -> None:
        uid = msg.get("SeriesInstanceUID")
        note(f"start {uid}")
        while not (gate / uid).exists():
            time.sleep(0.02)
        note(f"done {uid}")
        node.publish("job.done", msg.dataset, reply_to=msg)

    return node
