"""The viewer node against a real DICOM receiver: DCMTK storescp (standing in for Horos/Weasis) in a network namespace.

storescp 3.6.7 binds every address, so it runs inside a namespace this test creates (tests/pacs_fixtures.NetNs),
reached from the root namespace over a veth pair of a private /30. It writes every instance to a file of its own
(``+uf``: a second copy of an instance would be a second file), so counts show duplicates.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from conftest import Proc, wait_until
from meshdcm import Message, Node
from meshdcm.synthetic import head_ct, write_study
from pacs_fixtures import NetNs, netns_available

STORESCP = "/usr/bin/storescp"  # DCMTK's, not pynetdicom's console script of the same name
VIEWER_PORT = 11112

pytestmark = pytest.mark.skipif(not os.path.exists(STORESCP) or netns_available() is not None,
                                reason=f"needs DCMTK ({STORESCP}) and network namespaces: "
                                       f"{netns_available() or 'apt-get install dcmtk'}")


class Viewer:
    """DCMTK storescp as the desktop viewer, inside a namespace of its own; started and stopped at will."""

    def __init__(self, tmp: Path):
        self.ns = NetNs.create()
        self.folder = tmp / "viewer-received"
        self.folder.mkdir()
        self.tmp = tmp
        self.proc: Proc | None = None

    def start(self) -> None:
        argv = [STORESCP, "-aet", "VIEWER", "+xa", "+uf", "-od", str(self.folder), str(VIEWER_PORT)]
        self.proc = Proc(argv, dict(os.environ), self.tmp / "storescp.log", netns=self.ns.name)

        def listening():
            with socket.socket() as s:
                s.settimeout(1)
                return s.connect_ex((self.ns.ns_ip, VIEWER_PORT)) == 0
        wait_until(listening, 10, 0.05, "storescp to listen")

    def files(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if p.is_file())

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stop()
        self.ns.destroy()


@pytest.fixture
def viewer(tmp_path):
    v = Viewer(tmp_path)
    yield v
    v.close()


class Client:
    """An in-test node: asks, serves derived series, and keeps what comes back."""

    def __init__(self, mesh_name: str, served: Path):
        self.node = Node("client", mesh=mesh_name)
        self.node.serve("derived", served)
        self.got: list[Message] = []
        self.lock = threading.Lock()
        for topic in ("found", "stored", "viewer", "error"):
            self.node.on(topic)(self._keep)
        self.node.start()

    def _keep(self, msg: Message) -> None:
        with self.lock:
            self.got.append(msg)

    def seen(self, topic: str) -> list[Message]:
        with self.lock:
            return [m for m in self.got if m.topic == topic]


def viewer_config(mesh, work: Path, ns: NetNs) -> Path:
    path = mesh.tmp / "viewer.toml"
    path.write_text(f'[nodes.viewer]\nwork = "{work}"\nretry_seconds = 0.3\nmax_retry_seconds = 1.0\n'
                    f'[nodes.viewer.viewers.desk]\nae_title = "VIEWER"\nhost = "{ns.ns_ip}"\nport = {VIEWER_PORT}\n')
    return path


def derived_copy(source: Path, dest: Path, description: str) -> tuple[str, dict[str, bytes]]:
    """A derived series made from ``source`` (new UIDs, DERIVED), as an analysis node would publish it."""
    dest.mkdir(parents=True)
    series_uid = generate_uid()
    pixels = {}
    for i, path in enumerate(sorted(source.glob("*.dcm"))):
        ds = dcmread(path)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.SeriesDescription = description
        ds.save_as(dest / f"{i:04d}.dcm", enforce_file_format=True)
        pixels[ds.SOPInstanceUID] = ds.PixelData
    return series_uid, pixels


def received(viewer: Viewer) -> dict[str, Dataset]:
    return {str(ds.SOPInstanceUID): ds for ds in (dcmread(p) for p in viewer.files())}


def sent_series(client: Client) -> dict[str, int]:
    out: dict[str, int] = {}
    for m in client.seen("viewer.sent"):
        out[m.meta["series"]] = out.get(m.meta["series"], 0) + m.meta["count"]
    return out


def publish_derived(client: Client, folder: Path, study: str, series: str, source_series: str, n: int) -> None:
    header = dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True)
    assert str(header.StudyInstanceUID) == study and str(header.SeriesInstanceUID) == series
    client.node.publish("stored.series", header, uris=[client.node.uri_for(folder)],  # meshdcm:// only: fetched
                        meta={"derived_from": source_series, "instances": n})


def test_open_study_sends_it_then_its_derived_series_even_after_a_restart(mesh, viewer, tmp_path):
    viewer.start()
    pacs_cfg = mesh.config("pacs", embedded=True, storage=str(tmp_path / "store"), quiet_seconds=2)
    pacs = mesh.start("node", "pacs", "--config", pacs_cfg)
    pacs.wait_for_output("embedded PACS", timeout=60)  # synthetic studies are made on first start
    cfg = viewer_config(mesh, tmp_path / "viewer-work", viewer.ns)
    node = mesh.start("node", "viewer", "--config", cfg)
    client = Client(mesh.name, tmp_path / "derived")
    try:
        wait_until(lambda: {"pacs", "viewer"} <= {p["kind"] for p in client.node.peers}, 15, what="pacs and viewer")
        assert client.node.wait_for_subscribers("open.study", 10) and client.node.wait_for_subscribers("find.studies", 10)
        query = Dataset()
        query.PatientName, query.StudyInstanceUID, query.ModalitiesInStudy = "MESH*", "", ""
        client.node.publish("find.studies", query)
        wait_until(lambda: client.seen("found.end"), 30, what="found.end")
        study = [str(m.dataset.StudyInstanceUID) for m in client.seen("found.study")
                 if "MR" in str(m.dataset.get("ModalitiesInStudy", ""))][0]

        opened = Dataset()
        opened.StudyInstanceUID = study
        client.node.publish("open.study", opened)  # not stored yet: the viewer node asks for it (get.study)
        wait_until(lambda: [m for m in client.seen("stored.study") if m.dataset.StudyInstanceUID == study], 120,
                   what="stored.study")
        series = {str(m.dataset.SeriesInstanceUID): m.meta["instances"] for m in client.seen("stored.series")}
        assert len(series) >= 4
        wait_until(lambda: sent_series(client) == series, 60, what="viewer.sent for every series")
        # every instance arrived once, with its pixel data intact
        stored = {p.stem: p for p in (tmp_path / "store" / study).rglob("*.dcm")}
        got = received(viewer)
        assert len(viewer.files()) == len(stored) == sum(series.values())
        assert set(got) == set(stored)
        for sop, path in stored.items():
            assert got[sop].PixelData == dcmread(path).PixelData
            assert got[sop].file_meta.TransferSyntaxUID == dcmread(path).file_meta.TransferSyntaxUID

        # a derived series of the study appears later: it is forwarded (fetched over the mesh)
        source = next(iter(series))
        derived, pixels = derived_copy(tmp_path / "store" / study / source, tmp_path / "derived" / "a", "map A")
        publish_derived(client, tmp_path / "derived" / "a", study, derived, source, len(pixels))
        wait_until(lambda: derived in sent_series(client), 30, what="viewer.sent for the derived series")
        got = received(viewer)
        assert all(got[sop].PixelData == px for sop, px in pixels.items())
        # announced again: not sent again
        publish_derived(client, tmp_path / "derived" / "a", study, derived, source, len(pixels))
        node.wait_for_output(f"series {derived} already sent to viewer desk", 20)
        assert len(viewer.files()) == len(stored) + len(pixels)

        # the viewer node restarts: the open study is remembered, its next derived series still forwarded
        node.stop()
        node = mesh.start("node", "viewer", "--config", cfg)
        wait_until(lambda: len([p for p in client.node.peers if p["kind"] == "viewer"]) == 1, 15, what="new viewer")
        assert client.node.wait_for_subscribers("stored.series", 10)
        later, pixels_b = derived_copy(tmp_path / "store" / study / source, tmp_path / "derived" / "b", "map B")
        publish_derived(client, tmp_path / "derived" / "b", study, later, source, len(pixels_b))
        wait_until(lambda: later in sent_series(client), 30, what="viewer.sent after the restart")
        assert len(viewer.files()) == len(stored) + len(pixels) + len(pixels_b)
        assert not client.seen("error.viewer")
        assert "MESHDCM^TEST" not in node.output + pacs.output  # no patient name in the logs
    finally:
        client.node.stop()


def test_a_viewer_that_is_down_gives_an_error_then_gets_the_study_once_up(mesh, viewer, tmp_path):
    paths = write_study(head_ct(seed=3, size="small"), tmp_path / "ct")
    series_dir = paths[0].parent
    header = dcmread(paths[0], stop_before_pixels=True)
    study, series = str(header.StudyInstanceUID), str(header.SeriesInstanceUID)
    node = mesh.start("node", "viewer", "--config", viewer_config(mesh, tmp_path / "viewer-work", viewer.ns))
    client = Client(mesh.name, series_dir)
    try:
        wait_until(lambda: any(p["kind"] == "viewer" for p in client.node.peers), 15, what="the viewer node")
        assert client.node.wait_for_subscribers("open.study", 10)
        # bad requests: clear errors, the node keeps running
        client.node.publish("open.study", Dataset())
        unknown = Dataset()
        unknown.StudyInstanceUID = study
        client.node.publish("open.study", unknown, meta={"viewer": "nowhere"})
        wait_until(lambda: len(client.seen("error.viewer")) >= 2, 15, what="two error events")
        reasons = " | ".join(m.meta["error"]["reason"] + " / " + m.meta["error"]["action"]
                             for m in client.seen("error.viewer"))
        assert "names no StudyInstanceUID" in reasons and "no viewer called 'nowhere'" in reasons
        assert "use one of: desk" in reasons

        # a node holds the series (here: the client, over meshdcm://); the study is opened while the viewer is down
        client.node.publish("stored.series", header, uris=[client.node.uri_for(series_dir)],
                            meta={"instances": len(paths)})
        opened = Dataset()
        opened.StudyInstanceUID = study
        client.node.publish("open.study", opened, meta={"viewer": "desk"})

        def down_error():
            return [m for m in client.seen("error.viewer") if m.meta["error"].get("viewer") == "desk"]
        err = wait_until(down_error, 30, what="an error event for the viewer that is down")[0]
        assert err.dataset.StudyInstanceUID == study and err.dataset.SeriesInstanceUID == series
        assert f"start viewer desk (VIEWER at {viewer.ns.ns_ip}:{VIEWER_PORT})" in err.meta["error"]["action"]
        assert "resumes by itself" in err.meta["error"]["action"]
        assert not client.seen("viewer.sent")

        viewer.start()  # the viewer comes up: the retry succeeds
        wait_until(lambda: sent_series(client).get(series) == len(paths), 30, what="viewer.sent once it is up")
        got = received(viewer)
        assert len(got) == len(paths) == len(viewer.files())
        for p in paths:
            ds = dcmread(p)
            assert got[str(ds.SOPInstanceUID)].PixelData == ds.PixelData
        assert node.popen.poll() is None
    finally:
        client.node.stop()
