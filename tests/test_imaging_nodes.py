"""convert and register nodes in a mesh: NIfTI of each stored series; reformats of the reference series and the
other series registered onto it; derived outputs are never inputs again."""

from __future__ import annotations

import threading

from pydicom import dcmread

from conftest import wait_until
from meshdcm import Message, Node
from meshdcm.imaging import testdata


def test_convert_and_register_nodes(mesh, tmp_path):
    study = "1.2.826.0.1.3680043.10.77.1"
    t1 = tmp_path / "t1"
    testdata.write_volume_series(t1, lambda p: testdata.phantom(p, radius=25.0, contrast="t1"),
                                 testdata.grid((36, 36, 30), (1.5, 1.5, 1.5)), description="T1 3D", seed=1,
                                 study_uid=study)
    truth = testdata.rigid_matrix((5.0, 0.0, -4.0), (3.0, -4.0, 2.0))
    t2 = tmp_path / "t2"
    testdata.write_volume_series(t2, testdata.moved_phantom(truth, radius=25.0, contrast="t2"),
                                 testdata.grid((18, 18, 12), (3.0, 3.0, 4.0)), description="T2 axial", seed=2,
                                 study_uid=study, series_number=2)
    procs = [mesh.start("node", kind, "--config", mesh.config(kind, work=str(tmp_path / kind)))
             for kind in ("convert", "register")]
    for p in procs:
        p.wait_for_output("started on")
    got: list[Message] = []
    lock = threading.Lock()
    with Node("client", mesh=mesh.name) as client:
        for topic in ("stored", "error"):
            client.on(topic)(lambda m: (lock.acquire(), got.append(m), lock.release()))
        assert client.wait_for_peers(2, 10) and client.wait_for_subscribers("stored.series", 10)
        # the T2 first: it must wait for its study's reference (the thin 3D T1)
        for folder in (t2, t1):
            header = dcmread(sorted(folder.iterdir())[0], stop_before_pixels=True)
            client.publish("stored.series", header, uris=[folder.as_uri()])

        def done():
            with lock:
                nii = [m for m in got if m.topic == "stored.series.nii"]
                derived = [m for m in got if m.topic == "stored.series" and m.meta.get("derived_from")]
                errors = [m for m in got if m.topic.startswith("error.")]
            return errors or (len(nii) >= 2 and len(derived) >= 3 and (nii, derived))
        result = wait_until(done, 180, what="NIfTI files, reformats and the registered series")
        assert isinstance(result, tuple), [m.meta.get("error") for m in result]
        nii, derived = result
        assert sorted(m.meta["derived_from"] for m in nii) == sorted(
            dcmread(sorted(f.iterdir())[0], stop_before_pixels=True).SeriesInstanceUID for f in (t1, t2))
        assert all(any(u.startswith("meshdcm://") for u in m.uris) for m in nii)
        kinds = sorted(m.meta["derivation"].split()[0] for m in derived)
        assert kinds == ["coronal", "registered", "sagittal"], kinds
        reg = [m for m in derived if m.meta["derivation"].startswith("registered")][0]
        assert reg.dataset.SeriesDescription.endswith("[reg]") and "DERIVED" in reg.dataset.ImageType
        files = client.fetch([u for u in reg.uris if u.startswith("meshdcm://")][0], tmp_path / "reg")
        assert len(files) == reg.meta["instances"] > 0
        # outputs are not inputs: no NIfTI of a derived series, no registration of a reformat
        assert len([m for m in got if m.topic == "stored.series.nii"]) == 2


def test_a_redelivered_reference_series_is_not_registered_onto_itself(mesh, tmp_path):
    """After a restart, the thin reference series came again and was registered onto itself (160 bogus instances
    archived to PACS): a redelivery must give what the first delivery gave."""
    study = "1.2.826.0.1.3680043.10.77.2"
    t1, t2 = tmp_path / "t1", tmp_path / "t2"
    testdata.write_volume_series(t1, lambda p: testdata.phantom(p, radius=20.0, contrast="t1"),
                                 testdata.grid((24, 24, 20), (1.5, 1.5, 1.5)), description="T1 3D", seed=1,
                                 study_uid=study)
    testdata.write_volume_series(t2, lambda p: testdata.phantom(p, radius=20.0, contrast="t2"),
                                 testdata.grid((12, 12, 8), (3.0, 3.0, 4.0)), description="T2 axial", seed=2,
                                 study_uid=study, series_number=2)
    register = mesh.start("node", "register", "--workers", "1", "--config",
                          mesh.config("register", work=str(tmp_path / "register")))
    register.wait_for_output("started on")
    got: list[Message] = []
    with Node("client", mesh=mesh.name) as client:
        client.on("stored.series")(got.append)
        client.on("error")(got.append)
        assert client.wait_for_peers(1, 10) and client.wait_for_subscribers("stored.series", 10)
        # the reference twice (its redelivery), then a series to register: one worker handles them in order
        for folder in (t1, t1, t2):
            header = dcmread(sorted(folder.iterdir())[0], stop_before_pixels=True)
            client.publish("stored.series", header, uris=[folder.as_uri()])
        registered = wait_until(lambda: [m for m in got if m.topic.startswith("error.") or
                                         m.meta.get("derivation", "").startswith("registered")], 180,
                                what="the T2 registered onto the T1")
    assert all(m.topic == "stored.series" for m in registered), [m.meta.get("error") for m in registered]
    t2_uid = dcmread(sorted(t2.iterdir())[0], stop_before_pixels=True).SeriesInstanceUID
    assert [m.meta["derived_from"] for m in registered] == [t2_uid]  # the T1 was never registered onto itself


def test_register_keeps_its_references_and_waiting_series_across_restarts(tmp_path):
    from pydicom.dataset import Dataset

    from nodes.register import _References

    def stored(study, series):
        ds = Dataset()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        return Message("stored.series", ds, uris=[f"meshdcm://pacs/store/{study}/{series}"])

    first = _References(tmp_path)
    first.wait("1.2.3", stored("1.2.3", "1.2.3.1"), tmp_path / "in" / "1.2.3.1")
    first.wait("1.2.3", stored("1.2.3", "1.2.3.2"), tmp_path / "in" / "1.2.3.2" / "sub")
    first.set("1.2.3", tmp_path / "in" / "1.2.3.9" / "series")
    again = _References(tmp_path)  # a restarted node
    assert again.get("1.2.3") == tmp_path / "in" / "1.2.3.9" / "series" and again.get("4.5") is None
    waiting = again.take_waiting("1.2.3")
    assert [(m.get("SeriesInstanceUID"), m.uris, f.name) for m, f in waiting] == [
        ("1.2.3.1", ["meshdcm://pacs/store/1.2.3/1.2.3.1"], "1.2.3.1"),
        ("1.2.3.2", ["meshdcm://pacs/store/1.2.3/1.2.3.2"], "sub")]
    again.done_waiting("1.2.3", waiting[0][0])
    assert [m.get("SeriesInstanceUID") for m, _ in _References(tmp_path).take_waiting("1.2.3")] == ["1.2.3.2"]


def test_analysis_nodes_remove_work_folders_past_keep_days_but_not_what_still_waits(mesh, tmp_path):
    """register, convert and perfusion nodes (real processes) sweep their work folders at start: what is older than
    keep_days goes; a study whose reference went loses it; a series waiting for a reference stays."""
    import json
    import os
    import time

    from pydicom.dataset import Dataset

    from nodes.register import _References

    month_ago = time.time() - 30 * 86400

    def folder(path, old):
        (path / "series").mkdir(parents=True)
        (path / "series" / "1.dcm").write_bytes(b"x" * 100)
        if old:
            os.utime(path, (month_ago, month_ago))
        return path

    reg, conv, perf = tmp_path / "register", tmp_path / "convert", tmp_path / "perfusion"
    for name, old in (("old-ref", True), ("old-waiting", True), ("new-ref", False)):
        folder(reg / "in" / name, old)
    for work in (reg, conv, perf):
        folder(work / "out" / "old-out", True)
        folder(work / "out" / "new-out", False)
    references = _References(reg)
    references.set("1.2.3", reg / "in" / "old-ref" / "series")
    references.set("4.5.6", reg / "in" / "new-ref" / "series")
    ds = Dataset()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "7.8.9", "7.8.9.1"
    references.wait("7.8.9", Message("stored.series", ds), reg / "in" / "old-waiting" / "series")

    procs = [mesh.start("node", kind, "--config", mesh.config(kind, work=str(work), keep_days=1))
             for kind, work in (("register", reg), ("convert", conv), ("perfusion", perf))]
    for p in procs:
        p.wait_for_output("started on")
    wait_until(lambda: set(json.loads((reg / "references.json").read_text())) == {"4.5.6"} and not any(
        (work / "out" / "old-out").exists() for work in (reg, conv, perf)), 30, what="the sweep at start")
    assert sorted(p.name for p in (reg / "in").iterdir()) == ["new-ref", "old-waiting"]
    for work in (reg, conv, perf):
        assert sorted(p.name for p in (work / "out").iterdir()) == ["new-out"]
    assert [m.get("SeriesInstanceUID") for m, _ in _References(reg).take_waiting("7.8.9")] == ["7.8.9.1"]
