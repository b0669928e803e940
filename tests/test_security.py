"""Mesh security: CURVE keys, rogue nodes, safe defaults, and no patient data in logs."""

from __future__ import annotations

import json
import uuid

import pytest
import zmq
from pydicom.dataset import Dataset

import netns
from conftest import read_records, wait_until
from meshdcm import ConfigError, Message, Node
from meshdcm.keys import Keyring

PATIENT_NAME = "Zzyzx^Quintessa-Testpatient"
PATIENT_ID = "PID-7741-SECRET"
PATIENT_BIRTH = "19311111"


@pytest.fixture
def keyring(tmp_path):
    ring = Keyring(tmp_path / "keyring")
    ring.init()
    for name in ("alpha", "beta", "gamma"):
        ring.add(name)
    return ring


def study(uid="1.2.3.4") -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = PATIENT_BIRTH
    ds.Modality = "MR"
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = uid
    return ds


def test_keyed_nodes_talk_and_a_rogue_can_neither_listen_nor_inject(keyring, tmp_path):
    mesh = f"sec-{uuid.uuid4().hex[:8]}"
    got = []
    alpha = Node("alpha", mesh=mesh, discovery=False, keyring=str(keyring.path), key="alpha", group="g")
    alpha.on("stored")(got.append)
    with alpha:
        beta = Node("beta", mesh=mesh, discovery=False, keyring=str(keyring.path), key="beta",
                    peers=(f"alpha@{alpha.endpoints['control']}",))
        with beta:
            assert beta.wait_for_peers(1, 10)
            assert [p["name"] for p in beta.peers] == ["alpha"]
            beta.publish("stored.series", study("1.1"))
            wait_until(lambda: got, 10, what="the keyed message")

            # a rogue node with a keyring of its own: HELLO is refused at the CURVE/ZAP handshake
            rogue_ring = Keyring(tmp_path / "rogue")
            rogue_ring.init()
            rogue_ring.add("rogue")
            rogue_ring.authorize("alpha", keyring.authorized_dir / "alpha.key")  # it even knows alpha's public key
            with Node("rogue", mesh=mesh, discovery=False, keyring=str(rogue_ring.path), key="rogue",
                      peers=(f"alpha@{alpha.endpoints['control']}",)) as rogue:
                assert not rogue.wait_for_peers(1, 2), "the rogue must not be admitted"

            # raw ZeroMQ, with and without CURVE, straight at alpha's sockets: nothing gets in or out
            ctx = zmq.Context()
            spy = ctx.socket(zmq.SUB)
            spy.subscribe(b"")
            spy.connect(beta.endpoints["events"])  # plain, no CURVE
            pub_key, sec_key = zmq.curve_keypair()
            spy2 = ctx.socket(zmq.SUB)
            spy2.curve_publickey, spy2.curve_secretkey = pub_key, sec_key
            spy2.curve_serverkey = beta.keys.public  # CURVE with an unauthorized key
            spy2.subscribe(b"")
            spy2.connect(beta.endpoints["events"])
            injector = ctx.socket(zmq.PUSH)
            injector.curve_publickey, injector.curve_secretkey = pub_key, sec_key
            injector.curve_serverkey = alpha.keys.public
            injector.setsockopt(zmq.SNDTIMEO, 0)
            injector.connect(alpha.endpoints["work"])
            forged = Message("stored.series", study("6.6.6")).to_bytes()
            try:
                injector.send(forged)
            except zmq.Again:
                pass  # not even queued: no connection was ever admitted
            for i in range(20):
                beta.publish("stored.series", study(f"2.{i}"))
            wait_until(lambda: len(got) == 21, 10, what="the keyed messages")
            for spy_socket in (spy, spy2):
                assert spy_socket.poll(500) == 0, "an unauthorized subscriber received a message"
            assert all(m.get("SeriesInstanceUID") != "6.6.6" for m in got), "a forged message was accepted"
            ctx.destroy(linger=0)


def test_revoked_key_is_refused_for_new_connections(keyring):
    mesh = f"sec-{uuid.uuid4().hex[:8]}"
    with Node("alpha", mesh=mesh, discovery=False, keyring=str(keyring.path), key="alpha") as alpha:
        keyring.revoke("gamma")
        # gamma still has its secret, but its public key is no longer authorized
        with pytest.raises(ConfigError, match="not authorized"):
            Node("gamma", mesh=mesh, discovery=False, keyring=str(keyring.path), key="gamma")
        # a copy of the keyring from before the revocation does not help either
        old = Keyring(keyring.path.parent / "old")
        old.init()
        old.authorize("gamma", keyring.revoked_dir / "gamma.key")
        old.authorize("alpha", keyring.authorized_dir / "alpha.key")
        (old.secret_dir / "gamma.key_secret").write_bytes((keyring.secret_dir / "gamma.key_secret").read_bytes())
        import zmq.auth
        gamma_public = zmq.auth.load_certificate(keyring.revoked_dir / "gamma.key")[0]
        # alpha re-reads its keyring once a second: wait until it has dropped gamma's key
        wait_until(lambda: gamma_public not in alpha._engine._authorized, 5, what="alpha to re-read its keyring")
        with Node("gamma", mesh=mesh, discovery=False, keyring=str(old.path), key="gamma",
                  peers=(f"alpha@{alpha.endpoints['control']}",)) as gamma:
            assert not gamma.wait_for_peers(1, 2)


def test_lan_interface_without_key_is_refused_unless_insecure(mesh):
    result = mesh.run("node", "monitor", "--interface", "10.255.255.1", "--no-discovery", check=False, timeout=30)
    assert result.returncode == 2
    assert "without a mesh key" in result.stderr and "--insecure" in result.stderr and "keys init" in result.stderr


def test_default_binds_loopback_only():
    with Node("lo", discovery=False) as node:
        for endpoint in node.endpoints.values():
            assert not endpoint or endpoint.startswith("tcp://127.0.0.1:")


LAN = netns.available()


@pytest.mark.netns
@pytest.mark.skipif(LAN is not None, reason=f"no network namespaces: {LAN}")
def test_rogue_host_on_the_lan_is_ignored(mesh, keyring, tmp_path):
    lan = netns.Lan(hosts=3)
    try:
        h1, h2, h3 = lan.hosts
        rogue_ring = Keyring(tmp_path / "rogue")
        rogue_ring.init()
        rogue_ring.add("rogue")
        out = tmp_path / "rec.txt"
        rec = mesh.node("recorder", "--interface", "eth0", "--keyring", keyring.path, "--key", "alpha",
                        out=str(out), topic="stored", netns=h1)
        rec.wait_for_output("started on 10.77.0.1")
        # the rogue's tail hears nothing; its advert is ignored by the keyed node with a warning
        spy = mesh.start("tail", "--interface", "eth0", "--keyring", rogue_ring.path, "--timeout", "6", "--count", "2",
                         netns=h3)
        spy.wait_for_output("# tail")
        rec.wait_for_output("its key is not in this mesh's keyring", timeout=10)
        # the rogue cannot inject
        mesh.run("publish", "stored.series", "--set", "Modality=MR", "--set", "SeriesInstanceUID=6.6.6",
                 "--interface", "eth0", "--keyring", rogue_ring.path, "--wait", "1.5", netns=h3)
        # an authorized node on another host can
        mesh.run("publish", "stored.series", "--set", "Modality=MR", "--set", "SeriesInstanceUID=1.1.1",
                 "--interface", "eth0", "--keyring", keyring.path, "--key", "beta", netns=h2)
        rows = wait_until(lambda: [r for r in read_records(out) if r[0] != "#"], 10, what="the authorized message")
        assert [r[2] for r in rows] == ["1.1.1"]
        assert spy.popen.wait(timeout=15) == 1, "the rogue's tail must not get the mesh's message"
        assert "1.1.1" not in spy.output  # it heard only its fellow rogue (same rogue keyring): 6.6.6
        assert "SeriesInstanceUID=6.6.6" in spy.output
    finally:
        lan.close()


def test_patient_data_never_reaches_the_logs(mesh, tmp_path):
    """A whole exchange with a known test patient, a failing handler included, at the default (INFO) level:
    the patient's name, ID and birth date appear in no log line of any process."""
    out = tmp_path / "rec.txt"
    procs = [
        mesh.node("recorder", out=str(out), topic="stored", fail_when='SeriesDescription == "broken"'),
        mesh.start("node", "monitor"),
        mesh.start("tail", "--count", "3", "--timeout", "30"),
        mesh.start("tail", "--json", "--count", "3", "--timeout", "30"),
    ]
    for p in procs[:2]:
        p.wait_for_output("started on")
    for p in procs[2:]:
        p.wait_for_output("# tail")
    folder = tmp_path / "files"
    folder.mkdir()
    for i, description in enumerate(("broken", "fine")):
        ds = study(f"1.2.3.{i}")
        ds.SeriesDescription = description
        from pydicom.dataset import FileMetaDataset
        from pydicom.uid import ExplicitVRLittleEndian, generate_uid
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.save_as(folder / f"{i}.dcm", enforce_file_format=True)
    published = mesh.run("publish", "stored.series", folder, "--log-level", "INFO")
    procs[1].wait_for_output("error #1")
    for p in procs[2:]:
        p.popen.wait(timeout=30)
    texts = [p.output for p in procs] + [published.stdout, published.stderr]
    peers = mesh.run("peers", "--json", "--log-level", "INFO")
    texts += [peers.stdout, peers.stderr]
    lines = [line for text in texts for line in text.splitlines()]
    assert len(lines) > 20, "the exchange produced logs"
    for secret in (PATIENT_NAME, PATIENT_NAME.split("^")[0], PATIENT_ID, PATIENT_BIRTH):
        leaks = [line for line in lines if secret in line]
        assert not leaks, f"{secret!r} leaked: {leaks[:3]}"
    assert json.loads([t for t in procs[3].output.splitlines() if t.startswith("{")][0])["uids"]["series"]


def test_state_holding_patient_data_is_its_owners_only(mesh, tmp_path):
    """Index, journal, receive state, dead letters: folders 0700, files 0600 (they were 0644, readable by anyone)."""
    import json as _json
    import os as _os
    import signal as _signal
    import stat

    from conftest import wait_until
    from meshdcm.config import data_dir

    state = tmp_path / "state"
    up = mesh.start("up", "index", "monitor", "--state", state, "--mesh", mesh.name)
    up.wait_for_output("stop with Ctrl-C", timeout=60)
    wait_until(lambda: "index" in {p["kind"] for p in _json.loads(mesh.run("peers", "--json").stdout)}, 60,
               interval=0.5, what="the index node")
    mesh.run("publish", "stored.series", "--set", "PatientName=Private^Person", "--set", "Modality=MR",
             "--set", "StudyInstanceUID=1.2.826.0.1.3680043.10.1.99", "--set", "SeriesInstanceUID=1.2.826.0.1.3680043.10.1.99.1")
    index_db = state / "index.sqlite3"
    wait_until(lambda: b"Private" in b"".join(p.read_bytes() for p in state.glob("index.sqlite3*")), 60,
               interval=0.5, what="the index to hold the patient")
    delivery = data_dir("index") / f"mesh-{mesh.name}"
    assert (delivery / "outbox.sqlite").exists() and index_db.exists()
    wide = []
    for root in (state, delivery):
        for path in [root, *root.rglob("*")]:
            mode = stat.S_IMODE(_os.stat(path).st_mode)
            if mode & 0o077:
                wide.append(f"{path} {oct(mode)}")
    assert not wide, "readable by others:\n" + "\n".join(wide)
    assert up.stop(_signal.SIGINT, timeout=30) == 0


def test_a_damaged_or_hidden_certificate_in_the_keyring_stops_no_node(keyring, tmp_path, caplog):
    """A file in authorized/ without a public key (a damaged copy) stopped a running node's engine at the keyring's
    re-read and kept nodes from starting; a hidden file (an editor's copy) was trusted by one reader and not by ZAP.
    Both are now skipped and named in the log, and the mesh goes on."""
    import logging

    mesh = f"sec-{uuid.uuid4().hex[:8]}"
    got = []
    alpha = Node("alpha", mesh=mesh, discovery=False, keyring=str(keyring.path), key="alpha")
    alpha.on("stored")(got.append)
    with alpha, caplog.at_level(logging.WARNING, logger="meshdcm"):
        (keyring.authorized_dir / "broken.key").write_text("metadata\ncurve\n")  # no public-key line
        rogue = Keyring(tmp_path / "rogue")
        rogue.init()
        rogue.add("sneaky")
        rogue.authorize("alpha", keyring.authorized_dir / "alpha.key")
        hidden = keyring.authorized_dir / ".sneaky.key"
        hidden.write_bytes((rogue.authorized_dir / "sneaky.key").read_bytes())
        wait_until(lambda: "broken.key" in caplog.text, 10, what="alpha to re-read its keyring and name the file")
        assert alpha._engine.is_alive(), "a damaged certificate stopped the engine"
        import zmq.auth
        sneaky_public = zmq.auth.load_certificate(hidden)[0]
        assert sneaky_public not in alpha._engine._authorized
        # a node starts with the damaged file there, and talks to alpha
        with Node("beta", mesh=mesh, discovery=False, keyring=str(keyring.path), key="beta",
                  peers=(f"alpha@{alpha.endpoints['control']}",)) as beta:
            assert beta.wait_for_peers(1, 10)
            beta.publish("stored.series", study("7.1"))
            wait_until(lambda: got, 10, what="a keyed message after the damaged file appeared")
        # the hidden certificate admits nobody (ZAP and adverts read the folder alike)
        with Node("sneaky", mesh=mesh, discovery=False, keyring=str(rogue.path), key="sneaky",
                  peers=(f"alpha@{alpha.endpoints['control']}",)) as sneaky:
            assert not sneaky.wait_for_peers(1, 2)
        said = [r for r in caplog.records if "broken.key" in r.getMessage() and r.threadName.endswith("-alpha")]
        assert len(said) == 1, "the damaged file was named at every re-read"
