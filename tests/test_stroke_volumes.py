"""The stroke rules on small hand-made maps: each rule of meshdcm.stroke.volumes, one at a time."""

from __future__ import annotations

import numpy as np
import pytest

from meshdcm.stroke import StrokeError, StrokeRules, analyse_stroke, defuse3, remove_small_components, voxel_volume_ml

VOXEL_ML = 0.1  # 10 voxels = 1 ml


def maps(shape=(6, 40, 40)):
    """Normal tissue everywhere: CBF 50, CBV 4, Tmax 1 s, baseline signal 1000, all of it brain."""
    rng = np.random.default_rng(0)
    cbf = np.full(shape, 50.0) + rng.normal(0, 2, shape)
    cbv = np.full(shape, 4.0) + rng.normal(0, 0.1, shape)
    tmax = np.full(shape, 1.0)
    baseline = np.full(shape, 1000.0)
    return cbf, cbv, tmax, np.ones(shape, bool), baseline


def block(shape, z, y, x):
    m = np.zeros(shape, bool)
    m[z, y, x] = True
    return m


def test_rules_are_checked_when_built_naming_the_argument():
    with pytest.raises(ValueError, match="rcbf_core"):
        StrokeRules(rcbf_core=30)
    with pytest.raises(ValueError, match="tmax_severe"):
        StrokeRules(tmax_severe=5)
    with pytest.raises(ValueError, match="min_core_ml"):
        StrokeRules(min_core_ml=-1)
    assert StrokeRules().to_dict()["tmax_hypoperfusion"] == 6.0


def test_voxel_volume_from_pixel_spacing_and_slice_spacing():
    a = np.eye(4)
    a[:3, 0], a[:3, 1], a[:3, 2] = [1.8, 0, 0], [0, 1.8, 0], [0, 0.5, 5.0]  # a sheared slice step: its length counts
    assert voxel_volume_ml(a) == pytest.approx(1.8 * 1.8 * np.hypot(0.5, 5.0) / 1000)
    a[:3, 2] = 0
    with pytest.raises(StrokeError, match="spacing"):
        voxel_volume_ml(a)


def test_small_components_are_removed_six_connected():
    m = np.zeros((3, 10, 10), bool)
    m[1, 1:4, 1:4] = True  # 9 voxels
    m[1, 6, 6] = m[1, 7, 7] = True  # touching by a corner only: two components of 1
    kept, gone = remove_small_components(m, 5)
    assert kept.sum() == 9 and gone == 2 and not kept[1, 6, 6]


def test_tmax_regions_volumes_and_cleaning():
    cbf, cbv, tmax, brain, base = maps()
    shape = cbf.shape
    lesion = block(shape, slice(1, 5), slice(5, 25), slice(5, 20))  # 4*20*15 = 1200 voxels = 120 ml
    tmax[lesion] = 8.0
    severe = block(shape, slice(2, 4), slice(10, 20), slice(8, 16))  # 160 voxels
    tmax[severe] = 12.0
    tmax[block(shape, 0, slice(30, 33), slice(30, 33))] = 9.0  # 9 voxels = 0.9 ml < 5 ml: noise
    r = analyse_stroke(cbf, cbv, tmax, brain, VOXEL_ML, baseline=base)
    assert r.tmax6_ml == 120.0 and r.tmax10_ml == 16.0 and r.core_ml == 0.0
    assert r.removed_ml["tmax6_small_components"] == pytest.approx(0.9)
    assert r.hir == pytest.approx(16 / 120, abs=0.01) and r.mismatch_ratio is None and r.mismatch_ml == 120.0
    assert r.core_method == "rcbf" and r.reference["cbf"] == pytest.approx(50, abs=1)


def test_rcbf_core_only_inside_the_delayed_region_and_holes_count():
    cbf, cbv, tmax, brain, base = maps()
    shape = cbf.shape
    lesion = block(shape, slice(1, 5), slice(5, 25), slice(5, 25))
    tmax[lesion] = 11.0
    core = block(shape, slice(2, 4), slice(10, 20), slice(10, 20))  # 200 voxels = 20 ml
    cbf[core] = 10.0  # 20 % of normal
    cbv[core] = 1.5
    tmax[block(shape, slice(2, 4), slice(14, 16), slice(14, 16))] = 0.0  # noisy Tmax inside the core: a hole
    old_infarct = block(shape, slice(1, 5), slice(30, 36), slice(30, 36))  # low flow, no delay: not acute
    cbf[old_infarct] = 8.0
    r = analyse_stroke(cbf, cbv, tmax, brain, VOXEL_ML, baseline=base)
    assert r.core_ml == 20.0 and not (r.masks.core & old_infarct).any()
    assert r.masks.core[core].all() and not (r.masks.core & ~r.masks.tmax6).any()  # the core is inside Tmax > 6 s
    assert r.mismatch_ml == pytest.approx(r.tmax6_ml - 20.0) and r.masks.mismatch.sum() * VOXEL_ML == pytest.approx(
        r.mismatch_ml)
    assert r.mismatch_ratio == pytest.approx(r.tmax6_ml / 20.0, abs=0.01)


def test_csf_is_bloodless_and_bright_and_a_bloodless_core_is_still_core():
    cbf, cbv, tmax, brain, base = maps()
    shape = cbf.shape
    lesion = block(shape, slice(0, 6), slice(5, 30), slice(5, 30))
    tmax[lesion] = 9.0
    ventricle = block(shape, slice(1, 5), slice(6, 12), slice(6, 12))  # no blood, bright, random Tmax
    cbf[ventricle], cbv[ventricle], base[ventricle] = 1.0, 0.1, 1600.0
    tmax[ventricle] = np.random.default_rng(1).uniform(-10, 40, ventricle.sum())
    severe_core = block(shape, slice(1, 5), slice(18, 28), slice(18, 28))  # as bloodless, but tissue signal
    cbf[severe_core], cbv[severe_core] = 2.0, 0.3
    air = block(shape, slice(0, 6), slice(36, 40), slice(0, 40))  # dark, noise maps
    base[air], tmax[air], cbv[air], cbf[air] = 20.0, 20.0, 9.0, 3.0
    r = analyse_stroke(cbf, cbv, tmax, brain, VOXEL_ML, baseline=base)
    assert r.core_ml == pytest.approx(40.0) and not (r.masks.core & ventricle).any()
    assert not ((r.masks.tmax6 | r.masks.core) & (ventricle | air)).any()
    assert r.masks.csf[ventricle].all() and r.masks.csf[air].all()
    without_signal = analyse_stroke(cbf, cbv, tmax, brain, VOXEL_ML)  # no baseline: CSF by CBV alone
    assert not (without_signal.masks.core & severe_core).any()  # the bloodless core goes with CSF: why the pipeline
    assert without_signal.masks.csf[severe_core].all()  # passes the baseline signal


def test_adc_core_with_csf_excluded():
    cbf, cbv, tmax, brain, base = maps()
    shape = cbf.shape
    adc = np.full(shape, 800.0)
    core = block(shape, slice(1, 4), slice(5, 15), slice(5, 15))  # 300 voxels = 30 ml
    adc[core] = 450.0
    adc[block(shape, 5, slice(30, 32), slice(30, 32))] = 500.0  # 4 voxels: under 1 ml
    adc[block(shape, slice(1, 3), slice(30, 35), slice(30, 35))] = 3000.0  # CSF
    tmax[block(shape, slice(0, 6), slice(0, 20), slice(0, 20))] = 8.0
    r = analyse_stroke(cbf, cbv, tmax, brain, VOXEL_ML, baseline=base, adc=adc)
    assert r.core_method == "adc" and r.core_ml == 30.0 and r.removed_ml["core_small_components"] == 0.4
    assert r.tmax6_ml == 240.0 and r.core_outside_tmax6_ml == 0.0 and r.mismatch_ml == 210.0
    assert r.masks.csf[1, 31, 31]


def test_adc_core_is_counted_on_the_adc_grid():
    """An ADC on its own, finer grid: the core is found and counted there (its voxel volume, its small components,
    the DSC brain mask brought onto it; nothing outside the DSC slab) and shown on the DSC grid."""
    from meshdcm.stroke import ADCMap

    cbf, cbv, tmax, brain, base = maps()  # DSC: 6 x 40 x 40 voxels of 5 x 5 x 4 mm = 0.1 ml
    dsc_affine = np.diag([5.0, 5.0, 4.0, 1.0])
    adc_affine = np.diag([2.5, 2.5, 4.0, 1.0])  # 2 x 2 ADC voxels of 0.025 ml in each DSC voxel, one slice more
    adc_affine[:3, 3] = [-1.25, -1.25, 0.0]
    native = np.full((7, 80, 80), 800.0, np.float32)
    native[1:4, 10:30, 11:31] = 450.0  # 1,200 voxels = 30 ml, its edge in the middle of DSC voxels
    native[5, 60:64, 60:65] = 500.0  # 20 voxels = 0.5 ml: removed
    native[6, 40:60, 40:60] = 450.0  # beyond the DSC slab: not counted
    brain[:, 30:, :5] = False  # outside the DSC brain mask: not counted
    native[2, 60:80, 0:10] = 450.0
    tmax[:, :, :10] = 8.0  # Tmax > 6 s over DSC columns 0-9 = ADC columns 0-19: 9 of the core's 20 columns
    adc = ADCMap(np.full(cbf.shape, 800.0, np.float32), "1.2.3", 1.0, native, adc_affine)
    assert adc.voxel_ml == pytest.approx(0.025)
    r = analyse_stroke(cbf, cbv, tmax, brain, VOXEL_ML, baseline=base, adc=adc, affine_lps=dsc_affine)
    assert r.core_method == "adc" and r.core_ml == 30.0 and r.core_voxel_ml == pytest.approx(0.025)
    assert r.removed_ml["core_small_components"] == 0.5
    assert r.core_outside_tmax6_ml == pytest.approx(3 * 20 * 11 * 0.025)  # counted on the ADC grid too
    assert r.mismatch_ml == round(r.tmax6_ml - 30.0, 1)  # the two volumes as measured
    on_dsc = r.masks.core  # the SEG's picture: the DSC voxels at least half core
    assert on_dsc.shape == cbf.shape and on_dsc[1:4, 5:15, 6:15].all()
    assert on_dsc.sum() * VOXEL_ML == pytest.approx(30, abs=3)
    assert not on_dsc[:, 30:, :5].any() and r.reference["core_grid"]["series_uid"] == "1.2.3"
    with pytest.raises(StrokeError, match="affine_lps"):
        analyse_stroke(cbf, cbv, tmax, brain, VOXEL_ML, adc=adc)


def test_defuse3_statement_says_which_criteria_hold():
    ok = defuse3(20.0, 100.0)
    assert ok["all_met"] and "criteria met" in ok["statement"] and "Clinical criteria" in ok["statement"]
    big = defuse3(80.0, 200.0)
    assert not big["core_lt_70ml"] and big["mismatch_ratio_ge_1_8"] and not big["all_met"]
    assert "core 80.0 ml < 70 ml (not met)" in big["statement"]
    small_mismatch = defuse3(20.0, 30.0)
    assert not small_mismatch["mismatch_ge_15ml"] and not small_mismatch["mismatch_ratio_ge_1_8"]
    no_core = defuse3(0.0, 40.0)
    assert no_core["all_met"] and "undefined (no core)" in no_core["statement"]
    nothing = defuse3(0.0, 0.0)
    assert not nothing["all_met"] and not nothing["mismatch_ratio_ge_1_8"]


def test_side_and_quality_warnings():
    cbf, cbv, tmax, brain, base = maps()
    affine = np.diag([2.0, 2.0, 5.0, 1.0])  # columns run to patient left (+x)
    tmax[block(cbf.shape, slice(0, 6), slice(5, 30), slice(25, 38))] = 8.0
    r = analyse_stroke(cbf, cbv, tmax, brain, VOXEL_ML, baseline=base, affine_lps=affine)
    assert r.side == "left" and r.warnings == []
    flipped = affine.copy()
    flipped[0, 0] = -2.0
    assert analyse_stroke(cbf, cbv, tmax, brain, VOXEL_ML, baseline=base, affine_lps=flipped).side == "right"
    venous = np.full(cbf.shape, -3.0)
    venous[:, :5, :] = 2.0
    w = analyse_stroke(cbf, cbv, venous, brain, VOXEL_ML, baseline=base).warnings
    assert w and "AIF arrives after the tissue" in w[0]


def test_maps_of_another_grid_are_refused():
    cbf, cbv, tmax, brain, base = maps()
    with pytest.raises(StrokeError, match="adc map has shape"):
        analyse_stroke(cbf, cbv, tmax, brain, VOXEL_ML, adc=np.zeros((2, 2, 2)))
    with pytest.raises(StrokeError, match="no normal tissue"):
        analyse_stroke(cbf, cbv, np.full(cbf.shape, 9.0), brain, VOXEL_ML)
