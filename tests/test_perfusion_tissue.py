"""Tissue classes without a segmentation, NAWM, relative maps and the per-tissue summary in perfusion.json."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
from perfusion_fixtures import brain_dir, brain_phantom, brain_result  # noqa: F401  (pytest fixtures)

from meshdcm.perfusion import (
    BrainPhantomSpec, PerfusionError, PerfusionMaps, analyse_series, classify_tissue, make_brain_phantom,
    write_phantom_dicom,
)


def _dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def test_tissue_classes_match_the_phantom(brain_result, brain_phantom):  # noqa: F811
    ph, tissue = brain_phantom, brain_result[0].maps.tissue
    assert _dice(tissue.gm, ph.labels["GM"]) > 0.95 and _dice(tissue.wm, ph.labels["WM"]) > 0.95
    assert not (tissue.parenchyma & (ph.artery | ph.vein)).any()  # vessels and the sinus are not tissue
    assert (tissue.parenchyma & ph.labels["CSF"]).sum() < 0.05 * ph.labels["CSF"].sum()
    assert _dice(tissue.hypoperfused, ph.labels["delayed"]) > 0.95
    assert tissue.lesion_side == "left"  # the delayed region lies at +x (LPS): the patient's left
    # NAWM: white matter, none of it delayed, all of it in the other (right, -x) hemisphere
    assert tissue.nawm.sum() > 500 and (tissue.nawm & ph.labels["WM"]).sum() >= 0.99 * tissue.nawm.sum()
    assert not (tissue.nawm & ph.labels["delayed"]).any()
    midline = (ph.signal.shape[3] - 1) / 2
    assert np.argwhere(tissue.nawm)[:, 2].max() < midline


def test_perfusion_json_offers_per_tissue_medians_in_physiological_units(brain_result, brain_phantom):  # noqa: F811
    result, out = brain_result
    doc = json.loads((out / "perfusion.json").read_text())
    s = doc["summary"]
    assert s["region"] == "parenchyma" and set(s["tissues"]) == {"GM", "WM", "hypoperfused"}
    gm, wm, hypo = (s["tissues"][k] for k in ("GM", "WM", "hypoperfused"))
    for entry in (gm, wm, hypo):
        assert {"CBF", "CBV", "MTT", "Tmax", "rCBF", "rCBV", "voxels", "volume_ml"} <= set(entry)
    assert gm["CBF"] == pytest.approx(60, rel=0.2) and gm["CBV"] == pytest.approx(4.5, rel=0.2)
    assert wm["CBF"] == pytest.approx(25, rel=0.2) and wm["CBV"] == pytest.approx(2.0, rel=0.2)
    assert gm["MTT"] == pytest.approx(4.5, rel=0.2) and wm["MTT"] == pytest.approx(4.8, rel=0.2)
    assert gm["Tmax"] < 3 and hypo["Tmax"] > 8
    true_ml = brain_phantom.labels["delayed"].sum() * 1.8 * 1.8 * 5.0 / 1000.0
    assert hypo["volume_ml"] == pytest.approx(true_ml, rel=0.1)
    assert wm["rCBV"] == pytest.approx(1.0, abs=0.05) and gm["rCBV"] == pytest.approx(4.5 / 2.0, rel=0.2)
    # the backward-compatible keys: over the parenchyma, not the brain mask with its vessels
    assert s["median_CBF"] == pytest.approx(np.median(result.maps.maps["CBF"][result.maps.tissue.parenchyma]),
                                            rel=1e-3)
    assert 20 < s["mean_CBF"] < 60 and 1.5 < s["mean_CBV"] < 5
    assert np.mean(result.maps.maps["CBV"][result.maps.mask]) > s["mean_CBV"]  # vessels inflate a mask mean
    assert doc["aif_scale"] > 2 and doc["vof_voxels"] == doc["partial_volume_correction"]["vof_voxels"]
    assert doc["notes"] == []


def test_relative_maps_are_derived_series_with_their_windows(brain_result):  # noqa: F811
    result, _ = brain_result
    for name in ("rCBV", "rCBF"):
        files = result.outputs[name].dicom_files
        ds = pydicom.dcmread(files[0])
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY", name.upper()]
        assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (1.0, 2.0)  # 0..2
        assert result.outputs[name].png and result.outputs[name].nifti
    nawm = result.maps.tissue.nawm
    assert np.median(result.maps.maps["rCBF"][nawm]) == pytest.approx(1.0, abs=1e-3)


def test_without_a_lesion_nawm_takes_both_hemispheres(tmp_path):
    ph = make_brain_phantom(BrainPhantomSpec(shape=(2, 64, 64), lesion_delay=0.0, seed=1))
    write_phantom_dicom(ph, tmp_path / "dsc")
    result = analyse_series(tmp_path / "dsc", tmp_path / "out", xp="numpy", write_dicom=False,
                            write_png_files=False, write_nifti_files=False)
    tissue = result.maps.tissue
    assert tissue.hypoperfused.sum() == 0 and tissue.lesion_side is None
    x = np.argwhere(tissue.nawm)[:, 2]
    assert x.min() < 25 and x.max() > 38
    assert result.summary["tissues"]["hypoperfused"]["volume_ml"] == 0.0
    assert result.summary["tissues"]["hypoperfused"]["CBF"] is None


def test_maps_without_tissue_say_so_instead_of_failing():
    mask = np.ones((1, 4, 4), bool)
    maps = PerfusionMaps("osvd", {"CBV": np.zeros((1, 4, 4), np.float32), "Tmax": np.zeros((1, 4, 4), np.float32)},
                         mask)
    with pytest.raises(PerfusionError, match="positive blood volume"):
        classify_tissue(maps)


def test_a_series_without_arterial_contrast_is_flagged_not_reported(tmp_path):
    """meshdcm.synthetic's DSC series drops the signal alike everywhere: the 'AIF' is tissue, CBV ~60 ml/100 g."""
    from meshdcm.synthetic import mr_brain, write_study

    write_study(mr_brain(seed=0, size="small", series=("dsc",)), tmp_path / "dsc")
    result = analyse_series(tmp_path / "dsc", tmp_path / "out", xp="numpy", write_dicom=False,
                            write_png_files=False, write_nifti_files=False)
    assert any("not physiological" in note for note in result.notes), result.notes
    assert json.loads((tmp_path / "out" / "perfusion.json").read_text())["notes"] == result.notes
