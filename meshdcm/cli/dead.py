"""``meshdcm dead list|show|retry|drop``: an operator's view of the mesh's dead letters (docs/delivery.md).

It joins the mesh as a tool, publishes the ``dead.*`` request and collects the answers correlated with it; the web
UI uses the same topics.
"""

from __future__ import annotations

import json
import os
import queue
import time

from ..message import Message
from ..node import Node
from .common import config_from, fail, setup_logging

_ANSWERS = ("dead.letter", "dead.end", "dead.retried", "dead.dropped")


def cmd_dead(args) -> int:
    if args.action in ("show", "retry", "drop") and not (args.node and args.id):
        return fail(f"meshdcm dead {args.action} needs the node's name and the letter's id: "
                    f"meshdcm dead {args.action} NODE ID (meshdcm dead list shows them)")
    config = config_from(args, "dead", name=f"dead-{os.getpid()}", workers=1)
    setup_logging(args.log_level or "WARNING")
    answers: queue.SimpleQueue = queue.SimpleQueue()
    node = Node(config=config, role="tool")

    @node.on("dead")
    def collect(msg: Message) -> None:
        if msg.topic in _ANSWERS:
            answers.put(msg)

    with node:
        node.settle(minimum=min(0.5, args.wait), maximum=args.wait)
        targets = {p["name"] for p in node.peers if p["role"] != "tool" and args.node in (None, p["name"])}
        if not targets:
            return fail(f"no node {args.node!r} in mesh {config.mesh!r}" if args.node else
                        f"no nodes found in mesh {config.mesh!r} within {args.wait} s")
        node.wait_for(lambda ps: all(p["subscribed"] for p in ps if p["name"] in targets), args.wait)
        meta = {"node": args.node} if args.node else {}
        if args.id:
            meta["id"] = args.id
        request = node.publish(f"dead.{args.action}", meta=meta)
        letters, ends, errors = [], set(), []
        deadline = time.monotonic() + args.wait + 10
        while ends != targets and time.monotonic() < deadline:
            try:
                msg = answers.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                break
            if msg.correlation_id != request.message_id:
                continue
            info = msg.meta
            if msg.topic == "dead.letter":
                letters.append(msg)
            elif msg.topic in ("dead.retried", "dead.dropped"):
                print(f"dead letter {info.get('id')} of node {info.get('node')}: "
                      f"{'handed to its handler again' if msg.topic == 'dead.retried' else 'dropped'}")
                return 0
            else:
                ends.add(info.get("node"))
                if "error" in info:
                    errors.append(f"{info.get('node')}: {info['error']}")
    missing = targets - ends
    if args.json:
        print(json.dumps([{**m.meta, "uids": m.uids} for m in letters], indent=2))
    else:
        if args.action == "list":
            print(f"{'NODE':16} {'ID':12} {'TOPIC':18} {'ATTEMPTS':>8}  {'LAST FAILED':20}  SERIES / ERROR")
        for m in letters:
            i, uids = m.meta, m.uids
            if args.action == "show":
                for key in ("node", "id", "topic", "handler", "attempts", "first_failed", "last_failed", "error"):
                    print(f"{key:13} {i.get(key)}")
                for key, value in uids.items():
                    print(f"{key:13} {value}")
                print(f"{'next':13} meshdcm dead retry {i.get('node')} {i.get('id')}   (or: drop)")
            else:
                print(f"{i.get('node', '')[:16]:16} {i.get('id', ''):12} {i.get('topic', '')[:18]:18} "
                      f"{i.get('attempts', 0):>8}  {i.get('last_failed', ''):20}  {uids.get('series', '-')}: "
                      f"{i.get('error', '')}")
    for line in errors:
        print(f"error: {line}")
    if missing:
        print(f"no answer from: {', '.join(sorted(missing))}")
    if errors or missing:
        return 1
    return 0
