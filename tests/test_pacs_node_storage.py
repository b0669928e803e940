"""The pacs node's storage in a mesh when things go wrong: a full disk (a real 20 MiB tmpfs) under a retrieval from
the embedded PACS, a pushed study (DCMTK storescu) with an instance no one can decode, a second copy of an instance."""

from __future__ import annotations

import time

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from conftest import wait_until
from meshdcm import synthetic
from pacs_fixtures import fill_disk, small_disk  # noqa: F401
from ports import free_port
from test_pacs_node import Client, study_query
from test_pacs_storage_faults import send_as_is, storescu, undecodable_copy, without_study_uid


def start_pacs_node(mesh, **options):
    cfg = mesh.config("pacs", **options)
    proc = mesh.start("node", "pacs", "--config", cfg)
    proc.wait_for_output("embedded PACS" if options.get("embedded") else "storage SCP", timeout=60)
    client = Client(mesh.name)
    client.node.start()
    wait_until(lambda: any(p["kind"] == "pacs" for p in client.node.peers), 10, what="the pacs node")
    assert client.node.wait_for_subscribers("get.study", 10)
    return proc, client


def test_a_retrieval_onto_a_full_disk_fails_at_once_naming_it_then_succeeds(mesh, small_disk):  # noqa: F811
    """Retrievals onto a full disk hung (~300 s, every pacs worker blocked) and no error said why; .part files
    were left behind."""
    proc, client = start_pacs_node(mesh, embedded=True, storage=str(small_disk), quiet_seconds=2)
    try:
        found = client.ask("find.studies", study_query(ModalitiesInStudy="CT"), "found.end")
        [ct] = [m.dataset.StudyInstanceUID for m in found if m.topic == "found.study"]
        get = Dataset()
        get.StudyInstanceUID = ct
        filler = fill_disk(small_disk)
        t0 = time.monotonic()
        replies = client.ask("get.study", get, "stored.study", timeout=120)
        took = time.monotonic() - t0
        [error] = [m for m in replies if m.topic == "error.pacs"]
        incoming = small_disk / ".incoming"
        assert f"disk full at {incoming}" in error.meta["error"]["reason"], error.meta["error"]
        assert ct in error.meta["error"]["reason"]
        assert "make room in this node's store" in error.meta["error"]["action"], error.meta["error"]
        assert took < 30, f"the failed retrieval took {took:.0f} s"
        said = [line for line in proc.output.splitlines() if "meshdcm.pacs.storage" in line and "disk full" in line]
        assert len(said) == 1, said  # one line, not one per instance
        assert not list(incoming.glob("*")), "partial files were left behind"

        filler.unlink()  # room again: the same request succeeds
        replies = client.ask("get.study", get, "stored.study", timeout=120)
        [study] = [m for m in replies if m.topic == "stored.study"]
        assert study.meta["complete"] is True and study.meta["instances"] > 0
        assert not [m for m in replies if m.topic.startswith("error.")]
    finally:
        client.node.stop()


def test_a_pushed_study_with_an_undecodable_instance_is_announced_without_it(mesh, tmp_path):
    """One instance the node could not decode stopped the announcement of its whole series and study (valid
    instances included), with only a traceback in the log; one without a readable StudyInstanceUID said nothing."""
    port = free_port()
    proc, client = start_pacs_node(mesh, storage=str(tmp_path / "store"), scp_port=port, quiet_seconds=1)
    try:
        src = synthetic.write_study(synthetic.head_ct(seed=51, size="small", slices=3), tmp_path / "src")
        ds = dcmread(src[0])
        # its SOP Instance UID sorts first: the file the node read for the series' announcement
        bad_sop, no_study_sop = "1.2.826.0.1.3680043.10.1452.9.1", "1.2.826.0.1.3680043.10.1452.9.2"
        # first (its sender is slow to start), so that the study is one push however loaded the machine is
        assert send_as_is(port, undecodable_copy(src[0], tmp_path / "bad.dcm", bad_sop)) == 0x0000
        assert storescu(port, src).returncode == 0
        storescu(port, [without_study_uid(src[0], tmp_path / "nostudy.dcm", no_study_sop)])

        [study] = wait_until(lambda: [m for m in client.got if m.topic == "stored.study"], 30, what="stored.study")
        assert study.dataset.StudyInstanceUID == ds.StudyInstanceUID and study.meta["instances"] == 3
        [series] = [m for m in client.got if m.topic == "stored.series"]
        assert series.meta["instances"] == 3 and series.dataset.SeriesInstanceUID == ds.SeriesInstanceUID
        files = client.node.fetch([u for u in series.uris if u.startswith("meshdcm://")][0], tmp_path / "fetched")
        assert sorted(p.stem for p in files) == sorted(str(dcmread(p).SOPInstanceUID) for p in src)

        def errors():
            return [m for m in client.got if m.topic == "error.pacs"]

        wait_until(lambda: len(errors()) >= 2, 10, what="two error events")
        by_sop = {m.get("SOPInstanceUID"): m.meta["error"] for m in errors()}  # the event's body names the instance
        aside = by_sop[bad_sop]
        kept = tmp_path / "store" / ".undecodable" / f"{bad_sop}.dcm"
        assert "cannot be decoded" in aside["reason"] and ds.StudyInstanceUID in aside["reason"]
        assert aside["kept"] == str(kept) and kept.exists() and str(kept) in aside["action"]
        refused = by_sop[no_study_sop]
        assert refused["status"] == 0xC000 and "no usable" in refused["reason"] and "correct" in refused["action"]
        assert "Traceback" not in proc.output
    finally:
        client.node.stop()


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_second_copy_from_any_ae_replaces_a_stored_instance_only_if_configured(mesh, tmp_path, overwrite):
    """storescu of a modified copy (same SOP Instance UID, PatientName EVIL^OVERWRITE) from an unknown AE replaced
    the stored file."""
    port = free_port()
    options = {"overwrite_instances": True} if overwrite else {}
    proc, client = start_pacs_node(mesh, storage=str(tmp_path / "store"), scp_port=port, quiet_seconds=1, **options)
    try:
        [src] = synthetic.write_study(synthetic.head_ct(seed=52, size="small", slices=1), tmp_path / "src")
        ds = dcmread(src)
        assert storescu(port, [src]).returncode == 0
        stored = tmp_path / "store" / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
        ds.PatientName = "EVIL^OVERWRITE"
        ds.save_as(tmp_path / "evil.dcm", enforce_file_format=True)
        r = storescu(port, [tmp_path / "evil.dcm"], aet="EVIL")
        assert r.returncode == 0 and "Received Store Response (Success)" in r.stderr, r.stderr
        assert (str(dcmread(stored).PatientName) == "EVIL^OVERWRITE") is overwrite
        if not overwrite:
            warned = wait_until(lambda: [line for line in proc.output.splitlines() if "WARNING" in line
                                         and "EVIL sent instance" in line], 10, what="the warning")
            assert str(ds.SOPInstanceUID) in warned[0]
        assert "OVERWRITE" not in proc.output  # never patient data in the log
    finally:
        client.node.stop()
