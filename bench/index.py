"""Index benchmarks, per available backend (embedded SQLite always; MongoDB when MESHDCM_TEST_MONGO_URI is set).

1. Ingest: a publisher node sends ``stored.series`` messages for many studies through the mesh to a real index
   node process; figure: messages indexed (committed) per second, from the first publish to the last commit.
   Anchors in the same run: the same messages recorded by ``Index.record`` in-process (no mesh), and the raw
   SQLite insert rate of the same JSON documents (one committed transaction per message, same WAL/synchronous
   settings; the floor any SQLite index pays). Ratios: node / raw insert, library / raw insert.
2. Query: ``find.studies`` for one patient with 50 studies (among all the others), round trip over the mesh to
   the index node (median and p95). Anchors: the same query by ``Index.find`` in-process, and a C-FIND of the
   same patient to the embedded PACS (pynetdicom SCP over loopback) holding the same 50 studies.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench._report import emit, median, parser, percentile  # noqa: E402
from index_fixtures import header, mongo_uri, query  # noqa: E402
from meshdcm import Message, Node  # noqa: E402
from meshdcm.index import Index, SqliteBackend  # noqa: E402
from meshdcm.index.documents import dicom_json  # noqa: E402

PATIENT = "P-BENCH"


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.005)
    raise TimeoutError(f"timed out waiting for {what}")


def datasets(n: int) -> list:
    """n series of n/4 patients, then the bench patient's 50 studies (one series each)."""
    out = [header(pid=f"P{i % max(1, n // 4)}", patient=f"PATIENT^{i % max(1, n // 4)}",
                  date=f"20{10 + i % 14:02d}{1 + i % 12:02d}01") for i in range(n)]
    out += [header(pid=PATIENT, patient="BENCH^PATIENT", date=f"20{10 + i // 12:02d}{1 + i % 12:02d}15")
            for i in range(50)]
    return out


def raw_sqlite_rate(path: Path, docs: list[dict]) -> float:
    """The floor: the same JSON documents into one indexed table, one committed transaction each."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("CREATE TABLE docs (uid TEXT PRIMARY KEY, patient_id TEXT, doc TEXT)")
    con.execute("CREATE INDEX docs_pid ON docs (patient_id)")
    t = time.perf_counter()
    for d in docs:
        con.execute("BEGIN")
        con.execute("INSERT OR REPLACE INTO docs VALUES (?, ?, ?)", (d["uid"], d["pid"], json.dumps(d["dicom"])))
        con.execute("COMMIT")
    seconds = time.perf_counter() - t
    con.close()
    return len(docs) / seconds


def library_rate(index: Index, msgs: list[Message]) -> float:
    t = time.perf_counter()
    for m in msgs:
        index.record(m, "bench")
    return len(msgs) / (time.perf_counter() - t)


def mesh_figures(option: dict, count_now, n_msgs: list, patient_query) -> dict:
    mesh = f"bench-index-{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="bench-index-"))
    cfg = work / "index.toml"
    cfg.write_text("[nodes.index]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in option.items()))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MESHDCM_MESH": mesh}
    proc = subprocess.Popen([sys.executable, "-m", "meshdcm.cli.main", "node", "index", "--config", str(cfg),
                             "--log-level", "WARNING"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ended: set[bytes] = set()  # request ids the index has answered (found.end)
    cond = threading.Condition()
    node = Node("bench-client", mesh=mesh)

    @node.on("found.end")
    def end(msg: Message) -> None:
        if msg.meta.get("source") == "index":
            with cond:
                ended.add(msg.correlation_id)
                cond.notify_all()

    try:
        node.start()
        wait_for(lambda: any(p["kind"] == "index" for p in node.peers), 30, "the index node")
        node.wait_for_subscribers("stored.series", 10)
        t = time.perf_counter()
        for m in n_msgs:
            node.publish("stored.series", m.body, index=m.index, meta=m.meta)
        wait_for(lambda: count_now() >= len(n_msgs), 600, "every message committed")
        rate = len(n_msgs) / (time.perf_counter() - t)
        latencies = []
        for _ in range(30):
            t = time.perf_counter()
            request = node.publish("find.studies", patient_query, meta={"to": "index"})
            with cond:
                if not cond.wait_for(lambda rid=request.message_id: rid in ended, 30):
                    raise TimeoutError("the index did not answer find.studies")
            latencies.append((time.perf_counter() - t) * 1000)
        return {"node_msgs_per_s": round(rate, 1), "query_ms_median": round(median(latencies), 2),
                "query_ms_p95": round(percentile(latencies, 95), 2)}
    finally:
        node.stop()
        proc.terminate()
        proc.wait(timeout=30)


def pacs_cfind_ms(studies: list, patient_query) -> float | None:
    """C-FIND of the same patient to the embedded PACS holding the patient's 50 studies."""
    try:
        from pydicom.dataset import FileMetaDataset
        from pydicom.uid import ExplicitVRLittleEndian

        from meshdcm.pacs import Pacs, find
        from meshdcm.pacs.embedded import EmbeddedPacs
    except ImportError:
        return None
    work = Path(tempfile.mkdtemp(prefix="bench-index-pacs-"))
    for ds in studies:
        folder = work / ds.StudyInstanceUID / ds.SeriesInstanceUID
        folder.mkdir(parents=True, exist_ok=True)
        ds = ds.copy()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(folder / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
    pacs = EmbeddedPacs(work, load_synthetic=False)
    host, port = pacs.start()
    try:
        target = Pacs("embedded", ae_title=pacs.ae_title, host=host, port=port, calling_ae="BENCH")
        times = []
        for _ in range(30):
            t = time.perf_counter()
            found = list(find(target, "STUDY", patient_query))
            times.append((time.perf_counter() - t) * 1000)
        assert len(found) == 50, len(found)
        return median(times)
    finally:
        pacs.stop()


def main() -> int:
    args = parser(__doc__.splitlines()[0]).parse_args()
    n = 2000 if args.quick else 20000
    data = datasets(n)
    msgs = [Message.from_bytes(Message("stored.series", ds, meta={"instances": 1, "uris": ["meshdcm://x/store/y"]},
                                       sender=uuid.uuid4().bytes).to_bytes()) for ds in data]
    patient_query = query(PatientID=PATIENT, StudyInstanceUID="", StudyDate="", StudyDescription="", PatientName="")
    work = Path(tempfile.mkdtemp(prefix="bench-index-"))
    docs = [{"uid": ds.SeriesInstanceUID, "pid": ds.PatientID, "dicom": dicom_json(ds)} for ds in data]
    raw = raw_sqlite_rate(work / "raw.sqlite3", docs)
    figures: dict = {"messages": len(msgs), "patient_studies": 50, "raw_sqlite_inserts_per_s": round(raw, 1)}
    print(f"anchor: raw SQLite insert of the same documents, one commit each: {raw:.0f}/s", flush=True)

    backends = [("sqlite", lambda p: Index(SqliteBackend(p)), lambda p: {"path": str(p)})]
    uri = mongo_uri()
    if uri:
        from meshdcm.index.mongo import MongoBackend

        db = f"meshdcm_bench_{uuid.uuid4().hex[:8]}"
        backends.append(("mongodb", lambda p: Index(MongoBackend(uri, database=db + p.stem)),
                         lambda p: {"mongo": uri.rstrip("/") + "/" + db + p.stem}))
    else:
        figures["mongodb"] = "skipped: no MESHDCM_TEST_MONGO_URI (no MongoDB server on this machine)"
        print(figures["mongodb"], flush=True)
    for name, make, option in backends:
        lib_index = make(work / f"{name}-lib.sqlite3")
        lib = library_rate(lib_index, msgs)
        times = []
        for _ in range(30):
            t = time.perf_counter()
            found = lib_index.find("STUDY", patient_query)
            times.append((time.perf_counter() - t) * 1000)
        assert len(found) == 50, len(found)
        lib_index.close()
        probe = make(work / f"{name}-node.sqlite3")
        mesh = mesh_figures(option(work / f"{name}-node.sqlite3"),
                            lambda probe=probe: probe.counts().get("events", 0), msgs, patient_query)
        probe.close()
        f = {"library_msgs_per_s": round(lib, 1), "library_query_ms_median": round(median(times), 2), **mesh,
             "node_to_raw_insert": round(mesh["node_msgs_per_s"] / raw, 3),
             "library_to_raw_insert": round(lib / raw, 3)}
        figures[name] = f
        print(f"{name}: node {f['node_msgs_per_s']:.0f} msg/s ({f['node_to_raw_insert']:.2f}x raw insert), "
              f"library {f['library_msgs_per_s']:.0f} msg/s; find 50 studies: mesh {f['query_ms_median']} ms "
              f"(p95 {f['query_ms_p95']}), library {f['library_query_ms_median']} ms", flush=True)
    pacs_ms = pacs_cfind_ms(data[-50:], patient_query)
    figures["embedded_pacs_cfind_ms_median"] = None if pacs_ms is None else round(pacs_ms, 2)
    if pacs_ms is not None:
        figures["sqlite"]["query_to_pacs_cfind"] = round(figures["sqlite"]["query_ms_median"] / pacs_ms, 3)
        print(f"anchor: C-FIND of the same patient to the embedded PACS: {pacs_ms:.2f} ms "
              f"(index over the mesh: {figures['sqlite']['query_to_pacs_cfind']}x)", flush=True)
    emit("index", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
