"""The language-neutral test vectors in docs/vectors/ are what docs/vectors/make_vectors.py makes, and meshdcm reads
and writes them as they say: the contract another implementation (issue 21's JavaScript nodes) tests against."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import zmq
import zmq.auth
from meshdcm import MalformedMessage, Message, VersionError, codec
from meshdcm._delivery import DeliveryDuties
from meshdcm._sockets import READY_MARKER, EngineSockets
from meshdcm.discovery import SERVICE_TYPE, Advert, Discovery
from meshdcm.filters import parse
from meshdcm.journal import SEQ_MOD, Outbox
from meshdcm.keys import Keyring
from meshdcm.manifest import Manifest
from zeroconf import ServiceInfo
from zmq.auth.base import Authenticator
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

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
        assert str(flt) == case["canonical"], case  # the text a node advertises for the filter (its manifest)
        assert str(parse(case["canonical"])) == case["canonical"]
        for name, body in bodies.items():
            assert flt.evaluate(Message("stored.series", body).view.get) is case["matches"][name], (case, name)


# --- discovery.json ------------------------------------------------------------------------------------------------

#: TXT keys -> the Advert fields they carry
_TXT_FIELDS = {"id": "node_id", "name": "name", "mesh": "mesh", "v": "protocol", "ctl": "control", "pub": "events",
               "pull": "work", "digest": "digest", "key": "key"}


def _describe(record) -> dict:
    kind = record.type_label.upper()
    out = {"name": record.name, "type": kind, "class": "IN", "cache_flush": record.unique, "ttl": record.ttl}
    if kind == "PTR":
        out["alias"] = record.alias
    elif kind == "SRV":
        out.update(priority=record.priority, weight=record.weight, port=record.port, target=record.server)
    elif kind == "TXT":
        out["rdata"] = record.text.hex()
    elif kind == "A":
        out["address"] = ".".join(str(b) for b in record.address)
    elif kind == "NSEC":
        out.update(next_name=record.next_name, types=sorted(record.rdtypes))
    return out


@pytest.mark.parametrize("case", load("discovery.json")["adverts"], ids=lambda c: c["name"])
def test_an_advert_makes_its_dns_records(case):
    advert = Advert(**{_TXT_FIELDS[k]: v for k, v in case["advert"].items()})
    assert [f"{k}={v}" for k, v in advert.properties().items()] == case["txt"]
    info = Discovery(case["address"], print, print)._service_info(advert, case["port"])
    assert load("discovery.json")["service_type"] == SERVICE_TYPE == "_meshdcm._tcp.local."
    assert (info.name, info.server, info.port, info.text.hex()) == (case["instance"], case["host"], case["port"],
                                                                   case["txt_rdata"])
    records = [info.dns_pointer(), info.dns_service(), info.dns_text(),
               *sorted(info.get_address_and_nsec_records(), key=lambda r: r.type)]  # a set in zeroconf: A, then NSEC
    assert [_describe(r) for r in records] == case["records"]


@pytest.mark.parametrize("case", load("discovery.json")["txt_parsing"], ids=lambda c: c["name"])
def test_txt_records_read_as_adverts(case):
    info = ServiceInfo(SERVICE_TYPE, f"x-0123456789ab.{SERVICE_TYPE}", properties=bytes.fromhex(case["txt_rdata"]))
    advert = Advert.from_info(info)
    assert (None if advert is None else dict(advert.__dict__)) == case["advert"]


@pytest.mark.parametrize("case", load("discovery.json")["digests"], ids=lambda c: c["name"])
def test_manifest_digests(case):
    manifest = Manifest.from_dict(case["manifest"])
    assert manifest.to_json().decode("ascii") == case["canonical"]
    assert hashlib.sha256(case["canonical"].encode("ascii")).hexdigest() == case["sha256"]
    assert manifest.digest == case["digest"] == case["sha256"][:16]


@pytest.mark.parametrize("case", load("discovery.json")["limits"], ids=lambda c: c["name"])
def test_advert_size_limits(case):
    advert = Advert("0123456789abcdef0123456789abcdef", case["node_name"], "default", "1.1", "tcp://127.0.0.1:40001",
                    "tcp://127.0.0.1:40002", "", "0011223344556677")
    try:
        Discovery("127.0.0.1", print, print)._service_info(advert, 40001)
        error = None
    except Exception as exc:
        error = type(exc).__name__
    assert error == case["error"]


# --- keyring.json ----------------------------------------------------------------------------------------------------

def test_z85_and_key_pairs():
    data = load("keyring.json")
    for pair in data["z85"]:
        raw = bytes.fromhex(pair["raw"])
        assert z85.encode(raw).decode() == pair["z85"] and z85.decode(pair["z85"].encode()) == raw
    for pair in data["key_pairs"]:
        assert zmq.curve_public(pair["secret"].encode()).decode() == pair["public"]
        assert z85.decode(pair["secret"].encode()).hex() == pair["secret_raw"]
        assert z85.decode(pair["public"].encode()).hex() == pair["public_raw"]


@pytest.mark.parametrize("case", load("keyring.json")["certificates"], ids=lambda c: c["name"])
def test_certificates_read_as_keys(case, tmp_path):
    path = tmp_path / "cert.key"
    path.write_bytes(case["text"].encode("utf-8"))
    if "error" in case:
        with pytest.raises(ValueError):
            zmq.auth.load_certificate(path)
        return
    public, secret = zmq.auth.load_certificate(path)
    assert public.decode() == case["public"] and (secret.decode() if secret else None) == case["secret"]


def test_certificates_are_laid_out_as_pyzmq_writes_them(tmp_path):
    """The vectors' certificate texts are pyzmq's own, but for the date in the first comment line."""
    files = load("keyring.json")["keyring"]["files"]
    public_file, secret_file = zmq.auth.create_certificates(tmp_path, "made")
    public, secret = zmq.auth.load_certificate(secret_file)
    vector_public, vector_secret = zmq.auth.load_certificate(_write(tmp_path / "v.key_secret",
                                                                    files["secret/node-a.key_secret"]))
    pairs = ((public_file, files["authorized/node-a.key"]), (secret_file, files["secret/node-a.key_secret"]))
    for made, vector in pairs:
        expected = vector.replace(vector_public.decode(), public.decode())
        expected = expected.replace(vector_secret.decode(), secret.decode())
        made_lines, expected_lines = Path(made).read_text(encoding="utf-8").split("\n"), expected.split("\n")
        assert made_lines[0].startswith("#   ****  Generated on ") and made_lines[1:] == expected_lines[1:]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _keyring_from_vector(folder: Path) -> Keyring:
    ring = load("keyring.json")["keyring"]
    for rel, text in ring["files"].items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        _write(folder / rel, text)
    for rel, mode in ring["modes"].items():
        (folder / rel).chmod(int(mode, 8))
    return Keyring(folder)


def test_a_keyring_folder_reads_as_its_keys(tmp_path):
    ring = load("keyring.json")["keyring"]
    keyring = _keyring_from_vector(tmp_path)
    assert sorted(k.decode() for k in keyring.authorized_keys()) == ring["authorized"]
    assert keyring.list() == ring["list"]
    own = keyring.node_keys(None)
    assert {"name": own.name, "public": own.public.decode(), "secret": own.secret.decode()} == ring["own_key"]
    authorized = keyring.authorized_keys()
    for case in load("keyring.json")["trust"]:
        engine = SimpleNamespace(node=SimpleNamespace(keys=own), _authorized=authorized)
        assert EngineSockets._trusted(engine, case["key"]) is case["trusted"], case


@pytest.mark.parametrize("case", load("keyring.json")["zap"], ids=lambda c: c["name"])
def test_zap_answers(case, tmp_path):
    """The ZAP handler meshdcm runs (zmq.auth, configured on authorized/ for every domain) gets the client's key as
    32 raw bytes and compares its Z85 text with the certificates'."""
    keyring = _keyring_from_vector(tmp_path)
    replies = []
    auth = Authenticator(zmq.Context.instance())
    auth.configure_curve(domain="*", location=str(keyring.authorized_dir))
    auth.zap_socket = SimpleNamespace(send_multipart=replies.append)
    request = [bytes.fromhex(frame) for frame in case["request"]]
    assert request[-1] == z85.decode(case["client_key"].encode())
    result = auth.handle_zap_message(request)
    if asyncio.iscoroutine(result):
        asyncio.run(result)
    assert [frame.hex() for frame in replies[0]] == case["reply"]


def test_a_curve_client_socket_takes_the_server_key_per_connection(tmp_path):
    """docs/security.md: one SUB (or PUSH) connects to several CURVE servers, each with its own key, by setting
    CURVE_SERVERKEY before each connect; a connection to a server whose key is not the one set fails, and ZAP
    refuses a client whose key is not in authorized/."""
    keys = {pair["name"]: (pair["public"].encode(), pair["secret"].encode())
            for pair in load("keyring.json")["key_pairs"]}
    keyring = _keyring_from_vector(tmp_path)
    servers_ctx, clients_ctx = zmq.Context(), zmq.Context()
    auth = ThreadAuthenticator(servers_ctx)
    auth.start()
    auth.configure_curve(domain="*", location=str(keyring.authorized_dir))
    sockets = []
    try:
        servers = {}
        for name in ("node-b", "node-c", "node-a"):
            pub = servers_ctx.socket(zmq.PUB)
            pub.curve_publickey, pub.curve_secretkey = keys[name]
            pub.curve_server = True
            servers[name] = (pub, pub.bind_to_random_port("tcp://127.0.0.1"))
            sockets.append(pub)

        def client(name: str) -> zmq.Socket:
            sub = clients_ctx.socket(zmq.SUB)
            sub.curve_publickey, sub.curve_secretkey = keys[name]
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            sockets.append(sub)
            return sub

        sub = client("node-a")
        for server, expected in (("node-b", "node-b"), ("node-c", "node-c"), ("node-a", "node-b")):  # the last: wrong
            sub.curve_serverkey = keys[expected][0]
            sub.connect(f"tcp://127.0.0.1:{servers[server][1]}")
        rogue = client("rogue")
        rogue.curve_serverkey = keys["node-b"][0]
        rogue.connect(f"tcp://127.0.0.1:{servers['node-b'][1]}")
        heard: set[bytes] = set()
        heard_by_rogue: set[bytes] = set()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and heard != {b"node-b", b"node-c"}:
            for name, (pub, _) in servers.items():
                pub.send(name.encode())
            for sock, into in ((sub, heard), (rogue, heard_by_rogue)):
                while sock.poll(20):
                    into.add(sock.recv())
        for _ in range(10):  # a little longer: nothing more may arrive
            for name, (pub, _) in servers.items():
                pub.send(name.encode())
            for sock, into in ((sub, heard), (rogue, heard_by_rogue)):
                while sock.poll(20):
                    into.add(sock.recv())
        assert heard == {b"node-b", b"node-c"}, "node-a's server key was not the one set: its connection must fail"
        assert heard_by_rogue == set(), "ZAP must refuse a key that is not in authorized/"
    finally:
        for sock in sockets:
            sock.close(linger=0)
        auth.stop()
        servers_ctx.term()
        clients_ctx.term()


# --- control.json: HELLO, replays, the ready marker ------------------------------------------------------------------

def test_hello_payload_and_its_big_numbers():
    hello = load("control.json")["hello"]
    payload = json.loads(hello["payload_text"])
    manifest = Manifest.from_dict(payload["manifest"])
    assert manifest.digest == load("discovery.json")["digests"][1]["digest"]
    own = manifest.node_id
    assert list(payload["streams"])[0] == own  # the sender's own stream first
    for sid, info in payload["streams"].items():  # read as meshdcm reads them (_met_streams)
        assert len(bytes.fromhex(sid)) == 16
        meaning = hello["streams"][sid]
        assert str(int(info[0]) % SEQ_MOD) == meaning["last"] and float(info[1]) == meaning["started"]
    assert max(int(info[0]) for info in payload["streams"].values()) == 2**64 - 1
    assert all(set(entry) == {"control", "key"} for entry in payload["peers"])


def _frame(seq: int) -> bytes:
    return bytes(Message("stored.instance", b"", index=b"", message_id=seq.to_bytes(16, "big"),
                         sender=bytes(16), seq=seq, timestamp_ns=seq).to_bytes())


def _answers(outbox: Outbox, request_text: str) -> list[dict]:
    sent = []
    engine = SimpleNamespace(outbox=outbox, control=SimpleNamespace(send_multipart=sent.append),
                             node=SimpleNamespace(_count=lambda *args: None))
    DeliveryDuties._replay(engine, b"\x00peer", request_text.encode())
    out = []
    for frames in sent:
        if frames[1] == b"FRAME":
            msg = Message.from_bytes(bytes(frames[2]))
            out.append({"kind": "FRAME", "seq": str(msg.seq), "flags": msg.flags})
        else:
            out.append({"kind": frames[1].decode(), "payload_text": frames[2].decode()})
    return out


def test_replay_answers():
    """The journal the vectors describe (frames 1..10 of one stream, 1..5 removed by retention) gives the answers they
    list: FRAMEs flagged replayed, then REPLAYED with ``oldest``."""
    data = load("control.json")["replays"]
    stream = bytes.fromhex(data["journal"]["stream"])
    first_kept, last_kept = data["journal"]["holds"]
    removed_to = data["journal"]["removed"][1]
    frames = {seq: _frame(seq) for seq in range(1, last_kept + 1)}
    outbox = Outbox(None, max_age=1e9, max_bytes=sum(4 + len(frames[s]) for s in range(first_kept, last_kept + 1)))
    disabled = Outbox(None, max_age=1e9, max_bytes=1, enabled=False)
    try:
        for seq, frame in frames.items():
            outbox.append(stream, seq, frame)
            if seq == removed_to:
                outbox.commit()
        outbox.prune()
        for case in data["cases"]:
            journal = disabled if json.loads(case["answers"][-1]["payload_text"])["journal"] is False else outbox
            assert _answers(journal, case["request_text"]) == case["answers"], case["name"]
    finally:
        outbox.close()
        disabled.close()


def test_ready_marker_bytes():
    marker = load("control.json")["ready_marker"]
    node_id = marker["node_id"]
    assert bytes.fromhex(marker["subscription"]) == READY_MARKER + node_id.encode() == b"\xffready." + node_id.encode()
    assert bytes.fromhex(marker["subscribed"]) == b"\x01" + READY_MARKER + node_id.encode()
    assert bytes.fromhex(marker["withdrawn"]) == b"\x00" + READY_MARKER + node_id.encode()
