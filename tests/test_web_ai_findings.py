"""The AI findings of the report editor, part by part: the stroke measurement SR read as the findings and
impression text the stroke package words (with its volumes and provenance), an SR that is no stroke report not
offered, the SEG drawn as a label map on the DSC's slices, the signed report referencing the AI SR it used (evidence
and content tree; dsrdump without an error), and the routes (the study offers it; a sign with it references it; an
unknown one is refused). In a browser against `meshdcm up`: test_web_stroke_report.py."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from starlette.testclient import TestClient

from conftest import wait_until
from meshdcm import Node
from meshdcm.perfusion.cli import main
from meshdcm.transfer import TransferError
from meshdcm.stroke import StrokePhantomSpec, make_stroke_phantom, report_text, write_stroke_phantom
from meshdcm.stroke.rules import ALGORITHM_VERSION
from meshdcm.web.ai import AIResults, NotAnAIResult, read_ai_sr
from meshdcm.web.app import WebConfig, create_app
from meshdcm.web.images import SeriesImages, index_series, slice_array
from meshdcm.web.report import build_sr
from meshdcm.web.sessions import Person
from meshdcm.web.signing import describe
from web_fixtures import SIGNER, login_csrf, users_file

JANE = Person(SIGNER[0], SIGNER[2], SIGNER[3])


@pytest.fixture(scope="module")
def stroke(tmp_path_factory):
    """A stroke phantom's DSC series and what `meshdcm perfusion` made of it: the SEG, SR and summary."""
    sp = make_stroke_phantom(StrokePhantomSpec(lesion="medium", shape=(10, 64, 64), slice_thickness=10.0, n_time=60))
    dsc = tmp_path_factory.mktemp("dsc")
    write_stroke_phantom(sp, dsc)
    out = tmp_path_factory.mktemp("out")
    assert main([str(dsc), str(out), "--xp", "numpy"]) == 0
    evidence = dcmread(sorted(dsc.rglob("*.dcm"))[0], stop_before_pixels=True)
    return {"dsc": dsc, "sr": out / "stroke" / "SR" / "sr.dcm", "seg": out / "stroke" / "SEG" / "seg.dcm",
            "summary": out / "stroke" / "SUMMARY" / "summary.dcm", "evidence": evidence}


def test_the_stroke_sr_is_offered_as_the_stroke_packages_text_with_its_numbers_and_provenance(stroke):
    ds = dcmread(stroke["sr"])
    offered = read_ai_sr(ds)
    words = report_text(ds)
    assert offered["findings"] == words.findings and offered["impression"] == words.impression
    assert "ischaemic core (rCBF < 30 %)" in offered["findings"] and "DEFUSE-3 imaging criteria met" in \
        offered["impression"]
    v = offered["values"]
    assert v["core_ml"] > 0 and v["tmax6_ml"] > v["tmax10_ml"] > 0
    assert v["mismatch_ml"] == pytest.approx(v["tmax6_ml"] - v["core_ml"], abs=0.11)
    assert v["side"] == "left" and v["defuse3"] == {"core_lt_70ml": True, "mismatch_ratio_ge_1_8": True,
                                                    "mismatch_ge_15ml": True, "all_met": True}
    p = offered["provenance"]
    assert (p["algorithm"], p["algorithm_version"]) == ("meshdcm stroke", ALGORITHM_VERSION)
    assert p["sop_instance_uid"] == ds.SOPInstanceUID and p["series_uid"] == ds.SeriesInstanceUID
    assert p["study_uid"] == ds.StudyInstanceUID and p["sop_class_uid"] == ds.SOPClassUID
    assert p["time"].startswith(f"{ds.ContentDate[:4]}-{ds.ContentDate[4:6]}-{ds.ContentDate[6:]}T")
    assert p["seg_sop_instance_uid"] == dcmread(stroke["seg"], stop_before_pixels=True).SOPInstanceUID
    assert p["seg_series_uid"] == dcmread(stroke["seg"], stop_before_pixels=True).SeriesInstanceUID  # the overlay
    assert p["supersedes"] == []


def test_an_sr_that_is_no_stroke_report_is_not_offered(stroke):
    signed = build_sr(stroke["evidence"], {"impression": "no AI here"}, JANE)  # a radiologist's report
    with pytest.raises(NotAnAIResult):
        read_ai_sr(signed)
    with pytest.raises(NotAnAIResult):
        read_ai_sr(stroke["evidence"])  # an image


def test_the_segmentation_is_a_label_map_on_the_dsc_slices_core_on_top(stroke, tmp_path):
    seg = dcmread(stroke["seg"])
    shutil.copy(stroke["seg"], tmp_path / "seg.dcm")
    pixels = index_series("seg", tmp_path)
    assert pixels.kind == "seg" and pixels.frame == seg.FrameOfReferenceUID
    assert [s["label"].split(" (")[0] for s in pixels.segments] == [
        "Ischaemic core", "Severe hypoperfusion Tmax > 10 s", "Hypoperfusion Tmax > 6 s"]  # mismatch: not drawn
    assert [s["rgb"] for s in pixels.segments] == [[255, 0, 0], [255, 220, 0], [0, 200, 0]]
    dsc = index_series("dsc", stroke["dsc"])
    assert pixels.stack.slices == dsc.stack.slices and pixels.stack.positions == pytest.approx(dsc.stack.positions)
    frames = seg.pixel_array
    masks = {}  # (segment number, slice) -> the SEG's frame, the slice found by the frame's position
    for i, f in enumerate(seg.PerFrameFunctionalGroupsSequence):
        z = pixels.stack.origins.index([float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient])
        masks[(int(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber), z)] = frames[i] > 0
    for z in range(pixels.stack.slices):
        labels = slice_array(pixels, z)
        core, tmax6, tmax10 = (masks[(n, z)] for n in (1, 2, 3))
        assert np.array_equal(labels == 1, core)  # every core voxel drawn as core
        assert np.array_equal(labels == 3, tmax10 & ~core)
        assert np.array_equal(labels == 2, tmax6 & ~tmax10 & ~core)
    assert (np.stack([slice_array(pixels, z) for z in range(pixels.stack.slices)]) == 1).any()


def test_the_summary_image_is_shown_in_its_colours(stroke):
    from PIL import Image

    pixels = index_series("summary", stroke["summary"].parent)
    assert pixels.kind == "rgb"
    rgb = dcmread(stroke["summary"]).pixel_array
    assert np.array_equal(slice_array(pixels, 0), rgb)  # three values a pixel, as stored
    images = SeriesImages(lambda uid: (stroke["summary"].parent, None))
    thumb = Image.open(io.BytesIO(images.thumbnail("summary")))
    assert thumb.mode == "RGB" and max(thumb.size) == 128
    assert len(images.slice_bytes("summary", 0)) == rgb.size * 2  # int16 on the wire, like every other slice


def test_the_signed_report_references_the_ai_sr_it_used(stroke, tmp_path):
    ai = dcmread(stroke["sr"])
    sr = build_sr(stroke["evidence"], {"findings": "accepted, then edited", "impression": "mismatch"}, JANE, ai_sr=ai)
    evidence = {(str(series.SeriesInstanceUID), str(sop.ReferencedSOPInstanceUID), str(sop.ReferencedSOPClassUID))
                for study in sr.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence for sop in series.ReferencedSOPSequence}
    assert (ai.SeriesInstanceUID, ai.SOPInstanceUID, ai.SOPClassUID) in evidence
    assert all(s.StudyInstanceUID == ai.StudyInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence)
    composite = [i for i in sr.ContentSequence if i.ValueType == "COMPOSITE"]
    assert len(composite) == 1 and composite[0].RelationshipType == "CONTAINS"
    assert composite[0].ConceptNameCodeSequence[0].CodeValue == "121112"  # Source of Measurement
    assert composite[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == ai.SOPInstanceUID
    assert describe(sr)["ai_sr"] == ai.SOPInstanceUID
    plain = build_sr(stroke["evidence"], {"impression": "mine"}, JANE)
    assert describe(plain)["ai_sr"] is None and not [i for i in plain.ContentSequence if i.ValueType == "COMPOSITE"]
    path = tmp_path / "signed.dcm"
    sr.save_as(path, enforce_file_format=True)
    if shutil.which("dsrdump") is None:
        pytest.skip("DCMTK dsrdump is not installed")
    dump = subprocess.run(["dsrdump", str(path)], capture_output=True, text=True, timeout=60)
    errors = [line for line in dump.stderr.splitlines() if line.startswith("E:")]  # W: UTF-8 is not VR-checked
    assert dump.returncode == 0 and not errors, dump.stderr
    assert 'COMPOSITE:(,,"Source of Measurement")=(Comprehensive3DSRStorage,)' in dump.stdout


def test_an_sr_that_supersedes_another_is_offered_first_whatever_its_time(stroke, tmp_path):
    """The ADC core's SR after the rCBF core's (docs/stroke.md, late ADC): offered first even in the same second,
    or with a clock behind; the earlier one stays, counted as older."""
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    first = dcmread(stroke["sr"])
    later = dcmread(stroke["sr"])
    later.SeriesInstanceUID, later.SOPInstanceUID = generate_uid(), generate_uid()
    later.file_meta.MediaStorageSOPInstanceUID = later.SOPInstanceUID
    later.ContentTime = "000000"  # earlier than the first's
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = first.SOPClassUID, first.SOPInstanceUID
    series = Dataset()
    series.SeriesInstanceUID, series.ReferencedSOPSequence = first.SeriesInstanceUID, [ref]
    study = Dataset()
    study.StudyInstanceUID, study.ReferencedSeriesSequence = first.StudyInstanceUID, [series]
    later.PredecessorDocumentsSequence = [study]
    (tmp_path / "later").mkdir()
    later.save_as(tmp_path / "later" / "sr.dcm")
    results = AIResults(lambda uris, dest: Path(uris[0].removeprefix("file://")), tmp_path / "ai", lambda s: None)
    try:
        uid = str(first.StudyInstanceUID)
        results.heard(uid, str(later.SeriesInstanceUID), [(tmp_path / "later").as_uri()], "perfusion")
        results.heard(uid, str(first.SeriesInstanceUID), [stroke["sr"].parent.as_uri()], "perfusion")
        wait_until(lambda: len([r for r in results.of(uid) if r["state"] == "ready"]) == 2, 30, 0.05, "the AI results")
        offered = [r["provenance"]["sop_instance_uid"] for r in results.of(uid)]
        assert offered == [later.SOPInstanceUID, first.SOPInstanceUID]
        assert results.of(uid)[0]["provenance"]["supersedes"] == [first.SOPInstanceUID]
        assert [r["superseded"] for r in results.of(uid)] == [False, True]  # the page tags the older SR's card
    finally:
        results.close()


def test_the_ai_results_read_an_announced_sr_series_once_and_say_why_one_failed(stroke, tmp_path):
    changed = []
    folder = stroke["sr"].parent

    def fetch(uris, dest):  # as Node.fetch_folder does for file:// URIs of this machine
        folder = Path(uris[0].removeprefix("file://"))
        if not folder.is_dir():
            raise TransferError(f"{uris[0]}: no such folder")
        return folder
    results = AIResults(fetch, tmp_path / "ai", changed.append)
    try:
        ds = dcmread(stroke["sr"], stop_before_pixels=True)
        study = str(ds.StudyInstanceUID)
        results.heard(study, str(ds.SeriesInstanceUID), [folder.as_uri()], "perfusion")
        results.heard(study, str(ds.SeriesInstanceUID), [folder.as_uri()], "perfusion")  # announced twice: once
        wait_until(lambda: [r for r in results.of(study) if r["state"] == "ready"], 30, 0.05, "the AI results")
        (ready,) = results.of(study)
        assert ready["provenance"]["node"] == "perfusion" and ready["values"]["core_ml"] > 0
        assert "_dataset" not in ready and results.dataset(study, ds.SOPInstanceUID).SOPInstanceUID == \
            ds.SOPInstanceUID
        results.heard(study, "1.2.3.4", ["file:///nowhere"], "pacs")  # not fetched: the page says so
        results.heard("1.2.3", "1.2.3.5", [stroke["seg"].parent.as_uri()], "pacs")  # no SR in it: nothing offered
        wait_until(lambda: any(r["state"] == "error" for r in results.of(study)), 30, 0.05, "the AI results")
        assert "1.2.3.4" in next(r for r in results.of(study) if r["state"] == "error")["error"]
        wait_until(lambda: results.of("1.2.3") == [], 30, 0.05, "the AI results")
        assert study in changed
    finally:
        results.close()


@pytest.fixture
def web_app(tmp_path):
    node = Node("web-ai-parts", mesh=f"test-web-ai-{tmp_path.name[-8:]}")
    node.start()
    app = create_app(node, WebConfig(data=tmp_path / "web", token="ai-parts",  # noqa: S106
                                     users_file=users_file(tmp_path / "u")))
    yield app
    node.stop()


def test_the_study_offers_the_ai_result_and_a_report_signed_with_it_references_it(web_app, stroke):
    web = web_app.state.web
    ds = dcmread(stroke["sr"], stop_before_pixels=True)
    study = str(ds.StudyInstanceUID)
    web.view.study(study).evidence = stroke["evidence"]
    jane = TestClient(web_app)
    csrf = {"X-CSRF-Token": login_csrf(jane, SIGNER[1], user=SIGNER[0])}
    assert jane.get(f"/api/studies/{study}").json()["ai"] == []
    web.ai.heard(study, str(ds.SeriesInstanceUID), [stroke["sr"].parent.as_uri()], "perfusion")
    wait_until(lambda: [r for r in jane.get(f"/api/studies/{study}").json()["ai"] if r["state"] == "ready"], 30, 0.05, "the AI results")
    offered = jane.get(f"/api/studies/{study}").json()["ai"][0]
    assert offered["provenance"]["sop_instance_uid"] == ds.SOPInstanceUID

    sections = {"findings": offered["findings"] + " Edited.", "impression": offered["impression"]}
    draft = jane.put(f"/api/studies/{study}/draft", json={**sections, "ai_sr": ds.SOPInstanceUID}, headers=csrf)
    assert draft.json()["ai_sr"] == ds.SOPInstanceUID
    assert jane.get(f"/api/studies/{study}/draft").json()["ai_sr"] == ds.SOPInstanceUID  # a reload keeps it
    unknown = jane.post(f"/api/studies/{study}/sign", json={**sections, "ai_sr": "1.2.3.999"}, headers=csrf)
    assert unknown.status_code == 400 and "not known to this node" in unknown.json()["error"]
    bad = jane.post(f"/api/studies/{study}/sign", json={**sections, "ai_sr": "x; drop"}, headers=csrf)
    assert bad.status_code == 400 and "ai_sr" in bad.json()["error"]
    signed = jane.post(f"/api/studies/{study}/sign", json={**sections, "ai_sr": ds.SOPInstanceUID}, headers=csrf)
    assert signed.status_code == 200 and signed.json()["ai_sr"] == ds.SOPInstanceUID
    (path,) = (web.reports_dir / study).glob("*/*.dcm")
    sr = dcmread(path)
    assert describe(sr)["ai_sr"] == ds.SOPInstanceUID
    assert jane.get(f"/api/studies/{study}/draft").json()["report"]["ai_sr"] == ds.SOPInstanceUID
