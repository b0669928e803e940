"""Storage SCP fed by DCMTK storescu on 127.0.0.1; synthetic study properties."""

from __future__ import annotations

import subprocess
import threading

import numpy as np
import pytest
from pydicom import dcmread

from meshdcm import synthetic
from meshdcm.pacs import PacsUnavailable, StorageSCP, with_retry
from meshdcm.pacs.errors import PacsError



def _storescu(port: int, paths, *opts):
    r = subprocess.run(["/usr/bin/storescu", *opts, "-aec", "ANY", "127.0.0.1", str(port), *map(str, paths)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_storage_scp_writes_as_received_and_reports(tmp_path):
    src = synthetic.write_study(synthetic.head_ct(seed=5, size="small", slices=4), tmp_path / "src")
    comp = tmp_path / "rle.dcm"
    subprocess.run(["/usr/bin/dcmcrle", str(src[0]), str(comp)], check=True, timeout=60)
    got = []
    with StorageSCP(tmp_path / "rx", on_stored=got.append) as scp:
        exp = scp.expect(str(dcmread(src[0]).StudyInstanceUID), 4)
        _storescu(scp.port, src[1:])
        _storescu(scp.port, [comp], "-xr")  # propose RLE
        assert exp.wait(30) and exp.done == 4
    assert len(got) == 4
    by_sop = {g.sop_instance_uid: g for g in got}
    for p in src[1:]:
        ds = dcmread(p)
        inst = by_sop[str(ds.SOPInstanceUID)]
        assert inst.path.exists() and inst.header.PatientID == synthetic.TEST_PATIENT.id
        assert "PixelData" not in inst.header
        assert dcmread(inst.path).PixelData == ds.PixelData
    rle = dcmread(comp)
    inst = by_sop[str(rle.SOPInstanceUID)]
    assert inst.transfer_syntax == "1.2.840.10008.1.2.5"
    assert dcmread(inst.path).PixelData == rle.PixelData  # encapsulated bytes untouched
    assert not list((tmp_path / "rx").rglob(".*.part"))


def test_expectation_completes_only_after_every_instance_was_reported(tmp_path):
    """A retrieve returns when its expectation is met; by then its listener must have seen every instance
    (the pacs node counts arrivals per series in the listener and judged a complete study incomplete)."""
    src = synthetic.write_study(synthetic.head_ct(seed=8, size="small", slices=1), tmp_path / "src")
    entered, release, seen = threading.Event(), threading.Event(), []

    def held_listener(inst):
        entered.set()
        release.wait(60)
        seen.append(inst.sop_instance_uid)

    with StorageSCP(tmp_path / "rx") as scp:
        scp.add_listener(held_listener)
        exp = scp.expect(str(dcmread(src[0]).StudyInstanceUID), 1)
        sender = threading.Thread(target=_storescu, args=(scp.port, src))
        sender.start()
        try:
            assert entered.wait(60), "the instance never reached the listener"
            assert exp.done == 1 and not exp.complete, "expectation met while the listener was still running"
        finally:
            release.set()
        assert exp.wait(60) and seen == [str(dcmread(src[0]).SOPInstanceUID)]
        sender.join(60)


def test_quiet_timer_reports_unannounced_push(tmp_path):
    src = synthetic.write_study(synthetic.head_ct(seed=6, size="small", slices=3), tmp_path / "src")
    settled = []
    done = threading.Event()

    def on_quiet(study_uid, counts):
        settled.append((study_uid, counts))
        done.set()

    with StorageSCP(tmp_path / "rx", on_quiet=on_quiet, quiet_seconds=0.3) as scp:
        _storescu(scp.port, src)
        assert done.wait(10)
    ds = dcmread(src[0])
    assert settled == [(str(ds.StudyInstanceUID), {str(ds.SeriesInstanceUID): 3})]


def test_with_retry_gives_up_on_non_retryable():
    calls = []

    def op():
        calls.append(1)
        raise PacsError("p", "bad identifier", "1.2.3")

    with pytest.raises(PacsError):
        with_retry(op, attempts=3, base_delay=0.01)
    assert calls == [1]


def test_with_retry_recovers():
    calls = []

    def op():
        calls.append(1)
        if len(calls) < 3:
            raise PacsUnavailable("p", "down", "1.2.3")
        return "ok"

    assert with_retry(op, attempts=3, base_delay=0.01) == "ok" and len(calls) == 3


def test_synthetic_is_deterministic_and_geometric():
    a = list(synthetic.head_ct(seed=3, size="small"))
    b = list(synthetic.head_ct(seed=3, size="small"))
    assert [x.SOPInstanceUID for x in a] == [x.SOPInstanceUID for x in b]
    assert all(x.PixelData == y.PixelData for x, y in zip(a, b, strict=True))
    assert a[0].StudyInstanceUID != next(synthetic.head_ct(seed=4, size="small")).StudyInstanceUID
    z = [float(x.ImagePositionPatient[2]) for x in a]
    assert np.allclose(np.diff(z), float(a[0].SpacingBetweenSlices))
    hu = a[4].pixel_array * float(a[4].RescaleSlope) + float(a[4].RescaleIntercept)
    assert hu.min() < -900 and hu.max() > 900  # air and skull


def test_synthetic_mr_series_and_dsc():
    mr = list(synthetic.mr_brain(seed=2, size="small", patient=synthetic.NON_ASCII_PATIENT))
    series = {x.SeriesDescription for x in mr}
    assert {"t1_mprage_sag_1mm", "t2_tse_tra", "t2_tirm_tra_dark-fluid", "ep2d_diff_3scan_trace",
            "ep2d_perf_DSC"} == series
    dsc = [x for x in mr if x.SeriesDescription == "ep2d_perf_DSC"]
    assert max(x.TemporalPositionIdentifier for x in dsc) >= 50
    assert len({x.StudyInstanceUID for x in mr}) == 1 and len({x.FrameOfReferenceUID for x in mr}) == 1
    h = synthetic.mr_header(patient=synthetic.NON_ASCII_PATIENT)
    assert len(h) >= 70 and "PixelData" not in h and h.SpecificCharacterSet == "ISO_IR 192"
    assert str(h.PatientName).startswith("Müller")


def test_storage_scp_survives_its_folders_being_removed(tmp_path):
    import shutil

    src = synthetic.write_study(synthetic.head_ct(seed=8, size="small", slices=2), tmp_path / "src")
    with StorageSCP(tmp_path / "rx") as scp:
        _storescu(scp.port, src[:1])
        study = str(dcmread(src[0]).StudyInstanceUID)
        shutil.rmtree(tmp_path / "rx" / study)
        _storescu(scp.port, src[1:])  # storescu fails the test if the SCP answers a failure status
        assert len(list((tmp_path / "rx" / study).rglob("*.dcm"))) == 1


def test_storage_scp_answers_echo_and_rejects_what_it_cannot_serve(tmp_path):
    from pydicom.dataset import Dataset

    from meshdcm.pacs import Pacs, echo, find

    with StorageSCP(tmp_path / "rx") as scp:
        pacs = Pacs("our-scp", ae_title="MESHDCM", host="127.0.0.1", port=scp.port, timeout=5)
        assert echo(pacs) < 5
        q = Dataset()
        q.StudyInstanceUID = ""
        with pytest.raises(PacsUnavailable) as ei:
            list(find(pacs, "STUDY", q))
        assert "rejected" in str(ei.value) and "our-scp" in str(ei.value)
        # an instant rejection raced pynetdicom's requestor thread and read as an abort 1-3 times in 100
        said = []
        for _ in range(150):
            with pytest.raises(PacsUnavailable) as ei:
                list(find(pacs, "STUDY", q))
            said.append("rejected" in str(ei.value))
        assert all(said), f"{said.count(False)} of {len(said)} rejections reported as something else"


def test_store_served_over_wado_and_fetched(tmp_path):
    from meshdcm.pacs import fetch
    from meshdcm.pacs.webserve import StoreWebServer

    src = synthetic.write_study(synthetic.head_ct(seed=9, size="small", slices=3), tmp_path / "src")
    comp = tmp_path / "rle.dcm"
    subprocess.run(["/usr/bin/dcmcrle", str(src[0]), str(comp)], check=True, timeout=60)
    with StorageSCP(tmp_path / "rx") as scp:
        exp = scp.expect(str(dcmread(src[0]).StudyInstanceUID), 3)
        _storescu(scp.port, src[1:])
        _storescu(scp.port, [comp], "-xr")
        assert exp.wait(30)
    study = str(dcmread(src[0]).StudyInstanceUID)
    with StoreWebServer(tmp_path / "rx", host="127.0.0.1") as web:
        got = fetch(f"{web.url}/studies/{study}", tmp_path / "fetched")
        assert len(got) == 3
        rle = dcmread(comp)
        one = fetch(f"{web.url}/studies/{study}/series/{rle.SeriesInstanceUID}/instances/{rle.SOPInstanceUID}",
                    tmp_path / "one")
        assert len(one) == 1
        ds = dcmread(one[0])
        assert str(ds.file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.5" and ds.PixelData == rle.PixelData
        import urllib.error
        import urllib.request

        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{web.url}/studies/../../etc/passwd", timeout=5)  # noqa: S310


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
@pytest.mark.parametrize("attribute", ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"])
def test_storage_scp_refuses_uids_that_would_escape_its_folder(tmp_path, attribute):
    src = synthetic.write_study(synthetic.head_ct(seed=7, size="small", slices=2), tmp_path / "src")
    hostile = dcmread(src[0])
    setattr(hostile, attribute, "../../escaped")
    if attribute == "SOPInstanceUID":
        hostile.file_meta.MediaStorageSOPInstanceUID = hostile.SOPInstanceUID
    bad = tmp_path / "bad.dcm"
    hostile.save_as(bad)
    got = []
    with StorageSCP(tmp_path / "store" / "rx", on_stored=got.append) as scp:
        r = subprocess.run(["/usr/bin/storescu", "-v", "-aec", "ANY", "127.0.0.1", str(scp.port), str(bad)],
                           capture_output=True, text=True, timeout=60)
        assert "error: cannotunderstand" in (r.stdout + r.stderr).lower(), r.stdout + r.stderr  # 0xC000
        _storescu(scp.port, src[1:])  # and the SCP goes on serving
    assert [g.sop_instance_uid for g in got] == [str(dcmread(src[1]).SOPInstanceUID)]
    written = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    assert all(p.is_relative_to(tmp_path / "store" / "rx") and "escaped" not in str(p) for p in written), written
    assert not list(tmp_path.rglob("escaped*"))
