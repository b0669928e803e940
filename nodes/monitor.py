"""monitor: makes sure no error goes unseen.

Listens to every ``error.*`` event of the mesh and writes it to its log at WARNING, one readable line with the
node, the study/series UIDs, the reason and what to do next (never patient data), and keeps counts per node.

Options: none (a key under ``[nodes.monitor]`` stops it at start: most likely a typo or another kind's option).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from meshdcm import Message, Node, NodeConfig, node_options

log = logging.getLogger("meshdcm.monitor")


@dataclass(frozen=True)
class MonitorOptions:
    """``[nodes.monitor]``: it has none."""


def create(config: NodeConfig) -> Node:
    node_options("monitor", MonitorOptions, config.options)
    node = Node(config=config.with_(workers=1), capabilities=("errors",))
    counts: dict[str, int] = {}

    @node.on("error")
    def report(msg: Message) -> None:
        err = msg.meta.get("error", {})
        origin = err.get("node", msg.topic.removeprefix("error."))
        counts[origin] = counts.get(origin, 0) + 1
        uids = ", ".join(f"{k} {v}" for k, v in msg.uids.items()) or "no study"
        log.warning("error #%d from %s (%s on %s, %s): %s; next: %s", counts[origin], origin,
                    err.get("handler", "?"), err.get("topic", "?"), uids, err.get("reason", "?"),
                    err.get("action", "-"))

    return node
