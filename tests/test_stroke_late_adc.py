"""The stroke part run again when the study's ADC series comes after its DSC series (meshdcm.stroke.late_adc),
without a mesh: what is kept (rCBF cores only), the re-run equal to an analysis with the ADC from the start, and an
ADC that gives no core tried once. In a mesh: test_stroke_node.py."""

from __future__ import annotations

import pydicom
import pytest

from meshdcm.perfusion import analyse_series, load_dsc_series
from meshdcm.stroke import StrokePhantomSpec, make_stroke_phantom, write_stroke_phantom
from meshdcm.stroke.late_adc import KeptAnalyses, rerun_with_adc
from meshdcm.stroke.phantom import write_adc_series

KEYS = ("core_method", "core_ml", "tmax6_ml", "tmax10_ml", "mismatch_ml", "mismatch_ratio", "hir", "side")


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    """The DSC phantom analysed without its ADC (rCBF core), the ADC series beside it."""
    tmp = tmp_path_factory.mktemp("late")
    sp = make_stroke_phantom(StrokePhantomSpec(lesion="medium", shape=(10, 64, 64), slice_thickness=10.0, n_time=60))
    files = write_stroke_phantom(sp, tmp / "dsc")
    write_adc_series(sp, tmp / "adc", pydicom.dcmread(files[0], stop_before_pixels=True))
    series = load_dsc_series(tmp / "dsc")
    result = analyse_series(series, tmp / "out", xp="numpy", write_nifti_files=False, write_png_files=False)
    assert result.stroke["core_method"] == "rcbf"
    return {"tmp": tmp, "series": series, "result": result}


def test_the_rerun_with_a_late_adc_equals_an_analysis_with_it_and_supersedes_the_first(analysed, tmp_path):
    series, result, tmp = analysed["series"], analysed["result"], analysed["tmp"]
    kept = KeptAnalyses(tmp_path / "kept")
    entry = kept.keep(series.study_uid, series, result.maps, result.baseline_frames, method=result.method,
                      stroke=result.stroke)
    assert kept.waiting(series.study_uid, "1.2.3") == [entry]
    stroke = rerun_with_adc(entry, tmp / "adc", tmp_path / "again")
    direct = analyse_series(series, tmp_path / "direct", xp="numpy", write_nifti_files=False, write_png_files=False,
                            adc=tmp / "adc").stroke
    assert {k: stroke[k] for k in KEYS} == {k: direct[k] for k in KEYS} and stroke["core_method"] == "adc"
    for kind in ("seg", "sr", "summary"):  # the same UIDs as the analysis with the ADC; not the rCBF ones
        assert stroke["outputs"][kind]["series_uid"] == direct["outputs"][kind]["series_uid"]
        assert stroke["outputs"][kind]["series_uid"] != result.stroke["outputs"][kind]["series_uid"]
    sr = pydicom.dcmread(stroke["outputs"]["sr"]["files"][0])
    (ref,) = sr.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence
    assert ref.ReferencedSOPInstanceUID == result.stroke["outputs"]["sr"]["sop_instance_uid"]
    assert (tmp_path / "again" / "stroke.json").exists()
    kept.done(entry)
    assert kept.waiting(series.study_uid, "1.2.3") == []


def test_only_rcbf_cores_are_kept_and_an_adc_without_a_core_is_tried_once(analysed, tmp_path):
    series, result = analysed["series"], analysed["result"]
    kept = KeptAnalyses(tmp_path / "kept")
    assert kept.keep(series.study_uid, series, result.maps, result.baseline_frames, method=result.method,
                     stroke={**result.stroke, "core_method": "adc"}) is None
    assert kept.keep(series.study_uid, series, result.maps, result.baseline_frames, method=result.method,
                     stroke={"error": "no normal tissue"}) is None
    entry = kept.keep(series.study_uid, series, result.maps, result.baseline_frames, method=result.method,
                      stroke=result.stroke)
    (tmp_path / "not-adc").mkdir()
    assert rerun_with_adc(entry, tmp_path / "not-adc", tmp_path / "again") is None  # unreadable: rCBF stands
    assert not (tmp_path / "again" / "stroke").exists()  # nothing written under the rCBF objects' UIDs
    kept.tried(entry, "1.2.3")
    assert kept.waiting(series.study_uid, "1.2.3") == [] and len(kept.waiting(series.study_uid, "1.2.4")) == 1
    kept.keep(series.study_uid, series, result.maps, result.baseline_frames, method=result.method, stroke=result.stroke,
              adc_tried="1.2.4")  # analysed again, given an ADC it could not use: that one is not tried again
    assert kept.waiting(series.study_uid, "1.2.4") == [] and len(kept.waiting(series.study_uid, "1.2.3")) == 1
