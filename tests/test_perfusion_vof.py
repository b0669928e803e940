"""The venous output function and the partial-volume correction of the AIF (meshdcm.perfusion.vof)."""

from __future__ import annotations

import numpy as np
import pytest
from perfusion_fixtures import brain_phantom  # noqa: F401  (pytest fixture)

from meshdcm.perfusion import AIF, BrainPhantomSpec, correct_aif, make_brain_phantom, select_aif, select_vof
from meshdcm.perfusion.concentration import brain_mask, signal_to_concentration
from meshdcm.perfusion.phantom import gamma_variate
from meshdcm.perfusion.vof import VOF, first_pass_area, gamma_variate_fit


def _conc(ph):
    base = (1, int(ph.spec.t0 / ph.spec.tr) - 1)
    conc, _ = signal_to_concentration(ph.signal, ph.spec.te, base, xp="numpy")
    return conc, base


def test_the_vof_is_found_in_the_sinus_and_restores_the_arterial_area(brain_phantom):  # noqa: F811
    ph = brain_phantom
    conc, base = _conc(ph)
    mask = brain_mask(ph.signal)
    aif = select_aif(conc, mask, ph.times)
    assert all(ph.artery[tuple(v)] for v in aif.voxels)  # the partial-volume arteries, not the sinus
    vof = select_vof(conc, mask, ph.times, aif, te=ph.spec.te, baseline=base)
    assert vof is not None and not vof.saturated
    assert len(vof.voxels) == 6 and all(ph.vein[tuple(v)] for v in vof.voxels)
    true_area = float(ph.aif.sum() * ph.spec.tr)
    measured = float(aif.curve.sum() * ph.spec.tr)
    assert measured / true_area == pytest.approx(0.4 + 0.6 * 0.045 * 1.04 / 0.733, rel=0.05)  # 0.4 artery + tissue
    scaled, record = correct_aif(aif, vof, ph.times)
    assert record.applied and record.area_method == "integral" and record.reason is None
    assert scaled.scale == pytest.approx(record.vof_area / record.aif_area)
    assert float(scaled.curve.sum() * ph.spec.tr) == pytest.approx(true_area, rel=0.05)
    assert scaled.correction is record and record.to_dict()["vof_voxels"] == vof.voxels.tolist()


def test_whole_curve_areas_survive_recirculation_where_gamma_first_passes_do_not():
    """Why the areas are plain integrals: a dispersed venous first pass overlaps the second pass."""
    dtf = 0.05
    tf = np.arange(0, 200, dtf)
    first = gamma_variate(tf, 15, 3, 1.5)
    recirculation = 0.25 * np.convolve(gamma_variate(tf, 23, 3, 1.5), np.exp(-tf / 4) / 4)[: tf.size] * dtf
    steady = 0.08 * first.max() * (1 - np.exp(-np.clip(tf - 25, 0, None) / 6))
    arterial = first + recirculation + steady
    transit = np.where(tf >= 5, np.exp(-(tf - 5) / 3) / 3, 0.0)  # unit area: delay 5 s, dispersion 3 s
    venous = np.convolve(arterial, transit)[: tf.size] * dtf
    for tr, end in ((1.5, 60.0), (1.0, 90.0)):
        t = np.arange(0, end, tr)
        s = np.rint(t / dtf).astype(int)
        aif = AIF((0.4 * arterial[s]).astype(np.float32), np.empty((0, 3), int), "auto")
        vof = VOF(venous[s].astype(np.float32), np.zeros((1, 3), int))
        by_integral = correct_aif(aif, vof, t)[1].scale * 0.4
        by_gamma = correct_aif(aif, vof, t, area="gamma")[1].scale * 0.4
        assert abs(by_integral - 1) < 0.06, by_integral
        assert abs(by_gamma - 1) > 0.15, by_gamma


def test_gamma_variate_fit_recovers_a_first_pass_area():
    t = np.arange(0, 60, 1.5)
    curve = 7.0 * gamma_variate(t, 12.3, 3.0, 1.5)
    fit = gamma_variate_fit(curve, t)
    true_area = 7.0 * 1.5 ** 4 * 6.0  # K beta^(alpha+1) Gamma(alpha+1)
    assert fit["r2"] > 0.99 and fit["area"] == pytest.approx(true_area, rel=0.03)
    assert first_pass_area(curve, t, fit=False)[0] is None
    assert gamma_variate_fit(np.zeros(40), t[:40]) is None


def test_a_saturated_sinus_is_flagged_and_an_implausible_scale_is_not_applied():
    # a 35 % GM signal drop: a voxel of venous blood falls into the noise floor at the peak
    ph = make_brain_phantom(BrainPhantomSpec(gm_peak_drop=0.35, snr=60, seed=2))
    conc, base = _conc(ph)
    mask = brain_mask(ph.signal)
    aif = select_aif(conc, mask, ph.times)
    vof = select_vof(conc, mask, ph.times, aif, te=ph.spec.te, baseline=base)
    assert vof.saturated
    scaled, record = correct_aif(aif, vof, ph.times)
    assert record.applied and record.vof_saturated and "lower bound" in record.reason
    assert 1 < scaled.scale < 1 / 0.4  # partly corrected
    tiny = VOF(aif.curve * 0.1, vof.voxels)
    same, refused = correct_aif(aif, tiny, ph.times)
    assert not refused.applied and "outside" in refused.reason and same.scale == 1.0
    assert np.array_equal(same.curve, aif.curve)
    none, missing = correct_aif(aif, None, ph.times)
    assert not missing.applied and "no venous output function" in missing.reason
    with pytest.raises(ValueError, match="unknown area"):
        correct_aif(aif, vof, ph.times, area="peak")
