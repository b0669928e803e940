"""PACS benchmarks (same-run ratios against Orthanc and DCMTK).

The instances are one study of the realistic stroke patient (docs/studies.md, made once and cached): the MR study
(1,501 instances: 3D T1, T2, FLAIR, DWI, ADC and a 1,200-instance DSC series) or, with ``--quick``, the CT study
(192 instances of 512 x 512).

1. Durable C-STORE ingest: DCMTK ``storescu`` pushes the same instances into our StorageSCP, into Orthanc and
   into DCMTK ``storescp`` (all on the loopback of a namespace of the bench's own), with 1 and with 4 parallel
   associations. Ours and Orthanc answer success only once the instance is committed (ours: file data and
   folder entry fsynced; Orthanc: its file written and its SQLite index committed), so **Orthanc is the anchor**:
   goal >= 1.5x Orthanc's instances/s. ``storescp`` never syncs; its ratio is printed for context. DCMTK tools
   (and Orthanc, which is built on DCMTK) run with ``TCP_NODELAY=1`` in their environment, their best case
   (without it DCMTK's receiver stalls ~50 ms per instance on Nagle/delayed-ACK; that figure is reported too).
2. get.study of that study from a real Orthanc (own network namespace) by C-MOVE and by C-GET,
   ours vs DCMTK ``movescu`` (to a DCMTK storescp) and ``getscu``. Figure: seconds; goal <= 1.2x.
3. The realistic stroke CT study (192 instances of 512x512) sent to a desktop viewer: DCMTK ``storescp`` without ``--fork`` (one association at a
   time, as Horos/Weasis) in a network namespace of its own, over a veth pair; our C-STORE SCU (the viewer node's,
   ``StoreRequestor``, file headers read included) vs DCMTK ``storescu`` to the same storescp. Figure: seconds;
   goal <= 1.2x. Also with DCMTK's default environment (Nagle on both DCMTK ends), as in the field report.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._report import emit, median, parser  # noqa: E402
from meshdcm.studies import StudySet, studies_folder  # noqa: E402
from meshdcm.pacs import Pacs, StorageSCP, retrieve  # noqa: E402

DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.002)
    raise TimeoutError(f"timed out waiting for {what}")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def count_files(d: Path) -> int:
    return sum(1 for p in d.rglob("*") if p.is_file() and not p.name.startswith("."))


def push(files: list[Path], port: int, assocs: int, env) -> None:
    """storescu the files over ``assocs`` parallel associations (one process each)."""
    chunks = [files[i::assocs] for i in range(assocs)]
    procs = [subprocess.Popen(["/usr/bin/storescu", "-aec", "ANY", "127.0.0.1", str(port), *map(str, c)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for c in chunks]
    for p in procs:
        _, err = p.communicate(timeout=300)
        if p.returncode != 0:
            raise RuntimeError(f"storescu failed: {err.decode()[-500:]}")


def ingest_ours(files, work: Path, assocs: int, fsync: bool = True) -> float:
    out = work / "ours"
    shutil.rmtree(out, ignore_errors=True)
    scp = StorageSCP(out, ae_title="MESHDCM", host="127.0.0.1", port=0, fsync=fsync)
    _, port = scp.start()
    try:
        t0 = time.perf_counter()
        push(files, port, assocs, DCMTK_ENV)
        wait_for(lambda: scp.count >= len(files), 60, "our SCP to store all instances")
        return time.perf_counter() - t0
    finally:
        scp.stop()


def ingest_dcmtk(files, work: Path, assocs: int, env=DCMTK_ENV) -> float:
    out = work / "dcmtk"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    port = free_port()
    args = ["/usr/bin/storescp", "-pdu", "131072", "-od", str(out)] + (["--fork"] if assocs > 1 else []) + [str(port)]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import socket

        def listening():
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        wait_for(listening, 10, "storescp to listen")
        t0 = time.perf_counter()
        push(files, port, assocs, env)
        wait_for(lambda: count_files(out) >= len(files), 60, "storescp to store all instances")
        return time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait()


ORTHANC = "/usr/sbin/Orthanc"


def ingest_orthanc(files, work: Path, assocs: int) -> float:
    """A fresh Orthanc (no plugins, uncompressed storage, SQLite index) on the namespace's loopback; the time for
    ``storescu`` to have every instance acknowledged, checked against Orthanc's own count."""
    import urllib.request

    home = work / "orthanc"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    dicom_port, http_port = free_port(), free_port()
    cfg = {"Name": "meshdcm-bench", "StorageDirectory": str(home / "db"), "IndexDirectory": str(home / "db"),
           "StorageCompression": False, "DicomAet": "ORTHANC", "DicomPort": dicom_port, "HttpPort": http_port,
           "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "Plugins": [], "DicomCheckCalledAet": False,
           "DicomAlwaysAllowStore": True, "UnknownSopClassAccepted": True, "HttpServerEnabled": True,
           "DicomThreadsCount": max(4, assocs), "SaveJobs": False}
    (home / "orthanc.json").write_text(json.dumps(cfg))
    with open(home / "orthanc.log", "wb") as log:
        proc = subprocess.Popen([ORTHANC, str(home / "orthanc.json")], env=DCMTK_ENV, stdout=log,
                                stderr=subprocess.STDOUT)

    def rest(path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}{path}", timeout=5) as r:
            return json.loads(r.read())

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"Orthanc exited early; see {home / 'orthanc.log'}")
        try:
            rest("/system")
            return True
        except OSError:
            return False

    try:
        wait_for(up, 60, "Orthanc to answer HTTP")
        t0 = time.perf_counter()
        push(files, dicom_port, assocs, DCMTK_ENV)
        elapsed = time.perf_counter() - t0
        stored = rest("/statistics")["CountInstances"]
        if stored != len(files):
            raise RuntimeError(f"Orthanc holds {stored} of {len(files)} instances")
        return elapsed
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def bench_ingest(files, work: Path, repeats: int) -> dict:
    n = len(files)
    fig = {"ingest_instances": n, "ingest_bytes_per_instance": round(sum(f.stat().st_size for f in files) / n)}
    have_orthanc = os.path.exists(ORTHANC)
    for assocs in (1, 4):
        ours, dcm, orth = [], [], []
        for _ in range(repeats):  # interleaved: a slow moment of the machine costs each receiver alike
            ours.append(ingest_ours(files, work, assocs))
            if have_orthanc:
                orth.append(ingest_orthanc(files, work, assocs))
            dcm.append(ingest_dcmtk(files, work, assocs))
        o, d = n / median(ours), n / median(dcm)
        fig[f"ingest_ours_inst_per_s_{assocs}assoc"] = round(o, 1)
        fig[f"ingest_dcmtk_inst_per_s_{assocs}assoc"] = round(d, 1)
        fig[f"ingest_ratio_vs_dcmtk_{assocs}assoc"] = round(o / d, 3)
        line = f"ingest {assocs} assoc: ours {o:.0f}/s"
        if have_orthanc:
            r = n / median(orth)
            fig[f"ingest_orthanc_inst_per_s_{assocs}assoc"] = round(r, 1)
            fig[f"ingest_ratio_vs_orthanc_{assocs}assoc"] = round(o / r, 3)
            line += f", Orthanc {r:.0f}/s, ratio {o / r:.2f} (goal >= 1.5)"
        print(f"{line}; DCMTK storescp (no sync, context) {d:.0f}/s, ratio {o / d:.2f}")
        if assocs == 1:
            nofs = n / median([ingest_ours(files, work, assocs, fsync=False) for _ in range(repeats)])
            fig[f"ingest_ours_nofsync_inst_per_s_{assocs}assoc"] = round(nofs, 1)
            fig[f"ingest_nofsync_ratio_vs_dcmtk_{assocs}assoc"] = round(nofs / d, 3)
            print(f"  (ours without per-instance fsync, as DCMTK: {nofs:.0f}/s, ratio {nofs / d:.2f})")
    d_default = 40 / ingest_dcmtk(files[:40], work, 1, env={k: v for k, v in os.environ.items() if k != "TCP_NODELAY"})
    fig["ingest_dcmtk_default_env_inst_per_s_1assoc"] = round(d_default, 1)
    print(f"DCMTK storescp with default environment (Nagle): {d_default:.0f}/s")
    return fig


def bench_retrieve(files, work: Path, repeats: int) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from pacs_fixtures import skip_reason, start_orthanc, stop_orthanc

    reason = skip_reason()
    if reason:
        print(f"retrieve bench skipped: {reason}")
        return {"retrieve_skipped": reason}
    srv = start_orthanc(work / "orthanc")
    fig = {}
    try:
        ip, port = srv.ns.ns_ip, str(srv.dicom_port)
        subprocess.run(["/usr/bin/storescu", "-aec", "ORTHANC", ip, port, *map(str, files)], env=DCMTK_ENV,
                       check=True, capture_output=True, timeout=300)
        from pydicom import dcmread

        study = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
        pacs = Pacs("bench-orthanc", host=ip, port=srv.dicom_port, calling_ae="MESHDCM", timeout=60)
        n = len(files)
        rx_ns, rx_ip = _receiver_namespace(srv)
        body = json.dumps({"AET": "DCMTKSCP", "Host": rx_ip, "Port": srv.dcmtk_port}).encode()
        srv.rest("/modalities/dcmtk", "PUT", body)
        scp = StorageSCP(work / "move-ours", ae_title="MESHDCM", host=srv.ns.host_ip, port=srv.scp_port)
        scp.start()
        times = {"move_ours": [], "move_dcmtk": [], "get_ours": [], "get_dcmtk": [], "move_ours_nofsync": []}
        try:
            for _ in range(repeats):
                shutil.rmtree(scp.directory / study, ignore_errors=True)
                t0 = time.perf_counter()
                res = retrieve(pacs, study, method="move", scp=scp)
                times["move_ours"].append(time.perf_counter() - t0)
                assert res.done == n, res
                # the same with per-instance fsync off (DCMTK does not fsync): shows what durability costs
                shutil.rmtree(scp.directory / study, ignore_errors=True)
                scp.fsync = False
                t0 = time.perf_counter()
                retrieve(pacs, study, method="move", scp=scp)
                times["move_ours_nofsync"].append(time.perf_counter() - t0)
                scp.fsync = True

                out = work / "move-dcmtk"
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                # storescp 3.6.7 cannot bind one address, so it runs in a namespace of its own, reached from
                # Orthanc over a veth pair like our SCP is
                rx = subprocess.Popen(["ip", "netns", "exec", rx_ns, "/usr/bin/storescp", "-aet", "DCMTKSCP",
                                       "-pdu", "131072", "-od", str(out), str(srv.dcmtk_port)], env=DCMTK_ENV,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    time.sleep(0.2)  # storescp has no readiness signal; a connect probe would count as an association
                    t0 = time.perf_counter()
                    subprocess.run(["/usr/bin/movescu", "-S", "-aet", "MESHDCM", "-aec", "ORTHANC", "-aem", "DCMTKSCP",
                                    "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}", ip, port],
                                   env=DCMTK_ENV, check=True, capture_output=True, timeout=300)
                    wait_for(lambda d=out: count_files(d) >= n, 60, "DCMTK storescp to receive the moved study")
                    times["move_dcmtk"].append(time.perf_counter() - t0)
                finally:
                    rx.terminate()
                    rx.wait()

                out = work / "get-ours"
                shutil.rmtree(out, ignore_errors=True)
                t0 = time.perf_counter()
                res = retrieve(pacs, study, out, method="get")
                times["get_ours"].append(time.perf_counter() - t0)
                assert res.done == n

                out = work / "get-dcmtk"
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                t0 = time.perf_counter()
                subprocess.run(["/usr/bin/getscu", "-S", "-aet", "MESHDCM", "-aec", "ORTHANC", "-od", str(out),
                                "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}", ip, port],
                               env=DCMTK_ENV, check=True, capture_output=True, timeout=300)
                times["get_dcmtk"].append(time.perf_counter() - t0)
                assert count_files(out) >= n
        finally:
            scp.stop()
        for k, v in times.items():
            fig[f"retrieve_{k}_s"] = round(median(v), 3)
        fig["retrieve_instances"] = n
        fig["move_ratio_vs_dcmtk"] = round(median(times["move_ours"]) / median(times["move_dcmtk"]), 3)
        fig["get_ratio_vs_dcmtk"] = round(median(times["get_ours"]) / median(times["get_dcmtk"]), 3)
        print(f"C-MOVE: ours {fig['retrieve_move_ours_s']} s, movescu {fig['retrieve_move_dcmtk_s']} s, "
              f"ratio {fig['move_ratio_vs_dcmtk']}")
        print(f"C-GET: ours {fig['retrieve_get_ours_s']} s, getscu {fig['retrieve_get_dcmtk_s']} s, "
              f"ratio {fig['get_ratio_vs_dcmtk']}")
    finally:
        stop_orthanc(srv)
        subprocess.run(["ip", "netns", "del", f"mdcmrx{os.getpid()}"], capture_output=True)
    return fig


def bench_viewer(work: Path, files: list[Path], repeats: int, default_env_files: int | None) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from pacs_fixtures import NetNs, netns_available

    from meshdcm.pacs.part10 import read_instance
    from meshdcm.pacs.storescu import StoreRequestor

    reason = netns_available()
    if reason:
        print(f"viewer bench skipped: {reason}")
        return {"viewer_skipped": reason}
    n, port = len(files), 11112
    ns = NetNs.create()
    out = work / "viewer-rx"
    out.mkdir()

    def storescp(env) -> subprocess.Popen:
        proc = subprocess.Popen(["ip", "netns", "exec", ns.name, "/usr/bin/storescp", "-aet", "HOROS", "+uf", "-od",
                                 str(out), str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import socket

        def listening():  # storescp logs the probe as a failed association and goes on
            with socket.socket() as s:
                return s.connect_ex((ns.ns_ip, port)) == 0

        wait_for(listening, 10, "storescp to listen")
        return proc

    def clear() -> None:
        for p in out.iterdir():
            p.unlink()

    def dcmtk(batch, env) -> float:
        clear()
        t0 = time.perf_counter()
        subprocess.run(["/usr/bin/storescu", "-aec", "HOROS", ns.ns_ip, str(port), *map(str, batch)], env=env,
                       check=True, capture_output=True, timeout=600)
        took = time.perf_counter() - t0
        assert count_files(out) == len(batch)
        return took

    def ours(batch) -> float:
        clear()
        t0 = time.perf_counter()
        report = StoreRequestor(ns.ns_ip, port, "HOROS", "MESHDCM").send([read_instance(p) for p in batch])
        took = time.perf_counter() - t0
        assert len(report.stored) == len(batch) and count_files(out) == len(batch)
        return took

    fig = {"viewer_instances": n, "viewer_bytes_per_instance": files[0].stat().st_size}
    try:
        scp = storescp(DCMTK_ENV)
        try:
            times = {"ours": [], "dcmtk": []}
            for _ in range(repeats):  # interleaved: the machine is shared
                times["dcmtk"].append(dcmtk(files, DCMTK_ENV))
                times["ours"].append(ours(files))
        finally:
            scp.terminate()
            scp.wait()
        o, d = median(times["ours"]), median(times["dcmtk"])
        fig.update(viewer_ours_s=round(o, 3), viewer_storescu_s=round(d, 3), viewer_ratio_vs_storescu=round(o / d, 3))
        print(f"viewer send, {n} instances to storescp (no --fork): ours {o:.3f} s, storescu {d:.3f} s, "
              f"ratio {o / d:.2f} (medians of {repeats})")
        batch = files[:default_env_files] if default_env_files else files
        default_env = {k: v for k, v in os.environ.items() if k != "TCP_NODELAY"}
        scp = storescp(default_env)
        try:
            d_default, o_default = dcmtk(batch, default_env), ours(batch)
        finally:
            scp.terminate()
            scp.wait()
        fig.update(viewer_default_env_instances=len(batch), viewer_default_env_ours_s=round(o_default, 3),
                   viewer_default_env_storescu_s=round(d_default, 3))
        print(f"  DCMTK default environment (Nagle), {len(batch)} instances: ours {o_default:.3f} s, "
              f"storescu {d_default:.3f} s")
    finally:
        ns.destroy()
    return fig


def _receiver_namespace(srv) -> tuple[str, str]:
    """A namespace for DCMTK storescp, linked to Orthanc's namespace by its own veth pair (10.231.250.x/30)."""
    pid = os.getpid()
    name, veth = f"mdcmrx{pid}", f"mdr{pid % 100000}"
    base = (pid % 60) * 4
    orthanc_side, rx_side = f"10.231.250.{base + 1}", f"10.231.250.{base + 2}"
    for args in (["ip", "netns", "add", name],
                 ["ip", "link", "add", veth, "type", "veth", "peer", "name", veth + "p"],
                 ["ip", "link", "set", veth, "netns", srv.ns.name],
                 ["ip", "link", "set", veth + "p", "netns", name],
                 ["ip", "netns", "exec", srv.ns.name, "ip", "addr", "add", f"{orthanc_side}/30", "dev", veth],
                 ["ip", "netns", "exec", srv.ns.name, "ip", "link", "set", veth, "up"],
                 ["ip", "netns", "exec", name, "ip", "addr", "add", f"{rx_side}/30", "dev", veth + "p"],
                 ["ip", "netns", "exec", name, "ip", "link", "set", veth + "p", "up"],
                 ["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"]):
        subprocess.run(args, check=True, capture_output=True)
    return name, rx_side


def ingest_in_private_netns(src: Path, work: Path, repeats: int) -> dict:
    """Run the ingest bench in a namespace of its own: DCMTK storescp binds all interfaces, and there
    the only interface is that namespace's loopback."""
    name = f"mdcmbench{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        out = work / "ingest.json"
        subprocess.run(["ip", "netns", "exec", name, sys.executable, __file__, "--ingest-only", str(src), str(out),
                        str(repeats)], check=True, timeout=600)
        return json.loads(out.read_text())
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--skip-ingest", action="store_true")
    p.add_argument("--skip-retrieve", action="store_true")
    p.add_argument("--skip-viewer", action="store_true")
    p.add_argument("--ingest-only", nargs=3, metavar=("SRC", "OUT", "REPEATS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.ingest_only:
        src, out, repeats = args.ingest_only
        files = sorted(Path(src).rglob("*.dcm"))
        Path(out).write_text(json.dumps(bench_ingest(files, Path(out).parent / "ingest-work", int(repeats))))
        return
    if not os.path.exists(ORTHANC):
        print(f"Orthanc, the durable-ingest anchor, is not installed ({ORTHANC}): apt-get install orthanc")
    study, repeats = ("ct", 1) if args.quick else ("mr", 3)
    with tempfile.TemporaryDirectory(prefix="meshdcm-bench-pacs-") as tmp:
        work = Path(tmp)
        src = StudySet(studies_folder("full")).root / "stroke" / study  # read only; its truth/ holds no DICOM
        files = sorted(src.rglob("*.dcm"))
        fig = {"quick": args.quick, "study": f"realistic stroke {study.upper()} (docs/studies.md)", "repeats": repeats}
        if not args.skip_ingest:
            fig.update(ingest_in_private_netns(src, work, 2 if args.quick else 5))
        if not args.skip_retrieve:
            fig.update(bench_retrieve(files, work, repeats))
        if not args.skip_viewer:
            viewer_study = sorted((src.parent / "ct").rglob("*.dcm"))  # the stroke CT: 192 instances of 512x512
            fig.update(bench_viewer(work, viewer_study, 3 if args.quick else 5, 40 if args.quick else None))
        emit("pacs", fig)


if __name__ == "__main__":
    main()
