"""Retries with backoff, then dead letters, seen through the Node API and through `meshdcm dead` on a real mesh."""

from __future__ import annotations

import json
import threading
import uuid

from pydicom.dataset import Dataset

from conftest import wait_until
from delivery_fixtures import ledger
from meshdcm import HandlerError, Message, Node


def series(uid: str) -> Dataset:
    ds = Dataset()
    ds.Modality = "MR"
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = uid
    return ds


def test_a_failing_handler_is_retried_with_backoff_then_kept_as_a_dead_letter_and_re_driven():
    mesh = f"dead-{uuid.uuid4().hex[:8]}"
    calls, errors, healed = [], [], threading.Event()
    sub = Node("sub", mesh=mesh, discovery=False, max_attempts=3, retry_backoff=0.05)

    @sub.on("stored.series")
    def flaky(msg):
        calls.append(msg.get("SeriesInstanceUID"))
        if not healed.is_set():
            raise OSError("the store is full")

    @sub.on("stored.instance")
    def refuses(msg):
        raise HandlerError("not a DSC series", action="check the filter")

    with sub, Node("pub", mesh=mesh, discovery=False, peers=(sub.endpoints["control"],)) as pub:
        pub.on("error")(errors.append)
        assert pub.wait_for_peers(1, 10)
        wait_until(lambda: any(h["topic"] == "error" for p in sub.peers for h in p["handlers"]), 10, what="manifest")
        assert sub.wait_for_subscribers("error.sub", 10) and pub.wait_for_subscribers("stored.series", 10)
        pub.publish("stored.series", series("1.2.840.1"))
        pub.publish("stored.instance", series("1.2.840.2"))
        wait_until(lambda: len(sub.dead_letters) == 2, 10, what="two dead letters")
        assert calls == ["1.2.840.1"] * 3  # three attempts, then given up
        wait_until(lambda: len(errors) == 4, 10, what="the error events")
        by_topic: dict = {}
        for e in errors:
            by_topic.setdefault(e.meta["error"]["topic"], []).append(e.meta)
        flaky_errors = sorted(by_topic["stored.series"], key=lambda m: m["error"]["attempt"])
        assert [m["error"]["attempt"] for m in flaky_errors] == [1, 2, 3]
        assert "retrying in 0.05 s (attempt 2 of 3)" in flaky_errors[0]["error"]["next"]
        letter_id = flaky_errors[2]["dead_letter"]["id"]
        assert flaky_errors[2]["dead_letter"] == {"node": "sub", "id": letter_id}
        assert f"meshdcm dead retry sub {letter_id}" in flaky_errors[2]["error"]["next"]
        [refused] = by_topic["stored.instance"]  # a HandlerError is not retried
        assert refused["error"]["attempt"] == 1 and refused["error"]["action"] == "check the filter"
        letter = sub.dead_letters.get(letter_id)
        assert letter.attempts == 3 and letter.error == "OSError: the store is full" and letter.handler.endswith("flaky")
        assert letter.message.get("SeriesInstanceUID") == "1.2.840.1"
        healed.set()
        assert sub.dead_letters.retry(letter_id)
        wait_until(lambda: len(calls) == 4, 10, what="the re-driven message")
        assert [x.topic for x in sub.dead_letters.list()] == ["stored.instance"]
        assert sub.counters["dead"] == 2


def test_meshdcm_dead_lists_shows_retries_and_drops_over_the_mesh(mesh, tmp_path):
    folder, broken = tmp_path / "ledgers", tmp_path / "broken"
    broken.touch()
    node = mesh.node("ledger", "--name", "conv-1", ledger=str(folder), topic="stored", max_attempts=2,
                     retry_backoff=0.05, fail_when='SeriesDescription == "bad"', fail_while=str(broken))
    node.wait_for_output("started on")
    errors = mesh.start("tail", "--topic", "error", "--count", "2", "--timeout", "30")
    errors.wait_for_output("# tail")
    mesh.run("publish", "stored.series", "--set", "SeriesDescription=bad", "--set", "SeriesInstanceUID=1.2.840.77",
             "--set", "StudyInstanceUID=1.2.840.7")
    assert errors.popen.wait(timeout=30) == 0
    assert "attempt 1/2" in errors.output and "retrying in 0.05 s" in errors.output
    assert "meshdcm dead retry conv-1 " in errors.output and "series 1.2.840.77" in errors.output
    listed = json.loads(mesh.run("dead", "list", "--json").stdout)
    assert len(listed) == 1
    letter = listed[0]
    assert letter["node"] == "conv-1" and letter["attempts"] == 2 and letter["uids"]["series"] == "1.2.840.77"
    assert "cannot handle series 1.2.840.77" in letter["error"] and letter["last_failed"].endswith("Z")
    shown = mesh.run("dead", "show", "conv-1", letter["id"]).stdout
    assert "1.2.840.77" in shown and f"meshdcm dead retry conv-1 {letter['id']}" in shown
    missing = mesh.run("dead", "retry", "conv-1", "nosuchid", check=False)
    assert missing.returncode == 1 and "no dead letter 'nosuchid'" in missing.stdout
    broken.unlink()  # the operator fixed the cause
    assert "handed to its handler again" in mesh.run("dead", "retry", "conv-1", letter["id"]).stdout
    wait_until(lambda: ledger(folder, "conv-1").get("1.2.840.77") == 1, 10, what="the re-driven message")
    assert json.loads(mesh.run("dead", "list", "conv-1", "--json").stdout) == []
    broken.touch()
    mesh.run("publish", "stored.series", "--set", "SeriesDescription=bad", "--set", "SeriesInstanceUID=1.2.840.78")
    again = wait_until(lambda: json.loads(mesh.run("dead", "list", "--json").stdout), 20, interval=0.3,
                       what="the second dead letter")
    assert "dropped" in mesh.run("dead", "drop", "conv-1", again[0]["id"]).stdout
    assert json.loads(mesh.run("dead", "list", "--json").stdout) == []


def test_what_can_succeed_later_is_retried_and_what_cannot_is_a_dead_letter_at_once():
    """A busy or restarting peer (TransferError, also wrapped in a HandlerError as the analysis nodes did) is retried
    with backoff; a message that cannot be read (MalformedMessage) is not retried three times for nothing, and is
    counted rather than kept as a dead letter (a flood of them filled dead.sqlite)."""
    from meshdcm.errors import MalformedMessage
    from meshdcm.transfer import TransferError

    mesh = f"dead-{uuid.uuid4().hex[:8]}"
    calls: dict[str, int] = {}
    sub = Node("sub", mesh=mesh, discovery=False, max_attempts=3, retry_backoff=0.05)

    def counted(topic):
        calls[topic] = calls.get(topic, 0) + 1

    @sub.on("stored.series")
    def fetches(msg):
        counted(msg.topic)
        try:
            raise TransferError("no answer for in/1.2.3 within 30 s; the node may be overloaded or gone")
        except TransferError as exc:
            raise HandlerError("series 1.2.3 could not be fetched", action="publish it again") from exc

    @sub.on("stored.study")
    def fetches_raw(msg):
        counted(msg.topic)
        raise TransferError("node 0123456789ab that holds meshdcm://... is not in the mesh")

    @sub.on("stored.instance")
    def unreadable(msg):
        counted(msg.topic)
        raise MalformedMessage("the envelope's meta is not a JSON object")

    with sub, Node("pub", mesh=mesh, discovery=False, peers=(sub.endpoints["control"],)) as pub:
        assert pub.wait_for_peers(1, 10)
        assert all(pub.wait_for_subscribers(t, 10) for t in ("stored.series", "stored.study", "stored.instance"))
        for topic in ("stored.series", "stored.study", "stored.instance"):
            pub.publish(topic, series("1.2.840.9"))
        wait_until(lambda: len(sub.dead_letters) == 2 and sub.counters.get("malformed"), 20,
                   what="two dead letters and one unreadable message counted")
        assert sorted(x.topic for x in sub.dead_letters.list()) == ["stored.series", "stored.study"]
    assert calls == {"stored.series": 3, "stored.study": 3, "stored.instance": 1}


def test_a_letter_kept_under_a_handler_name_from_before_an_upgrade_is_still_retried():
    """Dead letters name their handler; the node kinds' closures became classes ("create.<locals>.on_get" is now
    "PacsBridge.on_get"): a letter kept by the old code is handed to the handler of the same function name."""
    got = threading.Event()
    node = Node("upgraded", mesh=f"dead-{uuid.uuid4().hex[:8]}", discovery=False)

    class Bridge:
        def on_get(self, msg):
            got.set()

    node.on("get")(Bridge().on_get)
    node.on("get.series")(lambda msg: None)  # another handler of the topic, of another name: not chosen
    with node:
        old = node.dead_letters.add(Message("get.study", series("1.2.840.9")), "create.<locals>.on_get", "PACS down",
                                    3, 0.0)
        assert node.dead_letters.retry(old.id)
        assert got.wait(10), "the letter was not handed to the renamed handler"
        ambiguous = node.dead_letters.add(Message("get.study", series("1.2.840.9")), "create.<locals>.<lambda>",
                                          "x", 3, 0.0)
        assert not node.dead_letters.retry(ambiguous.id)  # no handler of that name: kept, not guessed
