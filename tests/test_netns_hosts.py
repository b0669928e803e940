"""Nodes on different "hosts" (network namespaces on one bridge) find each other by mDNS and exchange
messages; with multicast dropped at the switch, static --peer endpoints still work.

These meshes have no keyring, so every node needs --insecure on a LAN interface (tests/test_security.py runs
keyed meshes on the same kind of LAN)."""

from __future__ import annotations

import json
import shutil

import pytest

import netns
from conftest import read_records, wait_until
from ports import free_port

REASON = netns.available()
pytestmark = [pytest.mark.netns, pytest.mark.skipif(REASON is not None, reason=f"no network namespaces: {REASON}")]


@pytest.fixture
def lan():
    network = netns.Lan(hosts=3)
    yield network
    network.close()


def test_nodes_on_three_hosts_find_each_other_by_mdns(mesh, lan, tmp_path):
    h1, h2, h3 = lan.hosts
    out = tmp_path / "rec.txt"
    rec = mesh.node("recorder", "--interface", "eth0", "--insecure", out=str(out), topic="stored", where='Modality == "MR"',
                    netns=h1)
    monitor = mesh.start("node", "monitor", "--interface", lan.addresses[h2], "--insecure", netns=h2)
    rec.wait_for_output("started on 10.77.0.1")
    monitor.wait_for_output("started on 10.77.0.2")
    rec.wait_for_output("peer joined: monitor", timeout=10)
    peers = json.loads(mesh.run("peers", "--json", "--wait", "2", "--interface", "eth0", "--insecure", netns=h3).stdout)
    by_kind = {p["kind"]: p for p in peers}
    assert by_kind["recorder"]["endpoints"]["control"].startswith("tcp://10.77.0.1:")
    assert by_kind["monitor"]["endpoints"]["control"].startswith("tcp://10.77.0.2:")
    mesh.run("publish", "stored.series", "--set", "Modality=MR", "--set", "SeriesInstanceUID=1.2.3.4",
             "--interface", "eth0", "--insecure", netns=h3)
    mesh.run("publish", "stored.series", "--set", "Modality=CT", "--set", "SeriesInstanceUID=1.2.3.5",
             "--interface", "eth0", "--insecure", netns=h3)
    rows = wait_until(lambda: [r for r in read_records(out) if r[0] != "#"], 10, what="the MR message on host 1")
    assert [r[2] for r in rows] == ["1.2.3.4"]


def test_static_peers_work_where_multicast_is_blocked(mesh, lan, tmp_path):
    if shutil.which("nft") is None:
        pytest.skip("nftables (nft) is not installed: cannot block multicast")
    h1, h2, h3 = lan.hosts
    lan.block_multicast_dns()
    port = free_port()
    out = tmp_path / "rec.txt"
    rec = mesh.node("recorder", "--interface", "eth0", "--insecure", "--port", str(port), out=str(out), topic="stored", netns=h1)
    rec.wait_for_output("started on 10.77.0.1")
    # mDNS is dropped: a node on another host finds nobody ...
    lonely = json.loads(mesh.run("peers", "--json", "--wait", "1.5", "--interface", "eth0", "--insecure", netns=h2).stdout)
    assert lonely == []
    # ... but with the recorder's control endpoint as a static peer, it joins and publishes
    seed = f"tcp://{lan.addresses[h1]}:{port}"
    peers = json.loads(mesh.run("peers", "--json", "--wait", "1.5", "--interface", "eth0", "--insecure", "--peer", seed,
                                netns=h2).stdout)
    assert [p["kind"] for p in peers] == ["recorder"]
    mesh.run("publish", "stored.series", "--set", "Modality=MR", "--set", "SeriesInstanceUID=9.8.7",
             "--interface", "eth0", "--insecure", "--peer", seed, netns=h3)
    rows = wait_until(lambda: [r for r in read_records(out) if r[0] != "#"], 10, what="the message on host 1")
    assert [r[2] for r in rows] == ["9.8.7"]
