"""The web node's parts on their own: slice ordering (fast header scan vs pydicom), pixels, the event hub's
coalescing, drafts, the protocol text and the SR (highdicom) with UTF-8 text."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import RLELossless

from meshdcm import synthetic
from meshdcm.web.hub import Hub
from meshdcm.web.images import ImageError, SeriesImages, index_series, scan_header, slice_array
from meshdcm.web.report import Drafts, ReportError, build_sr, protocol_text, report_text, sections_from
from meshdcm.web.sessions import Person


@pytest.fixture(scope="module")
def ct_files(tmp_path_factory):
    return synthetic.write_study(synthetic.head_ct(seed=3, size="small"), tmp_path_factory.mktemp("ct"))


def test_slices_are_ordered_along_the_normal_whatever_the_file_names(ct_files, tmp_path):
    folder = tmp_path / "shuffled"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, path in enumerate(rng.permutation(ct_files)):
        (folder / f"{i:03d}.dcm").write_bytes(path.read_bytes())
    (folder / "notes.txt").write_text("not DICOM")
    pixels = index_series("ct", folder)
    z = [float(dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]) for p in pixels.files]
    assert z == sorted(z) and len(z) == len(ct_files)
    assert (pixels.kind, pixels.dtype, pixels.center, pixels.width) == ("ct", "int16", 40.0, 80.0)
    ds = dcmread(pixels.files[0])
    hu = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
    assert np.array_equal(slice_array(pixels, 0), hu)


def test_the_fast_header_scan_agrees_with_pydicom_and_leaves_other_syntaxes_to_it(ct_files, tmp_path):
    for path in ct_files:
        fast, full = scan_header(path), dcmread(path, stop_before_pixels=True)
        assert int(fast.InstanceNumber) == full.InstanceNumber
        assert [float(v) for v in fast.ImagePositionPatient] == [float(v) for v in full.ImagePositionPatient]
    ds = dcmread(ct_files[0])
    ds.compress(RLELossless)
    rle = tmp_path / "rle.dcm"
    ds.save_as(rle)
    assert scan_header(rle) is None  # not Explicit VR Little Endian: pydicom reads it
    pixels = index_series("rle", tmp_path)
    assert pixels.files == [rle] and slice_array(pixels, 0).shape == (ds.Rows, ds.Columns)


def test_a_dynamic_series_is_arranged_as_slices_by_phases_whatever_its_files_say(tmp_path):
    """3 slices x 50 time points in one folder: by TemporalPositionIdentifier, or without it by AcquisitionNumber;
    image phase * slices + slice is that slice at that time point; times from the frames' acquisition."""
    files = synthetic.write_study(synthetic.mr_brain(seed=2, size="small", series=("dsc",)), tmp_path / "src")
    rng = np.random.default_rng(1)
    for strip in (False, True):
        folder = tmp_path / f"shuffled-{strip}"
        folder.mkdir()
        for i, path in enumerate(rng.permutation(files)):
            ds = dcmread(path)
            if strip:
                del ds.TemporalPositionIdentifier, ds.TriggerTime
            ds.save_as(folder / f"{i:03d}.dcm")
        pixels = index_series("dsc", folder)
        stack = pixels.stack
        assert (stack.slices, stack.phases, stack.positions) == (3, 50, [-26.0, 0.0, 26.0])
        assert stack.phase_kind == "time" and stack.times[:3] == [0.0, 1.5, 3.0] and pixels.first_index == 1
        for index, path in enumerate(pixels.files):
            ds = dcmread(path, stop_before_pixels=True)
            assert (int(ds.AcquisitionNumber) - 1, float(ds.ImagePositionPatient[2])) == \
                (index // 3, stack.positions[index % 3])
    dwi = index_series("dwi", synthetic.write_study(synthetic.mr_brain(seed=2, size="small", series=("dwi",)),
                                                    tmp_path / "dwi")[0].parent)
    assert (dwi.stack.slices, dwi.stack.phases, dwi.stack.phase_kind, dwi.stack.times) == (4, 2, "volume", None)


def test_windows_come_from_the_series_else_its_head_voxels_and_presets_by_modality(ct_files, tmp_path):
    t2 = synthetic.write_study(synthetic.mr_brain(seed=2, size="small", series=("t2",)), tmp_path / "t2")
    pixels = index_series("t2", t2[0].parent)
    assert (pixels.center, pixels.width, pixels.window_from) == (825.0, 1650.0, "series")
    assert list(pixels.presets) == ["series", "auto", "T1", "T2/FLAIR", "DWI"]
    for path in t2:
        ds = dcmread(path)
        del ds.WindowCenter, ds.WindowWidth
        ds.save_as(path)
    pixels = index_series("t2", t2[0].parent)
    values = np.concatenate([dcmread(p).pixel_array.ravel() for p in t2]).astype(float)
    head = values[values > 0.05 * np.percentile(values, 99.5)]
    lo, hi = np.percentile(head, [1, 99])
    assert pixels.window_from == "histogram" and "series" not in pixels.presets
    assert np.isclose(pixels.center, (lo + hi) / 2, atol=0.01) and np.isclose(pixels.width, hi - lo, atol=0.01)
    ct = index_series("ct", ct_files[0].parent)
    assert ct.presets == {"series": (40.0, 80.0), "brain": (40.0, 80.0), "subdural": (75.0, 215.0),
                          "stroke": (40.0, 40.0), "bone": (600.0, 2800.0)}


def test_series_images_serve_bytes_thumbnails_and_clear_errors(ct_files):
    folder = ct_files[0].parent

    def locate(uid):
        if uid != "ct":
            raise ImageError(f"series {uid} is not known here")
        return folder, None
    images = SeriesImages(locate)
    info = images.pixels("ct").describe()
    data = images.slice_bytes("ct", 0)
    assert len(data) == info["rows"] * info["cols"] * 2 and images.cached("ct", 0) == data
    assert images.thumbnail("ct")[:4] == b"\x89PNG"
    with pytest.raises(ImageError, match="has 8 images, not 9"):
        images.slice_bytes("ct", 8)
    with pytest.raises(ImageError, match="not known"):
        images.pixels("other")


def test_the_hub_sends_each_change_once_however_many_messages_caused_it():
    hub = Hub()

    async def run():
        loop, stream = hub.subscribe()
        for _ in range(500):
            hub.emit("study", "1.2.3")
        hub.emit("search", "abc")
        await asyncio.sleep(0.05)
        got = [await asyncio.wait_for(stream.get(), 1), await asyncio.wait_for(stream.get(), 1)]
        hub.emit("study", "1.2.3")  # after it was taken, a new change is sent again
        await asyncio.sleep(0.05)
        got.append(await asyncio.wait_for(stream.get(), 1))
        hub.unsubscribe((loop, stream))
        return got

    assert asyncio.run(run()) == [{"type": "study", "key": "1.2.3"}, {"type": "search", "key": "abc"},
                                  {"type": "study", "key": "1.2.3"}]


def test_drafts_survive_and_refuse_odd_names(tmp_path):
    drafts = Drafts(tmp_path)
    assert drafts.load("alice", "1.2.3") is None
    saved = drafts.save("alice", "1.2.3", sections_from({"findings": "Größe 3 mm"}))
    assert Drafts(tmp_path).load("alice", "1.2.3") == saved and saved["sections"]["findings"] == "Größe 3 mm"
    for user, uid in (("../x", "1.2.3"), ("alice", "../../etc"), ("alice", "1.2.x")):
        with pytest.raises(ReportError):
            drafts.save(user, uid, sections_from({}))
    with pytest.raises(ReportError, match="unknown report section"):
        sections_from({"signature": "x"})
    with pytest.raises(ReportError, match="must be text"):
        sections_from({"findings": 3})


def test_the_signed_report_is_a_comprehensive_sr_in_the_study_with_utf8_text():
    mr = next(iter(synthetic.mr_brain(seed=2, size="small", patient=synthetic.NON_ASCII_PATIENT)))
    sections = {"clinical": "Kopfschmerz", "findings": "CBF 48 ml/100g/min — normal", "impression": "Unauffällig ✓"}
    sr = build_sr(mr, sections_from(sections), Person("who", "Who^Doctor", "Gallifrey Hospital"))
    buf = io.BytesIO()
    sr.save_as(buf, enforce_file_format=True)
    back = dcmread(io.BytesIO(buf.getvalue()))
    assert back.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33" and back.Modality == "SR"
    assert back.StudyInstanceUID == mr.StudyInstanceUID and back.PatientName == mr.PatientName
    assert back.SpecificCharacterSet == "ISO_IR 192" and back.CompletionFlag == "COMPLETE"
    codes = [item.ConceptNameCodeSequence[0].CodeValue for item in back.ContentSequence if item.ValueType == "TEXT"]
    assert codes == ["RID13166", "RID28486", "RID13170"]
    assert "Impression: Unauffällig ✓" in report_text(back)
    with pytest.raises(ReportError, match="empty"):
        build_sr(mr, sections_from({"findings": "  "}), Person("who", "Who^Doctor", "Gallifrey Hospital"))


def test_protocol_lists_the_acquired_series_and_the_post_processing():
    series = [{"modality": "MR", "number": "6", "description": "ep2d_perf_DSC", "arrived": 150, "derived": False},
              {"modality": "MR", "number": "9001", "description": "CBF (OSVD)", "derived": True, "node": "perfusion"}]
    assert protocol_text(series) == "MR #6 ep2d_perf_DSC (150 images)\nPost-processing: CBF (OSVD) (perfusion)"
