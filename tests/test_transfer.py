"""Files between nodes over the control socket (meshdcm:// URIs), with and without CURVE keys."""

from __future__ import annotations

import json
import os
import uuid

import pytest
import zmq

from meshdcm import Node
from meshdcm.keys import Keyring
from meshdcm.transfer import TransferError


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "store"
    (root / "1.2.3" / "1.2.3.4").mkdir(parents=True)
    big = os.urandom(1_500_000)  # several chunks
    (root / "1.2.3" / "1.2.3.4" / "a.dcm").write_bytes(big)
    (root / "1.2.3" / "1.2.3.4" / "b.dcm").write_bytes(b"small")
    (root / "1.2.3" / "note.txt").write_text("x")
    (tmp_path / "outside.txt").write_text("secret")
    return root, big


def nodes(tmp_path, **kw):
    mesh = f"xfer-{uuid.uuid4().hex[:8]}"
    server = Node("server", mesh=mesh, discovery=False, **kw.get("server", {}))
    return mesh, server


def test_fetch_a_file_and_a_folder(tmp_path, store):
    root, big = store
    mesh, server = nodes(tmp_path)
    server.serve("store", root)
    with server, Node("client", mesh=mesh, discovery=False, peers=(server.endpoints["control"],)) as client:
        assert client.wait_for_peers(1, 10)
        uri = server.uri_for(root / "1.2.3" / "1.2.3.4" / "a.dcm")
        assert uri == f"meshdcm://{server.id}/store/1.2.3/1.2.3.4/a.dcm"
        [got] = client.fetch(uri, tmp_path / "in")
        assert got.read_bytes() == big
        files = client.fetch(server.uri_for(root / "1.2.3"), tmp_path / "series")
        assert sorted(p.relative_to(tmp_path / "series").as_posix() for p in files) == \
            ["1.2.3.4/a.dcm", "1.2.3.4/b.dcm", "note.txt"]
        assert (tmp_path / "series" / "1.2.3.4" / "a.dcm").read_bytes() == big
        # no way out of the served folder, and unknown roots are refused
        for bad in (f"meshdcm://{server.id}/store/../outside.txt", f"meshdcm://{server.id}/store/%2e%2e/outside.txt",
                    f"meshdcm://{server.id}/etc/passwd", f"meshdcm://{server.id}/store/nothing.dcm"):
            with pytest.raises(TransferError):
                client.fetch(bad, tmp_path / "bad")
        assert not (tmp_path / "bad" / "outside.txt").exists()
        with pytest.raises(TransferError, match="not in the mesh"):
            client.fetch(f"meshdcm://{uuid.uuid4().hex}/store/x", tmp_path / "x")
        assert client.fetch(str(root / "1.2.3" / "note.txt"), tmp_path)[0].read_text() == "x"  # plain paths in place


def test_only_authorized_nodes_can_fetch(tmp_path, store):
    root, big = store
    ring = Keyring(tmp_path / "keyring")
    ring.init()
    ring.add("server")
    ring.add("client")
    mesh = f"xfer-{uuid.uuid4().hex[:8]}"
    server = Node("server", mesh=mesh, discovery=False, keyring=str(ring.path), key="server")
    server.serve("store", root)
    with server:
        with Node("client", mesh=mesh, discovery=False, keyring=str(ring.path), key="client",
                  peers=(f"server@{server.endpoints['control']}",)) as client:
            assert client.wait_for_peers(1, 10)
            uri = server.uri_for(root / "1.2.3" / "1.2.3.4" / "a.dcm")
            assert client.fetch(uri, tmp_path / "ok")[0].read_bytes() == big
        # a raw DEALER without the mesh's key asks the control socket directly: no answer ever comes
        ctx = zmq.Context()
        rogue = ctx.socket(zmq.DEALER)
        pub, sec = zmq.curve_keypair()
        rogue.curve_publickey, rogue.curve_secretkey, rogue.curve_serverkey = pub, sec, server.keys.public
        rogue.connect(server.endpoints["control"])
        rogue.send_multipart([b"FETCH", json.dumps({"req": "r", "path": "store/1.2.3/1.2.3.4/a.dcm"}).encode()],
                             zmq.NOBLOCK) if rogue.poll(0, zmq.POLLOUT) else None
        assert rogue.poll(1000) == 0
        ctx.destroy(linger=0)


def test_a_uri_of_a_restarted_node_is_fetched_from_its_successor(tmp_path, store):
    """Replayed messages carry URIs naming the node id of the sender's former run: the node of the same name now in
    the mesh serves them (it failed with 'not in the mesh', and the message became a dead letter)."""
    from pydicom.dataset import Dataset

    from conftest import wait_until

    root, big = store
    mesh = f"xfer-{uuid.uuid4().hex[:8]}"
    got = []
    client = Node("client", mesh=mesh, discovery=False)
    client.on("stored.series")(got.append)
    with client:
        first = Node("server", mesh=mesh, discovery=False, peers=(client.endpoints["control"],))
        first.serve("store", root)
        with first:
            assert first.wait_for_peers(1, 10) and first.wait_for_subscribers("stored.series", 10)
            ds = Dataset()
            ds.SeriesInstanceUID = "1.2.3.4"
            first.publish("stored.series", ds, uris=[first.uri_for(root / "1.2.3" / "1.2.3.4" / "a.dcm")])
            wait_until(lambda: got, 10, what="the message")
        wait_until(lambda: not client.peers, 10, what="the first run to leave")
        second = Node("server", mesh=mesh, discovery=False, peers=(client.endpoints["control"],))
        second.serve("store", root)
        with second:
            assert second.id != first.id and client.wait_for_peers(1, 10)
            [path] = client.fetch(got[0].uris[0], tmp_path / "in")
            assert path.read_bytes() == big
        # once the client has heard the second run leave (until then the fetch is asked of it, and the answer is
        # "not reachable now": also true, but not the case this asserts)
        wait_until(lambda: not client.peers, 10, what="the second run to leave")
        with pytest.raises(TransferError, match=r"\(server\) that holds"):  # gone for good: named in the error
            client.fetch(got[0].uris[0], tmp_path / "again")
