"""Envelopes byte by byte, and configuration precedence."""

from __future__ import annotations

import struct

import pytest
from pydicom.dataset import Dataset

from meshdcm import ConfigError, MalformedMessage, Message, VersionError, load_config, topic_matches
from meshdcm.config import resolve_interface
from meshdcm.message import ENVELOPE_SIZE, FLAG_WORK, stamp


def sample() -> Message:
    ds = Dataset()
    ds.SeriesInstanceUID = "1.2.3"
    return Message("found.study", ds, correlation_id=b"\x01" * 16, uris=["wado://h/ü"], meta={"note": "é"},
                   sender=b"\x02" * 16, seq=7, timestamp_ns=123456789)


def test_round_trip_of_every_envelope_field():
    m = sample()
    frame = m.to_bytes()
    assert frame.startswith(b"found.study MDCM\x01\x00")
    back = Message.from_bytes(frame)
    assert (back.topic, back.seq, back.timestamp_ns, back.message_id, back.sender, back.correlation_id) == \
        (m.topic, 7, 123456789, m.message_id, b"\x02" * 16, b"\x01" * 16)
    assert back.uris == ["wado://h/ü"] and back.meta["note"] == "é"
    assert back.body == m.body and back.index == m.index and back.dataset.SeriesInstanceUID == "1.2.3"
    plain = Message.from_bytes(Message("stored.series", b"", index=b"").to_bytes())
    assert plain.correlation_id is None and plain.meta == {} and plain.index == b"" and len(plain.dataset) == 0


def test_versions():
    frame = bytearray(sample().to_bytes())
    at = frame.index(b" ") + 1
    frame[at + 5] = 9  # another minor version: accepted
    assert Message.from_bytes(bytes(frame)).seq == 7
    frame[at + 4] = 2
    with pytest.raises(VersionError, match="protocol 2.9.*upgrade the older"):
        Message.from_bytes(bytes(frame))


@pytest.mark.parametrize("frame, match", [
    (b"stored.series", "topic of 1-255 bytes and a space"),
    (b" MDCM", "topic of 1-255 bytes"),
    (b"stored.series MDCM\x01\x00", "fewer than"),
    (b"stored.series XXXX" + bytes(ENVELOPE_SIZE), "not a meshdcm message"),
    (b"\xff\xfe MDCM\x01" + bytes(ENVELOPE_SIZE), "not UTF-8"),
])
def test_malformed_frames(frame, match):
    with pytest.raises(MalformedMessage, match=match):
        Message.from_bytes(frame)


def test_meta_and_index_lengths_past_the_end():
    frame = bytearray(sample().to_bytes())
    at = frame.index(b" ") + 1
    struct.pack_into("<I", frame, at + 72, 10**6)
    with pytest.raises(MalformedMessage, match="past the end"):
        Message.from_bytes(bytes(frame))
    broken_meta = Message("x.y", b"", meta={"a": 1}, index=b"").to_bytes().replace(b'{"a":1}', b'{"a":1]')
    with pytest.raises(MalformedMessage, match="JSON"):
        Message.from_bytes(broken_meta).meta  # noqa: B018


@pytest.mark.parametrize("topic", ["", "a b", ".x", "x.", "a..b", "x" * 256, "tab\t", "\x00cmd"])
def test_bad_topics(topic):
    with pytest.raises(ValueError, match="invalid topic"):
        Message(topic)


def test_stamp_and_sequence_wrap():
    frame = sample().to_bytes()
    for seq in (0, 1, 2**64 - 1):
        assert Message.from_bytes(bytes(stamp(frame, seq))).seq == seq
    assert ((2**64 - 1) + 1) & 0xFFFFFFFFFFFFFFFF == 0  # the engine's increment wraps to 0
    work = Message.from_bytes(bytes(stamp(frame, 5, FLAG_WORK)))
    assert work.flags & FLAG_WORK and work.seq == 5


def test_topic_matches_on_dot_boundaries():
    assert topic_matches("stored", "stored.series") and topic_matches("stored.series", "stored.series")
    assert topic_matches("", "anything") and not topic_matches("stored", "storedx")
    assert not topic_matches("stored.series", "stored")


def test_precedence_defaults_file_env_args(tmp_path):
    cfg_file = tmp_path / "m.toml"
    cfg_file.write_text('[mesh]\nname = "from-file"\npeers = ["tcp://127.0.0.1:5000"]\n[node]\nworkers = 2\n'
                        'group = "g-file"\n[nodes.perfusion]\nmethod = "osvd"\n')
    assert load_config(kind="perfusion", environ={}).mesh == "default"
    c = load_config(kind="perfusion", file=cfg_file, environ={})
    assert (c.mesh, c.workers, c.group, c.peers, c.options["method"]) == \
        ("from-file", 2, "g-file", ("tcp://127.0.0.1:5000",), "osvd")
    env = {"MESHDCM_MESH": "from-env", "MESHDCM_WORKERS": "3", "MESHDCM_PEERS": "tcp://127.0.0.1:1,tcp://127.0.0.1:2"}
    c = load_config(kind="perfusion", file=cfg_file, environ=env)
    assert (c.mesh, c.workers, c.group, len(c.peers)) == ("from-env", 3, "g-file", 2)
    c = load_config(kind="perfusion", file=cfg_file, environ=env, args={"mesh": "from-args", "workers": None})
    assert (c.mesh, c.workers) == ("from-args", 3)
    c = load_config(environ={"MESHDCM_CONFIG": str(cfg_file)})
    assert c.mesh == "from-file"


@pytest.mark.parametrize("kwargs, match", [
    ({"file": "/nonexistent.toml"}, "does not exist"),
    ({"environ": {"MESHDCM_WORKERS": "many"}}, "workers must be int"),
    ({"environ": {"MESHDCM_DISCOVERY": "perhaps"}}, "discovery must be bool"),
    ({"args": {"peers": ["10.0.0.1:5"]}}, "control endpoint like tcp://HOST:PORT"),
    ({"args": {"port": 70000}}, "port must be"),
    ({"args": {"workers": 0}}, "at least 1"),
    ({"args": {"interface": "nosuchif0"}}, "no network interface called 'nosuchif0'"),
])
def test_config_errors(kwargs, match):
    kwargs.setdefault("environ", {})
    with pytest.raises(ConfigError, match=match):
        load_config(**kwargs)


def test_bad_toml(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[mesh\nname=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(file=bad, environ={})


def test_interface_names():
    assert resolve_interface("lo") == "127.0.0.1"
    assert resolve_interface("127.0.0.1") == "127.0.0.1"
