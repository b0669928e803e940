"""DSC perfusion speed: oSVD maps of a 128x128x25 x 60-time-point phantom, batched vs per-voxel.

Anchor: a straightforward per-voxel oSVD (the DSC-MRI toolbox loop: for each voxel, for each threshold
0.05..0.95, solve and compute the oscillation index until it is below the limit), timed on a subset of
voxels and extrapolated linearly to all brain voxels.  Timed figure: signal -> dR2* -> oSVD -> CBV/CBF/
MTT/Tmax/TTP for every brain voxel with a global AIF (I/O and AIF search excluded).  GPU: the same
xp-generic code with CuPy, when CuPy and a GPU are present; otherwise null with the reason.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._report import emit, median, parser  # noqa: E402
from meshdcm.perfusion._xp import get_xp, gpu_unavailable_reason  # noqa: E402
from meshdcm.perfusion.concentration import signal_to_concentration  # noqa: E402
from meshdcm.perfusion.deconvolution import osvd_per_voxel  # noqa: E402
from meshdcm.perfusion.maps import compute_maps  # noqa: E402
from meshdcm.perfusion.phantom import PhantomSpec, make_phantom  # noqa: E402


def run(xp, signal, te, aif, dt, mask):
    conc, _ = signal_to_concentration(signal, te, (1, 10), xp=xp)
    pm = compute_maps(conc, aif, dt, mask, method="osvd", xp=xp)
    return pm


def main() -> int:
    args = parser(__doc__.splitlines()[0]).parse_args()
    repeats = 3 if args.quick else 7
    subset = 1000 if args.quick else 4000
    shape = (25, 128, 128)
    t = time.perf_counter()
    ph = make_phantom(PhantomSpec(shape=shape, n_time=60, seed=1))
    print(f"phantom {shape} x 60 generated in {time.perf_counter() - t:.1f} s")
    mask = ph.tissue | ph.artery | ph.vein
    nvox = int(mask.sum())
    dt = ph.spec.tr
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        pm = run(np, ph.signal, ph.spec.te, ph.aif, dt, mask)
        times.append(time.perf_counter() - t)
    cpu = median(times)
    print(f"batched oSVD, NumPy: median {cpu:.3f} s over {repeats} runs for {nvox} brain voxels")

    conc, _ = signal_to_concentration(ph.signal, ph.spec.te, (1, 10), xp=np)
    flat = conc.reshape(60, -1)[:, np.flatnonzero(mask.ravel())]
    pick = np.random.default_rng(0).choice(nvox, subset, replace=False)
    t = time.perf_counter()
    ref_flow = osvd_per_voxel(flat[:, pick], ph.aif.astype(np.float64), dt)[:, 0]
    loop_subset = time.perf_counter() - t
    loop_est = loop_subset * nvox / subset
    batched_flow = pm.maps["CBF"][mask][pick] / (6000 * 0.55 / 0.75 / 1.04)
    agree = float(np.max(np.abs(batched_flow - ref_flow) / np.maximum(np.abs(ref_flow), 1e-6)))
    print(f"per-voxel oSVD loop: {loop_subset:.2f} s for {subset} voxels, extrapolated to {nvox} voxels: "
          f"{loop_est:.1f} s (timed on a subset and extrapolated linearly)")
    print(f"speed-up batched vs per-voxel: {loop_est / cpu:.0f}x; max relative CBF difference on the subset {agree:.2e}")

    gpu, gpu_reason = None, gpu_unavailable_reason()
    if gpu_reason is None:
        cp = get_xp("cupy")
        run(cp, ph.signal, ph.spec.te, ph.aif, dt, mask)  # warm-up (kernel compilation)
        g = []
        for _ in range(repeats):
            cp.cuda.Device().synchronize()
            t = time.perf_counter()
            run(cp, ph.signal, ph.spec.te, ph.aif, dt, mask)
            cp.cuda.Device().synchronize()
            g.append(time.perf_counter() - t)
        gpu = median(g)
        print(f"batched oSVD, CuPy: median {gpu:.3f} s")
    else:
        print(f"GPU timing: null ({gpu_reason})")

    emit("perfusion", {
        "quick": bool(args.quick), "shape": [*shape, 60], "brain_voxels": nvox, "repeats": repeats,
        "cpu_osvd_median_s": round(cpu, 4), "cpu_goal_s": 2.0, "cpu_goal_met": cpu <= 2.0,
        "per_voxel_subset": subset, "per_voxel_subset_s": round(loop_subset, 3),
        "per_voxel_extrapolated_s": round(loop_est, 2), "per_voxel_is_extrapolated": True,
        "speedup_vs_per_voxel": round(loop_est / cpu, 1), "max_rel_cbf_diff_vs_per_voxel": agree,
        "gpu_osvd_median_s": None if gpu is None else round(gpu, 4), "gpu_null_reason": gpu_reason,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
