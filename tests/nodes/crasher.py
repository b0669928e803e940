"""A test node whose engine fails after it started (fault injection): its timer raises in the engine thread."""

from __future__ import annotations

from meshdcm import Node, NodeConfig


def create(config: NodeConfig) -> Node:
    node = Node(config=config)

    @node.task
    def break_the_engine(stopping):
        def boom(now):
            raise RuntimeError("injected failure in the engine's timer")
        node._engine._on_tick = boom  # the engine looks its timer up at every tick

    return node
