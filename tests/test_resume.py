"""Resumable handlers (``Node.on(..., resume=True)``, meshdcm.accepted): work a node took on and did not finish
when it was killed is finished by the node after its restart, once, whether its sender is still there to replay it
or gone; a message that keeps killing the node becomes a dead letter instead of a crash loop."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from pydicom.dataset import Dataset

from conftest import wait_until
from meshdcm import Message, Node


def job(uid: str) -> Dataset:
    ds = Dataset()
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.10.1452.7"
    ds.SeriesInstanceUID = uid
    return ds


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_work_taken_on_before_a_kill_is_finished_once_after_the_restart(mesh, tmp_path):
    out, gate = tmp_path / "jobs.txt", tmp_path / "gate"
    gate.mkdir()
    opts = dict(out=str(out), gate=str(gate))
    worker = mesh.node("longjob", "--name", "worker", **opts)
    worker.wait_for_output("started on", timeout=60)

    done: list[Message] = []
    lock = threading.Lock()
    stays = Node("stays", mesh=mesh.name)  # its sender lives on: it would replay the job to the restarted worker
    stays.on("job.done")(lambda m: (lock.acquire(), done.append(m), lock.release()))
    leaves = Node("leaves", mesh=mesh.name, durable=False)  # a one-shot publisher, gone before the restart
    with stays:
        assert stays.wait_for_subscribers("job.run", 20)
        first = stays.publish("job.run", job("1.2.3.1"))
        with leaves:
            assert leaves.wait_for_subscribers("job.run", 20)
            leaves.publish("job.run", job("1.2.3.2"))
            leaves.sync()
        wait_until(lambda: sorted(lines(out)) == ["start 1.2.3.1", "start 1.2.3.2"], 30, what="both jobs taken on")
        worker.kill()  # SIGKILL in the middle of both

        (gate / "1.2.3.1").touch()
        (gate / "1.2.3.2").touch()
        again = mesh.node("longjob", "--name", "worker", **opts)
        wait_until(lambda: lines(out).count("done 1.2.3.1") and lines(out).count("done 1.2.3.2"), 60,
                   what="both jobs finished after the restart")
        wait_until(lambda: len(done) >= 2, 30, what="job.done for both")
        assert "resuming job.run" in again.output
        # once each: the replay of the job whose sender stayed is a duplicate of the resumed one. A later job from
        # the same sender makes any gap before it visible to the worker, which would then ask for it again.
        (gate / "1.2.3.3").touch()
        stays.publish("job.run", job("1.2.3.3"))
        wait_until(lambda: "done 1.2.3.3" in lines(out), 30, what="a later job")
        wait_until(lambda: len(done) >= 3, 30, what="job.done for the later job")
        assert lines(out).count("done 1.2.3.1") == 1 and lines(out).count("done 1.2.3.2") == 1, lines(out)
        assert [m.correlation_id for m in done].count(first.message_id) == 1
    again.stop(signal.SIGTERM)
    assert not (lines(out).count("start 1.2.3.1") > 2), lines(out)
    # nothing is left to resume: a third start takes nothing on
    third = mesh.node("longjob", "--name", "worker", **opts)
    third.wait_for_output("started on", timeout=60)
    assert "resuming" not in third.output
    assert lines(out).count("done 1.2.3.1") == 1


def test_a_message_that_keeps_killing_its_node_becomes_a_dead_letter(mesh, tmp_path):
    out, gate = tmp_path / "jobs.txt", tmp_path / "gate"
    gate.mkdir()
    opts = dict(out=str(out), gate=str(gate))
    with Node("sender", mesh=mesh.name, durable=False) as sender:
        worker = mesh.node("longjob", "--name", "worker", **opts)
        assert sender.wait_for_subscribers("job.run", 60)
        sender.publish("job.run", job("1.2.3.9"))
        sender.sync()
    for start in range(1, 4):  # taken on, killed: three runs (max_attempts), each killed inside the handler
        wait_until(lambda n=start: lines(out).count("start 1.2.3.9") == n, 60, what=f"run {start} to take it on")
        worker.kill()
        worker = mesh.node("longjob", "--name", "worker", **opts)
    worker.wait_for_output("gave up", timeout=60)
    assert lines(out).count("start 1.2.3.9") == 3
    listing = mesh.run("dead", "list", "--json", timeout=60)
    assert "1.2.3.9" in listing.stdout or "job.run" in listing.stdout, listing.stdout
