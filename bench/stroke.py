"""Stroke time to result: from the last DSC instance stored to the stroke SR in the PACS, through a real mesh.

Mesh: a pacs node (its storage SCP, and the embedded PACS as the archive) and a perfusion node, as processes on
this machine; a DSC stroke phantom (meshdcm.stroke.phantom) is pushed to the pacs node's storage SCP by C-STORE,
as a scanner would.  The clock starts when the last instance's C-STORE is answered (stored durably) and stops when
a C-FIND of the embedded PACS finds the SR (its SOP Instance UID is known in advance: it derives from the source
series).  A first, untimed run warms the nodes up (its figure is printed: the first study after a start).
In between: the pacs node's quiet period (``quiet_seconds``, the time it waits before announcing data
pushed without warning; part of the figure and printed apart), the announcement, the perfusion node fetching and
loading the series, maps, the stroke analysis and its SEG/SR/summary, their announcement, and the pacs node
archiving them (C-STORE into the embedded PACS).  Each run sends the same images under new UIDs (a new study).

Figure: median seconds over the runs; goal <= 60 s on the CPU.  GPU: the same with the perfusion node on CuPy, when
CuPy and a GPU are present (the CPU runs hide the GPU from the node with CUDA_VISIBLE_DEVICES=""); else null.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._report import emit, median, parser  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from pacs_fixtures import wait_for  # noqa: E402
from ports import free_port  # noqa: E402  (below the ephemeral range: no race with other binds)

QUIET_SECONDS = 3.0  # a stall longer than this mid-series (a loaded machine) would announce a partial series
GOAL_S = 60.0


class NodeProcess:
    def __init__(self, kind: str, options: dict, work: Path, env: dict):
        self.log = work / f"{kind}.log"
        cfg = work / f"{kind}.toml"
        work.mkdir(parents=True, exist_ok=True)
        lines = [f"[nodes.{kind}]"] + [f"{k} = {json.dumps(v)}" for k, v in options.items()]  # JSON values are TOML
        cfg.write_text("\n".join(lines) + "\n")
        self._fh = open(self.log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "meshdcm.cli.main", "node", kind, "--config", str(cfg),
                                      *(["--log-level", os.environ["BENCH_LOG_LEVEL"]] if os.environ.get("BENCH_LOG_LEVEL") else [])],
                                     env=env, stdout=self._fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_output(self, pattern: str, timeout: float) -> re.Match:
        return wait_for(lambda: self.proc.poll() is None and re.search(pattern, self.output()), timeout,
                        f"{pattern!r} in {self.log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._fh.close()


def renamed(datasets, run: int):
    """The datasets under new study/series/instance UIDs (one study per run)."""
    from pydicom.uid import generate_uid

    study, series = generate_uid(), generate_uid()
    out = []
    for ds in datasets:
        c = ds.copy()
        c.StudyInstanceUID, c.SeriesInstanceUID = study, series
        c.SOPInstanceUID = generate_uid()
        c.file_meta.MediaStorageSOPInstanceUID = c.SOPInstanceUID
        c.PatientID = f"BENCH-STROKE-{run}"
        out.append(c)
    return study, series, out


def send(datasets, port: int, folder: Path) -> float:
    """Write the datasets to ``folder`` and C-STORE them with DCMTK storescu (the scanner); the time it finished,
    i.e. the last instance's C-STORE was answered (stored durably by the pacs node)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    paths = []
    for i, ds in enumerate(datasets):
        paths.append(folder / f"{i:05d}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    r = subprocess.run(["storescu", "-aet", "SCANNER", "-aec", "MESHDCM", "-to", "300", "-ta", "300", "-td", "300",
                        "127.0.0.1", str(port), "--scan-directories", str(folder)], capture_output=True, text=True,
                       env={**os.environ, "TCP_NODELAY": "1"}, timeout=900)
    done = time.perf_counter()
    if r.returncode != 0:
        raise RuntimeError(f"storescu failed ({r.returncode}): {r.stderr[-500:]}")
    return done


def sr_in_pacs(pacs, study_uid: str, sr_uid: str) -> bool:
    from pydicom.dataset import Dataset

    from meshdcm.pacs import find

    q = Dataset()
    q.StudyInstanceUID, q.SeriesInstanceUID, q.SOPInstanceUID = study_uid, "", sr_uid
    try:
        return any(True for _ in find(pacs, "IMAGE", q))
    except Exception:  # the PACS busy storing: ask again
        return False


def run_mesh(datasets, runs: int, work: Path, gpu: bool) -> list[dict]:
    from meshdcm.pacs import Pacs
    from meshdcm.perfusion.deconvolution import DEFAULT_METHOD  # what the perfusion node runs
    from meshdcm.stroke import output_uids

    env = {k: v for k, v in os.environ.items() if k != "MESHDCM_CONFIG"}
    env.update(MESHDCM_MESH=f"bench-stroke-{uuid.uuid4().hex[:8]}", PYTHONUNBUFFERED="1",
               XDG_DATA_HOME=str(work / "state"))
    if not gpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    scp_port = free_port()
    pacs = NodeProcess("pacs", {"embedded": True, "storage": str(work / "store"), "scp_port": scp_port,
                                "quiet_seconds": QUIET_SECONDS}, work, env)
    perfusion = NodeProcess("perfusion", {"work": str(work / "perfusion")}, work, env)
    results = []
    try:
        m = pacs.wait_for_output(r"embedded PACS (\S+) on ([\d.]+):(\d+)", 120)
        embedded = Pacs("embedded", ae_title=m.group(1), host=m.group(2), port=int(m.group(3)), calling_ae="BENCH")
        perfusion.wait_for_output("started on", 60)
        pacs.wait_for_output("peer joined: perfusion", 60)
        for run in range(-1, runs):  # run -1 warms the nodes up (imports, highdicom's tables): not counted
            study, series, renamed_ds = renamed(datasets, run + (100 if gpu else 0))
            sr_uid = output_uids(series, DEFAULT_METHOD, None)["sr_instance"]
            t_sent = send(renamed_ds, scp_port, work / "send")
            wait_for(lambda s=study, u=sr_uid: sr_in_pacs(embedded, s, u), 300, "the stroke SR in the PACS", 0.1)
            seconds = time.perf_counter() - t_sent
            analysed = re.findall(rf"series {re.escape(series)}: \d+ maps by {DEFAULT_METHOD} in ([\d.]+) s \((\w+)\)",
                                  perfusion.output())
            record = {"seconds": seconds, "pipeline_s": float(analysed[0][0]) if analysed else None,
                      "array_module": analysed[0][1] if analysed else None, "warm_up": run < 0}
            results.append(record)
            print(f"  {'warm-up' if run < 0 else f'run {run + 1}'}: SR in PACS {seconds:.1f} s after the last DSC instance was stored "
                  f"(perfusion pipeline {record['pipeline_s']} s on {record['array_module']})", flush=True)
    except Exception:
        for node in (pacs, perfusion):
            print(f"----- {node.log.name} -----\n" + "\n".join(node.output().splitlines()[-60:]), file=sys.stderr)
        raise
    finally:
        perfusion.stop()
        pacs.stop()
    return results


def main() -> int:
    args = parser(__doc__.splitlines()[0]).parse_args()
    import pydicom

    from meshdcm.perfusion._xp import gpu_unavailable_reason
    from meshdcm.stroke import StrokePhantomSpec, make_stroke_phantom, write_stroke_phantom

    shape = (12, 64, 64) if args.quick else (25, 128, 128)
    spacing = (3.0, 3.0) if args.quick else (1.8, 1.8)
    n_time, runs = (50, 2) if args.quick else (70, 5)
    work = Path(tempfile.mkdtemp(prefix="bench-stroke-"))
    try:
        t = time.perf_counter()
        sp = make_stroke_phantom(StrokePhantomSpec(lesion="medium", shape=shape, pixel_spacing=spacing,
                                                   slice_thickness=100.0 / shape[0], n_time=n_time))
        files = write_stroke_phantom(sp, work / "dsc")
        datasets = [pydicom.dcmread(f) for f in files]
        print(f"DSC phantom {shape} x {n_time} ({len(files)} instances) written in {time.perf_counter() - t:.1f} s; "
              f"truth core {sp.truth_ml['core_ml']} ml, Tmax>6 {sp.truth_ml['tmax6_ml']} ml", flush=True)
        print(f"CPU (NumPy), pacs node quiet period {QUIET_SECONDS:g} s included:", flush=True)
        cpu_all = run_mesh(datasets, runs, work / "cpu", gpu=False)
        cpu_runs = [r for r in cpu_all if not r["warm_up"]]
        cpu = median([r["seconds"] for r in cpu_runs])
        print(f"last DSC instance stored -> stroke SR in the PACS: median {cpu:.1f} s over {runs} runs "
              f"(goal <= {GOAL_S:g} s: {'met' if cpu <= GOAL_S else 'NOT met'})", flush=True)
        gpu, gpu_runs, reason = None, [], gpu_unavailable_reason()
        if reason is None:
            print("GPU (CuPy):", flush=True)
            gpu_runs = [r for r in run_mesh(datasets, runs, work / "gpu", gpu=True) if not r["warm_up"]]
            gpu = median([r["seconds"] for r in gpu_runs])
            print(f"GPU: median {gpu:.1f} s", flush=True)
        else:
            print(f"GPU figure: null ({reason})", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    pipeline = [r["pipeline_s"] for r in cpu_runs if r["pipeline_s"] is not None]
    emit("stroke", {
        "quick": bool(args.quick), "shape": [*shape, n_time], "instances": len(files), "runs": runs,
        "quiet_seconds": QUIET_SECONDS, "cpu_median_s": round(cpu, 2),
        "cpu_runs_s": [round(r["seconds"], 2) for r in cpu_runs],
        "cpu_first_run_after_start_s": round(cpu_all[0]["seconds"], 2),
        "cpu_perfusion_pipeline_median_s": round(median(pipeline), 2) if pipeline else None,
        "goal_s": GOAL_S, "goal_met": cpu <= GOAL_S,
        "gpu_median_s": None if gpu is None else round(gpu, 2), "gpu_runs_s": [round(r["seconds"], 2) for r in gpu_runs],
        "gpu_null_reason": reason,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
