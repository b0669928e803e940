"""No input on any socket ends a node: hostile control messages get an answer or are dropped and counted."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import uuid

import zmq

from conftest import NODES, wait_until
from meshdcm import Node

HOSTILE = [
    [b"FETCH", json.dumps({"req": 1, "path": "out/\u0000", "offset": 0, "size": 1}).encode()],  # ended the engine
    [b"FETCH", json.dumps({"req": "r2", "path": {"a": 1}}).encode()],
    [b"FETCH", json.dumps({"req": "r3", "path": "out/a.txt", "offset": -5}).encode()],
    [b"FETCH", json.dumps({"req": "r4", "path": "out/a.txt", "size": 10**30}).encode()],
    [b"FETCH", json.dumps(["not", "an", "object"]).encode()],
    [b"FETCH", b"\xff\xfe not json"],
    [b"REPLAY", b"{\"stream\": 5, \"first\": \"x\"}"],
    [b"REPLAY", json.dumps({"stream": "zz", "first": 1, "last": 2}).encode()],
    [b"WORK", json.dumps({"node": [], "stream": "00", "done": ["x"]}).encode()],
    [b"HELLO", b"\x00" * 64],
    [b"PING", b""],
    [b"PING", b"\xff \xff \xff \xff"],
    [b"BYE", b"\xff" * 40],
    [b"WELCOME", b"{}", b"extra", b"frames"],
]


def test_hostile_control_messages_leave_the_node_serving(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_text("the real file")
    mesh = f"hostile-{uuid.uuid4().hex[:8]}"
    with Node("target", mesh=mesh, discovery=False) as target:
        target.serve("out", out)
        ctx = zmq.Context()
        try:
            rogue = ctx.socket(zmq.DEALER)
            rogue.connect(target.endpoints["control"])
            answers = []
            for frames in HOSTILE:
                rogue.send_multipart(frames)
                if frames[0] == b"FETCH":
                    assert rogue.poll(10_000), f"no answer to {frames!r}"
                    answers.append(rogue.recv_multipart())
            assert [a[0] for a in answers] == [b"NOFILE", b"NOFILE", b"NOFILE", b"DATA", b"NOFILE", b"NOFILE"]
            assert "unreadable FETCH request" in json.loads(answers[0][1])["reason"]
            assert answers[3][2] == b"the real file"  # a huge size is capped, not an error
        finally:
            ctx.destroy(linger=0)
        # the engine goes on: a real peer still joins and fetches
        with Node("client", mesh=mesh, discovery=False, peers=(target.endpoints["control"],)) as client:
            assert client.wait_for_peers(1, 10)
            [got] = client.fetch(target.uri_for(out / "a.txt"), tmp_path / "in")
            assert got.read_text() == "the real file"
        assert target._engine.is_alive()
        assert target.counters.get("malformed", 0) >= 1


def test_meshdcm_up_restarts_a_node_that_died_and_says_so(mesh, tmp_path):
    up = mesh.start("up", "index", "monitor", "--state", tmp_path / "state", "--mesh", mesh.name)
    up.wait_for_output("stop with Ctrl-C", timeout=60)

    def index_id():
        peers = json.loads(mesh.run("peers", "--json", "--wait", "1").stdout)
        return next((p["id"] for p in peers if p["kind"] == "index"), None)
    first = wait_until(index_id, 60, interval=0.5, what="the index node")
    errors = mesh.start("tail", "--topic", "error", "--count", "1", "--timeout", "90")
    errors.wait_for_output("# tail", timeout=30)
    pid = int(re.search(r"index \(pid (\d+)\)", up.output).group(1))
    os.kill(pid, signal.SIGKILL)
    up.wait_for_output("node index exited with status -9; restarting it in 1 s", timeout=30)
    second = wait_until(lambda: (node_id := index_id()) not in (None, first) and node_id, 60, interval=0.5,
                        what="the index node back as a new process")
    assert second != first
    assert errors.popen.wait(timeout=90) == 0
    assert "exited with status -9 and was restarted by meshdcm up (restart 1)" in errors.output
    assert up.popen.poll() is None  # the others were never stopped
    assert up.stop(signal.SIGINT, timeout=30) == 0


def test_forged_senders_and_endless_topics_leave_no_lasting_state():
    """50,000 fake sender ids added 25-46 MB to every node and 50,000 topics 11-17 MB, kept after the peer left:
    a sender no peer announced costs a counter, and what is kept per topic is bounded."""
    from pydicom.dataset import Dataset

    from meshdcm import Message

    mesh = f"hostile-{uuid.uuid4().hex[:8]}"
    target = Node("target", mesh=mesh, discovery=False, group="g")
    target.on("stored")(lambda m: None)
    target.on("x")(lambda m: None)
    with target:
        ctx = zmq.Context()
        try:
            push = ctx.socket(zmq.PUSH)
            push.connect(target.endpoints["work"])
            body = Dataset()
            body.Modality = "MR"
            for _ in range(5000):
                push.send(Message("stored.series", body, sender=uuid.uuid4().bytes).to_bytes())
            wait_until(lambda: target.counters.get("unknown_sender", 0) >= 5000, 60, what="5,000 forged frames")
        finally:
            ctx.destroy(linger=0)
        with Node("chatty", mesh=mesh, discovery=False, peers=(target.endpoints["control"],)) as chatty:
            assert chatty.wait_for_peers(1, 10) and chatty.wait_for_subscribers("x", 10)
            for i in range(3000):
                chatty.publish(f"x.topic{i}")
            wait_until(lambda: target.counters.get("handled", 0) >= 3000, 60, what="3,000 topics handled")
        engine = target._engine
        assert len(target._inbox.streams) <= 2  # the chatty peer's stream; none per forged id
        assert len(engine._work_reports) <= 1 and len(engine._route_cache) <= 1024  # (the chatty peer's)


def test_a_node_whose_engine_fails_exits_non_zero(mesh):
    crasher = mesh.start("node", NODES / "crasher.py")
    try:
        crasher.popen.wait(timeout=60)
    except subprocess.TimeoutExpired:
        crasher.stop()  # (its stacks go to its log, shown below)
    assert crasher.popen.returncode == 2  # a supervisor (meshdcm up, systemd) sees a failure and restarts it
    assert "stopped on an unexpected error: RuntimeError: injected failure" in crasher.output


def test_hostile_input_against_a_running_meshdcm_up(mesh, tmp_path):
    """The NUL FETCH, a backtracking filter and a hostile peer, at once, against `meshdcm up`: every node stays up."""
    from mesh_fixtures import write_series_files

    up = mesh.start("up", "pacs", "perfusion", "monitor", "--state", tmp_path / "state", "--mesh", mesh.name)
    up.wait_for_output("stop with Ctrl-C", timeout=60)
    kinds = {"pacs", "perfusion", "monitor"}
    peers = wait_until(lambda: (ps := json.loads(mesh.run("peers", "--json").stdout)) and
                       kinds <= {p["kind"] for p in ps} and ps, 90, interval=0.5, what="the nodes of meshdcm up")
    out = tmp_path / "rec.txt"
    slow = mesh.node("recorder", "--name", "backtracker", out=str(out), topic="stored",
                     where='SeriesDescription ~ "(a+)+$"')  # froze a node under Python's re
    slow.wait_for_output("started on", timeout=60)
    ctx = zmq.Context()
    try:
        for p in peers:
            rogue = ctx.socket(zmq.DEALER)
            rogue.connect(p["endpoints"]["control"])
            for frames in HOSTILE:
                rogue.send_multipart(frames)
            assert rogue.poll(10_000), f"{p['name']} did not answer"
            if p["endpoints"].get("work"):
                push = ctx.socket(zmq.PUSH)
                push.connect(p["endpoints"]["work"])
                for _ in range(2000):
                    push.send(uuid.uuid4().bytes + b" forged")
        files = tmp_path / "files"
        write_series_files(files, [("MR", "a" * 35 + "!"), ("MR", "aaaa")])
        mesh.run("publish", "stored.series", files)
        wait_until(lambda: "stored.series" in (out.read_text() if out.exists() else ""), 60, interval=0.5,
                   what="the filtered node to handle the matching series after the backtracking one")
    finally:
        ctx.destroy(linger=0)
    after = json.loads(mesh.run("peers", "--json").stdout)
    assert kinds | {"recorder"} <= {p["kind"] for p in after}
    assert "exited with status" not in up.output and up.popen.poll() is None
    assert up.stop(signal.SIGINT, timeout=30) == 0


def test_a_hello_cannot_make_a_node_remember_without_bound():
    """A peer's HELLO names the streams it answers for and the peers it knows: a forged one with 5,000 of each
    made the node keep (and greet) all of them. It takes the newest 256 streams and 64 endpoints, and once that peer
    is gone, what it left expires."""
    mesh = f"hostile-{uuid.uuid4().hex[:8]}"
    target = Node("target", mesh=mesh, discovery=False, journal_max_age=2)
    target.on("x")(lambda m: None)
    with target:
        manifest = target.manifest().to_dict()
        manifest.update(id=uuid.uuid4().hex, name="forger", endpoints={"control": "tcp://127.0.0.1:9"})
        streams = {uuid.uuid4().hex: [i, 1000.0 + i] for i in range(5000)}
        gossip = [{"control": f"tcp://127.0.0.2:{20000 + i}", "key": ""} for i in range(5000)]
        ctx = zmq.Context()
        try:
            dealer = ctx.socket(zmq.DEALER)
            dealer.connect(target.endpoints["control"])
            dealer.send_multipart([b"HELLO", json.dumps({"manifest": manifest, "peers": gossip,
                                                          "streams": streams}).encode()])
            assert dealer.poll(10000) and dealer.recv_multipart()[0] == b"WELCOME"
        finally:
            ctx.destroy(linger=0)
        engine = target._engine
        newest = set(sorted(streams, key=lambda s: streams[s][1])[-256:])
        theirs = {sid.hex() for sid, home in engine._homes.items() if home == manifest["id"]}
        assert theirs == newest
        assert len(engine._seeds) <= 64
        # the forger never answers: it expires, and what it named is forgotten
        wait_until(lambda: all(home == target.id for home in engine._homes.values()), 30,
                   what="the forger's streams forgotten")
        assert not [k for k in engine._keys_of if k.startswith("tcp://127.0.0.2:")]


def test_departed_peers_leave_nothing_lasting(tmp_path):
    """Per-stream state of peers that left was kept for the node's life (and their rows on disk). Streams of peers
    gone longer than ``journal_max_age`` are forgotten, with the peers' names; a peer still here keeps its record
    however old."""
    mesh = f"hostile-{uuid.uuid4().hex[:8]}"
    got: list = []
    target = Node("target", mesh=mesh, discovery=False, journal_max_age=2, state_dir=str(tmp_path / "target"))
    target.on("x")(got.append)
    with target:
        control = target.endpoints["control"]
        with Node("stayer", mesh=mesh, discovery=False, peers=(control,)) as stayer:
            assert stayer.wait_for_peers(1, 10) and stayer.wait_for_subscribers("x", 10)
            stayer.publish("x.here")
            for i in range(6):
                with Node(f"visitor{i}", mesh=mesh, discovery=False, peers=(control,)) as visitor:
                    assert visitor.wait_for_peers(1, 10) and visitor.wait_for_subscribers("x", 10)
                    visitor.publish("x.hello")
                    wait_until(lambda n=i + 2: len(got) >= n, 20, what=f"visitor{i}'s message")
                    assert f"visitor{i}" in {st.name for st in target._inbox.streams.values()}
            inbox = target._inbox
            wait_until(lambda: {st.name for st in inbox.streams.values()} == {"stayer"}, 30,
                       what="the visitors' streams forgotten")
            assert set(inbox.senders) == {"stayer"}
            with inbox.db_lock:
                rows = inbox.db.execute("SELECT name FROM streams").fetchall()
                done = inbox.db.execute("SELECT COUNT(*) FROM done WHERE stream != ?", (stayer.id_bytes,)).fetchone()
            assert [r[0] for r in rows] == ["stayer"] and done[0] == 0
            assert set(target._engine._homes.values()) <= {target.id, stayer.id}


def test_a_flood_of_foreign_hellos_costs_a_few_log_lines(caplog):
    """Every HELLO of another mesh, with an unreadable manifest or another protocol was logged once each: a peer
    sending thousands filled the log. Each kind is said once, then at 10, 100, 1,000... with the count."""
    import logging

    mesh = f"hostile-{uuid.uuid4().hex[:8]}"
    with Node("target", mesh=mesh, discovery=False) as target:
        manifest = target.manifest().to_dict()
        ctx = zmq.Context()
        try:
            dealer = ctx.socket(zmq.DEALER)
            dealer.connect(target.endpoints["control"])
            with caplog.at_level(logging.WARNING, logger="meshdcm.node"):
                for i in range(600):
                    forged = dict(manifest, id=uuid.uuid4().hex, mesh=f"other-{i}")
                    if i % 3 == 1:
                        forged = dict(manifest, id=uuid.uuid4().hex, protocol="9.0")
                    payload = b"{not json" if i % 3 == 2 else json.dumps({"manifest": forged}).encode()
                    dealer.send_multipart([b"HELLO", payload])
                dealer.send_multipart([b"PING", b""])  # answered after every HELLO before it was handled
                assert dealer.poll(10000) and dealer.recv_multipart()[0] == b"PONG"
        finally:
            ctx.destroy(linger=0)
        lines = [r.getMessage() for r in caplog.records if "ignoring" in r.getMessage()]
        assert len(lines) <= 9, lines  # three kinds: once, at 10 and at 100 each
        assert any("belongs to mesh" in x for x in lines) and any("speaks protocol 9.0" in x for x in lines)
        assert any("200 times so far" in x or "100 times so far" in x for x in lines)
        assert not target.peers
