"""`meshdcm tail --timeout` against a mesh whose nodes vanish mid-stream (issue: a tail that outlived its deadline and
spun at 64 % of a core after `meshdcm up` stopped)."""

from __future__ import annotations

import os
import signal
import time

from conftest import wait_until

DEADLINE = 30  # the tail's --timeout, in seconds


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (/proc/PID/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_tail_keeps_its_deadline_and_rests_after_its_peers_vanish(mesh, tmp_path):
    tickers = [mesh.node("ticker", "--name", f"ticker-{i}", interval=0.005) for i in range(3)]
    for t in tickers:
        t.wait_for_output("started on", timeout=60)
    started = time.monotonic()
    tail = mesh.start("tail", "--topic", "stored", "--timeout", DEADLINE)
    wait_until(lambda: tail.output.count("stored.series") >= 300, 60, interval=0.1, what="300 lines in the tail")
    # mid-stream: one sender vanishes without a goodbye (its last messages may never arrive: a gap only it could
    # replay), the others stop cleanly (BYE: the tail closes its sockets to them)
    tickers[0].kill()
    for t in tickers[1:]:
        t.stop(signal.SIGTERM)
    time.sleep(3)  # the peers' goodbyes and the dead one's expiry reach the tail
    assert tail.popen.poll() is None, "the tail ended before its deadline"
    t1, c1 = time.monotonic(), cpu_seconds(tail.popen.pid)
    time.sleep(8)
    t2, c2 = time.monotonic(), cpu_seconds(tail.popen.pid)
    share = (c2 - c1) / (t2 - t1)
    print(f"tail CPU while waiting with its peers gone: {share:.1%} of a core")
    assert share < 0.15, f"a tail with nothing to do used {share:.0%} of a core"
    assert tail.popen.wait(timeout=DEADLINE + 20) == 0
    ended = time.monotonic() - started
    print(f"tail --timeout {DEADLINE} ended after {ended:.1f} s")
    assert ended < DEADLINE + 8, f"the tail outlived its --timeout {DEADLINE} by {ended - DEADLINE:.0f} s"
    out = tail.output
    assert "asking nobody" not in out
    assert out.count("its sender is gone") <= 1, out[-3000:]  # said once per stream, and only one vanished


def test_a_stop_never_hangs_on_a_socket_left_open(tmp_path):
    """A socket of the node's context that nobody closed (here: a node author's forgotten one) would make
    zmq's term() wait for ever; the stop gives up after the linger and says so."""
    import uuid

    import zmq

    from meshdcm import Node, NodeConfig

    node = Node(config=NodeConfig(name="forgetful", mesh=f"test-{uuid.uuid4().hex[:10]}", linger=0.5, durable=False))
    node.start()
    forgotten = node._context.socket(zmq.PUSH)
    forgotten.connect("tcp://127.0.0.1:9")  # nobody listens: what it is given stays queued
    forgotten.send(b"never delivered", zmq.NOBLOCK)
    t0 = time.monotonic()
    node.stop(timeout=0.5)
    assert time.monotonic() - t0 < 5, "the stop waited for a socket nobody closes"
    forgotten.close(linger=0)
