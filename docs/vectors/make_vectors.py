"""Language-neutral test vectors of the meshdcm protocol (docs/protocol.md): frames with their decoded meaning,
frames a receiver must refuse, filters with their verdicts, and control payloads.

    python docs/vectors/make_vectors.py      # writes docs/vectors/*.json (tests/test_protocol_vectors.py checks
                                             # that the files are what this script makes, and that meshdcm agrees)

Every value is fixed (ids, timestamps, sequence numbers), so the files only change when the protocol does. Bytes
are lower-case hex; DICOM bodies are also given in the DICOM JSON model (PS3.18 Annex F), which is what an
implementation in another language compares its decoded body with.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from meshdcm import codec
from meshdcm.filters import parse
from meshdcm.message import FLAG_REPLAY, FLAG_WORK, PROTOCOL_VERSION, Message

HERE = Path(__file__).resolve().parent
SENDER = bytes.fromhex("0123456789abcdef0123456789abcdef")
REQUEST = bytes.fromhex("00112233445566778899aabbccddeeff")


def _mr_series() -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "PERFUSION"]
    ds.Modality = "MR"
    ds.SeriesDescription = "ep2d_perf_DSC"
    ds.PatientName = "Müller^Jürgen"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.10.1012.1"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.10.1012.1.2"
    ds.SeriesNumber = 4
    ds.SliceThickness = "5"
    ds.EchoTime = "30"
    ds.RepetitionTime = "1500"
    ds.NumberOfTemporalPositions = 50
    return ds


def _ct_with_sequence() -> Dataset:
    ds = Dataset()
    ds.Modality = "CT"
    ds.SeriesDescription = "Head 5mm"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.10.1012.2"
    ds.ConvolutionKernel = "H30s"
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    item.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.10.1012.2.3.1"
    ds.ReferencedImageSequence = Sequence([item])
    return ds


def _frames() -> list[dict]:
    cases = [
        ("stored.series with index, meta and URIs", Message(
            "stored.series", _mr_series(), message_id=bytes.fromhex("a0" * 8 + "0000000000000001"), sender=SENDER,
            seq=7, timestamp_ns=1764672000000000000, meta={"instances": 150, "complete": True},
            uris=["meshdcm://0123456789abcdef0123456789abcdef/store/1.2.826.0.1.3680043.10.1012.1/"
                  "1.2.826.0.1.3680043.10.1012.1.2"])),
        ("an answer (correlation id) without meta, sequence in its nested item", Message(
            "found.study", _ct_with_sequence(), message_id=bytes.fromhex("a0" * 8 + "0000000000000002"),
            sender=SENDER, seq=8, timestamp_ns=1764672000500000000, correlation_id=REQUEST)),
        ("a replayed work item whose number wrapped", Message(
            "get.study", _ct_with_sequence(), message_id=bytes.fromhex("a0" * 8 + "0000000000000003"),
            sender=SENDER, seq=0, timestamp_ns=1764672001000000000, flags=FLAG_REPLAY | FLAG_WORK)),
        ("an empty body without index (found.end)", Message(
            "found.end", b"", index=b"", message_id=bytes.fromhex("a0" * 8 + "0000000000000004"), sender=SENDER,
            seq=2**64 - 1, timestamp_ns=1764672002000000000, correlation_id=REQUEST,
            meta={"count": 1, "status": "ok", "errors": []})),
    ]
    out = []
    for name, msg in cases:
        frame = msg.to_bytes()
        out.append({
            "name": name, "frame": frame.hex(), "topic": msg.topic, "version": list(PROTOCOL_VERSION),
            "flags": msg.flags, "seq": str(msg.seq), "timestamp_ns": str(msg.timestamp_ns),
            "message_id": msg.message_id.hex(), "sender": msg.sender.hex(),
            "correlation_id": msg.correlation_id.hex() if msg.correlation_id else None,
            "meta": msg.meta, "index": (msg.index or b"").hex(), "body": msg.body.hex(),
            "body_json": codec.decode(msg.body).to_json_dict() if msg.body else {},
        })
    return out


def _refused() -> list[dict]:
    good = Message("stored.series", _mr_series(), message_id=b"\x01" * 16, sender=SENDER, seq=1,
                   timestamp_ns=1764672000000000000).to_bytes()
    at = good.index(b" ") + 1
    major = bytearray(good)
    major[at + 4] = PROTOCOL_VERSION[0] + 1
    minor = bytearray(good)
    minor[at + 5] = 200
    lying_meta = bytearray(good)
    lying_meta[at + 72:at + 76] = (10**6).to_bytes(4, "little")
    return [
        {"name": "another major version", "frame": bytes(major).hex(), "error": "VersionError"},
        {"name": "no space after the topic", "frame": good.replace(b" ", b"_", 1).hex(), "error": "MalformedMessage"},
        {"name": "wrong magic", "frame": good.replace(b"MDCM", b"MDCX", 1).hex(), "error": "MalformedMessage"},
        {"name": "shorter than the fixed envelope", "frame": good[:at + 40].hex(), "error": "MalformedMessage"},
        {"name": "meta length past the end", "frame": bytes(lying_meta).hex(), "error": "MalformedMessage"},
        {"name": "topic not UTF-8", "frame": (b"st\xffored" + good[good.index(b" "):]).hex(),
         "error": "MalformedMessage"},
        {"name": "another minor version: accepted", "frame": bytes(minor).hex(), "error": None},
    ]


FILTERS = [
    'Modality == "MR"',
    'Modality == "MR" and SeriesDescription ~ "(?i)perf"',
    'ImageType contains "PERFUSION"',
    'NumberOfTemporalPositions >= 40 and SliceThickness < 6',
    'Modality in ["CT", "PT"]',
    'ReferencedImageSequence exists',
    'not (EchoTime > 20)',
    '(0008,103E) ~ "^Head"',
    'PatientName ~ "^Müller"',
    'ConvolutionKernel missing or ConvolutionKernel == "H30s"',
    '',
]


def _filters() -> list[dict]:
    bodies = {"mr": _mr_series(), "ct": _ct_with_sequence()}
    out = []
    for text in FILTERS:
        flt = parse(text)
        verdicts = {}
        for name, ds in bodies.items():
            msg = Message("stored.series", ds)
            verdicts[name] = flt.evaluate(msg.view.get)
        out.append({"filter": text, "matches": verdicts})
    return [{"bodies": {name: codec.encode(ds).hex() for name, ds in bodies.items()},
             "bodies_json": {name: ds.to_json_dict() for name, ds in bodies.items()}, "cases": out}]


CONTROL = [
    {"kind": "PING", "payload": "0123456789abcdef0123456789abcdef 42 0 0",
     "means": "node 0123...cdef, last sequence number 42, no message waiting for its handlers, not behind"},
    {"kind": "PING", "payload": "0123456789abcdef0123456789abcdef",
     "means": "the same from a 1.0 node: only its id"},
    {"kind": "BYE", "payload": "0123456789abcdef0123456789abcdef 42",
     "means": "node 0123...cdef leaves; its last sequence number is 42 (1.1)"},
    {"kind": "BYE", "payload": "0123456789abcdef0123456789abcdef", "means": "the same from a 1.0 node"},
    {"kind": "REPLAY", "payload": {"stream": "0123456789abcdef0123456789abcdef", "first": 40, "last": 42},
     "means": "send FRAMEs 40..42 of that stream again, then REPLAYED"},
    {"kind": "REPLAYED", "payload": {"stream": "0123456789abcdef0123456789abcdef", "first": 40, "last": 42,
                                     "oldest": 41, "journal": True},
     "means": "40 is no longer in the journal (lost, and reported); 41..42 were sent as FRAMEs"},
    {"kind": "WORK", "payload": {"node": "fedcba9876543210fedcba9876543210",
                                 "stream": "0123456789abcdef0123456789abcdef", "done": [5], "held": [6, 7]},
     "means": "member fedc... finished item 5 of that stream and holds 6 and 7 (renew their leases)"},
    {"kind": "FETCH", "payload": {"req": "r1", "path": "store/1.2.3/1.2.3.4", "offset": 0, "size": 262144},
     "means": "the first 256 KiB of a served file, or LIST of a folder; NOFILE with a reason otherwise"},
    {"kind": "WHO", "payload": "", "means": "send HELLO again (the receiver dropped you)"},
]


def vectors() -> dict[str, object]:
    return {"frames.json": {"frames": _frames(), "refused": _refused()}, "filters.json": _filters()[0],
            "control.json": {"messages": CONTROL}}


def render(obj) -> str:
    return json.dumps(obj, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def main() -> int:
    for name, obj in vectors().items():
        (HERE / name).write_text(render(obj), encoding="utf-8")
        print(f"wrote {HERE / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
