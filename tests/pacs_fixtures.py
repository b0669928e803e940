"""A real Orthanc (with the DICOMweb plugin) for the pacs tests, in its own network namespace.

Orthanc 1.10 binds all interfaces, so it runs inside a namespace this fixture creates, reached over a veth
pair whose two ends get addresses of a private /30 (10.231.x.y: the project's own test hosts). Orthanc knows
the root-namespace end as the modality ``MESHDCM`` (our storage SCP, for C-MOVE), and ``DCMTKSCP`` as a DCMTK
storescp run inside the namespace (storescp 3.6.7 cannot bind a single address).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from ports import free_port

ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def netns_available() -> str | None:
    """None if we can build a namespace, else the reason (the same probe as every namespace test)."""
    from netns import available

    return available()


def skip_reason() -> str | None:
    if not os.path.exists(ORTHANC):
        return f"Orthanc is not installed ({ORTHANC} missing; apt-get install orthanc orthanc-dicomweb)"
    return netns_available()


def receive_pdu(sock) -> tuple[int, bytes]:
    """One whole PDU read from a raw socket (a test playing a DICOM peer by hand): (type, body); ConnectionError
    when the peer closes first."""
    def read(n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("closed")
            out += chunk
        return out

    kind, _, length = struct.unpack(">BBI", read(6))
    return kind, read(length)


def wait_for(cond, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def _run(*args: str) -> None:
    r = subprocess.run(list(args), capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {r.stderr.strip()}")


@dataclass
class NetNs:
    name: str
    host_ip: str  # root-namespace end (our SCPs bind here)
    ns_ip: str  # inside the namespace (Orthanc)
    veth: str

    @classmethod
    def create(cls) -> NetNs:
        pid = os.getpid()
        token = int.from_bytes(os.urandom(2), "little")  # concurrent runs (CI, other sessions) never collide
        name = f"mdcm{pid}x{token:04x}"
        veth = f"mdv{token:04x}{pid % 1000}"
        third = token % 200 + 20
        fourth = (token // 200) % 60 * 4
        host_ip, ns_ip = f"10.231.{third}.{fourth + 1}", f"10.231.{third}.{fourth + 2}"
        _run("ip", "netns", "add", name)
        try:
            _run("ip", "link", "add", veth, "type", "veth", "peer", "name", veth + "p")
            _run("ip", "link", "set", veth + "p", "netns", name)
            _run("ip", "addr", "add", f"{host_ip}/30", "dev", veth)
            _run("ip", "link", "set", veth, "up")
            _run("ip", "netns", "exec", name, "ip", "addr", "add", f"{ns_ip}/30", "dev", veth + "p")
            _run("ip", "netns", "exec", name, "ip", "link", "set", veth + "p", "up")
            _run("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        except Exception:
            cls(name, host_ip, ns_ip, veth).destroy()
            raise
        return cls(name, host_ip, ns_ip, veth)

    def destroy(self) -> None:
        subprocess.run(["ip", "link", "del", self.veth], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


@dataclass
class OrthancServer:
    ns: NetNs
    dicom_port: int
    http_port: int
    aet: str
    scp_port: int  # where Orthanc's modality MESHDCM points (host_ip)
    dcmtk_port: int  # where Orthanc's modality DCMTKSCP points (127.0.0.1 inside the namespace)
    proc: subprocess.Popen
    workdir: Path

    @property
    def url(self) -> str:
        return f"http://{self.ns.ns_ip}:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return self.url + "/dicom-web"

    def rest(self, path: str, method: str = "GET", body: bytes | None = None):
        req = urllib.request.Request(self.url + path, data=body, method=method)  # noqa: S310 - http to our own server
        with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 - our own test server
            data = r.read()
        return json.loads(data) if data else None

    def clear(self) -> None:
        for sid in self.rest("/studies"):
            self.rest(f"/studies/{sid}", "DELETE")

    def upload(self, paths) -> None:
        for p in paths:
            self.rest("/instances", "POST", Path(p).read_bytes())


def start_orthanc(workdir: Path, **overrides) -> OrthancServer:
    """A real Orthanc in a namespace of its own; ``overrides`` replace entries of its configuration (e.g.
    ``DicomAlwaysAllowFind=False`` for a PACS that answers only the modalities it knows)."""
    ns = NetNs.create()
    try:
        scp_port, dcmtk_port = free_port(ns.host_ip), free_port(ns.host_ip)
        db = workdir / "orthanc-db"
        db.mkdir(parents=True, exist_ok=True)
        cfg = {
            "Name": "meshdcm-test",
            "StorageDirectory": str(db),
            "IndexDirectory": str(db),
            "StorageCompression": False,
            "DicomAet": "ORTHANC",
            "DicomPort": 4242,
            "HttpPort": 8042,
            "RemoteAccessAllowed": True,
            "AuthenticationEnabled": False,
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True},
            "DicomModalities": {
                "meshdcm": ["MESHDCM", ns.host_ip, scp_port],
                "dcmtk": ["DCMTKSCP", "127.0.0.1", dcmtk_port],  # a storescp run inside the namespace
            },
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowGet": True,
            "DicomAlwaysAllowMove": True,
            "UnknownSopClassAccepted": True,
            "DicomScuTimeout": 30,
            "HttpThreadsCount": 8,
            "ConcurrentJobs": 2,
            "SaveJobs": False,
        }
        cfg.update(overrides)
        cfg_path = workdir / "orthanc.json"
        cfg_path.write_text(json.dumps(cfg, indent=1))
        log = open(workdir / "orthanc.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(["ip", "netns", "exec", ns.name, ORTHANC, str(cfg_path)], stdout=log,
                                stderr=subprocess.STDOUT)
        srv = OrthancServer(ns, 4242, 8042, "ORTHANC", scp_port, dcmtk_port, proc, workdir)

        def up():
            if proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited early; see {workdir / 'orthanc.log'}")
            try:
                return srv.rest("/system")
            except OSError:
                return None

        wait_for(up, 60, "Orthanc to answer HTTP")
        return srv
    except Exception:
        ns.destroy()
        raise


def stop_orthanc(srv: OrthancServer) -> None:
    srv.proc.terminate()
    try:
        srv.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        srv.proc.kill()
        srv.proc.wait()
    srv.ns.destroy()


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory):
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    srv = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    try:
        yield srv
    finally:
        stop_orthanc(srv)


@pytest.fixture
def small_disk(tmp_path):
    """A 20 MiB tmpfs mounted at ``tmp_path/disk`` for the test (root needed), unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m,mode=0755", "tmpfs", str(disk)], capture_output=True,
                       text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs at {disk} (root needed): {r.stderr.strip()}")
    try:
        yield disk
    finally:
        if subprocess.run(["umount", str(disk)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)  # still busy: detach it now


def fill_disk(disk: Path, leave: int = 0) -> Path:
    """Fill the file system holding ``disk`` with one file, leaving about ``leave`` bytes free; returns the file."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        chunk = 1 << 20
        while chunk >= 4096:
            try:
                os.write(fd, bytes(chunk))
            except OSError:
                chunk //= 2
    finally:
        os.close(fd)
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler
