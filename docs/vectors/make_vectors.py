"""Language-neutral test vectors of the meshdcm protocol (docs/protocol.md): frames with their decoded meaning,
frames a receiver must refuse, filters with their verdicts, control payloads (HELLO, replays, the ready marker), mDNS
adverts with their DNS records and manifest digests (docs/discovery.md), and keyring files, Z85 keys and ZAP
exchanges (docs/security.md).

    python docs/vectors/make_vectors.py      # writes docs/vectors/*.json (tests/test_protocol_vectors.py checks
                                             # that the files are what this script makes, and that meshdcm agrees)

Every value is fixed (ids, timestamps, sequence numbers), so the files only change when the protocol does. Bytes
are lower-case hex; DICOM bodies are also given in the DICOM JSON model (PS3.18 Annex F), which is what an
implementation in another language compares its decoded body with.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import zmq
import zmq.auth
from zmq.auth.base import Authenticator
from zmq.auth.certs import _cert_public_banner, _cert_secret_banner, _write_key_file
from zmq.utils import z85

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from zeroconf import DNSOutgoing, ServiceInfo

from meshdcm import codec
from meshdcm._control import ControlProtocol
from meshdcm._delivery import DeliveryDuties
from meshdcm._sockets import READY_MARKER, EngineSockets
from meshdcm.discovery import SERVICE_TYPE, Advert, Discovery
from meshdcm.filters import parse
from meshdcm.journal import Outbox
from meshdcm.keys import Keyring
from meshdcm.manifest import Manifest
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
        out.append({"filter": text, "canonical": str(flt), "matches": verdicts})  # str(): what a node advertises
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


# --- keys (docs/security.md) ------------------------------------------------------------------------------------

def _key_pair(seed: str) -> tuple[bytes, bytes]:
    """A fixed CURVE key pair (Z85 public, Z85 secret): the secret is a hash of ``seed``, the public key libzmq's."""
    secret = z85.encode(hashlib.sha256(f"meshdcm vector: {seed}".encode()).digest())
    return zmq.curve_public(secret), secret


KEY_NAMES = ("node-a", "node-b", "node-c", "rogue")
KEYS = {name: _key_pair(name) for name in KEY_NAMES}
CERT_DATE = "2026-01-01 00:00:00.000000"  # the date pyzmq writes in a certificate's first comment line


def _certificate(public: bytes, secret: bytes | None = None) -> str:
    """A certificate as pyzmq's zmq.auth.create_certificates writes it (with a fixed date)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cert"
        if secret is None:
            _write_key_file(path, _cert_public_banner.format(CERT_DATE), public)
        else:
            _write_key_file(path, _cert_secret_banner.format(CERT_DATE), public, secret_key=secret)
        return path.read_text(encoding="utf-8")


def _load(text: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cert.key"
        path.write_bytes(text.encode("utf-8"))
        try:
            public, secret = zmq.auth.load_certificate(path)
        except ValueError:
            return {"error": "ValueError"}
    return {"public": public.decode(), "secret": secret.decode() if secret else None}


def _keyring_files() -> dict[str, str]:
    files = {f"authorized/{name}.key": _certificate(KEYS[name][0]) for name in ("node-a", "node-b", "node-c")}
    files["secret/node-a.key_secret"] = _certificate(*KEYS["node-a"])
    files["revoked/rogue.key"] = _certificate(KEYS["rogue"][0])
    return files


def _write_keyring(folder: Path, files: dict[str, str]) -> Keyring:
    for rel, text in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (folder / "secret").chmod(0o700)
    for path in (folder / "secret").iterdir():
        path.chmod(0o600)
    return Keyring(folder)


def zap_reply(authorized_dir: Path, request: list[bytes]) -> list[bytes]:
    """What the ZAP handler meshdcm runs (zmq.auth, configured as meshdcm.keys does) answers to one request."""
    replies: list[list[bytes]] = []
    auth = Authenticator(zmq.Context.instance())
    auth.configure_curve(domain="*", location=str(authorized_dir))
    auth.zap_socket = SimpleNamespace(send_multipart=replies.append)
    result = auth.handle_zap_message(request)
    if asyncio.iscoroutine(result):
        asyncio.run(result)
    return replies[0]


def trusted(authorized: set[bytes], key: str) -> bool:
    """meshdcm's check of a key named in an advert, a manifest or a gossip entry (the engine's ``_trusted``)."""
    return EngineSockets._trusted(SimpleNamespace(node=SimpleNamespace(keys=object()), _authorized=authorized), key)


def _keyring() -> dict:
    z85_pairs = [{"raw": "864fd26fb559f75b", "z85": z85.encode(bytes.fromhex("864fd26fb559f75b")).decode(),
                  "note": "the example of ZeroMQ's Z85 specification (rfc.zeromq.org/spec/32)"}]
    key_pairs = []
    for name, (public, secret) in KEYS.items():
        z85_pairs.append({"raw": z85.decode(public).hex(), "z85": public.decode(), "note": f"{name}'s public key"})
        key_pairs.append({"name": name, "secret": secret.decode(), "secret_raw": z85.decode(secret).hex(),
                          "public": public.decode(), "public_raw": z85.decode(public).hex()})
    a_public, a_secret = KEYS["node-a"]
    variants = [
        ("a public certificate as pyzmq writes it", _certificate(a_public)),
        ("a secret certificate as pyzmq writes it", _certificate(a_public, a_secret)),
        ("CRLF line ends, single quotes, metadata, no comment",
         f"metadata\r\n    name = 'node-a'\r\ncurve\r\n    public-key = '{a_public.decode()}'\r\n"),
        ("no quotes, tabs", f"curve\n\tpublic-key\t=\t{a_public.decode()}\n\tsecret-key = {a_secret.decode()}\n"),
        ("a commented-out key does not count", f'curve\n#   public-key = "{KEYS["rogue"][0].decode()}"\n'
                                                f'    public-key = "{a_public.decode()}"\n'),
        ("no public key: refused", 'metadata\ncurve\n    secret-key = "x"\n'),
    ]
    certificates = [{"name": name, "text": text, **_load(text)} for name, text in variants]
    files = _keyring_files()
    with tempfile.TemporaryDirectory() as tmp:
        ring = _write_keyring(Path(tmp), files)
        own = ring.node_keys(None)
        listed = ring.list()
        authorized = ring.authorized_keys()
        zap = []
        for name, key in (("an authorized key", KEYS["node-b"][0]), ("a revoked key", KEYS["rogue"][0]),
                          ("a key the keyring never held", _key_pair("stranger")[0])):
            request = [b"1.0", b"1", b"", b"10.0.0.6", b"", b"CURVE", z85.decode(key)]
            zap.append({"name": name, "client_key": key.decode(), "request": [f.hex() for f in request],
                        "reply": [f.hex() for f in zap_reply(ring.authorized_dir, request)]})
    trust = [{"key": key, "trusted": trusted(authorized, key)}
             for key in (KEYS["node-b"][0].decode(), KEYS["rogue"][0].decode(), "", KEYS["node-b"][0].decode() + " ")]
    return {
        "z85": z85_pairs, "key_pairs": key_pairs, "certificates": certificates,
        "keyring": {"files": files, "modes": {"secret": "0700", "secret/node-a.key_secret": "0600"},
                    "authorized": sorted(k.decode() for k in authorized), "list": listed,
                    "own_key": {"name": own.name, "public": own.public.decode(), "secret": own.secret.decode()}},
        "trust": trust, "zap": zap,
    }


# --- discovery (docs/discovery.md) -----------------------------------------------------------------------------

def _manifests() -> list[tuple[str, dict]]:
    return [
        ("a CLI tool without keyring (started as an integer: hashed as the float 1764672000.0)", {
            "id": "fedcba9876543210fedcba9876543210", "name": "publish", "mesh": "default", "kind": "publish",
            "role": "tool", "group": "", "host": "ws12", "pid": 4242, "software": "0.1.0", "protocol": "1.1",
            "endpoints": {"control": "tcp://127.0.0.1:41001", "events": "tcp://127.0.0.1:41002", "work": ""},
            "key": "", "handlers": [], "capabilities": [], "started": 1764672000, "extra": {}}),
        ("a worker of a keyed mesh", {
            "id": SENDER.hex(), "name": "perfusion.gpu-1", "mesh": "ward3", "kind": "perfusion", "role": "node",
            "group": "perfusion", "host": "ws12", "pid": 4243, "software": "0.1.0", "protocol": "1.1",
            "endpoints": {"control": "tcp://10.0.0.5:40001", "events": "tcp://10.0.0.5:40002",
                          "work": "tcp://10.0.0.5:40003"},
            "key": KEYS["node-a"][0].decode(),
            "handlers": [{"topic": "stored.series", "where": 'Modality == "MR" and SeriesDescription ~ "(?i)perf"',
                          "shared": True}, {"topic": "dead", "where": "", "shared": False}],
            "capabilities": ["gpu"], "started": 1764672000.25, "extra": {"z": 1, "a": [0.1, 2.0, None, True]}}),
        ("non-ASCII text is escaped; keys this version does not know are not hashed", {
            "id": "00112233445566778899aabbccddeeff", "name": "Gerät-Ü", "mesh": "default", "kind": "viewer",
            "role": "node", "group": None, "host": "stație-7", "pid": 7, "software": "0.1.0", "protocol": "1.1",
            "endpoints": {"control": "tcp://127.0.0.1:42001", "events": "tcp://127.0.0.1:42002", "work": ""},
            "key": "", "handlers": [{"topic": "stored", "where": 'PatientName ~ "^Müller"', "shared": False}],
            "capabilities": [], "started": 1764672000.5, "extra": {"label": "Radiologie 😀 \"A\"\n"},
            "future": "ignored"}),
    ]


def _digests() -> list[dict]:
    out = []
    for name, sent in _manifests():
        manifest = Manifest.from_dict(sent)
        canonical = manifest.to_json().decode("ascii")
        out.append({"name": name, "manifest": sent, "canonical": canonical,
                    "sha256": hashlib.sha256(canonical.encode("ascii")).hexdigest(), "digest": manifest.digest})
    return out


def _advert(manifest: Manifest) -> Advert:
    m = manifest
    return Advert(m.node_id, m.name, m.mesh, m.protocol, m.control, m.events, m.work, m.digest, m.key)


def announced(info: ServiceInfo) -> list:
    """The records zeroconf announces for a service (``Zeroconf._add_broadcast_answer``): PTR, SRV, TXT, then the
    host's A and NSEC records, which zeroconf keeps in a set (any order): here in a fixed one, A first."""
    extra = sorted(info.get_address_and_nsec_records(), key=lambda r: r.type)
    return [info.dns_pointer(), info.dns_service(), info.dns_text(), *extra]


def _records(info: ServiceInfo) -> list[dict]:
    out = []
    for record in announced(info):
        entry = {"name": record.name, "type": record.type_label.upper(), "class": "IN", "cache_flush": record.unique,
                 "ttl": record.ttl}
        kind = entry["type"]
        if kind == "PTR":
            entry["alias"] = record.alias
        elif kind == "SRV":
            entry.update(priority=record.priority, weight=record.weight, port=record.port, target=record.server)
        elif kind == "TXT":
            entry["rdata"] = record.text.hex()
        elif kind == "A":
            entry["address"] = ".".join(str(b) for b in record.address)
        elif kind == "NSEC":
            entry.update(next_name=record.next_name, types=sorted(record.rdtypes))
        out.append(entry)
    return out


def _discovery() -> dict:
    manifests = [Manifest.from_dict(sent) for _, sent in _manifests()]
    tool, worker = manifests[0], manifests[1]
    long_named = Manifest.from_dict({**_manifests()[1][1], "name": "ward3.perfusion-node-with-a-rather-long-name-x",
                                     "id": "abcdefabcdefabcdefabcdefabcdefab"})
    adverts = []
    for name, manifest, address in (("a CLI tool on loopback, mesh without keyring", tool, "127.0.0.1"),
                                    ("a worker in a keyed mesh on a LAN interface", worker, "10.0.0.5"),
                                    ("a long name with dots", long_named, "10.0.0.5")):
        advert = _advert(manifest)
        port = int(manifest.control.rsplit(":", 1)[1])
        info = Discovery(address, print, print)._service_info(advert, port)
        packet = DNSOutgoing(0x8400)  # a response, authoritative: what zeroconf multicasts when it announces
        for record in announced(info):
            packet.add_answer_at_time(record, 0)
        adverts.append({"name": name, "address": address, "advert": dict(advert.properties()),
                        "instance": info.name, "host": info.server, "port": port,
                        "txt": [f"{k}={v}" for k, v in advert.properties().items()], "txt_rdata": info.text.hex(),
                        "records": _records(info), "announcement": b"".join(packet.packets()).hex()})
    first = bytes.fromhex(adverts[0]["txt_rdata"])
    hand_made = [
        ("what the first advert above sends", first),
        ("a key twice (the first counts), a key without '=' (empty), an unknown key (ignored)",
         b"".join(bytes([len(s)]) + s for s in (b"id=" + SENDER.hex().encode(), b"ctl=tcp://10.0.0.9:40001",
                                                 b"ctl=tcp://10.0.0.9:9", b"name=x", b"mesh", b"future=1"))),
        ("not UTF-8: replaced by U+FFFD", b"".join(bytes([len(s)]) + s for s in (
            b"id=" + SENDER.hex().encode(), b"name=caf\xe9", b"ctl=tcp://10.0.0.9:40001"))),
        ("no control endpoint: not an advert", b"".join(bytes([len(s)]) + s for s in (
            b"id=" + SENDER.hex().encode(), b"name=x"))),
    ]
    parsing = []
    for name, rdata in hand_made:
        info = ServiceInfo(SERVICE_TYPE, f"x-0123456789ab.{SERVICE_TYPE}", properties=rdata)
        advert = Advert.from_info(info)
        parsing.append({"name": name, "txt_rdata": rdata.hex(),
                        "advert": None if advert is None else dict(advert.__dict__)})
    limits = []
    for name, node_name in (("a TXT string of 255 bytes (name=, then 250 bytes): accepted", "x" * 250),
                            ("a TXT string of 256 bytes: refused", "x" * 251),
                            ("an instance label of 93 bytes (40 two-byte characters): refused", "ü" * 40)):
        advert = Advert(SENDER.hex(), node_name, "default", "1.1", "tcp://127.0.0.1:40001", "tcp://127.0.0.1:40002",
                        "", "0011223344556677")
        try:
            Discovery("127.0.0.1", print, print)._service_info(advert, 40001)
            error = None
        except Exception as exc:
            error = type(exc).__name__
        limits.append({"name": name, "node_name": node_name, "error": error})
    return {"service_type": SERVICE_TYPE, "adverts": adverts, "txt_parsing": parsing, "digests": _digests(),
            "limits": limits}


# --- control: HELLO, replays, the ready marker (docs/protocol.md) ----------------------------------------------

def _hello() -> dict:
    manifest = Manifest.from_dict(_manifests()[1][1])
    peer = Manifest.from_dict({**_manifests()[1][1], "id": "fedcba9876543210fedcba9876543210",
                               "endpoints": {"control": "tcp://10.0.0.6:40001"}, "key": KEYS["node-b"][0].decode()})
    recipient = Manifest.from_dict({**_manifests()[1][1], "id": "00112233445566778899aabbccddeeff",
                                    "endpoints": {"control": "tcp://10.0.0.7:40001"},
                                    "key": KEYS["node-c"][0].decode()})
    former = bytes.fromhex("0123456789abcdef0123456789abcd00")
    engine = SimpleNamespace(
        peers=[SimpleNamespace(manifest=peer), SimpleNamespace(manifest=recipient)], stream=SENDER,
        _streams={former: [2**64 - 1, 1764585600.0], SENDER: [2**53 + 1, 1764672000.25]},
        node=SimpleNamespace(manifest=lambda: manifest))
    text = ControlProtocol._hello_payload(engine).decode("ascii")
    return {"kind": "HELLO", "payload_text": text,
            "streams": {sid: {"last": str(info[0]), "started": info[1]}
                        for sid, info in json.loads(text, parse_int=str)["streams"].items()},
            "means": "node 0123...cdef (the manifest's digest is in digests[1] of discovery.json) knows two peers, "
                     "one of them the node it greets (00112233...: skip your own endpoint); it answers replays for its "
                     "own stream (last number 2^53+1, which a double cannot hold) and for a former one (last number "
                     "2^64-1)"}


def _replays() -> dict:
    """The journal of stream SENDER holds 6..10 (1..5 were removed by retention); REPLAY requests and the answers."""
    frames = {seq: bytes(Message("stored.instance", b"", index=b"", message_id=seq.to_bytes(16, "big"), sender=SENDER,
                                 seq=seq, timestamp_ns=1764672000000000000 + seq).to_bytes()) for seq in range(1, 11)}
    size = sum(4 + len(frames[seq]) for seq in range(6, 11))
    cases = [("the journal holds the whole range", 6, 8), ("the range starts before the journal", 3, 7),
             ("the whole range is older than the journal", 2, 4),
             ("the range ends after the last number journaled", 9, 12), ("... and asked again for the rest", 11, 12)]
    out = []
    outbox = Outbox(None, max_age=1e9, max_bytes=size)
    try:
        for seq in range(1, 11):
            outbox.append(SENDER, seq, frames[seq])
            if seq == 5:
                outbox.commit()
        outbox.prune()
        requests = [(name, SENDER.hex(), first, last) for name, first, last in cases]
        requests.append(("a stream this node does not hold", "fedcba9876543210fedcba9876543210", 1, 3))
        for name, stream, first, last in requests:
            out.append({"name": name, **_replay(outbox, stream, first, last)})
    finally:
        outbox.close()
    disabled = Outbox(None, max_age=1e9, max_bytes=size, enabled=False)
    try:
        out.append({"name": "a node that keeps no journal", **_replay(disabled, SENDER.hex(), 6, 8)})
    finally:
        disabled.close()
    return {"journal": {"stream": SENDER.hex(), "holds": [6, 10], "removed": [1, 5]}, "cases": out}


def _replay(outbox: Outbox, stream: str, first: int, last: int) -> dict:
    sent: list[list[bytes]] = []
    engine = SimpleNamespace(outbox=outbox, control=SimpleNamespace(send_multipart=sent.append),
                             node=SimpleNamespace(_count=lambda *args: None))
    request = json.dumps({"stream": stream, "first": first, "last": last}).encode()
    DeliveryDuties._replay(engine, b"\x00peer", request)
    answers = []
    for frames in sent:
        if frames[1] == b"FRAME":
            msg = Message.from_bytes(bytes(frames[2]))
            answers.append({"kind": "FRAME", "seq": str(msg.seq), "flags": msg.flags})
        else:
            answers.append({"kind": frames[1].decode(), "payload_text": frames[2].decode()})
    return {"request_text": request.decode(), "answers": answers}


def _ready_marker() -> dict:
    node_id = SENDER.hex()
    return {"node_id": node_id, "subscription": (READY_MARKER + node_id.encode()).hex(),
            "subscribed": (b"\x01" + READY_MARKER + node_id.encode()).hex(),
            "withdrawn": (b"\x00" + READY_MARKER + node_id.encode()).hex()}


def vectors() -> dict[str, object]:
    return {"frames.json": {"frames": _frames(), "refused": _refused()}, "filters.json": _filters()[0],
            "control.json": {"messages": CONTROL, "hello": _hello(), "replays": _replays(),
                             "ready_marker": _ready_marker()},
            "discovery.json": _discovery(), "keyring.json": _keyring()}


def render(obj) -> str:
    return json.dumps(obj, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def main() -> int:
    for name, obj in vectors().items():
        (HERE / name).write_text(render(obj), encoding="utf-8")
        print(f"wrote {HERE / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
