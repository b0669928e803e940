"""A test node: publishes ``stored.series`` every ``interval`` seconds with SeriesInstanceUID 1.2.3.<n>."""

from __future__ import annotations

from pydicom.dataset import Dataset

from meshdcm import Node, NodeConfig


def create(config: NodeConfig) -> Node:
    interval = float(config.options.get("interval", 0.01))
    node = Node(config=config)

    @node.task
    def tick(stopping):
        n = 0
        while not stopping.wait(interval):
            n += 1
            ds = Dataset()
            ds.Modality = "MR"
            ds.SeriesInstanceUID = f"1.2.3.{n}"
            node.publish("stored.series", ds)

    return node
