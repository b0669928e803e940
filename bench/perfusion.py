"""DSC perfusion speed: model-based (the default) and oSVD maps of the realistic stroke DSC series (128x128x20 x 60).

Anchor: a straightforward per-voxel oSVD (the DSC-MRI toolbox loop: for each voxel, for each threshold
0.05..0.95, solve and compute the oscillation index until it is below the limit), timed on a subset of
voxels and extrapolated linearly to all brain voxels.  Timed figure: signal -> dR2* -> oSVD -> CBV/CBF/
MTT/Tmax/TTP for every brain voxel with a global AIF (I/O and AIF search excluded), for the model-based
deconvolution (``model``, the default, meshdcm/perfusion/model.py) and batched oSVD; the ratio model / oSVD is
printed (both timed in the same run: this machine is shared and noisy).  GPU: the same
xp-generic code with CuPy, when CuPy and a GPU are present; otherwise null with the reason.

The series is the stroke patient's (docs/studies.md, made once and cached); the AIF is its true arterial input
(truth.json, in dR2* units), so the bench also says how close the maps come to the true ones in the core, the
penumbra and normal tissue (medians, and the core's and penumbra's CBF relative to normal tissue).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._report import emit, median, parser  # noqa: E402
from meshdcm.perfusion._xp import get_xp, gpu_unavailable_reason  # noqa: E402
from meshdcm.perfusion.concentration import brain_mask, signal_to_concentration  # noqa: E402
from meshdcm.perfusion.constants import KH, RHO  # noqa: E402
from meshdcm.perfusion.deconvolution import osvd_per_voxel  # noqa: E402
from meshdcm.perfusion.maps import compute_maps  # noqa: E402
from meshdcm.perfusion.series import load_dsc_series  # noqa: E402
from meshdcm.studies import StudySet, studies_folder  # noqa: E402


def run(xp, signal, te, aif, dt, mask, baseline, method="osvd"):
    conc, _ = signal_to_concentration(signal, te, baseline, xp=xp)
    pm = compute_maps(conc, aif, dt, mask, method=method, xp=xp)
    return pm


def truth_masks(studies: StudySet) -> dict[str, np.ndarray]:
    """The DSC grid's core, penumbra and brain masks, as (slice, row, column) arrays."""
    import nibabel as nib

    folder, grid = studies.truth_folder("stroke", "mr"), studies.truth("stroke", "mr")["grids"]["dsc"]
    return {k: np.asarray(nib.load(str(folder / grid["masks"][k]["file"])).dataobj).transpose(2, 1, 0).astype(bool)
            for k in ("core", "penumbra", "brain")}


def main() -> int:
    args = parser(__doc__.splitlines()[0]).parse_args()
    repeats = 3 if args.quick else 7
    subset = 1000 if args.quick else 4000
    t = time.perf_counter()
    studies = StudySet(studies_folder("full"))
    series = load_dsc_series(studies.series("stroke", "mr", "dsc"))
    truth = studies.truth("stroke", "mr")
    signal, te, dt = series.signal, series.te, series.dt
    shape, n_time = signal.shape[1:], signal.shape[0]
    aif = np.asarray(truth["dsc"]["curves"]["aif_mmol_l"]) * truth["dsc"]["r2star_per_mmol_s"]  # true AIF, dR2*
    baseline = (1, truth["dsc"]["baseline_frames"] - 1)
    print(f"realistic DSC series {shape} x {n_time} read in {time.perf_counter() - t:.1f} s")
    mask = brain_mask(signal)
    nvox = int(mask.sum())
    times, model_times = [], []
    for _ in range(repeats):  # interleaved, so that both meet the same load
        t = time.perf_counter()
        pm = run(np, signal, te, aif, dt, mask, baseline)
        times.append(time.perf_counter() - t)
        t = time.perf_counter()
        pm_model = run(np, signal, te, aif, dt, mask, baseline, method="model")
        model_times.append(time.perf_counter() - t)
    cpu, cpu_model = median(times), median(model_times)
    print(f"batched oSVD, NumPy: median {cpu:.3f} s over {repeats} runs for {nvox} brain voxels")
    print(f"model-based, NumPy: median {cpu_model:.3f} s over {repeats} runs; model / oSVD {cpu_model / cpu:.2f}")

    conc, _ = signal_to_concentration(signal, te, baseline, xp=np)
    flat = conc.reshape(n_time, -1)[:, np.flatnonzero(mask.ravel())]
    pick = np.random.default_rng(0).choice(nvox, subset, replace=False)
    t = time.perf_counter()
    ref_flow = osvd_per_voxel(flat[:, pick], aif.astype(np.float64), dt)[:, 0]
    loop_subset = time.perf_counter() - t
    loop_est = loop_subset * nvox / subset
    batched_flow = pm.maps["CBF"][mask][pick] / (6000 * KH / RHO)
    agree = float(np.max(np.abs(batched_flow - ref_flow) / np.maximum(np.abs(ref_flow), 1e-6)))
    print(f"per-voxel oSVD loop: {loop_subset:.2f} s for {subset} voxels, extrapolated to {nvox} voxels: "
          f"{loop_est:.1f} s (timed on a subset and extrapolated linearly)")
    print(f"speed-up batched vs per-voxel: {loop_est / cpu:.0f}x; max relative CBF difference on the subset {agree:.2e}")
    zones = truth_masks(studies)
    zones["normal"] = zones.pop("brain") & ~zones["core"] & ~zones["penumbra"]
    import nibabel as nib

    accuracy = {"model": {}, "osvd": {}}
    for name in ("CBF", "CBV", "MTT", "Tmax"):
        true_map = np.asarray(nib.load(str(studies.truth_folder("stroke", "mr") /
                                            truth["grids"]["dsc"]["maps"][name]["file"])).dataobj).transpose(2, 1, 0)
        for method, maps in (("model", pm_model), ("osvd", pm)):
            accuracy[method][name] = {z: [round(float(np.median(maps.maps[name][m & mask])), 2),
                                          round(float(np.median(true_map[m])), 2)] for z, m in zones.items()}
    for method, table in accuracy.items():
        for name, values in table.items():
            print(f"{method:5} {name} median measured / true: "
                  + ", ".join(f"{z} {a} / {b}" for z, (a, b) in values.items()))

    gpu, gpu_reason = None, gpu_unavailable_reason()
    if gpu_reason is None:
        cp = get_xp("cupy")
        run(cp, signal, te, aif, dt, mask, baseline)  # warm-up (kernel compilation)
        g = []
        for _ in range(repeats):
            cp.cuda.Device().synchronize()
            t = time.perf_counter()
            run(cp, signal, te, aif, dt, mask, baseline)
            cp.cuda.Device().synchronize()
            g.append(time.perf_counter() - t)
        gpu = median(g)
        print(f"batched oSVD, CuPy: median {gpu:.3f} s")
    else:
        print(f"GPU timing: null ({gpu_reason})")

    emit("perfusion", {
        "quick": bool(args.quick), "series": "realistic stroke DSC (docs/studies.md)", "shape": [*shape, n_time],
        "brain_voxels": nvox, "repeats": repeats, "median_measured_true_by_zone": accuracy,
        "cpu_model_median_s": round(cpu_model, 4), "model_over_osvd": round(cpu_model / cpu, 2),
        "cpu_osvd_median_s": round(cpu, 4), "cpu_goal_s": 2.0, "cpu_goal_met": cpu <= 2.0,
        "per_voxel_subset": subset, "per_voxel_subset_s": round(loop_subset, 3),
        "per_voxel_extrapolated_s": round(loop_est, 2), "per_voxel_is_extrapolated": True,
        "speedup_vs_per_voxel": round(loop_est / cpu, 1), "max_rel_cbf_diff_vs_per_voxel": agree,
        "gpu_osvd_median_s": None if gpu is None else round(gpu, 4), "gpu_null_reason": gpu_reason,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
