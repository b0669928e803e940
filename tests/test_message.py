"""Message frames: envelope round trip, version rules, malformed frames, topics, stamping."""

from __future__ import annotations

import struct

import pytest
from pydicom.dataset import Dataset

from meshdcm import codec
from meshdcm.dataview import IndexedView, element_index
from meshdcm.errors import MalformedMessage, ProtocolError, VersionError
from meshdcm.journal import seq_add
from meshdcm.message import ENVELOPE_SIZE, FLAG_REPLAY, FLAG_WORK, MAGIC, PROTOCOL_VERSION, Message, stamp, \
    topic_matches

ENV = struct.Struct("<4sBBHQq16s16s16sII")


def dataset() -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.Modality = "MR"
    ds.PatientName = "Müller^Jürgen"
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = "1.2.3.4"
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.Rows = 64
    return ds


def full_message(**kw) -> Message:
    args = dict(
        correlation_id=b"C" * 16, meta={"uris": ["dicomweb://pacs/ü"], "note": "Grüße, 東京", "n": [1, 2.5, None]},
        message_id=b"M" * 16, sender=b"S" * 16, seq=2**64 - 1, timestamp_ns=-5, flags=FLAG_REPLAY | FLAG_WORK,
    )
    args.update(kw)
    return Message("stored.series.mr", dataset(), **args)


def test_round_trip_of_every_envelope_field():
    msg = full_message()
    frame = msg.to_bytes()
    assert frame.startswith(b"stored.series.mr " + MAGIC)
    got = Message.from_bytes(frame)
    assert got.topic == "stored.series.mr"
    assert got.correlation_id == b"C" * 16
    assert got.message_id == b"M" * 16 and got.id == "4d" * 16
    assert got.sender == b"S" * 16
    assert got.seq == 2**64 - 1
    assert got.timestamp_ns == -5
    assert got.flags == FLAG_REPLAY | FLAG_WORK and got.is_replay
    assert got.meta == {"uris": ["dicomweb://pacs/ü"], "note": "Grüße, 東京", "n": [1, 2.5, None]}
    assert got.uris == ["dicomweb://pacs/ü"]
    assert got.body == msg.body == codec.encode(dataset())
    assert got.index == element_index(msg.body)
    assert got.to_bytes() == frame  # forwarding re-sends the same bytes
    assert got.dataset.PatientName == "Müller^Jürgen"
    assert got.get("Modality") == "MR" and got.get(0x00280010) == 64 and got.get("StudyDescription", "-") == "-"
    assert isinstance(got.view, IndexedView)
    assert got.uids == {"study": "1.2.3", "series": "1.2.3.4", "instance": "1.2.3.4.5"}
    described = got.describe()
    assert described["correlation_id"] == "43" * 16 and described["seq"] == 2**64 - 1
    assert "Müller" not in repr(described) and "Müller" not in repr(got)  # no patient data in logs


def test_defaults_and_absent_fields():
    msg = Message("event", b"")
    got = Message.from_bytes(msg.to_bytes())
    assert got.correlation_id is None and msg.correlation_id is None
    assert got.meta == {} and got.uris == []
    assert got.body == b"" and got.index == b""
    assert got.seq == 0 and got.flags == 0 and not got.is_replay
    assert len(got.message_id) == 16 and got.message_id != Message("event").message_id
    assert got.timestamp_ns > 0
    assert len(Message("event").to_bytes()) == len("event ") + ENVELOPE_SIZE


def test_index_present_or_absent():
    body = codec.encode(dataset())
    with_index = Message.from_bytes(Message("t", body).to_bytes())
    without = Message.from_bytes(Message("t", body, index=b"").to_bytes())
    assert with_index.index == element_index(body) and without.index == b""
    assert isinstance(with_index.view, IndexedView) and not isinstance(without.view, IndexedView)
    for msg in (with_index, without):
        assert msg.get("Modality") == "MR" and msg.get("PatientName") == "Müller^Jürgen"
    frame = Message("t", body, index=b"").to_bytes()
    assert struct.unpack_from("<I", frame, 2 + 76)[0] == 0


def test_uris_argument_goes_into_meta():
    msg = Message("t", uris=("a", "b"), meta={"k": 1})
    assert Message.from_bytes(msg.to_bytes()).meta == {"k": 1, "uris": ["a", "b"]}


def _frame(major=PROTOCOL_VERSION[0], minor=PROTOCOL_VERSION[1], meta=b"", index=b"", body=b"", topic=b"t",
           magic=MAGIC, meta_len=None, index_len=None) -> bytes:
    env = ENV.pack(magic, major, minor, 0, 1, 2, b"m" * 16, b"s" * 16, bytes(16),
                   len(meta) if meta_len is None else meta_len, len(index) if index_len is None else index_len)
    return topic + b" " + env + meta + index + body


def test_unknown_major_version_is_refused_with_what_to_do():
    for major in (0, PROTOCOL_VERSION[0] + 1, 255):
        with pytest.raises(VersionError) as info:
            Message.from_bytes(_frame(major=major, minor=3))
        err = info.value
        assert (err.major, err.minor, err.supported) == (major, 3, PROTOCOL_VERSION[0])
        assert f"protocol {major}.3" in str(err)
        assert "upgrade the older of the two nodes" in str(err)
        assert isinstance(err, ProtocolError)


def test_minor_version_differences_are_accepted():
    for minor in (0, 1, 9, 255):
        msg = Message.from_bytes(_frame(minor=minor, body=codec.encode(dataset())))
        assert msg.get("Modality") == "MR"


@pytest.mark.parametrize("frame,match", [
    (b"", "topic of 1-255 bytes"),
    (b"no-space-at-all" + bytes(100), "topic of 1-255 bytes"),
    (b" " + bytes(100), "topic of 1-255 bytes"),  # empty topic
    (b"t" * 256 + b" " + bytes(100), "topic of 1-255 bytes"),
    (b"t ", "fewer than its 80"),
    (b"t " + bytes(79), "fewer than its 80"),
    (_frame(magic=b"MDCX"), "not a meshdcm message"),
    (_frame(meta_len=1), "run past the end"),
    (_frame(index_len=8), "run past the end"),
    (_frame(meta=b"{}", meta_len=2**32 - 1), "run past the end"),
    (_frame(meta=b"{}", index_len=2**32 - 1), "run past the end"),
    (_frame(topic=b"st\xffored"), "not UTF-8"),
])
def test_malformed_frames(frame, match):
    with pytest.raises(MalformedMessage, match=match):
        Message.from_bytes(frame)


def test_bad_meta_is_malformed_when_read():
    for meta in (b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe"):
        msg = Message.from_bytes(_frame(meta=meta))
        with pytest.raises(MalformedMessage, match="JSON object"):
            msg.meta  # noqa: B018
    msg = Message.from_bytes(_frame(meta=b"{broken"))
    assert msg.to_bytes() == _frame(meta=b"{broken")  # forwarded unchanged, never rewritten


def test_bad_index_or_body_is_malformed_when_read():
    body = codec.encode(dataset())
    msg = Message.from_bytes(_frame(index=b"\0" * 4, body=body))
    with pytest.raises(MalformedMessage, match="whole number"):
        msg.get("Modality")
    msg = Message.from_bytes(_frame(body=body[:-3]))
    with pytest.raises(MalformedMessage):
        msg.dataset  # noqa: B018
    with pytest.raises(MalformedMessage):
        msg.get("Rows")
    assert msg.uids == {"study": "1.2.3", "series": "1.2.3.4", "instance": "1.2.3.4.5"}  # before the damage


@pytest.mark.parametrize("topic", ["stored", "stored.series", "a.b.c", "perfusion-1.result_x", "ünï.cödé", "x" * 255])
def test_valid_topics(topic):
    assert Message.from_bytes(Message(topic).to_bytes()).topic == topic


@pytest.mark.parametrize("topic", ["", "has space", "tab\there", "new\nline", ".stored", "stored.", "a..b",
                                   "x" * 256, "ü" * 128, "nul\x00"])
def test_invalid_topics(topic):
    with pytest.raises(ValueError, match="invalid topic"):
        Message(topic)


def test_stamp_sets_sequence_and_flags():
    frame = Message("stored.series", dataset(), flags=FLAG_WORK).to_bytes()
    stamped = stamp(frame, 42, FLAG_REPLAY)
    got = Message.from_bytes(bytes(stamped))
    assert got.seq == 42 and got.flags == FLAG_WORK | FLAG_REPLAY
    assert stamped[got.to_bytes().index(MAGIC) + 16:] == frame[frame.index(MAGIC) + 16:]  # nothing else changed
    assert Message.from_bytes(bytes(stamp(frame, 7))).flags == FLAG_WORK  # no extra flags: kept as they were
    assert Message.from_bytes(frame).seq == 0  # the input is not modified


def test_stamp_sequence_wraps_at_64_bits():
    frame = Message("t", b"").to_bytes()
    last = 2**64 - 1
    assert Message.from_bytes(bytes(stamp(frame, last))).seq == last
    assert seq_add(last, 1) == 0 and Message.from_bytes(bytes(stamp(frame, seq_add(last, 1)))).seq == 0
    with pytest.raises(struct.error):
        stamp(frame, 2**64)  # the engine wraps with seq_add (test_node_api: between real nodes); stamp never truncates


@pytest.mark.parametrize("prefix,topic,expected", [
    ("stored", "stored", True), ("stored", "stored.series", True), ("stored", "stored.series.mr", True),
    ("stored.series", "stored.series.mr", True), ("stored", "storedx", False), ("stored", "stored_series", False),
    ("stored.series", "stored", False), ("stored.ser", "stored.series", False), ("", "anything", True),
    ("stored", "result.stored", False), ("a.b", "a.bc.d", False),
])
def test_topic_matches_on_dot_boundaries(prefix, topic, expected):
    assert topic_matches(prefix, topic) is expected
