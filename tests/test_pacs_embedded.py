"""The embedded PACS (our Q/R SCP) on 127.0.0.1, exercised by our SCU and by DCMTK findscu/getscu."""

from __future__ import annotations

import subprocess

import pytest
from pydicom.dataset import Dataset

from meshdcm import synthetic
from meshdcm.pacs import Pacs, StorageSCP, find, retrieve, store
from meshdcm.pacs.embedded import EmbeddedPacs


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    root = tmp_path_factory.mktemp("emb")
    scp = StorageSCP(root / "rx", ae_title="MESHDCM")
    scp.start()
    pacs = EmbeddedPacs(root / "store", destinations={"MESHDCM": ("127.0.0.1", scp.port)})
    pacs.start()
    yield pacs, scp
    pacs.stop()
    scp.stop()


def _cfg(p: EmbeddedPacs) -> Pacs:
    return Pacs("embedded", ae_title=p.ae_title, host="127.0.0.1", port=p.port, timeout=20)


def test_loaded_with_synthetic_studies_and_findable(embedded):
    p, _ = embedded
    q = Dataset()
    q.PatientName = "MESHDCM*"
    q.StudyInstanceUID = ""
    q.ModalitiesInStudy = ""
    q.NumberOfStudyRelatedInstances = ""
    studies = list(find(_cfg(p), "STUDY", q))
    mods = sorted(str(s.ModalitiesInStudy) for s in studies)
    assert mods == ["CT", "MR"]
    ct_uid = str(next(synthetic.head_ct(seed=1, size="small")).StudyInstanceUID)
    assert any(str(s.StudyInstanceUID) == ct_uid and int(s.NumberOfStudyRelatedInstances) == 8 for s in studies)
    r = subprocess.run(["/usr/bin/findscu", "-S", "-aec", p.ae_title, "127.0.0.1", str(p.port),
                        "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID", "-k", "StudyDate=20240101-20241231"],
                       capture_output=True, text=True, timeout=60)
    assert ct_uid in r.stdout + r.stderr


def test_loaded_with_the_realistic_studies(small_studies, tmp_path):
    """What `meshdcm up` serves: the stroke patient's CT and MR and the control's MR, as the PACS files them."""
    with EmbeddedPacs(tmp_path / "store", studies=lambda: small_studies.root) as p:
        q = Dataset()
        q.PatientID = "MESHDCM-1*"
        q.PatientName = ""
        q.AccessionNumber = ""
        q.StudyInstanceUID = ""
        q.ModalitiesInStudy = ""
        q.NumberOfStudyRelatedInstances = ""
        found = {str(s.StudyInstanceUID): s for s in find(_cfg(p), "STUDY", q)}
        for entry in small_studies.manifest["studies"]:
            study = found.pop(entry["StudyInstanceUID"])
            assert (str(study.PatientName), study.AccessionNumber, study.ModalitiesInStudy) == (
                entry["PatientName"], entry["AccessionNumber"], entry["Modality"])
            assert int(study.NumberOfStudyRelatedInstances) == sum(s["instances"] for s in entry["series"])
        assert not found


def test_move_and_get_from_embedded(embedded, tmp_path):
    p, scp = embedded
    ct = list(synthetic.head_ct(seed=1, size="small"))
    uid = str(ct[0].StudyInstanceUID)
    res = retrieve(_cfg(p), uid, method="move", scp=scp)
    assert res.done == res.total == 8
    res = retrieve(_cfg(p), uid, tmp_path, method="get")
    assert res.done == res.total == 8
    (tmp_path / "dcmtk").mkdir()
    r = subprocess.run(["/usr/bin/getscu", "-S", "-aec", p.ae_title, "-od", str(tmp_path / "dcmtk"), "127.0.0.1",
                        str(p.port), "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={uid}"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "dcmtk").iterdir())) == 8


def test_store_into_embedded(embedded, tmp_path):
    p, _ = embedded
    paths = synthetic.write_study(synthetic.head_ct(seed=90, size="small", slices=2), tmp_path)
    assert store(_cfg(p), paths).ok
    q = Dataset()
    q.StudyInstanceUID = str(next(synthetic.head_ct(seed=90, size="small", slices=2)).StudyInstanceUID)
    q.SOPInstanceUID = ""
    assert len(list(find(_cfg(p), "IMAGE", q))) == 2


def test_cli_echo_find_get_store(embedded, tmp_path, capsys):
    from meshdcm.pacs.cli import main

    p, _ = embedded
    base = ["--host", "127.0.0.1", "--port", str(p.port), "--aec", p.ae_title]
    assert main(["echo", *base]) == 0
    assert main(["find", *base, "--level", "STUDY", "-k", "ModalitiesInStudy=CT", "-k", "StudyInstanceUID="]) == 0
    uid = str(next(synthetic.head_ct(seed=1, size="small")).StudyInstanceUID)
    assert uid in capsys.readouterr().out
    assert main(["get", *base, uid, "--method", "get", "--out", str(tmp_path / "got")]) == 0
    assert len(list((tmp_path / "got").rglob("*.dcm"))) == 8
    assert main(["store", *base, str(tmp_path / "got")]) == 0
    assert main(["echo", "--host", "127.0.0.1", "--port", "1", "--retries", "1", "--timeout", "2"]) == 2
    assert "no answer" in capsys.readouterr().err


def test_fetch_file_uri_uses_files_in_place(tmp_path):
    from meshdcm.pacs import fetch

    paths = synthetic.write_study(synthetic.head_ct(seed=91, size="small", slices=2), tmp_path / "s")
    assert fetch(paths[0].as_uri()) == [paths[0]]
    assert sorted(fetch(str(tmp_path / "s"))) == sorted(paths)
    copied = fetch((tmp_path / "s").as_uri(), tmp_path / "c", copy=True)
    assert len(copied) == 2 and all(c.read_bytes() == p.read_bytes() for c, p in zip(sorted(copied), sorted(paths),
                                                                                       strict=True))
    with pytest.raises(FileNotFoundError):
        fetch("file:///nonexistent/x.dcm")


def test_a_node_fetches_dicom_uris_through_the_registered_reader(embedded, tmp_path):
    """Node.fetch reads dicom:// (and http(s)://) URIs with the reader the pacs package registers (entry point
    group meshdcm.fetchers): the core names no feature package."""
    import uuid

    from meshdcm import Node
    from meshdcm.transfer import fetcher_for

    pacs, _scp = embedded
    assert fetcher_for("dicom") is not None and fetcher_for("gopher") is None
    study = next(find(_cfg(pacs), "STUDY", _study_query("CT")))
    with Node("reader", mesh=f"fetch-{uuid.uuid4().hex[:8]}", discovery=False) as node:
        paths = node.fetch(f"dicom://{pacs.ae_title}@127.0.0.1:{pacs.port}/{study.StudyInstanceUID}", tmp_path / "got")
    assert len(paths) == int(study.NumberOfStudyRelatedInstances) and all(p.is_file() for p in paths)


def _study_query(modality: str) -> Dataset:
    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    q.StudyInstanceUID = ""
    q.ModalitiesInStudy = modality
    q.NumberOfStudyRelatedInstances = ""
    return q
