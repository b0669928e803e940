"""A test publisher for the delivery chaos tests: ``count`` stored.series messages, SeriesInstanceUID <prefix>.<n>.

It waits until ``subscribers`` nodes of kind ``ledger`` are in the mesh and ready (``group``: until that many
members of the worker group are there), then publishes at ``rate`` per second. Before each chunk of ``every``
messages it appends ``chunk FIRST LAST`` to the ``log`` file, and after the chunk, once the journal has it
(``Node.sync``), ``accepted LAST``: the messages the mesh owes delivery. Restarted with the same ``log`` it goes on
after the last chunk it started (``done N`` when finished). ``hwm``: its high-water mark (small: it drops frames
for a slow subscriber at its events socket, which the subscriber then has replayed); ``pad``: bytes of
ImageComments in each message.
"""

from __future__ import annotations

import time
from pathlib import Path

from pydicom.dataset import Dataset

from meshdcm import Node, NodeConfig


def create(config: NodeConfig) -> Node:
    opts = dict(config.options)
    count, rate, every = int(opts["count"]), float(opts.get("rate", 1000)), int(opts.get("every", 50))
    prefix, topic = str(opts.get("prefix", "1.2.3")), str(opts.get("topic", "stored.series"))
    wanted, group = int(opts.get("subscribers", 1)), opts.get("group")
    pad = "x" * int(opts.get("pad", 0))  # bytes of ImageComments per message: more than the sockets' buffers hold
    log = Path(opts["log"])
    node = Node(config=config.with_(high_water_mark=int(opts["hwm"])) if "hwm" in opts else config)

    def ready(peers) -> bool:
        if group:
            return sum(1 for p in peers if p["group"] == group) >= wanted
        return sum(1 for p in peers if p["kind"] == "ledger" and p["subscribed"]) >= wanted

    @node.task
    def publish(stopping):
        start = 1
        if log.exists():
            chunks = [int(line.split()[2]) for line in log.read_text().splitlines() if line.startswith("chunk")]
            start = max(chunks, default=0) + 1
        if not node.wait_for(ready, 60):
            raise RuntimeError("the subscribers did not come")
        t0 = time.monotonic()
        n = start
        while n <= count and not stopping.is_set():
            last = min(count, n + every - 1)
            with open(log, "a") as fh:
                fh.write(f"chunk {n} {last}\n")
            for i in range(n, last + 1):
                ds = Dataset()
                ds.Modality = "MR"
                ds.SeriesInstanceUID = f"{prefix}.{i}"
                if pad:
                    ds.ImageComments = pad
                node.publish(topic, ds)
            if node.sync(30):
                with open(log, "a") as fh:
                    fh.write(f"accepted {last}\n")
            n = last + 1
            ahead = (n - start) / rate - (time.monotonic() - t0)
            if ahead > 0:
                stopping.wait(ahead)
        with open(log, "a") as fh:
            fh.write(f"done {count}\n")

    return node
