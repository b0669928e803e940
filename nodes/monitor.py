"""monitor: makes sure no error goes unseen.

Listens to every ``error.*`` event of the mesh and writes it to its log at WARNING, one readable line with the
node, the study/series UIDs, the reason and what to do next (never patient data), and keeps counts per node.
"""

from __future__ import annotations

import logging

from meshdcm import Message, Node, NodeConfig

log = logging.getLogger("meshdcm.monitor")


def create(config: NodeConfig) -> Node:
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
