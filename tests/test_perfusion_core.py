"""Deconvolution, AIF, leakage and concentration units on small synthetic data (NumPy path)."""

from __future__ import annotations

import numpy as np
import pytest
from perfusion_fixtures import brain_phantom, phantom  # noqa: F401  (pytest fixtures)

from meshdcm.perfusion import boxerman_correction, deconvolve, manual_aif, select_aif
from meshdcm.perfusion.concentration import detect_baseline, otsu_threshold, signal_to_concentration
from meshdcm.perfusion.deconvolution import convolution_matrix, osvd_per_voxel
from meshdcm.perfusion.errors import PerfusionError
from meshdcm.perfusion.phantom import gamma_variate


def _curves(delays=(0.0,), mtts=(4.0,), tr=1.0, n=60, noise=0.0, seed=0):
    tf = np.arange(0, 120, 0.01)
    samp = np.rint(np.arange(n) * tr / 0.01).astype(int)
    aif = gamma_variate(tf, 10, 3, 1.5)[samp]
    cols = []
    for d in delays:
        for mtt in mtts:
            c = np.convolve(gamma_variate(tf, 10 + d, 3, 1.5), np.exp(-tf / mtt))[: tf.size] * 0.01
            cols.append(c[samp])
    c = np.array(cols).T
    rng = np.random.default_rng(seed)
    return aif, c + noise * c.max() * rng.standard_normal(c.shape)


def test_batched_osvd_matches_per_voxel_loop():
    aif, c = _curves(delays=(0, 1.5, 3), mtts=(2, 4, 8, 12), noise=0.03)
    dec = deconvolve(c, aif, 1.0, method="osvd", xp=np, chunk=5)  # chunk < nvox exercises chunking
    ref = osvd_per_voxel(c, aif, 1.0, 0.095)
    np.testing.assert_allclose(dec.threshold, ref[:, 1], atol=1e-6)
    np.testing.assert_allclose(dec.flow, ref[:, 0], rtol=2e-4)


def test_circulant_svd_recovers_flow_and_delay_noise_free():
    aif, c = _curves(delays=(0, 2, 4), mtts=(8,))
    dec = deconvolve(c, aif, 1.0, method="csvd", xp=np, threshold=0.02)
    assert np.allclose(dec.flow, 1.0, atol=0.12)  # F = 1 in these curves; truncation costs a few %
    assert np.ptp(dec.flow) < 0.02 * dec.flow.mean()  # and the delay changes nothing
    # Tmax follows the delay (its zero-delay value carries the 1-2 s discretisation offset of SVD methods)
    np.testing.assert_allclose(dec.tmax - dec.tmax[0], [0, 2, 4], atol=0.5)
    assert 0 <= dec.tmax[0] <= 2


def test_ssvd_matrix_is_lower_triangular_and_circulant_wraps():
    a = convolution_matrix(np.arange(1.0, 5.0), 1.0, circulant=False)
    assert np.allclose(np.triu(a, 1), 0)
    c = convolution_matrix(np.arange(1.0, 5.0), 1.0, circulant=True)
    assert c.shape == (8, 8) and np.allclose(c[:, 1], np.roll(c[:, 0], 1))


def test_unknown_method_and_bad_aif_are_rejected():
    aif, c = _curves()
    with pytest.raises(ValueError, match="unknown deconvolution method"):
        deconvolve(c, aif, 1.0, method="fft")
    with pytest.raises(ValueError, match="samples"):
        deconvolve(c, aif[:-1], 1.0)


def test_signal_to_concentration_inverts_the_signal_model():
    conc = np.linspace(0, 20, 30, dtype=np.float32)[:, None]
    s = 500 * np.exp(-0.03 * conc)
    s[:5] = 500
    c, s0 = signal_to_concentration(s, 0.03, (0, 5), xp=np)
    np.testing.assert_allclose(c, np.where(np.arange(30)[:, None] < 5, 0, conc), atol=1e-3)
    with pytest.raises(PerfusionError, match="EchoTime"):
        signal_to_concentration(s, 0.0, (0, 5), xp=np)


def test_baseline_detection_and_otsu():
    curve = np.r_[np.full(12, 100.0), 60, 40, 50, 80, np.full(20, 95.0)]
    assert detect_baseline(curve) == (1, 11)
    with pytest.raises(PerfusionError, match="no bolus passage"):
        detect_baseline(np.full(40, 100.0))
    vals = np.r_[np.full(100, 5.0), np.full(100, 500.0)]
    assert 5 < otsu_threshold(vals) < 500


def test_boxerman_correction_removes_leakage_term():
    aif, c = _curves(mtts=(4.0,) * 20)
    ref = c.mean(1)
    dt = 1.0
    integ = np.concatenate([[0], np.cumsum(0.5 * (ref[1:] + ref[:-1]) * dt)])
    k2 = np.linspace(-0.02, 0.05, 20)
    leaky = c - integ[:, None] * k2[None]
    lc = boxerman_correction(leaky, dt, reference=ref, xp=np)
    np.testing.assert_allclose(lc.k2, k2, atol=1e-4)
    np.testing.assert_allclose(lc.corrected, c, atol=1e-3 * c.max())


def test_manual_aif_forms():
    conc = np.random.default_rng(1).random((30, 2, 3, 4)).astype(np.float32)
    by_voxels = manual_aif([[0, 1, 2], [1, 2, 3]], conc)
    np.testing.assert_allclose(by_voxels.curve, (conc[:, 0, 1, 2] + conc[:, 1, 2, 3]) / 2, rtol=1e-6)
    mask = np.zeros((2, 3, 4), bool)
    mask[0, 1, 2] = mask[1, 2, 3] = True
    np.testing.assert_allclose(manual_aif(mask, conc).curve, by_voxels.curve)
    assert manual_aif(np.ones(30), conc).method == "manual-curve"
    with pytest.raises(PerfusionError, match="30 time points"):
        manual_aif(np.ones(29), conc)


def test_automatic_aif_prefers_early_narrow_arteries(phantom):  # noqa: F811
    conc, _ = signal_to_concentration(phantom.signal, phantom.spec.te, (1, 10), xp=np)
    aif = select_aif(conc, phantom.tissue | phantom.artery | phantom.vein, phantom.times)
    assert all(phantom.artery[tuple(v)] for v in aif.voxels)
    assert not any(phantom.vein[tuple(v)] for v in aif.voxels)
    assert np.corrcoef(aif.curve, phantom.aif)[0, 1] > 0.99


def test_tmax_is_interpolated_between_frames_and_follows_the_delay():
    """At TR 1.5 s a delay of 0.5 s used to move Tmax by 0 or 1.5 s; the parabola through the residue's peak and
    its neighbours follows it to a tenth of a second (the zero-delay offset of SVD residues stays, docs)."""
    delays = np.arange(0.0, 8.01, 0.5)
    aif, c = _curves(delays=delays, mtts=(4.5,), tr=1.5)
    for method in ("csvd", "osvd"):
        dec = deconvolve(c, aif, 1.5, method=method, xp=np)
        offset = dec.tmax - delays
        assert np.ptp(offset) < 0.2, (method, np.round(offset, 2))
        assert 0.5 < offset[0] < 2.5
    ssvd = deconvolve(c, aif, 1.5, method="ssvd", xp=np)
    assert np.all(np.isfinite(ssvd.tmax)) and ssvd.tmax[0] >= 0  # Toeplitz residue: no wrap, ends not interpolated


def test_tmax_wraps_to_negative_when_the_tissue_leads_the_aif():
    aif, c = _curves(delays=(0.0, 3.0), mtts=(4.0,))
    late = deconvolve(c, np.roll(aif, 8), 1.0, method="osvd", xp=np)  # the AIF 8 s late: tissue 8 s / 5 s ahead
    on_time = deconvolve(c, aif, 1.0, method="osvd", xp=np)
    assert np.all(late.tmax < 0)
    np.testing.assert_allclose(late.tmax - on_time.tmax[0], [-8.0, -5.0], atol=0.2)


def test_the_brain_phantom_holds_the_truth_it_claims(brain_phantom):  # noqa: F811
    """Its sinus carries the arterial curve's area, its AIF voxels 0.4 of it plus grey matter, and its maps the
    GM/WM values and the delay."""
    from meshdcm.perfusion.constants import KH, RHO

    ph = brain_phantom
    conc, _ = signal_to_concentration(ph.signal, ph.spec.te, (1, 11), xp=np)
    true_area = float(ph.aif.sum())
    assert float(conc[:, ph.vein].mean(1).sum()) == pytest.approx(true_area, rel=0.05)
    gm_fraction = 0.045 * RHO / KH  # the GM curve's area relative to the arterial one (CBV 4.5 ml/100 g)
    assert float(conc[:, ph.artery].mean(1).sum()) == pytest.approx((0.4 + 0.6 * gm_fraction) * true_area, rel=0.05)
    gm, wm, late = ph.labels["GM"], ph.labels["WM"], ph.labels["delayed"]
    assert set(np.unique(ph.cbf[gm])) == {60.0} and set(np.unique(ph.cbv[wm])) == {2.0}
    assert np.allclose(ph.mtt[gm], 4.5) and np.allclose(ph.mtt[wm], 4.8)
    assert set(np.unique(ph.delay[late])) == {8.0} and set(np.unique(ph.delay[(gm | wm) & ~late])) == {0.0}
    assert not (ph.tissue & (ph.artery | ph.vein | ph.labels["CSF"])).any()


def test_automatic_aif_is_not_fooled_by_a_sinus(brain_phantom):  # noqa: F811
    """A voxel full of venous blood peaks higher than a partial-volume artery; the AIF is the earliest cluster."""
    ph = brain_phantom
    conc, _ = signal_to_concentration(ph.signal, ph.spec.te, (1, 10), xp=np)
    assert conc[:, ph.vein].mean(1).max() > conc[:, ph.artery].mean(1).max()
    aif = select_aif(conc, ph.tissue | ph.artery | ph.vein | ph.labels["CSF"], ph.times)
    assert len(aif.voxels) >= 3 and all(ph.artery[tuple(v)] for v in aif.voxels)
