"""What a mesh at rest costs: CPU per node of an idle `meshdcm up`, beside an idle Orthanc in the same run.

`meshdcm up` starts every node kind (stdin at EOF, as when it runs in the background); CLI tools join and leave it
(`meshdcm peers`, twice) as a user's would; then nothing happens, and the CPU time of each node process is read from
/proc over the window. The anchor is a real PACS at rest, Orthanc (in a network namespace of its own), measured over
the same window. Goal (issue "Hardening the mesh"): well under 1 % of a core per node. Medians of the nodes; the
machine's load is printed too, since the benches share these 2 cores with whatever else runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._report import emit, median, parser  # noqa: E402

GOAL = 1.0  # % of one core per node at rest


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def meshdcm(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "meshdcm.cli.main", *args], env=env, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def main() -> int:
    args = parser(__doc__.splitlines()[0]).parse_args()
    window = 15.0 if args.quick else 60.0
    work = Path(tempfile.mkdtemp(prefix="meshdcm-bench-idle-"))
    mesh = f"bench-idle-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, MESHDCM_MESH=mesh, XDG_DATA_HOME=str(work / "data"))
    log = open(work / "up.log", "wb")  # noqa: SIM115 - closed below
    up = subprocess.Popen([sys.executable, "-m", "meshdcm.cli.main", "up", "--state", str(work / "state")], env=env,
                          stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    orthanc = None
    try:
        deadline = time.monotonic() + 90
        while "stop with Ctrl-C" not in (work / "up.log").read_text(errors="replace"):
            if time.monotonic() > deadline or up.poll() is not None:
                raise SystemExit(f"meshdcm up did not start; see {work / 'up.log'}")
            time.sleep(0.2)
        nodes = children(up.pid)
        while len(json.loads(meshdcm("peers", "--json", env=env).stdout or "[]")) < len(nodes):
            if time.monotonic() > deadline:
                raise SystemExit("the nodes of meshdcm up did not all join")
        meshdcm("peers", env=env)  # tools come and go, as a user's do
        sys.path.insert(0, str(ROOT / "tests"))
        from pacs_fixtures import skip_reason, start_orthanc

        reason = skip_reason()
        if reason is None:
            orthanc = start_orthanc(work / "orthanc")
        else:
            print(f"Orthanc anchor skipped: {reason}")
        time.sleep(5)  # settle: the tools' goodbyes, Orthanc's start-up
        pids = {pid: open(f"/proc/{pid}/cmdline").read().split("\0")[4] for pid in nodes}
        watched = list(pids) + ([orthanc.proc.pid] if orthanc else [])
        load0 = os.getloadavg()[0]
        before = {pid: cpu_seconds(pid) for pid in watched}
        t0 = time.monotonic()
        time.sleep(window)
        elapsed = time.monotonic() - t0
        share = {pid: 100 * (cpu_seconds(pid) - before[pid]) / elapsed for pid in watched}
        per_node = {pids[pid]: round(share[pid], 2) for pid in pids}
        for kind, pct in sorted(per_node.items()):
            print(f"  {kind:10} {pct:5.2f} % of a core")
        med = median(per_node.values())
        figures = {"window_s": round(elapsed, 1), "nodes": len(per_node), "per_node_pct": per_node,
                   "median_node_pct": round(med, 2), "max_node_pct": round(max(per_node.values()), 2),
                   "total_pct": round(sum(per_node.values()), 2), "goal_node_pct": GOAL,
                   "load_average": round(load0, 2)}
        if orthanc:
            figures["orthanc_pct"] = round(share[orthanc.proc.pid], 2)
            figures["median_node_vs_orthanc"] = round(med / max(share[orthanc.proc.pid], 0.1), 2)
        print(f"idle meshdcm up: {len(per_node)} nodes, median {med:.2f} %, max {figures['max_node_pct']:.2f} %, "
              f"total {figures['total_pct']:.2f} % of a core over {elapsed:.0f} s (goal < {GOAL} % per node)"
              + (f"; idle Orthanc {figures['orthanc_pct']:.2f} %" if orthanc else ""))
        emit("idle", figures)
        return 0 if med < GOAL else 1
    finally:
        if orthanc is not None:
            from pacs_fixtures import stop_orthanc

            stop_orthanc(orthanc)
        os.killpg(up.pid, signal.SIGINT)
        try:
            up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
        log.close()


if __name__ == "__main__":
    sys.exit(main())
