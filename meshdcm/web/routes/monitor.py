"""The mesh monitor: the nodes (this one too), rates and recent errors, and the dead letters of the nodes (list,
retry, drop)."""

from __future__ import annotations

import asyncio
import time

from pydicom.dataset import Dataset
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..common import Web, _bad, _json, _text, _web, _with_errors
from ..report import ReportError

ANSWER_WAIT = 5.0  # seconds a route waits for a node's answer (dead letters)


@_with_errors
def mesh(request: Request):
    web = _web(request)
    me = web.node.manifest()
    peers = [{"name": me.name, "kind": me.kind, "role": me.role, "host": me.host, "group": me.group,
              "state": "alive", "silent": 0.0, "age": round(time.time() - me.started, 3),
              "handlers": [h.to_dict() for h in me.handlers], "self": True}, *web.node.peers]
    nodes = []
    for p in sorted(peers, key=lambda p: (p["kind"], p["name"])):
        if p["role"] == "tool":
            continue
        nodes.append({"name": p["name"], "kind": p["kind"], "host": p["host"], "group": p["group"],
                      "state": p["state"], "lag": p["silent"], "age": p["age"], "self": p.get("self", False),
                      "topics": [{"topic": h["topic"] or "*", "where": h["where"], "shared": h["shared"]}
                                 for h in p["handlers"]]})
    with web.view.lock:
        errors = list(web.view.errors)[-50:]
    return JSONResponse({"self": web.node.name, "nodes": nodes, "rates": web.view.rates_summary(),
                         "errors": errors[::-1]})


def _wait(data: dict, default: float) -> float:
    """How long the page wants to wait for nodes' answers (``wait`` in the request, 0.1 to 30 s)."""
    try:
        return min(30.0, max(0.1, float(data.get("wait", default))))
    except (TypeError, ValueError):
        raise ReportError("wait is a number of seconds") from None


async def _ask_dead(web: Web, topic: str, meta: dict, done: tuple[str, ...], wait: float) -> list:
    msg = web.view.publish(topic, Dataset(), meta=meta, what="dead", key=topic)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        answers = web.view.take_answers(msg.id)
        if any(a.topic in done for a in answers) and topic != "dead.list":
            break
        await asyncio.sleep(0.05)
    return web.view.take_answers(msg.id)


@_with_errors
async def dead_letters(request: Request):
    web = _web(request)
    data = await _json(request)
    node = _text(data, "node", 64, "the node's name")
    meta = {"node": node} if node else {}
    answers = await _ask_dead(web, "dead.list", meta, ("dead.end",), _wait(data, 1.5))
    letters, ends = [], []
    for a in answers:
        if a.topic == "dead.letter":
            letters.append({**{k: a.meta.get(k) for k in ("node", "id", "topic", "handler", "error", "attempts",
                                                         "first_failed", "last_failed")}, **a.uids})
        elif a.topic == "dead.end":
            ends.append(dict(a.meta))
    return JSONResponse({"letters": letters, "ends": ends})


@_with_errors
async def dead_action(request: Request):
    web = _web(request)
    data = await _json(request)
    action = request.path_params["action"]
    node, letter = _text(data, "node", 64, "the node's name"), _text(data, "id", 128, "the dead letter's id")
    if action not in ("retry", "drop") or not node or not letter:
        raise ReportError("say which node and which dead letter (node, id) to retry or drop")
    data = {**data, "node": node, "id": letter}
    answer = "dead.retried" if action == "retry" else "dead.dropped"
    wait = _wait(data, ANSWER_WAIT)
    answers = await _ask_dead(web, f"dead.{action}", {"node": node, "id": letter}, (answer, "dead.end"), wait)
    for a in answers:
        if a.topic == answer:
            return JSONResponse({"ok": True, "node": a.meta.get("node"), "id": a.meta.get("id")})
        if a.topic == "dead.end" and a.meta.get("error"):
            return _bad(f"node {data['node']}: {a.meta['error']}", 409)
    return _bad(f"no answer from node {data['node']} within {wait:g} s: is it running, and does it keep "
                f"dead letters? (meshdcm dead {action} {data['node']} {data['id']})", 504)
