"""Shared fixtures: real `meshdcm` processes on loopback, each test in a mesh of its own."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import settings

# The README's test command is reproducible: Hypothesis draws the same examples on every run and machine, so CI
# never fails on an example no one has seen. To look for new ones: MESHDCM_HYPOTHESIS_PROFILE=explore pytest
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", max_examples=1000, print_blob=True)
settings.load_profile(os.environ.get("MESHDCM_HYPOTHESIS_PROFILE", "ci"))

ROOT = Path(__file__).resolve().parents[1]
NODES = Path(__file__).resolve().parent / "nodes"

# Nodes keep delivery state (journal, receipts, dead letters) under $XDG_DATA_HOME/meshdcm: tests use a folder of
# their own, removed at exit, never the user's.
_STATE_HOME = tempfile.mkdtemp(prefix="meshdcm-test-state-")
os.environ["XDG_DATA_HOME"] = _STATE_HOME
atexit.register(shutil.rmtree, _STATE_HOME, ignore_errors=True)


#: What makes a test slow (`make test-fast` leaves these out; `make test` runs all): a real Orthanc, headless
#: Chromium, network namespaces, the chaos tests that kill and restart processes.
SLOW_MODULES = {"test_delivery_chaos", "test_netns_hosts", "test_pacs_node_orthanc", "test_pacs_orthanc",
                "test_viewer_node", "test_web_e2e"}
SLOW_FIXTURES = {"orthanc"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if (item.module.__name__ in SLOW_MODULES or SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))
                or item.get_closest_marker("netns")):
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def wait_until(predicate, timeout: float, interval: float = 0.02, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Proc:
    """A background process whose output is collected in a file (so pipes never fill up)."""

    def __init__(self, argv: list[str], env: dict, log: Path, netns: str | None = None):
        self.log = log
        self._fh = open(log, "wb")
        prefix = ["ip", "netns", "exec", netns] if netns else []
        self.argv = prefix + argv
        # stdin at EOF, as under CI and for a tool started in the background
        self.popen = subprocess.Popen(self.argv, env=env, stdin=subprocess.DEVNULL, stdout=self._fh,
                                      stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 10.0) -> str:
        return wait_until(lambda: text in self.output and self.output, timeout, what=f"{text!r} in {self.log.name}")

    def stop(self, sig=signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:  # where is it stuck? (meshdcm processes print every thread's stack on SIGUSR1)
                    os.kill(self.popen.pid, signal.SIGUSR1)
                    wait_until(lambda: "most recent call first" in self.output, 2, what="a stack dump")
                except (ProcessLookupError, AssertionError):
                    pass  # gone, or no dump (not a meshdcm process): killed all the same
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self._fh.close()
        return self.popen.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


class Mesh:
    """Runs `meshdcm` commands in one test's own mesh (its own name: tests never hear each other)."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.name = f"test-{uuid.uuid4().hex[:10]}"
        self.procs: list[Proc] = []
        self.env = dict(os.environ, MESHDCM_MESH=self.name, PYTHONUNBUFFERED="1")
        self.env.pop("MESHDCM_CONFIG", None)
        self._n = 0

    def argv(self, *args) -> list[str]:
        return [sys.executable, "-m", "meshdcm.cli.main", *map(str, args)]

    def start(self, *args, netns: str | None = None) -> Proc:
        self._n += 1
        proc = Proc(self.argv(*args), self.env, self.tmp / f"proc{self._n}-{args[0]}.log", netns)
        self.procs.append(proc)
        return proc

    def run(self, *args, timeout: float = 60, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        prefix = ["ip", "netns", "exec", netns] if netns else []
        result = subprocess.run(prefix + self.argv(*args), env=self.env, capture_output=True, text=True,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"meshdcm {' '.join(map(str, args))} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def config(self, kind: str, **options) -> Path:
        """A TOML file with options for one node kind (``[nodes.KIND]``)."""
        self._n += 1
        lines = [f"[nodes.{kind}]"]
        for key, value in options.items():
            lines.append(f"{key} = {json.dumps(value)}")  # a JSON string or number is valid TOML
        path = self.tmp / f"config{self._n}.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def node(self, kind: str, *args, netns: str | None = None, **options) -> Proc:
        """Start ``tests/nodes/KIND.py`` with ``options`` in its config."""
        cfg = self.config(kind, **options)
        proc = self.start("node", NODES / f"{kind}.py", "--config", cfg, *args, netns=netns)
        return proc

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def show_logs(self, lines: int = 60) -> None:
        """Print the end of every process's output (pytest shows it under the failed test's teardown)."""
        for proc in self.procs:
            tail = proc.output.splitlines()[-lines:]
            print(f"----- {' '.join(map(str, proc.argv[-4:]))} ({proc.log.name}, exit {proc.popen.returncode}) -----")
            print("\n".join(tail))


@pytest.fixture
def mesh(request, tmp_path):
    m = Mesh(tmp_path)
    yield m
    m.close()
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        m.show_logs()


@pytest.fixture(scope="session")
def realistic_studies():
    """The realistic study set (meshdcm.studies, docs/studies.md) that `meshdcm up` serves: made once per machine
    (about 1.5 min) and cached in ~/.cache/meshdcm/studies, like `meshdcm up` does."""
    from meshdcm.studies import StudySet, studies_folder

    return StudySet(studies_folder("full"))


@pytest.fixture(scope="session")
def small_studies():
    """The same studies with coarse matrices, for tests that need speed (seconds the first time)."""
    from meshdcm.studies import StudySet, studies_folder

    return StudySet(studies_folder("small"))


def read_records(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line.strip()]
