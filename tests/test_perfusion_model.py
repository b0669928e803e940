"""Model-based deconvolution (meshdcm.perfusion.model): what it recovers, and that it is not tuned to one residue.

The realistic studies (tests/test_perfusion_realistic.py) have an exponential residue; here the truth is also a
gamma residue of shape 3 (not one of the model's shapes, ``model.ALPHAS``) and a box (plug flow), on the brain
phantom with its true arterial curve, both methods side by side (``pytest -s`` prints the table docs/perfusion.md
quotes).
"""

from __future__ import annotations

import numpy as np
import pytest

from meshdcm.perfusion import BrainPhantomSpec, compute_maps, deconvolve, make_brain_phantom
from meshdcm.perfusion.concentration import signal_to_concentration
from meshdcm.perfusion.model import DISPERSIONS, ResidueDictionary, residue_function
from meshdcm.perfusion.phantom import gamma_variate, tissue_residue


def _curves(shape, delays, mtts, tr=1.5, n=60):
    """Noise-free tissue curves with flow 1/s: the AIF (gamma variate) delayed and convolved on a 0.01 s grid."""
    tf = np.arange(0, n * tr + 10, 0.01)
    samp = np.rint(np.arange(n) * tr / 0.01).astype(int)
    aif = gamma_variate(tf, 12, 3, 1.5)
    cols = [(np.convolve(gamma_variate(tf, 12 + d, 3, 1.5), tissue_residue(tf, m, shape))[:tf.size] * 0.01)[samp]
            for d in delays for m in mtts]
    return aif[samp], np.array(cols).T


@pytest.mark.parametrize("shape, tmax_tolerance", [(1, 0.2), (2, 1.2)])
def test_flow_and_delay_are_recovered_without_the_svd_offset(shape, tmax_tolerance):
    """Noise-free, residues of the model's family (exponential, gamma 2), delays off the grid, TR 1.5 s.  (Shapes
    outside the family and MTT <= 3 s are not resolved so well at this TR: docs/perfusion.md.)  A gamma-2 residue
    (flat at t = 0) and an exponential one dispersed over 0.7 s fit alike within the dictionary's own error (the AIF
    is known only at its samples: the exact class misfits by ~3e-4 of the curve's energy); at delay 4.7 s, MTT 4.5 s
    the dispersed one wins and Tmax reads 1.1 s late, its residue's peak."""
    delays, mtts = (0.0, 1.3, 4.7), (4.5, 8.0, 12.0)
    aif, c = _curves(shape, delays, mtts)
    dec = deconvolve(c, aif, 1.5, method="model", xp=np)
    true_delay = np.repeat(delays, len(mtts))
    np.testing.assert_allclose(dec.flow, 1.0, rtol=0.06)  # oSVD: 0.75-0.85 of it for the exponential
    np.testing.assert_allclose(dec.tmax, true_delay, atol=tmax_tolerance)  # oSVD: +1-2 s at every delay
    assert np.all(dec.parameters["fit"] > 0.999)


def test_the_candidates_are_the_residues_they_claim():
    t = np.arange(0, 30, 0.5)
    np.testing.assert_allclose(residue_function(t, 1.0, 4.0), np.exp(-t / 4.0), atol=1e-9)
    box = residue_function(t, np.inf, 4.0)
    assert box[t < 3.9].min() == 1.0 and box[t > 4.1].max() == 0.0
    dispersed = residue_function(t, 1.0, 8.0, dispersion=2.0)
    # dispersion moves the peak after t = 0 (there: ln(8/2) 2 8 / 6 = 3.7 s) and keeps the area (MTT)
    assert dispersed[0] == pytest.approx(0, abs=0.05) and 3 <= t[dispersed.argmax()] <= 4.5
    assert dispersed.sum() * 0.5 == pytest.approx(8.0, rel=0.05)
    d = ResidueDictionary(np.r_[np.zeros(5), np.hanning(12), np.zeros(43)], 1.5)
    assert d.atoms.shape == (int(np.prod(d.shape)), 60)
    np.testing.assert_allclose(np.linalg.norm(d.atoms, axis=1), 1.0, rtol=1e-6)


def _table(shape):
    ph = make_brain_phantom(BrainPhantomSpec(seed=5, residue_shape=shape))
    conc, _ = signal_to_concentration(ph.signal, ph.spec.te, (1, 11), xp="numpy")
    rows = {}
    for method in ("model", "osvd"):
        maps = compute_maps(conc, ph.aif, ph.spec.tr, ph.tissue, method=method, xp="numpy").maps
        for label, sel in (("GM", ph.labels["GM"] & ~ph.labels["delayed"]), ("WM", ph.labels["WM"] & ~ph.labels["delayed"]),
                           ("GM late", ph.labels["GM"] & ph.labels["delayed"]),
                           ("WM late", ph.labels["WM"] & ph.labels["delayed"])):
            rows[method, label] = {k: float(np.median(maps[k][sel]) / np.median(getattr(ph, k.lower())[sel]))
                                   for k in ("CBF", "MTT")}
            rows[method, label]["Tmax"] = float(np.median(maps["Tmax"][sel]))
    print(f"\nbrain phantom, residue {shape!r}, true AIF: estimate / truth (Tmax in s; truth 0 and 8)")
    for (method, label), r in rows.items():
        print(f"  {method:5} {label:8} CBF {r['CBF']:.2f}  MTT {r['MTT']:.2f}  Tmax {r['Tmax']:5.2f}")
    return rows


@pytest.fixture(scope="module")
def tables():
    return {shape: _table(shape) for shape in (3, "box")}


def test_a_gamma_residue_of_another_shape_is_measured_within_20_percent(tables):
    rows = tables[3]
    for label in ("GM", "WM", "GM late", "WM late"):
        for k in ("CBF", "MTT"):
            assert rows["model", label][k] == pytest.approx(1.0, abs=0.2), (label, k, rows["model", label])
    for tissue in ("GM", "WM"):
        normal, late = rows["model", tissue]["Tmax"], rows["model", f"{tissue} late"]["Tmax"]
        assert -0.5 < normal < 1.5, normal  # oSVD: ~2 s at zero delay
        assert late - normal == pytest.approx(8.0, abs=1.0)


def test_plug_flow_is_the_model_s_weak_case(tables):
    """Plug flow (a box residue) is where a delay and a shorter transit fit alike (documented in docs/perfusion.md):
    the model over-estimates CBF there, oSVD much less.  Asserted so that a change of either shows up."""
    rows = tables["box"]
    for label in ("GM", "WM"):
        assert rows["model", label]["CBF"] > 1.2 and rows["osvd", label]["CBF"] < 1.25, rows


def _dispersed_curves(dispersions, delay=5.0, mtt=5.0, tr=1.0, n=80):
    """Noise-free tissue curves (flow 1/s) of an exponential residue whose input arrives ``delay`` s late and spread
    by an exponential of each time constant in ``dispersions`` (the stroke phantom's tissue), and their true Tmax."""
    tf = np.arange(0, n * tr + 10, 0.01)
    samp = np.rint(np.arange(n) * tr / 0.01).astype(int)
    cols, tmax = [], []
    for s in dispersions:
        h = np.exp(-tf / s) * 0.01 / s
        r_eff = np.convolve(h, np.exp(-tf / mtt))[:tf.size]
        cols.append((np.convolve(gamma_variate(tf, 10 + delay, 3, 1.5), r_eff)[:tf.size] * 0.01)[samp])
        tmax.append(delay + tf[r_eff.argmax()])
    return gamma_variate(tf, 10, 3, 1.5)[samp], np.array(cols).T, np.array(tmax)


def test_tmax_of_dispersed_tissue_between_the_grid_s_dispersions():
    """Tmax is the delay plus the peak of the *dispersed* residue, which moves fast with small dispersions (1 s over
    a 5 s MTT: +2.0 s).  Time constants that are not grid points (``model.DISPERSIONS``) read within 0.5 s (below
    the first step, 0.7 s, up to 0.8 s early: a 0.5 s dispersion reads 5.5 for 6.3 s).
    With the grid 0, 1.5, 3 s a 1 s dispersion was fitted best by the undispersed class a second later: Tmax 5.9
    for 7.0 s, which put the stroke phantom's Tmax > 6 s shell (true 7.3 s) partly under 6 s."""
    dispersions = (1.0, 2.0, 3.0)
    assert not set(dispersions) & set(DISPERSIONS)
    aif, c, true_tmax = _dispersed_curves(dispersions)
    dec = deconvolve(c, aif, 1.0, method="model", xp=np)
    np.testing.assert_allclose(dec.tmax, true_tmax, atol=0.5)
