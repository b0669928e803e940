"""The Node facade in one process, with real sockets on loopback (static peers, no mDNS: fast and isolated)."""

from __future__ import annotations

import asyncio
import logging
import struct
import threading
import uuid

import pytest
import zmq
from pydicom.dataset import Dataset

from conftest import wait_until
from meshdcm import PROTOCOL_VERSION, ConfigError, Handler, HandlerError, MeshError, Message, Node


def pair(**sub_kw):
    """A subscriber node (built by the caller) and a publisher that knows it as a static peer."""
    mesh = f"api-{uuid.uuid4().hex[:8]}"
    sub = Node("sub", mesh=mesh, discovery=False, **sub_kw)
    return mesh, sub


def publisher_for(sub: Node, mesh: str) -> Node:
    pub = Node("pub", mesh=mesh, discovery=False, peers=(sub.endpoints["control"],)).start()
    assert pub.wait_for_peers(1, 10)
    return pub


def series(uid: str, modality: str = "MR", description: str = "x") -> Dataset:
    ds = Dataset()
    ds.Modality = modality
    ds.SeriesDescription = description
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = uid
    return ds


def test_sync_and_async_handlers_and_a_handler_list():
    got, lock = [], threading.Lock()

    def plain(msg):
        with lock:
            got.append(("plain", msg.get("SeriesInstanceUID")))

    async def coro(msg):
        await asyncio.sleep(0)
        with lock:
            got.append(("async", msg.get("SeriesInstanceUID")))

    mesh, sub = pair(handlers=[Handler("stored.series", plain, 'Modality == "MR"')])
    sub.on("stored", where='Modality == "CT"')(coro)
    with sub:
        with publisher_for(sub, mesh) as pub:
            assert pub.wait_for_subscribers("stored.series", 10)
            pub.publish("stored.series", series("1.1", "MR"))
            pub.publish("stored.series", series("1.2", "CT"))
            wait_until(lambda: len(got) == 2, 10, what="both handlers")
    assert sorted(got) == [("async", "1.2"), ("plain", "1.1")]


def test_failure_becomes_an_error_event_with_uids_reason_and_action():
    errors = []
    mesh, sub = pair()

    @sub.on("stored.series")
    def broken(msg):
        raise HandlerError("too few time points", action="check the DSC protocol")

    with sub, publisher_for(sub, mesh) as pub:
        pub.on("error")(errors.append)
        # the publisher gained a handler after start: the subscriber must learn it (manifest update)
        wait_until(lambda: any(h["topic"] == "error" for p in sub.peers for h in p["handlers"]), 10,
                   what="the updated manifest")
        assert sub.wait_for_subscribers("error.sub", 10)
        assert pub.wait_for_subscribers("stored.series", 10)
        request = pub.publish("stored.series", series("1.2.840.99"))
        wait_until(lambda: errors, 10, what="the error event")
        err = errors[0]
        assert err.topic == "error.sub"
        assert err.correlation_id == request.message_id
        assert err.dataset.SeriesInstanceUID == "1.2.840.99" and err.dataset.StudyInstanceUID == "1.2.3"
        info = err.meta["error"]
        assert info["reason"] == "too few time points" and info["action"] == "check the DSC protocol"
        assert info["topic"] == "stored.series" and info["node"] == "sub" and info["handler"].endswith("broken")
        assert sub.counters["failed"] == 1


def test_unknown_major_version_and_malformed_frames_are_refused_and_counted(caplog):
    mesh, sub = pair(group="g")
    sub.on("stored")(lambda m: None)
    with sub:
        ctx = zmq.Context.instance()
        push = ctx.socket(zmq.PUSH)
        push.connect(sub.endpoints["work"])
        good = Message("stored.series", series("1.9")).to_bytes()
        at = good.index(b" ") + 1
        v2 = bytearray(good)
        struct.pack_into("<B", v2, at + 4, 2)
        with caplog.at_level(logging.ERROR, logger="meshdcm.node"):
            push.send(bytes(v2))
            push.send(b"stored.series not a meshdcm message at all")
            push.send(good)  # well formed, but from a sender no peer announced: dropped and counted
            wait_until(lambda: sub.counters.get("unknown_sender") == 1, 10, what="the unannounced sender")
        push.close(linger=0)
        with Node("pub", mesh=mesh, discovery=False, peers=(sub.endpoints["control"],)) as pub:
            assert pub.wait_for_peers(1, 10)
            wait_until(lambda: any(p["group"] == "g" for p in pub.peers), 10, what="the group member")
            pub.publish("stored.series", series("1.9"))
            wait_until(lambda: sub.counters.get("handled") == 1, 10, what="the good message from a peer")
        assert sub.counters["refused"] == 1 and sub.counters["malformed"] == 1
        assert f"protocol {PROTOCOL_VERSION[0] + 1}.{PROTOCOL_VERSION[1]}" in caplog.text and "upgrade the older of the two nodes" in caplog.text


def test_task_runs_until_stop_and_publish_needs_start():
    node = Node("t", discovery=False)
    with pytest.raises(MeshError, match="not started"):
        node.publish("stored.series", Dataset())
    ticks = []

    @node.task
    def tick(stopping):
        while not stopping.wait(0.01):
            ticks.append(1)

    with node:
        wait_until(lambda: len(ticks) >= 3, 5, what="ticks")
    count = len(ticks)
    assert len(ticks) == count  # stopped with the node


def test_shared_handler_needs_a_group():
    node = Node("solo", discovery=False)
    with pytest.raises(ConfigError, match="no group"):
        node.on("stored", shared=True)(lambda m: None)


def test_slow_handlers_push_back_instead_of_dropping():
    """With max_pending reached the engine stops reading; ZeroMQ queues hold the rest: nothing is lost."""
    done, release = [], threading.Event()
    mesh, sub = pair(max_pending=10, workers=1)

    @sub.on("stored.instance")
    def slow(msg):
        release.wait(10)
        done.append(msg.seq)

    with sub, publisher_for(sub, mesh) as pub:
        assert pub.wait_for_subscribers("stored.instance", 10)
        for i in range(200):
            pub.publish("stored.instance", series(f"1.{i}"))
        wait_until(lambda: sub.counters["pending"] >= 10, 10, what="the handler queue to fill")
        assert sub.counters["pending"] <= 10 + 512  # bounded: the engine stopped reading
        release.set()
        wait_until(lambda: len(done) == 200, 20, what="every message after the handler caught up")
    assert sorted(done) == list(range(1, 201))


def test_wait_for_subscribers_waits_for_someone_to_subscribe():
    """It used to answer True at once while the node knew no peer yet: a message published then reached no one
    (the Orthanc test's find.studies, lost about once in five loaded runs)."""
    mesh, sub = pair()
    sub.on("find.studies")(lambda m: None)
    alone = Node("alone", mesh=mesh, discovery=False).start()
    try:
        assert alone.wait_for_subscribers("find.studies", 0.5) is False
        assert alone.wait_for_subscribers("find.studies", 0.1, at_least=0) is True  # the peers known now: none
        with sub:
            pub = publisher_for(sub, mesh)
            try:
                assert pub.wait_for_subscribers("find.studies", 10)
                assert pub.wait_for_subscribers("stored.series", 0.5) is False  # nobody wants it
            finally:
                pub.stop()
    finally:
        alone.stop()


def test_sequence_numbers_wrap_at_64_bits_between_real_nodes():
    """The engine's per-sender number goes from 2**64-1 to 0, and a receiver takes every message across the wrap,
    none dropped as a duplicate nor asked again (the tests used to check Python's arithmetic instead)."""
    mesh = f"api-{uuid.uuid4().hex[:8]}"
    got: list[Message] = []
    with Node("pub", mesh=mesh, discovery=False) as pub:
        engine = pub._engine
        engine.seq = engine._streams[engine.stream][0] = 2**64 - 3  # before anyone met this stream
        with Node("sub", mesh=mesh, discovery=False, peers=(pub.endpoints["control"],)) as sub:
            sub.on("wrap")(got.append)
            assert pub.wait_for_peers(1, 10) and pub.wait_for_subscribers("wrap.test", 10)
            for i in range(5):
                pub.publish("wrap.test", meta={"i": i})
            wait_until(lambda: len(got) == 5, 10, what="five messages across the wrap")
            sub.settle(maximum=1)
            assert sorted(m.seq for m in got) == [0, 1, 2, 2**64 - 2, 2**64 - 1]  # (workers: any order)
            assert sorted(m.meta["i"] for m in got) == [0, 1, 2, 3, 4]
            assert sub.counters.get("duplicates", 0) == 0 and sub._inbox.missing_count() == 0



def test_a_leaving_sender_names_its_last_number_so_a_lost_tail_is_reported(caplog):
    """BYE carried no sequence number: when the last messages of a sender that then left never arrived, nobody
    noticed ("loss is never silent" was untrue). BYE now says the last number; the receiver waits
    ``rediscover_for`` for the sender to come back and replay, then reports the loss (log, error event, counter)."""
    mesh = f"api-{uuid.uuid4().hex[:8]}"
    got: list[Message] = []
    with Node("receiver", mesh=mesh, discovery=False, rediscover_for=2) as receiver:
        receiver.on("tail")(got.append)
        with Node("sender", mesh=mesh, discovery=False, peers=(receiver.endpoints["control"],),
                  journal=False) as sender:
            assert sender.wait_for_peers(1, 10) and sender.wait_for_subscribers("tail.x", 10)
            for i in range(3):
                sender.publish("tail.x", meta={"i": i})
            wait_until(lambda: len(got) == 3, 10, what="three messages")
            engine = sender._engine
            engine.seq = engine._streams[engine.stream][0] = engine.seq + 2  # two more "sent" that never arrive
        with caplog.at_level(logging.ERROR, logger="meshdcm.node"):
            wait_until(lambda: receiver.counters.get("lost", 0) == 2, 20, what="the lost tail reported")
        assert any("2 messages from sender" in r.getMessage() for r in caplog.records)
