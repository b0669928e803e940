"""Acceptance on the stroke phantom: core and Tmax > 6 s volumes against the truth, for three lesion sizes and none.

Criterion (the issue): within 10 % or 5 ml of the truth, whichever is larger; without a lesion both under 5 ml.
The whole chain runs (brain mask, baseline, dR2*, automatic AIF, oSVD, maps, the stroke rules); ``pytest -s``
prints the table that docs/stroke.md quotes.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from meshdcm.perfusion import analyse_loaded
from meshdcm.stroke import ADCError, StrokePhantomSpec, analyse_dsc, make_stroke_phantom
from meshdcm.stroke.adc import adc_units_factor
from meshdcm.stroke.phantom import write_adc_series

ROWS = []


def tolerance(truth: float) -> float:
    return max(0.10 * truth, 5.0)


def analyse(sp, adc=None):
    series = sp.as_series()
    pm, aif, baseline = analyse_loaded(series, "osvd", xp="numpy")
    assert all(sp.phantom.artery[tuple(v)] for v in aif.voxels), "the automatic AIF must come from arteries"
    return analyse_dsc(series, pm, baseline, None, method="osvd", adc=adc, write_dicom=False)


@pytest.fixture(scope="module", autouse=True)
def table():
    yield
    print("\nstroke phantom (64x64x20, 3 mm x 3 mm x 5 mm, 80 frames, TR 1 s, SNR 50): measured / truth, ml")
    print(f"{'lesion':9} {'core':>14} {'Tmax>6':>14} {'Tmax>10':>14} {'mismatch':>14}  core by")
    for lesion, method, r, t in ROWS:
        cells = [f"{getattr(r, k):6.1f} /{t[k]:6.1f}" for k in ("core_ml", "tmax6_ml", "tmax10_ml", "mismatch_ml")]
        print(f"{lesion:9} " + " ".join(f"{c:>14}" for c in cells) + f"  {method}")


@pytest.mark.parametrize("lesion", ["small", "medium", "large"])
def test_core_and_hypoperfusion_volumes_match_the_truth(lesion):
    sp = make_stroke_phantom(StrokePhantomSpec(lesion=lesion))
    r = analyse(sp)
    t = sp.truth_ml
    ROWS.append((lesion, "rCBF", r, t))
    assert abs(r.core_ml - t["core_ml"]) <= tolerance(t["core_ml"]), (r.core_ml, t)
    assert abs(r.tmax6_ml - t["tmax6_ml"]) <= tolerance(t["tmax6_ml"]), (r.tmax6_ml, t)
    assert abs(r.tmax10_ml - t["tmax10_ml"]) <= tolerance(t["tmax10_ml"]), (r.tmax10_ml, t)
    assert r.side == "left" and r.warnings == []
    # the regions, not only their sizes: overlap (Dice) with the truth
    for key in ("core", "tmax6"):
        got, truth = getattr(r.masks, key), getattr(sp, key)
        assert 2 * (got & truth).sum() / (got.sum() + truth.sum()) > 0.9, key
    assert r.defuse3["all_met"] == (lesion != "large")  # the large core is over 70 ml


def test_noisier_series_still_within_the_tolerance():
    sp = make_stroke_phantom(StrokePhantomSpec(lesion="medium", snr=25.0))
    r = analyse(sp)
    t = sp.truth_ml
    ROWS.append(("med SNR25", "rCBF", r, t))
    assert abs(r.core_ml - t["core_ml"]) <= tolerance(t["core_ml"]), (r.core_ml, t)
    assert abs(r.tmax6_ml - t["tmax6_ml"]) <= tolerance(t["tmax6_ml"]), (r.tmax6_ml, t)


def test_no_lesion_no_volumes():
    sp = make_stroke_phantom(StrokePhantomSpec(lesion="none"))
    r = analyse(sp)
    ROWS.append(("none", "rCBF", r, sp.truth_ml))
    assert r.core_ml < 5.0 and r.tmax6_ml < 5.0
    assert r.side is None and not r.defuse3["all_met"]


@pytest.mark.parametrize("lesion", ["small", "medium", "large"])
def test_adc_core_from_a_series_on_another_grid(tmp_path, lesion):
    sp = make_stroke_phantom(StrokePhantomSpec(lesion=lesion))
    like = Dataset()
    like.update({"PatientID": "PHANTOM", "PatientName": "Phantom^DSC", "StudyInstanceUID": "1.2.826.0.1.3680043.2.1",
                 "FrameOfReferenceUID": "1.2.826.0.1.3680043.2.2"})
    write_adc_series(sp, tmp_path / "adc", like, slope=1e-3)  # 2 x 2 x 4.5 mm, stored as x10^-3 mm2/s
    r = analyse(sp, adc=tmp_path / "adc")
    t = sp.truth_ml
    ROWS.append((lesion, "ADC", r, t))
    assert r.core_method == "adc" and abs(r.core_ml - t["core_ml"]) <= tolerance(t["core_ml"]), (r.core_ml, t)
    assert abs(r.tmax6_ml - t["tmax6_ml"]) <= tolerance(t["tmax6_ml"])
    assert r.reference["adc_series_uid"] == str(pydicom.dcmread(next((tmp_path / "adc").iterdir())).SeriesInstanceUID)


def test_adc_interpolated_with_the_background_is_no_core(tmp_path):
    """Thick DSC slices at the top and bottom of the brain sample the ADC between brain and its zero background:
    a 'low ADC' that is no core (it once gave 70 ml of false core here)."""
    sp = make_stroke_phantom(StrokePhantomSpec(lesion="medium", shape=(10, 64, 64), slice_thickness=10.0, n_time=60))
    like = Dataset()
    like.update({"PatientID": "PHANTOM", "StudyInstanceUID": "1.2.826.0.1.3680043.2.1",
                 "FrameOfReferenceUID": "1.2.826.0.1.3680043.2.2"})
    write_adc_series(sp, tmp_path / "adc", like)
    r = analyse(sp, adc=tmp_path / "adc")
    assert abs(r.core_ml - sp.truth_ml["core_ml"]) <= tolerance(sp.truth_ml["core_ml"]), (r.core_ml, sp.truth_ml)
    assert not r.masks.core[[0, 1, -2, -1]].any()


def test_an_unusable_adc_falls_back_to_the_rcbf_core(tmp_path):
    sp = make_stroke_phantom(StrokePhantomSpec(lesion="small"))
    (tmp_path / "adc").mkdir()
    (tmp_path / "adc" / "not-dicom.txt").write_text("no images here")
    r = analyse(sp, adc=tmp_path / "adc")
    assert r.core_method == "rcbf" and abs(r.core_ml - sp.truth_ml["core_ml"]) <= tolerance(sp.truth_ml["core_ml"])
    assert r.warnings and "ADC series was not used" in r.warnings[0]


def test_adc_units_are_told_by_their_values():
    brain = np.full(1000, 800.0)
    assert adc_units_factor(brain) == 1.0
    assert adc_units_factor(brain * 1e-3) == 1e3
    assert adc_units_factor(brain * 1e-6) == 1e6
    with pytest.raises(ADCError, match="fits no known ADC unit"):
        adc_units_factor(brain * 50)
    with pytest.raises(ADCError, match="no positive value"):
        adc_units_factor(np.zeros(10))


@pytest.mark.parametrize("lesion", ["small", "medium", "large", "none"])
def test_the_default_deconvolution_meets_the_phantom_volumes(lesion):
    """The stroke volumes with the product's default (the model deconvolution; the rCBF core on oSVD's flow, as
    analyse_series does).  Measured, ml: Tmax > 6 s 104.0/108.9, 225.0/230.4, 286.0/302.1; core 12.9/11.6,
    44.7/44.5, 119.9/120.3; Tmax > 10 s exact.  With the dispersion grid 0, 1.5, 3 s the shell (1 s dispersion, true
    Tmax 7.3 s) read 5.9 s and Tmax > 6 s was 15-19 % low (docs/perfusion.md)."""
    from meshdcm.perfusion.deconvolution import DEFAULT_METHOD

    sp = make_stroke_phantom(StrokePhantomSpec(lesion=lesion))
    series = sp.as_series()
    pm, _, baseline = analyse_loaded(series, DEFAULT_METHOD, xp="numpy", svd_core_cbf=True)
    r = analyse_dsc(series, pm, baseline, None, method=DEFAULT_METHOD, write_dicom=False)
    t = sp.truth_ml
    ROWS.append((lesion, "rCBF, model", r, t))
    if lesion == "none":
        assert r.core_ml < 5.0 and r.tmax6_ml < 5.0
        return
    for key in ("core_ml", "tmax10_ml", "tmax6_ml"):
        assert abs(getattr(r, key) - t[key]) <= tolerance(t[key]), (key, getattr(r, key), t)
