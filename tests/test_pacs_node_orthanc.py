"""The pacs node against a real Orthanc (in a network namespace): C-MOVE into the node's storage SCP, WADO-RS,
results uploaded back by C-STORE, and a PACS that is down."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from conftest import wait_until
from meshdcm import Node, synthetic
from pacs_fixtures import orthanc  # noqa: F401
from test_pacs_node import Client, study_query


def _pacs_config(tmp_path, orthanc, options: str = "", servers: str = "") -> Path:  # noqa: F811
    """A pacs node's configuration: its store and storage SCP, Orthanc as ``orthanc`` (C-MOVE), then ``options``
    (more ``[nodes.pacs]`` lines) and ``servers`` (more PACS tables)."""
    cfg = tmp_path / "pacs.toml"
    cfg.write_text(f"""
[nodes.pacs]
storage = {json.dumps(str(tmp_path / "store"))}
scp_host = "{orthanc.ns.host_ip}"
scp_port = {orthanc.scp_port}
{options}[nodes.pacs.servers.orthanc]
ae_title = "ORTHANC"
host = "{orthanc.ns.ns_ip}"
port = {orthanc.dicom_port}
retrieve = "move"
{servers}""")
    return cfg


def test_pacs_node_with_orthanc(mesh, orthanc, tmp_path):  # noqa: F811
    files = synthetic.write_study(synthetic.mr_brain(seed=77, size="small", series=("t1", "t2")), tmp_path / "src")
    orthanc.upload(files)
    study_uid = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    cfg = _pacs_config(tmp_path, orthanc, servers=f"""[nodes.pacs.servers.orthanc-web]
ae_title = "ORTHANC"
host = "{orthanc.ns.ns_ip}"
port = {orthanc.dicom_port}
retrieve = "wado"
dicomweb_url = "{orthanc.dicomweb_url}"
[nodes.pacs.servers.down]
ae_title = "NOBODY"
host = "127.0.0.1"
port = 9
retries = 1
timeout = 2
""")
    proc = mesh.start("node", "pacs", "--config", cfg)
    proc.wait_for_output("storage SCP")
    client = Client(mesh.name)
    results = tmp_path / "results"
    client.node.serve("results", results)
    with client.node:
        assert client.node.wait_for_subscribers("find.studies", 10)
        proc.wait_for_output("C-ECHO to PACS down failed", timeout=30)  # reported at start, node still up

        found = client.ask("find.studies", study_query(StudyInstanceUID=study_uid), "found.end",
                           meta={"pacs": "orthanc"})
        assert [m.dataset.StudyInstanceUID for m in found if m.topic == "found.study"] == [study_uid]

        for pacs in ("orthanc", "orthanc-web"):  # C-MOVE into the node's SCP, then WADO-RS
            get = Dataset()
            get.StudyInstanceUID = study_uid
            replies = client.ask("get.study", get, "stored.study", timeout=120, meta={"pacs": pacs})
            study = [m for m in replies if m.topic == "stored.study"][0]
            assert study.meta["complete"] is True and study.meta["instances"] == len(files), (pacs, study.meta)
            assert not [m for m in replies if m.topic.startswith("error.")]

        # a derived series made on another node, uploaded by the pacs node, found in Orthanc
        derived_uid = generate_uid()
        results.mkdir()
        for i, f in enumerate(files[:3]):
            ds = dcmread(f)
            ds.SeriesInstanceUID = derived_uid
            ds.SOPInstanceUID = generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.SeriesDescription = "CBF [meshdcm]"
            ds.save_as(results / f"{i}.dcm")
        request = Dataset()
        request.StudyInstanceUID = study_uid
        request.SeriesInstanceUID = derived_uid
        replies = client.ask("store.series", request, "uploaded.series", uris=[client.node.uri_for(results)],
                             meta={"pacs": "orthanc"})
        assert [m.meta["count"] for m in replies if m.topic == "uploaded.series"] == [3]
        assert orthanc.rest("/tools/lookup", "POST", derived_uid.encode())[0]["Type"] == "Series"

        # an analysis node's result (a derived stored.series) is archived without being asked, into the first PACS;
        # the fetched copies are not left in the node's store
        archived_uid = generate_uid()
        maps = tmp_path / "results-2"
        maps.mkdir()
        client.node.serve("maps", maps)
        for i, f in enumerate(files[:2]):
            ds = dcmread(f)
            ds.SeriesInstanceUID, ds.SOPInstanceUID = archived_uid, generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.ImageType = ["DERIVED", "SECONDARY", "CBF"]
            ds.save_as(maps / f"{i}.dcm")
        header = dcmread(maps / "0.dcm", stop_before_pixels=True)
        replies = client.ask("stored.series", header, "uploaded.series", uris=[client.node.uri_for(maps)],
                             meta={"derived_from": str(dcmread(files[0]).SeriesInstanceUID), "instances": 2})
        [uploaded] = [m for m in replies if m.topic == "uploaded.series"]
        assert uploaded.meta["pacs"] == "orthanc" and uploaded.meta["count"] == 2 and uploaded.meta["derived_from"]
        assert orthanc.rest("/tools/lookup", "POST", archived_uid.encode())[0]["Type"] == "Series"
        assert not list((tmp_path / "store").glob("upload-*"))
        # a series that is not derived (the PACS' own, announced by any node) is not uploaded back
        plain = client.node.publish("stored.series", dcmread(files[0], stop_before_pixels=True),
                                    uris=[client.node.uri_for(maps)])
        client.node.sync()

        # a PACS that is down: an error event naming it, the study and what to do
        get = Dataset()
        get.StudyInstanceUID = study_uid
        replies = client.ask("get.study", get, "stored.study", timeout=60, meta={"pacs": "down"})
        [error] = [m for m in replies if m.topic == "error.pacs"]
        assert "down" in error.meta["error"]["reason"] and study_uid in error.meta["error"]["reason"]
        assert "send get.study again" in error.meta["error"]["action"]
        assert not client.replies(plain)  # (checked after the slow request above: time enough for an answer)
    assert proc.popen.poll() is None
    shutil.rmtree(results, ignore_errors=True)


def test_a_retrieval_in_flight_is_finished_after_the_pacs_node_is_killed(mesh, orthanc, tmp_path):  # noqa: F811
    """get.study from a one-shot publisher (gone at once), the pacs node SIGKILLed in the middle of the C-MOVE and
    started again: the retrieval resumes and the study is announced complete; nothing half-written is left."""
    files = synthetic.write_study(synthetic.head_ct(seed=78, slices=120, matrix=512), tmp_path / "src")
    orthanc.upload(files)
    study_uid = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    cfg = _pacs_config(tmp_path, orthanc)
    proc = mesh.start("node", "pacs", "--config", cfg)
    proc.wait_for_output("storage SCP")
    watcher = Client(mesh.name, name="watcher", topics=("stored.study", "error"))
    store = tmp_path / "store" / study_uid
    with watcher.node:
        asker = Node("asker", mesh=mesh.name, durable=False)
        with asker:
            assert asker.wait_for_subscribers("get.study", 20)
            get = Dataset()
            get.StudyInstanceUID = study_uid
            asker.publish("get.study", get)
            asker.sync()
        wait_until(lambda: len(list(store.rglob("*.dcm"))) >= 5, 60, interval=0.005, what="the first instances")
        proc.kill()
        at_kill = len(list(store.rglob("*.dcm")))
        assert at_kill < len(files), "the retrieval ended before the kill: the test proves nothing"
        again = mesh.start("node", "pacs", "--config", cfg)

        def announced():
            with watcher.lock:
                return [m for m in watcher.got if m.topic == "stored.study" and m.get("StudyInstanceUID") == study_uid]
        wait_until(announced, 120, what="stored.study after the restart")
        [study] = announced()
        assert study.meta["complete"] is True and study.meta["instances"] == len(files), study.meta
        assert "resuming get.study" in again.output
        with watcher.lock:
            assert not [m for m in watcher.got if m.topic.startswith("error.")]
    assert len(list(store.rglob("*.dcm"))) == len(files)
    assert not [p for p in (tmp_path / "store").rglob("*.part")]
    print(f"killed at {at_kill} of {len(files)} instances; all {len(files)} after the restart")


def test_get_study_of_a_study_the_pacs_does_not_have_is_an_error(mesh, orthanc, tmp_path):  # noqa: F811
    proc = mesh.start("node", "pacs", "--config", _pacs_config(tmp_path, orthanc))
    proc.wait_for_output("storage SCP")
    client = Client(mesh.name)
    with client.node:
        assert client.node.wait_for_subscribers("get.study", 20)
        get = Dataset()
        get.StudyInstanceUID = generate_uid()
        replies = client.ask("get.study", get, "stored.study", timeout=60)
        assert not [m for m in replies if m.topic == "stored.study"], "a study nobody has was announced as stored"
        [error] = [m for m in replies if m.topic == "error.pacs"]
        assert "not found in PACS orthanc" in error.meta["error"]["reason"]
        assert get.StudyInstanceUID in error.meta["error"]["reason"]


def test_a_nifti_rendition_is_not_archived_and_an_empty_series_is_an_error(mesh, orthanc, tmp_path):  # noqa: F811
    """The convert node's NIfTI rendition (stored.series.nii) is not uploaded to the PACS (it was answered with
    "uploaded 0" before); a derived DICOM series whose URIs hold no DICOM file is an error, not "uploaded 0"."""
    proc = mesh.start("node", "pacs", "--config", _pacs_config(tmp_path, orthanc))
    proc.wait_for_output("storage SCP")
    client = Client(mesh.name)
    nifti = tmp_path / "nifti"
    nifti.mkdir()
    (nifti / "t1.nii.gz").write_bytes(b"\x1f\x8b not really a NIfTI, never read")
    client.node.serve("nifti", nifti)
    header = Dataset()
    header.StudyInstanceUID, header.SeriesInstanceUID, header.Modality = generate_uid(), generate_uid(), "MR"
    with client.node:
        assert client.node.wait_for_subscribers("stored.series", 20)
        rendition = client.node.publish("stored.series.nii", header, uris=[client.node.uri_for(nifti)],
                                        meta={"derived_from": header.SeriesInstanceUID})
        replies = client.ask("stored.series", header, "uploaded.series", uris=[client.node.uri_for(nifti)],
                             meta={"derived_from": header.SeriesInstanceUID, "instances": 1})
        [error] = [m for m in replies if m.topic == "error.pacs"]
        assert "no DICOM files" in error.meta["error"]["reason"]
        assert not [m for m in replies if m.topic == "uploaded.series"]
        assert not client.replies(rendition)  # answered neither with "uploaded 0" nor with an error


def test_instance_events_of_a_c_move_retrieval_come_once_per_instance(mesh, orthanc, tmp_path):  # noqa: F811
    files = synthetic.write_study(synthetic.mr_brain(seed=79, size="small", series=("t1",)), tmp_path / "src")
    orthanc.upload(files)
    study_uid = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    cfg = _pacs_config(tmp_path, orthanc, options="instance_events = true\n")
    proc = mesh.start("node", "pacs", "--config", cfg)
    proc.wait_for_output("storage SCP")
    client = Client(mesh.name, topics=("stored", "error"))
    with client.node:
        assert client.node.wait_for_subscribers("get.study", 20)
        get = Dataset()
        get.StudyInstanceUID = study_uid
        client.ask("get.study", get, "stored.study", timeout=60)
        client.node.sync()
        with client.lock:
            instances = [m.get("SOPInstanceUID") for m in client.got if m.topic == "stored.instance"]
        assert sorted(instances) == sorted({str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files})
