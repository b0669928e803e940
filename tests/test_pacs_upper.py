"""The storage SCP's upper layer against a scripted hostile peer on 127.0.0.1 (a raw socket), then DCMTK storescu."""

from __future__ import annotations

import socket
import struct
import subprocess
import time

import pytest
from pydicom import dcmread

from conftest import wait_until
from pacs_fixtures import receive_pdu
from meshdcm import synthetic
from meshdcm.pacs import StorageSCP

VERIFICATION = b"1.2.840.10008.1.1"
IMPLICIT_LE = b"1.2.840.10008.1.2"
FOUR_GIB = 0xFFFFFFFF


def _item(kind: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(payload)) + payload


def _associate_rq() -> bytes:
    """A-ASSOCIATE-RQ proposing Verification only (PS3.8 9.3.2), as a minimal real peer would."""
    context = _item(0x20, struct.pack(">BBBB", 1, 0, 0, 0) + _item(0x30, VERIFICATION) + _item(0x40, IMPLICIT_LE))
    user = _item(0x50, _item(0x51, struct.pack(">I", 16384)) + _item(0x52, b"1.2.3.4"))
    body = (struct.pack(">HH", 1, 0) + b"ANY".ljust(16) + b"HOSTILE".ljust(16) + bytes(32)
            + _item(0x10, b"1.2.840.10008.3.1.1.1") + context + user)
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


def _peak_rss_kib() -> int:
    status = open("/proc/self/status").read()  # noqa: SIM115 - a tiny read
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))


def _aborted_at_once(port: int, after_accept: bool, claim: bytes) -> float:
    """Send ``claim`` (a PDU header with a huge length) and return how long the SCP took to abort and close."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        if after_accept:
            sock.sendall(_associate_rq())
            assert receive_pdu(sock)[0] == 0x02  # A-ASSOCIATE-AC
        t0 = time.monotonic()
        sock.sendall(claim)
        try:
            kind, body = receive_pdu(sock)
        except (TimeoutError, ConnectionError) as exc:
            pytest.fail(f"no A-ABORT after a PDU claiming {FOUR_GIB} bytes ({exc}): the SCP went on reading it")
        assert kind == 0x07 and body[2] == 2, (kind, body)  # A-ABORT from the service provider
        assert sock.recv(1) == b"", "the SCP kept the association open after aborting it"
        return time.monotonic() - t0


@pytest.mark.parametrize("case", ["associate-rq", "p-data-pdu", "pdv-item"])
def test_a_pdu_claiming_4_gib_is_aborted_without_allocating_it(tmp_path, case):
    """_read() allocated whatever length an unauthenticated peer claimed (up to 4 GiB) and waited for it."""
    src = synthetic.write_study(synthetic.head_ct(seed=31, size="small", slices=1), tmp_path / "src")
    got = []
    with StorageSCP(tmp_path / "rx", on_stored=got.append) as scp:
        before = _peak_rss_kib()
        if case == "associate-rq":
            took = _aborted_at_once(scp.port, False, struct.pack(">BBI", 0x01, 0, FOUR_GIB))
        elif case == "p-data-pdu":
            took = _aborted_at_once(scp.port, True, struct.pack(">BBI", 0x04, 0, FOUR_GIB))
        else:  # a P-DATA-TF PDU of a sane length whose PDV item claims 4 GiB
            took = _aborted_at_once(scp.port, True, struct.pack(">BBIIBB", 0x04, 0, 12, FOUR_GIB, 1, 0x03))
        assert took < 2, f"the association took {took:.1f} s to end"
        grew = _peak_rss_kib() - before
        assert grew < 64 << 10, f"peak memory grew by {grew >> 10} MiB while refusing the PDU"
        # the server is still up, and the next association works
        r = subprocess.run(["/usr/bin/storescu", "-aec", "ANY", "127.0.0.1", str(scp.port), str(src[0])],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
    assert [g.sop_instance_uid for g in got] == [str(dcmread(src[0]).SOPInstanceUID)]


def test_associations_beyond_the_limit_are_rejected_and_the_scp_serves_again_once_they_close(tmp_path):
    """Each association holds a thread and a buffer of the maximum PDU size: a flood of idle connections was
    served without limit. Beyond ``max_associations`` one gets an A-ASSOCIATE-RJ (transient, local limit
    exceeded) at once; when the idle ones go, storescu is served."""
    src = synthetic.write_study(synthetic.head_ct(seed=32, size="small", slices=1), tmp_path / "src")
    with StorageSCP(tmp_path / "rx", max_associations=3) as scp:
        idle = [socket.create_connection(("127.0.0.1", scp.port)) for _ in range(3)]
        try:
            wait_until(lambda: len(scp._server._assocs) == 3, 10, what="three idle associations")
            extra = socket.create_connection(("127.0.0.1", scp.port))
            extra.settimeout(5)
            assert extra.recv(10) == struct.pack(">BBIBBBB", 0x03, 0, 4, 0, 2, 3, 2)  # A-ASSOCIATE-RJ
            extra.close()
            r = subprocess.run(["/usr/bin/storescu", "-aec", "ANY", "127.0.0.1", str(scp.port), str(src[0])],
                               capture_output=True, text=True, timeout=60)
            assert r.returncode != 0 and "reject" in (r.stdout + r.stderr).lower(), r.stdout + r.stderr
        finally:
            for s in idle:
                s.close()
        wait_until(lambda: not scp._server._assocs, 10, what="the idle associations to end")
        r = subprocess.run(["/usr/bin/storescu", "-aec", "ANY", "127.0.0.1", str(scp.port), str(src[0])],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr


def test_a_command_set_that_never_ends_is_aborted(tmp_path):
    """Command fragments (PDVs without the last-fragment bit) were collected without a limit: a peer that never
    ends its command set grew the SCP's memory without end. Over 64 KiB the association is aborted."""
    fragment = struct.pack(">IBB", 2 + 32768, 1, 0x01) + b"\x00" * 32768  # a command fragment, never the last
    flood = b"".join(struct.pack(">BBI", 0x04, 0, len(fragment)) + fragment for _ in range(3))
    with StorageSCP(tmp_path / "rx") as scp:
        took = _aborted_at_once(scp.port, True, flood)
        assert took < 2
