"""The DSC perfusion series: a T2*-weighted echo-planar series repeated every TR through the bolus passage.

Every voxel holds the concentration its compartments hold (indicator dilution, :mod:`meshdcm.studies.bolus`):
grey and white matter of each zone, CSF (none), and the vessels, whose fraction of the voxel holds blood (partial
volume: an artery filling 40 % of a voxel adds 40 % of the arterial curve). The signal is
``S = S0 exp(-TE r2* C)`` (Rosen et al. 1990, MRM 14:249), with ``S0`` the voxel's baseline (T2*-weighted spin
density of its compartments, times the coil's receive profile) and Rician noise. ``r2*`` is set so that normal grey
matter loses 35 % of its signal at the bolus peak (30-40 % in clinical series; Wu et al. 2003 use 40 %); an artery
filling a third of a voxel then falls to the noise floor, and the sinus saturates, as in real series.

Slices are acquired interleaved (even slices first) across each TR, each at its own time: its curve is sampled then,
and its AcquisitionTime says so.

The truth on the DSC grid, per voxel (its tissue only; vessels are left out): CBF and CBV are the sums over its
compartments of fraction x value (a voxel half CSF has half the flow), MTT = 60 CBV / CBF, Tmax the time of the
maximum of its flow-weighted residue functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .anatomy import HeadView
from .bolus import DT, Bolus, delayed, dispersed, effective_residue, tissue_curve
from .geometry import Grid
from .mr import RELAXATION, coil_bias, magnitude
from .physiology import PERFUSION
from .protocol import Acquisition
from .tissues import masks, mix

__all__ = ["DSCSeries", "GM_DROP", "SNR", "dsc_series", "slice_offsets"]

GM_DROP = 0.35
SNR = 80.0  # grey matter's baseline over the noise's sigma
_T2STAR = {"gm": 55.0, "wm": 48.0, "csf": 300.0, "soft": 25.0, "fat": 30.0, "bone": 1.0}
_BLOOD = {"artery": (0.85, 1650.0, 50.0), "vein": (0.85, 1650.0, 35.0)}  # PD, T1 ms, T2* ms
_S0_GM = 600.0


@dataclass
class DSCSeries:
    """The series' stored pixels (time, slice, row, column), acquisition times (time, slice; s from the start) and
    everything its truth holds."""

    pixels: np.ndarray
    times: np.ndarray
    maps: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    vessels: dict[str, np.ndarray]
    curves: dict[str, list[float]]
    facts: dict = field(default_factory=dict)


def slice_offsets(slices: int, tr: float) -> np.ndarray:
    """When each slice is acquired within a TR (s): interleaved, even slices first."""
    order = list(range(0, slices, 2)) + list(range(1, slices, 2))
    offsets = np.empty(slices)
    offsets[order] = np.arange(slices) * tr / slices
    return offsets


def _baseline(name: str, tr: float, te: float) -> float:
    if name in _BLOOD:
        pd, t1, t2s = _BLOOD[name]
    else:
        pd, t1, _ = RELAXATION[name]
        t2s = _T2STAR[name]
    value = pd * (1 - math.exp(-tr / t1)) * math.exp(-te / t2s)
    return value * (0.05 if name == "fat" else 1.0)


def dsc_series(view: HeadView, zones, a: Acquisition, grid: Grid, vessels: dict[str, np.ndarray], *, stroke: bool,
               rng: np.random.Generator, bolus: Bolus | None = None) -> DSCSeries:
    """Synthesise the DSC series of a head on ``grid`` (``vessels``: the fields of mca_right, mca_left and
    sagittal_sinus, :func:`meshdcm.studies.vessels.vessel_field`)."""
    bolus = bolus or Bolus()
    tr, te = a.mr["tr"] / 1000.0, a.mr["te"] / 1000.0
    n, nz = a.timepoints, grid.shape[0]
    times = np.arange(n)[:, None] * tr + slice_offsets(nz, tr)[None, :]
    clock = bolus.clock(float(times.max()))
    arterial = bolus.arterial(clock)
    curves = {key: tissue_curve(arterial, PERFUSION[key]) for key in zones}
    curves["artery_right"] = arterial
    # distal to the occlusion, the left MCA fills late through collaterals
    curves["artery_left"] = delayed(dispersed(arterial, 2.5), 4.0) if stroke else arterial
    curves["vein"] = bolus.venous(arterial)
    gm_peak = float(curves[("gm", "normal")].max())
    r2star = -math.log(1.0 - GM_DROP) / (te * gm_peak)

    anatomy = view.anatomy
    sources = {"artery_right": "mca_right", "artery_left": "mca_left", "vein": "sagittal_sinus"}
    keep = 1.0 - np.clip(sum(vessels[v].astype(np.float32) for v in sources.values()) / 255.0, 0.0, 1.0)
    keep *= np.float32(1.0 / 255.0)  # the vessels push the tissue aside; uint8 fractions to 0-1
    parts = {key: view.sample(field * keep, grid) for key, field in zones.items()}
    filled = {name: view.sample(vessels[v], grid) for name, v in sources.items()}
    csf = view.sample(anatomy.fields["csf"] * keep, grid)
    del keep
    baseline = {c: _baseline(c, tr * 1000.0, te * 1000.0) for c in ("gm", "wm", "csf", "soft", "fat", "bone")}
    blood = tuple((vessels[v], _baseline("vein" if name == "vein" else "artery", tr * 1000.0, te * 1000.0))
                  for name, v in sources.items())
    s0 = view.sample(mix(anatomy, zones, baseline, vessels=blood), grid) * coil_bias(grid)
    s0 *= np.float32(_S0_GM / baseline["gm"])
    sigma = _S0_GM / SNR
    parts.update(filled)

    keys = list(parts)
    fractions = np.stack([parts[k].reshape(nz, -1) for k in keys], axis=-1)  # (slice, pixel, compartment)
    pixels = np.empty((n, *grid.shape), dtype=np.uint16)
    for k in range(nz):
        at = np.rint(times[:, k] / DT).astype(int)
        sampled = np.stack([curves[key][at] for key in keys], axis=-1)  # (time, compartment)
        conc = sampled @ fractions[k].T  # (time, pixel)
        clean = s0[k].reshape(1, -1) * np.exp(-te * r2star * conc)
        noisy = magnitude(clean.astype(np.float32), sigma, rng)
        pixels[:, k] = np.clip(np.rint(noisy), 0, 4095).reshape(n, *grid.shape[1:]).astype(np.uint16)

    maps, masks = _truth(parts, csf, filled)
    sample_at = np.rint(times[:, 0] / DT).astype(int)
    facts = {
        "te_s": te, "tr_s": tr, "timepoints": n, "r2star_per_mmol_s": round(r2star, 3),
        "bolus": {"arrival_s": bolus.arrival, "peak_mmol_l": bolus.peak, "alpha": bolus.alpha, "beta_s": bolus.beta,
                  "recirculation": bolus.recirculation, "steady_state": bolus.steady_state,
                  "vein_delay_s": bolus.vein_delay, "vein_dispersion_s": bolus.vein_dispersion},
        "baseline_frames": int(np.searchsorted(times[:, 0], bolus.arrival)),
        "snr_grey_matter": SNR, "noise_sigma": round(sigma, 3),
        "signal_drop": {"gm": round(1 - math.exp(-te * r2star * gm_peak), 4),
                        "wm": round(1 - math.exp(-te * r2star * float(curves[("wm", "normal")].max())), 4),
                        "artery_at_best_voxel": round(1 - math.exp(
                            -te * r2star * float(arterial.max()) * float(filled["artery_right"].max())), 4),
                        "vein": round(1 - math.exp(-te * r2star * float(curves["vein"].max())), 6)},
        "vessel_fraction_max": {k: round(float(v.max()), 3) for k, v in filled.items()},
        "slice_offsets_s": [round(float(v), 4) for v in slice_offsets(nz, tr)],
        "area_in_series_mmol_s_l": {name: round(float(curve[: int(times.max() / DT) + 1].sum() * DT), 4)
                                    for name, curve in (("aif", arterial), ("vof", curves["vein"]))},
    }
    curve_out = {"times_s": [round(float(v), 4) for v in times[:, 0]],
                 "aif_mmol_l": [round(float(v), 5) for v in arterial[sample_at]],
                 "vof_mmol_l": [round(float(v), 5) for v in curves["vein"][sample_at]],
                 "aif_left_mmol_l": [round(float(v), 5) for v in curves["artery_left"][sample_at]]}
    curve_out.update({f"{tissue}_{zone}_mmol_l": [round(float(v), 6) for v in curves[(tissue, zone)][sample_at]]
                      for (tissue, zone) in zones})
    return DSCSeries(pixels, times, maps, masks, filled, curve_out, facts)


def _truth(parts: dict, csf: np.ndarray, filled: dict) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    weights = {key: f for key, f in parts.items() if key in PERFUSION}
    cbf = sum(w * np.float32(PERFUSION[k].cbf) for k, w in weights.items())
    cbv = sum(w * np.float32(PERFUSION[k].cbv) for k, w in weights.items())
    with np.errstate(divide="ignore", invalid="ignore"):
        mtt = np.where(cbf > 0, 60.0 * cbv / cbf, 0.0).astype(np.float32)
    tmax = np.zeros(cbf.shape, np.float32)
    keys = list(weights)
    horizon = int(30.0 / DT)
    residues = np.stack([effective_residue(PERFUSION[k], horizon)[::2] for k in keys])  # every 0.1 s
    flow = np.stack([weights[k].ravel() * np.float32(PERFUSION[k].cbf) for k in keys], axis=-1)
    where = np.flatnonzero(cbf.ravel() > 0)
    flat = tmax.ravel()
    for start in range(0, where.size, 20000):
        chunk = where[start:start + 20000]
        flat[chunk] = np.argmax(flow[chunk] @ residues, axis=1) * (2 * DT)
    tmax = flat.reshape(cbf.shape)

    def total(tissue=None, zone=None):
        return sum((f for (t, z), f in weights.items() if tissue in (None, t) and zone in (None, z)),
                   np.zeros(cbf.shape, np.float32))

    out = masks(total("gm"), total("wm"), csf, total(zone="core"), total(zone="penumbra"))
    out.update({"artery": (filled["artery_right"] + filled["artery_left"]) >= 0.25, "vein": filled["vein"] >= 0.95,
                "vessel": sum(filled.values()) >= 0.05})
    maps = {"CBF": cbf.astype(np.float32), "CBV": cbv.astype(np.float32), "MTT": mtt, "Tmax": tmax.astype(np.float32)}
    return maps, out
