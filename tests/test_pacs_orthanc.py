"""PACS operations against a real Orthanc (own network namespace), DCMTK as the reference client."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from meshdcm import synthetic
from meshdcm.pacs import Pacs, PacsError, PacsUnavailable, StorageSCP, echo, find, retrieve, store, with_retry

from pacs_fixtures import orthanc  # noqa: F401 - fixture

OTHER = synthetic.Patient(name="OTHER^PERSON", id="MESHDCM-0099", birth_date="19800202", sex="F")


@pytest.fixture(scope="module")
def studies(tmp_path_factory, orthanc):  # noqa: F811
    """An MR study (TEST_PATIENT, seed 1) and a CT study (OTHER, seed 40), pushed with DCMTK storescu."""
    root = tmp_path_factory.mktemp("src")
    mr = synthetic.write_study(synthetic.mr_brain(seed=1, size="small", series=("t1", "t2", "dwi")), root / "mr")
    ct = synthetic.write_study(synthetic.head_ct(seed=40, patient=OTHER, size="small"), root / "ct")
    r = subprocess.run(["/usr/bin/storescu", "-aec", "ORTHANC", orthanc.ns.ns_ip, str(orthanc.dicom_port),
                        "+sd", "+r", str(root)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    mr_uid = str(dcmread(mr[0], stop_before_pixels=True).StudyInstanceUID)
    ct_uid = str(dcmread(ct[0], stop_before_pixels=True).StudyInstanceUID)
    return {"mr": (mr_uid, mr), "ct": (ct_uid, ct)}


@pytest.fixture(scope="module")
def pacs(orthanc):  # noqa: F811
    return Pacs("orthanc-test", ae_title="ORTHANC", host=orthanc.ns.ns_ip, port=orthanc.dicom_port,
                dicomweb_url=orthanc.dicomweb_url, calling_ae="MESHDCM", timeout=30)


@pytest.fixture(scope="module")
def scp(orthanc, tmp_path_factory):  # noqa: F811
    s = StorageSCP(tmp_path_factory.mktemp("scp"), ae_title="MESHDCM", host=orthanc.ns.host_ip, port=orthanc.scp_port)
    s.start()
    yield s
    s.stop()


def _pixels(path) -> bytes:
    return dcmread(path).PixelData


def _by_sop(paths) -> dict[str, Path]:
    return {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): Path(p) for p in paths}


def test_echo(pacs):
    assert echo(pacs) < 5


def test_find_patient_name_wildcard(pacs, studies):
    q = Dataset()
    q.PatientName = "MESHDCM*"
    q.StudyInstanceUID = ""
    q.PatientID = ""
    found = list(find(pacs, "STUDY", q))
    assert {str(d.StudyInstanceUID) for d in found} == {studies["mr"][0]}
    assert found[0].PatientID == synthetic.TEST_PATIENT.id


def test_find_date_range_and_modality(pacs, studies):
    ct_date = dcmread(studies["ct"][1][0], stop_before_pixels=True).StudyDate
    q = Dataset()
    q.StudyDate = f"{ct_date}-{ct_date}"
    q.StudyInstanceUID = ""
    assert {str(d.StudyInstanceUID) for d in find(pacs, "STUDY", q)} == {studies["ct"][0]}
    q = Dataset()
    q.StudyDate = "20000101-20001231"
    q.StudyInstanceUID = ""
    assert list(find(pacs, "STUDY", q)) == []
    q = Dataset()
    q.StudyInstanceUID = studies["mr"][0]
    q.Modality = "MR"
    q.SeriesInstanceUID = ""
    q.SeriesDescription = ""
    series = list(find(pacs, "SERIES", q))
    assert sorted(str(d.SeriesDescription) for d in series) == ["ep2d_diff_3scan_trace", "t1_mprage_sag_1mm",
                                                                "t2_tse_tra"]
    q.Modality = "CT"
    assert list(find(pacs, "SERIES", q)) == []


def test_find_matches_dcmtk_findscu(pacs, studies, orthanc, tmp_path):  # noqa: F811
    r = subprocess.run(["/usr/bin/findscu", "-S", "-aec", "ORTHANC", orthanc.ns.ns_ip, str(orthanc.dicom_port),
                        "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientName=*", "-k", "StudyInstanceUID"],
                       capture_output=True, text=True, timeout=60)
    ours = {str(d.StudyInstanceUID) for d in find(pacs, "STUDY", _q(PatientName="*", StudyInstanceUID=""))}
    for uid in ours:
        assert uid in r.stdout + r.stderr
    assert {studies["mr"][0], studies["ct"][0]} <= ours


def _q(**kw) -> Dataset:
    d = Dataset()
    for k, v in kw.items():
        setattr(d, k, v)
    return d


def _check_retrieved(res, originals):
    src = _by_sop(originals)
    got = _by_sop(res.paths)
    assert set(got) == set(src)
    assert res.done == res.total == len(src)
    for sop, p in got.items():
        assert _pixels(p) == _pixels(src[sop])


def test_retrieve_by_move(pacs, studies, scp):
    uid, paths = studies["mr"]
    progress = []
    seen = []
    reporters = set()
    res = retrieve(pacs, uid, method="move", scp=scp, on_progress=lambda s, d, t: progress.append((s, d, t)),
                   on_instance=lambda p, h: (seen.append(h.SOPInstanceUID),
                                             reporters.add(threading.current_thread().name.split("_")[0])))
    _check_retrieved(res, paths)
    assert progress and progress[-1][1:] == (len(paths), len(paths))
    assert len(seen) == len(paths)
    # our own C-MOVE's sub-operations are answered at once and reported only once made durable beside the
    # transfer (the PACS keeps its copy); a push is on disk before success is answered, in the association
    assert reporters == {"durable"}, reporters
    pushed = []

    def listener(inst):
        pushed.append(threading.current_thread().name)

    scp.add_listener(listener)
    try:
        r = subprocess.run(["/usr/bin/storescu", "-aec", "MESHDCM", scp.host, str(scp.port), str(paths[0])],
                           capture_output=True, text=True, timeout=60)
    finally:
        scp.remove_listener(listener)
    assert r.returncode == 0 and pushed and not pushed[0].startswith("durable"), (r.stderr, pushed)


def test_retrieve_by_get(pacs, studies, tmp_path):
    uid, paths = studies["ct"]
    progress = []
    res = retrieve(pacs, uid, tmp_path, method="get", on_progress=lambda s, d, t: progress.append((d, t)))
    _check_retrieved(res, paths)
    assert progress[-1] == (len(paths), len(paths))


def test_retrieve_by_wado(pacs, studies, tmp_path):
    uid, paths = studies["ct"]
    res = retrieve(pacs, uid, tmp_path, method="wado")
    _check_retrieved(res, paths)


def test_retrieve_series_by_get(pacs, studies, tmp_path):
    uid, paths = studies["mr"]
    t2 = [p for p in paths if dcmread(p, stop_before_pixels=True).SeriesDescription == "t2_tse_tra"]
    series_uid = str(dcmread(t2[0], stop_before_pixels=True).SeriesInstanceUID)
    res = retrieve(pacs, uid, tmp_path, series_uid=series_uid, method="get")
    _check_retrieved(res, t2)


@pytest.mark.parametrize("method", ["c-store", "stow"])
def test_store_then_find(pacs, tmp_path, method):
    seed = 60 if method == "c-store" else 61
    paths = synthetic.write_study(synthetic.head_ct(seed=seed, size="small", slices=3), tmp_path)
    res = store(pacs, paths, method=method)
    assert res.ok and len(res.stored) == 3
    uid = str(dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)
    found = list(find(pacs, "IMAGE", _q(StudyInstanceUID=uid, SOPInstanceUID="")))
    assert len(found) == 3


@pytest.mark.parametrize("tool,ts", [("/usr/bin/dcmcrle", "1.2.840.10008.1.2.5"),
                                     ("/usr/bin/dcmcjpls", "1.2.840.10008.1.2.4.80")])
def test_compressed_instance_round_trip_is_byte_intact(pacs, scp, tmp_path, tool, ts):
    if not Path(tool).exists():
        pytest.skip(f"{tool} (DCMTK) not installed")
    seed = 70 if "rle" in tool else 71
    src = synthetic.write_study(synthetic.head_ct(seed=seed, size="small", slices=2), tmp_path / "plain")
    comp = []
    for p in src:
        out = tmp_path / f"c_{p.name}"
        subprocess.run([tool, str(p), str(out)], check=True, timeout=60)
        comp.append(out)
    assert str(dcmread(comp[0]).file_meta.TransferSyntaxUID) == ts
    assert store(pacs, comp).ok
    uid = str(dcmread(comp[0], stop_before_pixels=True).StudyInstanceUID)
    src_pix = {k: _pixels(p) for k, p in _by_sop(comp).items()}
    for res in (retrieve(pacs, uid, method="move", scp=scp), retrieve(pacs, uid, tmp_path / "get", method="get")):
        got = _by_sop(res.paths)
        assert set(got) == set(src_pix)
        for sop, p in got.items():
            ds = dcmread(p)
            assert str(ds.file_meta.TransferSyntaxUID) == ts, res.method
            assert ds.PixelData == src_pix[sop], res.method


def test_pacs_down_gives_clear_error_and_retries(orthanc, tmp_path):  # noqa: F811
    from ports import free_port

    down = Pacs("dead-pacs", host=orthanc.ns.host_ip, port=free_port(orthanc.ns.host_ip), timeout=2)
    retries = []
    with pytest.raises(PacsUnavailable) as ei:
        with_retry(lambda: retrieve(down, "1.2.3.4", tmp_path, method="get"), attempts=2, base_delay=0.05,
                   on_retry=lambda a, e, d: retries.append(a))
    msg = str(ei.value)
    assert "dead-pacs" in msg and "1.2.3.4" in msg and "after 2 attempts" in msg
    assert "refused" in msg or "no answer" in msg
    assert retries == [1]
    assert ei.value.retryable


def test_move_to_unknown_destination_names_the_problem(orthanc, studies, tmp_path):  # noqa: F811
    p = Pacs("orthanc-test", host=orthanc.ns.ns_ip, port=orthanc.dicom_port, calling_ae="MESHDCM",
             move_destination="NOBODY")
    s = StorageSCP(tmp_path, ae_title="NOBODY", host=orthanc.ns.host_ip)
    with s:
        with pytest.raises(PacsError) as ei:
            retrieve(p, studies["ct"][0], method="move", scp=s)
    assert studies["ct"][0] in str(ei.value) and "orthanc-test" in str(ei.value)


def test_fetch_over_wado_uri(orthanc, studies, tmp_path):  # noqa: F811
    from meshdcm.pacs import fetch

    uid, paths = studies["ct"]
    got = fetch(f"{orthanc.dicomweb_url}/studies/{uid}", tmp_path)
    assert len(got) == len(paths)
    one = str(dcmread(paths[0], stop_before_pixels=True).SOPInstanceUID)
    series = str(dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID)
    got = fetch(f"{orthanc.dicomweb_url}/studies/{uid}/series/{series}/instances/{one}", tmp_path / "one")
    assert [p.stem for p in got] == [one]


def test_a_pacs_that_refuses_our_ae_title_is_an_error_that_says_what_to_configure(tmp_path):
    """An Orthanc that answers only the modalities it knows aborts a C-FIND from an unknown AE title: the CLI says
    that, and what to configure, instead of ending in a traceback (pynetdicom yields an empty status then)."""
    import sys

    from pacs_fixtures import skip_reason, start_orthanc, stop_orthanc

    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    strict = start_orthanc(tmp_path / "strict", DicomAlwaysAllowFind=False, DicomAlwaysAllowGet=False,
                           DicomAlwaysAllowMove=False)
    try:
        r = subprocess.run([sys.executable, "-m", "meshdcm.cli.main", "pacs", "find", "--host", strict.ns.ns_ip,
                            "--port", str(strict.dicom_port), "--aet", "STRANGER", "--retries", "1", "-k",
                            "PatientName=*"], capture_output=True, text=True, timeout=120)
        assert r.returncode != 0
        assert "Traceback" not in r.stderr and "AttributeError" not in r.stderr, r.stderr[-2000:]
        assert "A-ABORT" in r.stderr and "STRANGER" in r.stderr and "modality" in r.stderr, r.stderr[-2000:]
        pacs = Pacs("strict", ae_title="ORTHANC", host=strict.ns.ns_ip, port=strict.dicom_port,
                    calling_ae="STRANGER", timeout=30)
        with pytest.raises(PacsUnavailable, match="STRANGER"):
            list(find(pacs, "STUDY", Dataset()))
    finally:
        stop_orthanc(strict)
