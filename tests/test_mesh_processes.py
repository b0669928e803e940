"""Several real `meshdcm` processes on loopback, in a mesh of their own per test."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter

import pytest

from conftest import read_records, wait_until
from mesh_fixtures import write_series_files
from ports import free_port

MR_FILTER = 'Modality == "MR" and SeriesDescription ~ "(?i)perf"'


def test_publish_and_tail_with_filter(mesh, tmp_path):
    files = tmp_path / "files"
    uids = write_series_files(files, [("MR", "ep2d_perf"), ("CT", "Head"), ("MR", "T1 MPRAGE"), ("MR", "DSC PERF")])
    tail_mr = mesh.start("tail", "--topic", "stored", "--where", MR_FILTER, "--json", "--count", "2",
                         "--timeout", "30")
    tail_all = mesh.start("tail", "--topic", "stored.series", "--count", "4", "--timeout", "30")
    for t in (tail_mr, tail_all):
        t.wait_for_output("# tail of mesh")
    result = mesh.run("publish", "stored.series", files)
    assert "published 4 messages on stored.series" in result.stdout
    assert tail_mr.popen.wait(timeout=30) == 0
    assert tail_all.popen.wait(timeout=30) == 0
    lines = [json.loads(line) for line in tail_mr.output.splitlines() if line.startswith("{")]
    assert [line["uids"]["series"] for line in lines] == [uids[0], uids[3]]  # the filter kept the MR perfusion ones
    assert all(line["attributes"]["Modality"] == "MR" for line in lines)
    # every series passed, once, and tail never shows the patient's name
    assert sorted(u for u in uids if u in tail_all.output) == sorted(uids)
    assert "Test^Patient" not in tail_all.output + tail_mr.output


def test_filter_that_matches_nothing_delivers_nothing(mesh, tmp_path):
    out = tmp_path / "rec.txt"
    rec = mesh.node("recorder", out=str(out), topic="stored", where='Modality == "CT"')
    rec.wait_for_output("started on")
    files = tmp_path / "files"
    write_series_files(files, [("MR", "a"), ("MR", "b"), ("CT", "c")])
    mesh.run("publish", "stored.series", files)
    records = wait_until(lambda: [r for r in read_records(out) if r[0] != "#"], 10, what="the CT record")
    # the MR messages were sent before the CT one on the same connection: if they were going to arrive, they have
    assert [r[2] for r in records] == ["1.2.826.0.1.3680043.10.1.2.2"]


def test_worker_group_of_three_shares_work(mesh, tmp_path):
    out = tmp_path / "work.txt"
    watcher_out = tmp_path / "watcher.txt"
    other_out = tmp_path / "other.txt"
    workers = [mesh.node("recorder", "--group", "convert", "--name", f"convert-{i}", out=str(out), topic="stored",
                         delay=0.01) for i in range(3)]
    watcher = mesh.node("recorder", "--name", "watcher", out=str(watcher_out), topic="stored")
    other = mesh.node("recorder", "--group", "index", "--name", "index-0", out=str(other_out), topic="stored")
    for p in workers + [watcher, other]:
        p.wait_for_output("started on")
    files = tmp_path / "files"
    n = 90
    uids = write_series_files(files, [("MR", f"series {i}") for i in range(n)])
    peers = json.loads(mesh.run("peers", "--json", "--wait", "2").stdout)
    assert sorted(p["name"] for p in peers) == ["convert-0", "convert-1", "convert-2", "index-0", "watcher"]
    assert {p["group"] for p in peers if p["name"].startswith("convert")} == {"convert"}
    mesh.run("publish", "stored.series", files)

    def done():
        got = [r for r in read_records(out) if r[0] != "#"]
        return len(got) >= n and got
    wait_until(done, 30, what="all work items")
    # a plain subscriber and another group each get everything, once
    for path in (watcher_out, other_out):
        rows = wait_until(lambda p=path: len([r for r in read_records(p) if r[0] != "#"]) >= n
                          and [r for r in read_records(p) if r[0] != "#"], 20, what=f"all messages in {path.name}")
        assert sorted(r[2] for r in rows) == sorted(uids)
    # checked after the others caught up, so that a late duplicate would have had time to show
    got = [r for r in read_records(out) if r[0] != "#"]
    by_uid = Counter(r[2] for r in got)
    assert set(by_uid) == set(uids) and set(by_uid.values()) == {1}, "each item handled by exactly one member"
    by_worker = Counter(r[0] for r in got)
    assert set(by_worker) == {"convert-0", "convert-1", "convert-2"}, f"all three members worked: {by_worker}"


def test_failing_handler_publishes_error_event_and_keeps_running(mesh, tmp_path):
    out = tmp_path / "rec.txt"
    rec = mesh.node("recorder", out=str(out), topic="stored", fail_when='SeriesDescription == "broken"')
    errors = mesh.start("tail", "--topic", "error", "--count", "1", "--timeout", "30")
    monitor = mesh.start("node", "monitor")
    for p in (rec, errors, monitor):
        p.wait_for_output("started on" if p is not errors else "# tail")
    files = tmp_path / "files"
    uids = write_series_files(files, [("MR", "broken"), ("MR", "fine")])
    mesh.run("publish", "stored.series", files)
    assert errors.popen.wait(timeout=30) == 0
    line = errors.output
    assert "ERROR in recorder/" in line and uids[0] in line and "refusing series broken" in line
    assert "this is a test failure" in line  # the action the handler gave
    monitor.wait_for_output("refusing series broken")
    # the node went on: the next message was handled
    wait_until(lambda: any(r[2] == uids[1] for r in read_records(out) if r[0] != "#"), 10, what="the next message")
    assert rec.popen.poll() is None


def test_late_joiner_gets_everything_published_1s_after_its_start(mesh, tmp_path):
    ticker = mesh.node("ticker", interval=0.005)
    ticker.wait_for_output("started on")  # from here it publishes every 5 ms, to nobody yet
    out = tmp_path / "late.txt"
    rec = mesh.node("recorder", out=str(out), topic="stored")
    rec.wait_for_output("started on")
    wait_until(lambda: len(read_records(out)) > 300, 20, what="messages at the late joiner")
    rec.stop()
    rows = read_records(out)
    started = int(rows[0][3])
    seqs = sorted(int(r[3]) for r in rows[1:])
    stamps = {int(r[3]): int(r[4]) for r in rows[1:]}
    first_seq = min(s for s in seqs if stamps[s] > started + 1_000_000_000)
    expected = set(range(first_seq, seqs[-1] + 1))
    assert expected <= set(seqs), f"lost after the first second: {sorted(expected - set(seqs))[:10]}"
    first_delay = (min(stamps.values()) - started) / 1e9
    print(f"late joiner: first message {first_delay:.3f} s after its start; {len(seqs)} messages, none lost after 1 s")


def test_node_restarted_on_same_port_is_taken_back(mesh, tmp_path):
    port = free_port()
    out = tmp_path / "rec.txt"
    ticker = mesh.node("ticker", interval=0.01)
    rec = mesh.node("recorder", "--port", str(port), out=str(out), topic="stored")
    rec.wait_for_output("started on")
    wait_until(lambda: len(read_records(out)) > 20, 10, what="messages before the restart")
    rec.kill()
    before = len(read_records(out))
    rec2 = mesh.node("recorder", "--port", str(port), out=str(out), topic="stored")
    rec2.wait_for_output("started on")
    wait_until(lambda: len(read_records(out)) > before + 50, 10, what="messages after the restart")
    # the mesh sees one recorder: the killed one was replaced (same endpoints) or expired
    def one_recorder():
        peers = json.loads(mesh.run("peers", "--json", "--wait", "1").stdout)
        return [p for p in peers if p["kind"] == "recorder"] if len(
            [p for p in peers if p["kind"] == "recorder"]) == 1 else None
    wait_until(one_recorder, 15, interval=0.2, what="a single recorder in the peer table")
    assert ticker.popen.poll() is None


def test_sigterm_stops_gracefully_and_peers_drop_it(mesh, tmp_path):
    rec = mesh.node("recorder", out=str(tmp_path / "r.txt"), topic="stored")
    other = mesh.node("recorder", "--name", "other", out=str(tmp_path / "o.txt"), topic="stored")
    rec.wait_for_output("started on")
    other.wait_for_output("peer joined: recorder")
    t0 = time.monotonic()
    assert rec.stop(signal.SIGTERM) == 0
    other.wait_for_output("peer left: recorder", timeout=5)
    assert time.monotonic() - t0 < 5


def test_filter_check_dry_run(mesh, tmp_path):
    files = tmp_path / "files"
    write_series_files(files, [("MR", "ep2d_perf"), ("CT", "Head")])
    result = mesh.run("filter-check", MR_FILTER, files)
    assert "1 of 2 DICOM files match" in result.stdout
    assert "match  " + str(files / "0000.dcm") in result.stdout
    bad = mesh.run("filter-check", 'Modality = "MR"', files, check=False)
    assert bad.returncode == 2 and "column 10" in bad.stderr and "expected" in bad.stderr


@pytest.mark.parametrize("args", [["--help"], ["node", "--help"], ["peers", "--help"], ["publish", "--help"],
                                  ["tail", "--help"], ["filter-check", "--help"], ["up", "--help"], ["--version"],
                                  ["keys", "--help"], ["pacs", "--help"], ["perfusion", "--help"], ["convert", "--help"],
                                  ["register", "--help"], ["reformat", "--help"], ["dead", "--help"]])
def test_help_everywhere(mesh, args):
    result = mesh.run(*args)
    assert result.stdout.strip()


def test_a_killed_peer_is_expired_and_dropped(mesh, tmp_path):
    victim = mesh.node("recorder", "--name", "victim", out=str(tmp_path / "v.txt"), topic="stored")
    witness = mesh.node("recorder", "--name", "witness", out=str(tmp_path / "w.txt"), topic="stored")
    witness.wait_for_output("peer joined: victim")
    victim.kill()
    witness.wait_for_output("victim", timeout=1)
    out = witness.wait_for_output("stopped answering", timeout=6)
    assert "peer left: victim" in out
