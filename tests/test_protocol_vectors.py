"""The language-neutral test vectors in docs/vectors/ are what docs/vectors/make_vectors.py makes, and meshdcm reads
and writes them as they say: the contract another implementation (issue 21's JavaScript nodes) tests against."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from meshdcm import MalformedMessage, Message, VersionError, codec
from meshdcm.filters import parse

VECTORS = Path(__file__).resolve().parents[1] / "docs" / "vectors"


def load(name: str):
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def test_the_files_are_what_the_script_makes():
    spec = importlib.util.spec_from_file_location("make_vectors", VECTORS / "make_vectors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, obj in module.vectors().items():
        assert (VECTORS / name).read_text(encoding="utf-8") == module.render(obj), \
            f"{name} is stale: run python docs/vectors/make_vectors.py"


@pytest.mark.parametrize("case", load("frames.json")["frames"], ids=lambda c: c["name"])
def test_frames_decode_to_their_meaning_and_encode_back(case):
    frame = bytes.fromhex(case["frame"])
    msg = Message.from_bytes(frame)
    assert msg.topic == case["topic"] and msg.flags == case["flags"]
    assert (msg.seq, msg.timestamp_ns) == (int(case["seq"]), int(case["timestamp_ns"]))
    assert (msg.message_id.hex(), msg.sender.hex()) == (case["message_id"], case["sender"])
    assert (msg.correlation_id.hex() if msg.correlation_id else None) == case["correlation_id"]
    assert msg.meta == case["meta"] and msg.index.hex() == case["index"] and msg.body.hex() == case["body"]
    decoded = codec.decode(msg.body).to_json_dict() if msg.body else {}
    assert decoded == case["body_json"]
    assert msg.to_bytes() == frame


@pytest.mark.parametrize("case", load("frames.json")["refused"], ids=lambda c: c["name"])
def test_refused_frames(case):
    frame = bytes.fromhex(case["frame"])
    if case["error"] is None:
        assert Message.from_bytes(frame).topic
    else:
        with pytest.raises({"VersionError": VersionError, "MalformedMessage": MalformedMessage}[case["error"]]):
            Message.from_bytes(frame)


def test_filters_give_their_verdicts():
    data = load("filters.json")
    bodies = {name: bytes.fromhex(hexed) for name, hexed in data["bodies"].items()}
    assert len(data["cases"]) >= 10
    for case in data["cases"]:
        flt = parse(case["filter"])
        for name, body in bodies.items():
            assert flt.evaluate(Message("stored.series", body).view.get) is case["matches"][name], (case, name)
