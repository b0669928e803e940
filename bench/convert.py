"""DICOM -> NIfTI: meshdcm's series_to_nifti against dcm2niix on the same series (goal <= 1.5x).

The realistic stroke patient's 3D T1 (sagittal), 1 mm CT and DSC series (docs/studies.md, made once and cached),
and synthetic series for what they lack (oblique and gantry-free axial stacks, enhanced multi-frame, multi-echo).

Both write uncompressed .nii + JSON.  ``ours_inprocess`` is what a node pays (a function call in a running
process); ``ours_cli`` adds a Python interpreter start and imports, for comparison with dcm2niix's process.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import emit, median, parser  # noqa: E402
from meshdcm.imaging import series_to_nifti, testdata  # noqa: E402
from meshdcm.studies import StudySet, studies_folder  # noqa: E402

GOAL = 1.5


def dcm2niix() -> str:
    """The pinned PyPI dcm2niix of this Python's environment (constraints.txt), never whichever is first on PATH."""
    exe = Path(sys.executable).parent / "dcm2niix"
    if not exe.exists():
        raise SystemExit(f"dcm2niix not found beside {sys.executable}: run `make bench`, or pip install dcm2niix")
    return str(exe)


def dcmread_shape(folder: Path) -> tuple[int, int, int]:
    """(columns, rows, files) of a series folder."""
    from pydicom import dcmread

    files = sorted(folder.glob("*.dcm"))
    ds = dcmread(files[0], stop_before_pixels=True)
    return int(ds.Columns), int(ds.Rows), len(files)


def timed(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return median(times)


def main() -> int:
    args = parser(__doc__.splitlines()[0]).parse_args()
    runs = 5 if args.quick else 11
    cases = {  # kind: (shape, spacing)
        "axial": ((256, 256, 60), (0.9, 0.9, 3.0)),
        "ct": ((512, 512, 40), (0.45, 0.45, 3.0)),
        "oblique": ((256, 256, 40), (0.9, 0.9, 3.0)),
        "enhanced": ((256, 256, 40), (0.9, 0.9, 3.0)),
        "dsc": ((128, 128, 20), (1.8, 1.8, 5.0)),
        "multiecho": ((192, 192, 30), (1.2, 1.2, 3.0)),
    }
    studies = StudySet(studies_folder("full"))
    realistic = {"stroke_t1": ("mr", "t1"), "stroke_ct": ("ct", "ct_thin"), "stroke_dsc": ("mr", "dsc")}
    exe = dcm2niix()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for kind in [*realistic, *cases]:
            if kind in realistic:
                src = studies.series("stroke", *realistic[kind])  # read only
                shape = dcmread_shape(src)
            else:
                shape, spacing = cases[kind]
                src = root / kind
                testdata.write_series(src, kind, shape=shape, spacing=spacing)
            n_files = len(list(src.glob("*.dcm"))) or len(list(src.iterdir()))
            n = min(runs, 3 if args.quick else 5) if kind in realistic else runs  # big series: fewer repeats
            out_a, out_b = root / f"{kind}_ours", root / f"{kind}_d2n"
            out_b.mkdir()
            ours = timed(lambda src=src, out_a=out_a: series_to_nifti(src, out_a), n)
            theirs = timed(lambda src=src, out_b=out_b: subprocess.run(
                [exe, "-z", "n", "-f", "%s_%d", "-o", str(out_b), str(src)], capture_output=True, check=True), n)
            cli = timed(lambda src=src, out_a=out_a: subprocess.run(
                [sys.executable, "-m", "meshdcm.imaging.cli", "convert", "to-nifti", str(src), str(out_a)],
                capture_output=True, check=True, cwd=Path(__file__).resolve().parents[1]), 1 if args.quick else 3)
            rows[kind] = {"files": n_files, "shape": list(shape), "ours_inprocess_s": round(ours, 4),
                          "ours_cli_s": round(cli, 4), "dcm2niix_s": round(theirs, 4),
                          "ratio_inprocess": round(ours / theirs, 3), "ratio_cli": round(cli / theirs, 3)}
            print(f"{kind:10s} {n_files:4d} files  ours {ours * 1000:7.1f} ms (cli {cli * 1000:6.0f} ms)  "
                  f"dcm2niix {theirs * 1000:7.1f} ms  ratio {ours / theirs:5.2f} (cli {cli / theirs:5.2f})", flush=True)
    total_ours = sum(r["ours_inprocess_s"] for r in rows.values())
    total_theirs = sum(r["dcm2niix_s"] for r in rows.values())
    figures = {"series": rows, "runs": runs, "goal_ratio": GOAL,
               "ratio_inprocess_total": round(total_ours / total_theirs, 3),
               "ratio_cli_total": round(sum(r["ours_cli_s"] for r in rows.values()) / total_theirs, 3)}
    print(f"total ratio (in-process) {figures['ratio_inprocess_total']} (goal <= {GOAL}); "
          f"with interpreter start {figures['ratio_cli_total']}")
    emit("convert", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
