"""The pacs node's storage in a mesh when things go wrong: a full disk (a real 20 MiB tmpfs) under a retrieval from
the embedded PACS."""

from __future__ import annotations

import time

from pydicom.dataset import Dataset

from conftest import wait_until
from pacs_fixtures import fill_disk, small_disk  # noqa: F401
from test_pacs_node import Client, study_query


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
