"""Fuzzing the decoders: whatever a peer sends, a node reports a clear error and never crashes or hangs.

Frames are random, or real messages mutated (bytes flipped, cut short, huge lengths written into element
headers, other protocol versions). Every path a received message takes is exercised: envelope parsing, the
element index, filter evaluation on the raw body, and the full dataset decode. Only MalformedMessage and
VersionError may come out. Each test prints how many cases it ran.
"""

from __future__ import annotations

import struct
import uuid
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import wait_until
from meshdcm import MalformedMessage, Message, Node, VersionError
from meshdcm.filters import parse
from meshdcm.synthetic import ct_header, mr_header

FILTER = parse('Modality in ["MR", "CT"] and SeriesDescription ~ "(?i)t2|head" and not ImageType contains "X" '
               'and SliceThickness < 10 and (0019,1010) missing and ReferencedImageSequence missing')
SEEDS = [Message("stored.instance", mr_header(seed=1)).to_bytes(),
         Message("stored.instance", ct_header(seed=2), meta={"uris": ["wado://x/1"]}).to_bytes(),
         Message("stored.series", mr_header(seed=3, series="dsc"), index=b"").to_bytes()]
def exercise(frame: bytes, count: Counter) -> None:
    count["frames"] += 1
    try:
        msg = Message.from_bytes(frame)
        count["parsed"] += 1
        FILTER.evaluate(msg.view.get)
        for tag in (0x00080005, 0x00080060, 0x0008103E, 0x00200013, 0x00280030, 0x7FE00010, 0xFFFFFFFF):
            msg.view.get(tag)
        msg.meta  # noqa: B018  (parses the JSON meta)
        msg.uids  # noqa: B018
        ds = msg.dataset
        for elem in ds.iterall():
            elem.value  # noqa: B018  (pydicom converts lazily: make it convert)
        count["decoded"] += 1
    except (MalformedMessage, VersionError):
        pass


@st.composite
def mutated(draw):
    frame = bytearray(draw(st.sampled_from(SEEDS)))
    kind = draw(st.sampled_from(["flip", "cut", "length", "version", "splice"]))
    at = draw(st.integers(0, len(frame) - 1))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            frame[draw(st.integers(0, len(frame) - 1))] = draw(st.integers(0, 255))
    elif kind == "cut":
        frame = frame[:at]
    elif kind == "length":  # a huge or odd length somewhere (often in an element header)
        value = draw(st.sampled_from([0xFFFFFFFF, 0xFFFFFFF0, 0x7FFFFFFF, 0x10000, 1, 3]))
        if at + 4 <= len(frame):
            struct.pack_into("<I", frame, at, value)
    elif kind == "version":
        space = frame.index(b" ")
        frame[space + 5] = draw(st.integers(0, 255))
    else:
        frame[at:at] = draw(st.binary(max_size=64))
    return bytes(frame)


def fuzz(name: str, strategy, feed, examples: int, at_least: int) -> None:
    """Run ``feed(drawn, count)`` on ``examples`` drawn cases, print the counts and check that enough ran (each test
    counts its own cases: the figures do not depend on which tests ran before)."""
    count: Counter = Counter()

    @settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(strategy)
    def run(drawn):
        feed(drawn, count)

    run()
    print(f"fuzz {name}: {count['frames']} frames, {count['parsed']} parsed, {count['decoded']} fully decoded, "
          "0 crashes")
    assert count["frames"] >= at_least


def test_mutated_real_messages():
    fuzz("mutated", mutated(), exercise, 1500, 1000)


def test_random_frames():
    def feed(frame, count):
        exercise(b"stored.x " + frame, count)
        exercise(frame, count)
    fuzz("random frames", st.binary(max_size=300), feed, 500, 600)


def test_random_bodies_and_indexes():
    def feed(drawn, count):
        body, index = drawn
        exercise(Message("stored.instance", body, index=index).to_bytes(), count)
        exercise(Message("stored.instance", body, index=None if len(body) < 1 else b"").to_bytes(), count)
    fuzz("random bodies", st.tuples(st.binary(min_size=0, max_size=400), st.binary(max_size=64)), feed, 300, 400)


def test_a_live_node_survives_hostile_frames():
    """Hostile frames over a real socket, then a good message: the node is still there and handles it."""
    import random

    import zmq

    got = []
    node = Node("target", mesh=f"fuzz-{uuid.uuid4().hex[:8]}", discovery=False, group="g")
    node.on("stored")(got.append)
    rng = random.Random(7)
    with node:
        ctx = zmq.Context()
        push = ctx.socket(zmq.PUSH)
        push.connect(node.endpoints["work"])
        sent = 0
        for _ in range(400):
            frame = bytearray(rng.choice(SEEDS))
            for _ in range(rng.randint(1, 6)):
                frame[rng.randrange(len(frame))] = rng.randrange(256)
            push.send(bytes(frame[:rng.randrange(1, len(frame) + 1)]))
            sent += 1
        push.send_multipart([b"stored.x", b"two", b"frames"])  # a meshdcm message is one frame
        forged = Message("stored.series", mr_header(seed=8), sender=uuid.uuid4().bytes)  # a sender no peer announced
        push.send(forged.to_bytes())
        # then a good message from a real peer of the group: the node is still there and handles it
        with Node("sender", mesh=node.config.mesh, discovery=False, peers=(node.endpoints["control"],)) as sender:
            assert sender.wait_for_peers(1, 10)
            wait_until(lambda: any(p["group"] == "g" for p in sender.peers), 10, what="the group member")
            good = sender.publish("stored.series", mr_header(seed=9))
            wait_until(lambda: any(m.message_id == good.message_id for m in got), 20, what="the good message")
        counters = node.counters
        print(f"live node: {sent + 3} frames sent, counters {counters}")
        assert counters["malformed"] >= 1 and counters.get("failed", 0) == 0
        assert counters.get("unknown_sender", 0) >= 1 and forged.message_id not in [m.message_id for m in got]
        push.close(linger=0)
        ctx.destroy(linger=0)
