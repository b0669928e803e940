"""Messages: a dotted topic, a small binary envelope, and a DICOM body — one ZeroMQ frame.

On the wire a message is a single frame (docs/protocol.md gives it byte by byte)::

    topic      UTF-8, 1-255 bytes, no byte <= 0x20, e.g. b"stored.series"   (first, so SUB sockets filter on it)
    0x20       one space
    envelope   80 bytes, little endian:
        0   4s  magic b"MDCM"
        4   B   protocol major version        (a receiver refuses a major it does not speak)
        5   B   protocol minor version
        6   H   flags                          bit 0: replayed, bit 1: work item (PUSH/PULL)
        8   Q   sequence number                per sender, assigned when the message leaves the sender
        16  q   timestamp                      ns since the Unix epoch, when it was published
        24  16s message id                     unique (random per process + counter)
        40  16s sender node id
        56  16s correlation id                 the message id this one answers; 16 zero bytes: none
        72  I   meta length M
        76  I   index length X
    meta       M bytes: a JSON object (UTF-8), e.g. {"uris": [...]}; M = 0: none
    index      X bytes: optional element index of the body (uint32 tags ascending, then uint32 header offsets)
    body       the rest: DICOM data set, Explicit VR Little Endian, no File Meta, no pixel data

One frame, because every extra ZeroMQ frame costs as much as the whole rest of the path here (bench/messaging.py).
The index is made once, where the body is encoded, and forwarded with it, so that receivers find the few
elements a filter reads by bisection instead of walking the body.  A received message keeps the body bytes as
they came: ``message.view`` reads single elements without a parse (filters use it), ``message.dataset`` parses
with pydicom on first use.
"""

from __future__ import annotations

import itertools
import json
import os
from functools import lru_cache
import struct
import time
from typing import Any, Iterable

from pydicom.dataset import Dataset

from . import codec
from .dataview import DataView, element_index, view_of
from .errors import MalformedMessage, VersionError

__all__ = [
    "ENVELOPE_SIZE",
    "FLAG_REPLAY",
    "FLAG_WORK",
    "PROTOCOL_VERSION",
    "Message",
    "topic_matches",
]

PROTOCOL_VERSION = (1, 1)
MAGIC = b"MDCM"
FLAG_REPLAY = 0x1
FLAG_WORK = 0x2
_FIXED = struct.Struct("<4sBBHQq16s16s16sII")
ENVELOPE_SIZE = _FIXED.size  # 80
_SEQ = struct.Struct("<Q")
_COUNTER_BYTES = struct.Struct("<Q")


class _MessageIds:
    """Unique message ids without a random call per message (os.urandom costs ~5 us here): 8 random bytes per
    process, then a counter. The prefix is drawn again after fork(), so a child never repeats its parent's ids."""

    def __init__(self):
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.prefix = os.urandom(8)
        self.counter = itertools.count()

    def next(self) -> bytes:
        return self.prefix + _COUNTER_BYTES.pack(next(self.counter))


_ids = _MessageIds()
_FLAGS = struct.Struct("<H")
_NO_ID = bytes(16)
MAX_TOPIC = 255


def topic_matches(prefix: str, topic: str) -> bool:
    """True if ``topic`` is ``prefix`` or lies under it in the dotted hierarchy (``stored`` matches
    ``stored.series`` but not ``storedx``).  The empty prefix matches every topic."""
    return not prefix or topic == prefix or (topic.startswith(prefix) and topic[len(prefix)] == ".")


@lru_cache(maxsize=1024)
def _check_topic(topic: str) -> bytes:
    raw = topic.encode("utf-8")
    if not raw or len(raw) > MAX_TOPIC or raw[0] == 0xFF or any(c <= 0x20 for c in raw) or ".." in topic \
            or topic.startswith(".") or topic.endswith("."):
        raise ValueError(
            f"invalid topic {topic!r}: use 1-{MAX_TOPIC} bytes of dotted words without spaces, e.g. 'stored.series'"
        )
    return raw


class Message:
    """One message: ``topic``, envelope fields, and the body (bytes; dataset decoded on first use)."""

    __slots__ = (
        "topic", "body", "index", "seq", "timestamp_ns", "message_id", "sender", "correlation_id", "flags",
        "_meta", "_meta_raw", "_dataset", "_view",
    )

    def __init__(
        self,
        topic: str,
        body: bytes | Dataset | None = None,
        *,
        correlation_id: bytes | None = None,
        meta: dict | None = None,
        uris: Iterable[str] | None = None,
        message_id: bytes | None = None,
        sender: bytes = _NO_ID,
        seq: int = 0,
        timestamp_ns: int | None = None,
        flags: int = 0,
        index: bytes | None = None,
    ):
        _check_topic(topic)
        self.topic = topic
        if body is None:
            body = Dataset()
        if isinstance(body, Dataset):
            self._dataset = body
            self.body = codec.encode(body)
        else:
            self._dataset = None
            self.body = body if body.__class__ is bytes else bytes(body)
        self.index = element_index(self.body) if index is None else index
        self.seq = seq
        self.timestamp_ns = time.time_ns() if timestamp_ns is None else timestamp_ns
        self.message_id = _ids.next() if message_id is None else message_id
        self.sender = sender
        self.correlation_id = correlation_id or None
        self.flags = flags
        if uris is not None:
            meta = dict(meta or {})
            meta["uris"] = list(uris)
        self._meta = dict(meta) if meta else {}
        self._meta_raw = None
        self._view = None

    # --- content --------------------------------------------------------------------------------------
    @property
    def dataset(self) -> Dataset:
        """The body as a pydicom Dataset (parsed once, on first access)."""
        if self._dataset is None:
            self._dataset = codec.decode(self.body)
        return self._dataset

    @property
    def view(self) -> DataView:
        """Fast element access without a parse (what filters use)."""
        if self._view is None:
            self._view = view_of(self.body, self.index)
        return self._view

    def get(self, keyword_or_tag: str | int, default=None):
        """One top-level element's plain value, read from the bytes (see :class:`DataView`)."""
        tag = keyword_or_tag if isinstance(keyword_or_tag, int) else _tag_of(keyword_or_tag)
        value = self.view.get(tag)
        return default if value is None else value

    @property
    def meta(self) -> dict:
        """The envelope's JSON meta object (``uris``, ``error``, node-specific keys)."""
        if self._meta is None:
            try:
                self._meta = json.loads(self._meta_raw) if self._meta_raw else {}
            except (ValueError, UnicodeDecodeError) as exc:
                raise MalformedMessage(f"the envelope's meta is not a JSON object: {exc}") from None
            if not isinstance(self._meta, dict):
                raise MalformedMessage("the envelope's meta is not a JSON object")
        return self._meta

    @property
    def uris(self) -> list[str]:
        """Where the instances this message describes can be fetched (may be empty)."""
        return list(self.meta.get("uris", ()))

    @property
    def id(self) -> str:
        return self.message_id.hex()

    @property
    def is_replay(self) -> bool:
        return bool(self.flags & FLAG_REPLAY)

    @property
    def uids(self) -> dict[str, str]:
        """Study/series/instance UIDs of the body, for logs and error events (never patient data)."""
        out = {}
        for key, tag in (("study", 0x0020000D), ("series", 0x0020000E), ("instance", 0x00080018)):
            try:
                value = self.view.get(tag)
            except MalformedMessage:
                break
            if isinstance(value, str):
                out[key] = value
        return out

    # --- wire -----------------------------------------------------------------------------------------
    def _meta_bytes(self) -> bytes:
        if self._meta is None:
            return self._meta_raw or b""
        return json.dumps(self._meta, separators=(",", ":"), ensure_ascii=False).encode("utf-8") if self._meta else b""

    def to_bytes(self) -> bytes:
        """The message as one frame (see the module docstring)."""
        meta = self._meta_bytes()
        index = self.index or b""
        return b"".join((
            self.topic.encode("utf-8"), b" ",
            _FIXED.pack(MAGIC, PROTOCOL_VERSION[0], PROTOCOL_VERSION[1], self.flags, self.seq, self.timestamp_ns,
                        self.message_id, self.sender, self.correlation_id or _NO_ID, len(meta), len(index)),
            meta, index, self.body,
        ))

    @classmethod
    def from_bytes(cls, frame: bytes) -> "Message":
        """Parse a received frame; raises :class:`MalformedMessage` or :class:`VersionError`."""
        space = frame.find(b" ", 0, MAX_TOPIC + 1)
        if space < 1:
            raise MalformedMessage("the frame does not start with a topic of 1-255 bytes and a space")
        start = space + 1
        if len(frame) < start + ENVELOPE_SIZE:
            raise MalformedMessage(f"the envelope has {len(frame) - start} bytes, fewer than its {ENVELOPE_SIZE}")
        magic, major, minor, flags, seq, ts, mid, sender, corr, meta_len, index_len = _FIXED.unpack_from(frame, start)
        if magic != MAGIC:
            raise MalformedMessage(f"the envelope does not start with {MAGIC!r}: not a meshdcm message")
        if major != PROTOCOL_VERSION[0]:
            raise VersionError(major, minor, PROTOCOL_VERSION[0])
        meta_at = start + ENVELOPE_SIZE
        index_at = meta_at + meta_len
        body_at = index_at + index_len
        if body_at > len(frame):
            raise MalformedMessage(f"meta ({meta_len} B) and index ({index_len} B) run past the end of the frame")
        try:
            topic = frame[:space].decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedMessage("the topic is not UTF-8") from None
        msg = cls.__new__(cls)
        msg.topic = topic
        msg.body = frame[body_at:]
        msg.index = frame[index_at:body_at]
        msg.seq, msg.timestamp_ns, msg.message_id, msg.sender, msg.flags = seq, ts, mid, sender, flags
        msg.correlation_id = None if corr == _NO_ID else corr
        msg._meta = None
        msg._meta_raw = frame[meta_at:index_at]
        msg._dataset = None
        msg._view = None
        return msg

    def __repr__(self) -> str:
        return (f"<Message {self.topic} id={self.id[:12]} from={self.sender.hex()[:8]} seq={self.seq} "
                f"{len(self.body)} B>")

    def describe(self) -> dict[str, Any]:
        """A dict of the envelope for logs and ``meshdcm tail --json`` (no patient data)."""
        return {
            "topic": self.topic,
            "id": self.id,
            "sender": self.sender.hex(),
            "seq": self.seq,
            "time": self.timestamp_ns / 1e9,
            "correlation_id": self.correlation_id.hex() if self.correlation_id else None,
            "uids": self.uids,
            "meta": self.meta,
            "bytes": len(self.body),
        }


def stamp(frame: bytes, seq: int, extra_flags: int = 0) -> bytearray:
    """The frame with its sequence number (and extra flags) set: done by the sending node's engine."""
    buf = bytearray(frame)
    at = buf.index(b" ") + 1
    _SEQ.pack_into(buf, at + 8, seq)
    if extra_flags:
        _FLAGS.pack_into(buf, at + 6, _FLAGS.unpack_from(buf, at + 6)[0] | extra_flags)
    return buf


def _tag_of(keyword: str) -> int:
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(f"unknown DICOM keyword {keyword!r}")
    return tag
