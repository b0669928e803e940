"""Sending series to a desktop viewer (meshdcm.viewer.Forwarder) against DCMTK storescp without ``--fork``.

storescp without ``--fork`` serves one association at a time, as Horos, OsiriX and Weasis do; it runs in a network
namespace of its own (it binds every address), reached over a veth pair like a workstation on the LAN, and writes
every instance to a file of its own (``+uf``: a second copy of an instance is a second file). The Forwarder runs
with a real ledger on a thread, as the viewer node runs it.
"""

from __future__ import annotations

import os
import shlex
import socket
import statistics
import subprocess
import threading
import time
from pathlib import Path

import pytest
from pydicom import dcmread

from conftest import Proc, wait_until
from meshdcm.pacs import Pacs
from meshdcm.synthetic import head_ct, write_study
from meshdcm.viewer import Forwarder, Ledger, Retry
from pacs_fixtures import NetNs, netns_available

STORESCP, STORESCU = "/usr/bin/storescp", "/usr/bin/storescu"
PORT = 11112
DCMTK_BEST = {**os.environ, "TCP_NODELAY": "1"}  # DCMTK's best case (its default waits on Nagle + delayed ACK)

pytestmark = [pytest.mark.netns,  # slow: left out by `make test-fast`
              pytest.mark.skipif(not os.path.exists(STORESCP) or netns_available() is not None,
                                 reason=f"needs DCMTK ({STORESCP}) and network namespaces: "
                                        f"{netns_available() or 'apt-get install dcmtk'}")]


class Storescp:
    """DCMTK storescp (AE HOROS, no --fork) in a namespace of its own; started, killed and restarted at will."""

    def __init__(self, tmp: Path):
        self.ns = NetNs.create()
        self.tmp = tmp
        self.folder = tmp / "received"
        self.folder.mkdir()
        self.proc: Proc | None = None
        self._n = 0

    def start(self, *options: str, env: dict | None = None, disk_kib: int | None = None) -> None:
        argv = [STORESCP, "-aet", "HOROS", "+uf", *options, "-od", str(self.folder), str(PORT)]
        if disk_kib:  # a small disk of its own (a private mount namespace: gone with the process)
            argv = ["unshare", "-m", "sh", "-c",
                    f"mount -t tmpfs -o size={disk_kib}k tmpfs {self.folder} && exec {shlex.join(argv)}"]
        self._n += 1
        self.proc = Proc(argv, env or dict(os.environ), self.tmp / f"storescp{self._n}.log", netns=self.ns.name)

        def listening():
            with socket.socket() as s:
                s.settimeout(1)
                return s.connect_ex((self.ns.ns_ip, PORT)) == 0
        wait_until(listening, 10, 0.02, "storescp to listen")

    def files(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if p.is_file())

    def clear(self) -> None:
        for p in self.files():
            p.unlink()

    def sops(self) -> list[str]:
        return [str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in self.files()]

    def pacs(self, name: str = "horos", timeout: float = 10.0) -> Pacs:
        return Pacs(name, ae_title="HOROS", host=self.ns.ns_ip, port=PORT, timeout=timeout, calling_ae="MESHDCM")

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stop()
        self.ns.destroy()


@pytest.fixture
def storescp(tmp_path):
    s = Storescp(tmp_path)
    yield s
    s.close()


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> list[Path]:
    """One series of 189 CT instances (256x256, ~130 KB each), the size of the study in the field report."""
    return write_study(head_ct(seed=17, slices=189, matrix=256), tmp_path_factory.mktemp("study"))


QUICK_RETRY = Retry(retry_seconds=0.2, max_retry_seconds=0.5, give_up_seconds=120.0)


class Sending:
    """A Forwarder to one viewer with its own ledger, run on a thread as the viewer node runs it."""

    def __init__(self, tmp: Path, viewer: Pacs, files: list[Path], retry: Retry = QUICK_RETRY):
        self.viewer, self.files = viewer, files
        header = dcmread(files[0], stop_before_pixels=True)
        self.study, self.series = str(header.StudyInstanceUID), str(header.SeriesInstanceUID)
        self.ledger = Ledger(tmp / f"ledger-{viewer.name}-{time.monotonic_ns()}.sqlite")
        self.sent: list[int] = []
        self.errors: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()
        self.forwarder = Forwarder(viewer, self.ledger, lambda study, series: list(files), self._sent, self._error,
                                   retry)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.forwarder.run, args=(self.stopping,), daemon=True)
        self.thread.start()

    def _sent(self, viewer, study, series, count) -> None:
        with self.lock:
            self.sent.append(count)

    def _error(self, viewer, study, series, reason, action, attempt) -> None:
        with self.lock:
            self.errors.append((reason, action, attempt))

    def go(self) -> None:
        assert self.forwarder.enqueue(self.study, self.series)

    def done(self) -> bool:
        """on_sent is called once, when the request is over (all its attempts)."""
        with self.lock:
            return bool(self.sent)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(10)
        self.acknowledged = self.ledger.sent(self.viewer.name, self.series)  # what the ledger holds at the end
        self.ledger.close()


def storescu(files: list[Path], storescp: Storescp, env=DCMTK_BEST) -> float:
    t0 = time.perf_counter()
    subprocess.run([STORESCU, "-aec", "HOROS", storescp.ns.ns_ip, str(PORT), *map(str, files)], env=env, check=True,
                   capture_output=True, timeout=120)
    return time.perf_counter() - t0


def forward(tmp: Path, storescp: Storescp, files: list[Path], name: str) -> float:
    sending = Sending(tmp, storescp.pacs(name), files)
    try:
        t0 = time.perf_counter()
        sending.go()
        wait_until(sending.done, 60, 0.002, f"viewer {name} to get the series")
        took = time.perf_counter() - t0
        assert sending.sent == [len(files)] and not sending.errors, sending.errors
        return took
    finally:
        sending.close()


# -- 1. as fast as storescu ----------------------------------------------------------------------------------------

def test_a_series_reaches_the_viewer_about_as_fast_as_storescu_sends_it(storescp, study, tmp_path):
    storescp.start(env=DCMTK_BEST)
    ours, dcmtk = [], []
    for i in range(3):  # interleaved, medians: the machine is shared
        storescp.clear()
        dcmtk.append(storescu(study, storescp))
        assert len(storescp.files()) == len(study)
        storescp.clear()
        ours.append(forward(tmp_path, storescp, study, f"desk{i}"))
        assert sorted(storescp.sops()) == sorted(str(dcmread(p, stop_before_pixels=True).SOPInstanceUID)
                                                 for p in study)
    o, d = statistics.median(ours), statistics.median(dcmtk)
    print(f"{len(study)} instances: Forwarder {o:.3f} s, storescu {d:.3f} s (medians of 3), ratio {o / d:.2f}")
    assert o <= 1.5 * d + 0.2, f"Forwarder {ours} s vs storescu {dcmtk} s"


def test_a_busy_process_does_not_stall_the_send(storescp, study, tmp_path):
    """The node process runs other threads (messages, fetches); pynetdicom's reactor then lost C-STORE responses
    ("Received unexpected C-STORE service message") and every association waited out its DIMSE timeout."""
    storescp.start(env=DCMTK_BEST)
    stop = threading.Event()

    def busy():
        while not stop.is_set():
            sum(range(1000))
    workers = [threading.Thread(target=busy, daemon=True) for _ in range(2)]
    for w in workers:
        w.start()
    sending = Sending(tmp_path, storescp.pacs("desk", timeout=5.0), study)
    try:
        sending.go()
        wait_until(sending.done, 60, 0.01, "the series to arrive")
    finally:
        stop.set()
        sending.close()
    assert not sending.errors, sending.errors
    assert len(storescp.files()) == len(study) and sending.sent == [len(study)]


# -- 2. one association at a time per destination -------------------------------------------------------------------

def test_two_viewer_names_for_one_single_association_receiver_take_turns(storescp, study, tmp_path):
    """Two names for the same workstation (host and port): sent one after the other, never two associations at
    once, so the second never waits on the network for the first and times out."""
    files = study[:30]
    storescp.start("-xcr", "sleep 0.05", "-xs")  # ~60 ms an instance: an association lasts ~2 s
    left = Sending(tmp_path, storescp.pacs("left", timeout=1.0), files)
    right = Sending(tmp_path, storescp.pacs("right", timeout=1.0), files)
    try:
        left.go()
        right.go()
        wait_until(lambda: left.done() and right.done(), 60, 0.02, "both viewer names to get the series")
    finally:
        left.close()
        right.close()
    assert not left.errors and not right.errors, left.errors + right.errors
    assert left.sent == right.sent == [len(files)]
    assert len(storescp.files()) == 2 * len(files)  # each name asked for its own copy


# -- 3. resumed with what was not acknowledged ------------------------------------------------------------------------

def test_a_viewer_that_dies_mid_series_gets_only_the_rest_once_it_is_back(storescp, study, tmp_path):
    files, cut = study[:40], 15
    # storescp runs this after it has stored the instance and answered it (storescp.cc: the command follows
    # DIMSE_storeProvider), and waits for it (-xs): at the 15th it dies, with the 16th on its way
    die = f'if [ "$(ls {storescp.folder} | wc -l)" -ge {cut} ]; then kill -9 $PPID; fi'
    storescp.start("-xcr", die, "-xs")
    sending = Sending(tmp_path, storescp.pacs("desk"), files)
    try:
        sending.go()
        wait_until(lambda: storescp.proc.popen.poll() is not None, 30, 0.01, "storescp to die mid-series")
        wait_until(lambda: sending.errors, 30, 0.01, "the failure to be reported")
        assert len(storescp.files()) == cut
        storescp.start()  # back, without the trap
        wait_until(sending.done, 60, 0.01, "the rest of the series")
    finally:
        sending.close()
    sops = storescp.sops()
    expected = sorted(str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files)
    assert sorted(sops) == expected, f"{len(sops)} files for {len(expected)} instances"  # each exactly once
    assert sending.sent == [len(files)]
    assert sending.acknowledged == set(expected)
    first, action, _ = sending.errors[0]
    in_flight = str(dcmread(files[cut], stop_before_pixels=True).SOPInstanceUID)
    assert "could not be reached" not in first, first
    assert "the association with viewer desk" in first and "was cut short" in first and f"after {cut} of {len(files)} instances" in first, first
    assert f"while instance {in_flight} was being sent" in first and "connection" in first, first
    assert "only the rest is sent again" in action, action
    assert not any("PACS" in r or "PACS" in a for r, a, _ in sending.errors), sending.errors


# -- 4. reports say what happened ------------------------------------------------------------------------------------

def test_an_instance_refused_by_the_viewer_is_named_with_its_status(storescp, study, tmp_path):
    files = study[:12]  # ~130 KB each; a 700 KiB disk takes 5
    storescp.start(disk_kib=700)
    sending = Sending(tmp_path, storescp.pacs("desk"), files, Retry(0.2, 0.5, 60.0, refused_attempts=1))
    try:
        sending.go()
        wait_until(sending.done, 30, 0.01, "the send to end")
    finally:
        sending.close()
    stored = len(sending.acknowledged)
    assert 0 < stored < len(files) and sending.sent == [stored]
    (reason, action, _), = sending.errors
    first_refused = str(dcmread(files[stored], stop_before_pixels=True).SOPInstanceUID)
    assert f"refused {len(files) - stored} of {len(files)} instances" in reason, reason
    assert f"instance {first_refused}: status 0xA700 (Refused: Out of resources)" in reason, reason
    assert "free disk space on viewer desk" in action, action


def test_a_viewer_that_is_not_listening_could_not_be_reached(storescp, study, tmp_path):
    sending = Sending(tmp_path, storescp.pacs("desk"), study[:3])  # storescp not started
    try:
        sending.go()
        wait_until(lambda: sending.errors, 20, 0.01, "an error")
    finally:
        sending.close()
    reason, action, _ = sending.errors[0]
    assert reason.startswith("viewer desk could not be reached: ") and "connection refused" in reason, reason
    assert f"start viewer desk (HOROS at {storescp.ns.ns_ip}:{PORT})" in action, action
    assert "PACS" not in reason + action


def test_a_viewer_that_refuses_the_association_was_reached(storescp, study, tmp_path):
    storescp.start("--refuse")
    sending = Sending(tmp_path, storescp.pacs("desk"), study[:3])
    try:
        sending.go()
        wait_until(lambda: sending.errors, 20, 0.01, "an error")
    finally:
        sending.close()
    reason, action, _ = sending.errors[0]
    assert "was reached, but the association was rejected: " in reason, reason
    assert "rejected-" in reason and "could not be reached" not in reason, reason
    assert "knows our AE title MESHDCM" in action and "PACS" not in reason + action, action
