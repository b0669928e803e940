"""Rigid MI registration of a 256x256x176 1 mm MR volume on CPU (goal <= 5 s), GPU figure when one is present.

The moving volume is the phantom head moved by a known rigid transform (12 deg, 15 mm); the bench also reports
the target registration error so a fast-but-wrong setting cannot pass.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import emit, median, parser  # noqa: E402
from meshdcm.imaging import testdata  # noqa: E402
from meshdcm.imaging._xp import gpu_unavailable_reason  # noqa: E402
from meshdcm.imaging.register import register_arrays  # noqa: E402

GOAL_S = 5.0


def volume(shape, spacing, f) -> tuple[np.ndarray, np.ndarray]:
    g = testdata.grid(shape, spacing)
    vol = np.stack([f(g.points(k)).T for k in range(shape[2])], axis=2).astype(np.float32)
    return vol, g.affine_lps


def tre(est: np.ndarray, truth: np.ndarray, radius: float) -> float:
    pts = np.random.default_rng(7).uniform(-1, 1, (4000, 3))
    pts = pts[(pts**2).sum(1) < 1] * np.array([0.66, 0.86, 0.71]) * radius
    h = np.c_[pts, np.ones(len(pts))]
    return float(np.linalg.norm((h @ est.T - h @ truth.T)[:, :3], axis=1).mean())


def main() -> int:
    args = parser(__doc__.splitlines()[0]).parse_args()
    shape, spacing, radius = (256, 256, 176), (1.0, 1.0, 1.0), 80.0
    runs = 3 if args.quick else 5
    truth = testdata.rigid_matrix((12.0, -6.0, 8.0), (15.0, -8.0, 6.0))
    t0 = time.perf_counter()
    fixed, fa = volume(shape, spacing, lambda p: testdata.phantom(p, radius=radius))
    moving, ma = volume(shape, spacing, testdata.moved_phantom(truth, radius=radius))
    print(f"generated two {shape} volumes in {time.perf_counter() - t0:.1f} s", flush=True)
    cpu, errors = [], []
    for seed in range(runs):
        t = time.perf_counter()
        mat, _, backend = register_arrays(fixed, fa, moving, ma, backend="simpleitk", seed=seed)
        cpu.append(time.perf_counter() - t)
        errors.append(tre(mat, truth, radius))
        print(f"cpu run {seed}: {cpu[-1]:.2f} s, TRE {errors[-1]:.3f} mm", flush=True)
    reason = gpu_unavailable_reason()
    gpu = None
    if reason is None:  # pragma: no cover - needs a GPU
        times = []
        for seed in range(runs):
            t = time.perf_counter()
            register_arrays(fixed, fa, moving, ma, backend="cupy", seed=seed)
            times.append(time.perf_counter() - t)
        gpu = median(times)
    figures = {
        "volume": list(shape),
        "cpu_rigid_s_median": round(median(cpu), 3),
        "cpu_goal_s": GOAL_S,
        "cpu_ratio_to_goal": round(median(cpu) / GOAL_S, 3),
        "tre_mm_median": round(median(errors), 3),
        "gpu_rigid_s_median": None if gpu is None else round(gpu, 3),
        "gpu_reason": reason,
        "runs": runs,
    }
    print(f"CPU rigid registration median {figures['cpu_rigid_s_median']} s (goal {GOAL_S} s), "
          f"TRE {figures['tre_mm_median']} mm; GPU: {gpu if gpu is not None else 'null (' + str(reason) + ')'}")
    emit("register", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
