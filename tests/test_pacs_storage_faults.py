"""The storage SCP when things go wrong, fed by DCMTK storescu on 127.0.0.1: a full disk (a real 20 MiB tmpfs), a
process killed mid-write, a second copy of a stored instance, an instance no reader can decode."""

from __future__ import annotations

import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import time

from pydicom import dcmread

from conftest import wait_until
from meshdcm import synthetic
from meshdcm.pacs import StorageSCP
from pacs_fixtures import fill_disk, small_disk  # noqa: F401
from ports import free_port

STORAGE_LOG = "meshdcm.pacs.storage"


def storescu(port: int, paths, *opts, aet: str = "STORESCU") -> subprocess.CompletedProcess:
    """DCMTK storescu (``-nh``: go on after a failed store); its output says each status."""
    return subprocess.run(["/usr/bin/storescu", "-v", "-nh", "-aet", aet, "-aec", "ANY", *opts, "127.0.0.1", str(port),
                           *map(str, paths)], capture_output=True, text=True, timeout=120)


def errors(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == STORAGE_LOG and r.levelno >= logging.ERROR]


def test_a_full_disk_is_answered_out_of_resources_at_once_said_once_and_recovered(tmp_path, small_disk, caplog):  # noqa: F811
    """On a full disk the SCP dropped the association (no status, nothing logged above DEBUG) and left .part files;
    the sender saw a broken connection, and a C-MOVE waited for those instances until its timeout (~300 s)."""
    caplog.set_level(logging.DEBUG, logger=STORAGE_LOG)
    src = synthetic.write_study(synthetic.head_ct(seed=41, size="small", slices=4, matrix=256), tmp_path / "src")
    assert all(p.stat().st_size > 100_000 for p in src)  # each bigger than the room left: fails mid-dataset
    got, told = [], []
    with StorageSCP(small_disk, on_stored=got.append, on_failed=told.append) as scp:
        filler = fill_disk(small_disk, leave=64 << 10)
        t0 = time.monotonic()
        r = storescu(scp.port, src)
        took = time.monotonic() - t0
        said = r.stdout + r.stderr
        assert said.count("Received Store Response (Refused: OutOfResources)") == len(src), said  # 0xA700
        assert took < 15, f"{len(src)} refusals took {took:.1f} s"
        assert not got and not list(small_disk.rglob("*.dcm"))
        assert not list((small_disk / ".incoming").iterdir()), "partial files were left behind"
        incoming = small_disk / ".incoming"
        said_full = [r for r in errors(caplog) if f"disk full at {incoming}" in r.getMessage()]
        assert len(said_full) == 1 and len(errors(caplog)) == 1, [r.getMessage() for r in errors(caplog)]
        assert said_full[0].exc_info is None  # a line, not a traceback
        assert [f.kind for f in told] == ["write"] and scp.last_failure.reason == f"disk full at {incoming}"
        assert scp.refused == len(src)
        # another association is served meanwhile
        echo = subprocess.run(["/usr/bin/echoscu", "-aec", "ANY", "127.0.0.1", str(scp.port)], capture_output=True,
                              text=True, timeout=30)
        assert echo.returncode == 0, echo.stderr
        # room again: the same instances are stored
        filler.unlink()
        r = storescu(scp.port, src)
        assert r.returncode == 0, r.stdout + r.stderr
        assert sorted(g.sop_instance_uid for g in got) == sorted(str(dcmread(p).SOPInstanceUID) for p in src)
        assert all(dcmread(g.path).PixelData == dcmread(p).PixelData for g, p in
                   zip(sorted(got, key=lambda g: g.sop_instance_uid),
                       sorted(src, key=lambda p: str(dcmread(p).SOPInstanceUID)), strict=True))
    assert any("again" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records
               if r.name == STORAGE_LOG)


def _associate_for_ct(sock: socket.socket) -> None:
    """A scripted sender: A-ASSOCIATE-RQ for CT Image Storage in Explicit VR Little Endian, then the accept."""
    def item(kind, payload):
        return struct.pack(">BBH", kind, 0, len(payload)) + payload

    context = item(0x20, bytes([1, 0, 0, 0]) + item(0x30, b"1.2.840.10008.5.1.4.1.1.2")
                   + item(0x40, b"1.2.840.10008.1.2.1"))
    user = item(0x50, item(0x51, struct.pack(">I", 16384)) + item(0x52, b"1.2.3.4"))
    body = (struct.pack(">HH", 1, 0) + b"ANY".ljust(16) + b"KILLED".ljust(16) + bytes(32)
            + item(0x10, b"1.2.840.10008.3.1.1.1") + context + user)
    sock.sendall(struct.pack(">BBI", 0x01, 0, len(body)) + body)
    assert sock.recv(1) == b"\x02"  # A-ASSOCIATE-AC


def _pdv(flags: int, data: bytes) -> bytes:
    return struct.pack(">BBI", 0x04, 0, len(data) + 6) + struct.pack(">IBB", len(data) + 2, 1, flags) + data


def test_partial_files_left_by_a_killed_scp_are_removed_when_it_starts_again(mesh, tmp_path, caplog):
    """A storage SCP killed (SIGKILL) while receiving left its .part file in .incoming for good."""
    store, port = tmp_path / "store", free_port()
    proc = mesh.start("pacs", "scp", "--out", store, "--host", "127.0.0.1", "--port", port)
    wait_until(lambda: (store / ".incoming").is_dir() and socket.socket().connect_ex(("127.0.0.1", port)) == 0, 30,
               what="the storage SCP")
    sop = b"1.2.826.0.1.3680043.10.1452.7.1"
    command = b"".join(struct.pack("<HHI", 0, el, len(v)) + v for el, v in [
        (0x0002, b"1.2.840.10008.5.1.4.1.1.2\x00"), (0x0100, struct.pack("<H", 1)), (0x0110, struct.pack("<H", 1)),
        (0x0700, struct.pack("<H", 0)), (0x0800, struct.pack("<H", 0)), (0x1000, sop)])
    command = struct.pack("<HHII", 0, 0, 4, len(command)) + command
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        _associate_for_ct(sock)
        sock.sendall(_pdv(0x03, command) + _pdv(0x00, bytes(8000)))  # the C-STORE and a first, not last, fragment
        wait_until(lambda: list((store / ".incoming").glob("*.part")), 10, what="the partial file")
        os.killpg(proc.popen.pid, signal.SIGKILL)
        proc.popen.wait(10)
    assert len(list((store / ".incoming").glob("*.part"))) == 1
    caplog.set_level(logging.INFO, logger=STORAGE_LOG)
    with StorageSCP(store):
        assert not list((store / ".incoming").glob("*.part"))
    assert any("removed 1 partial files" in r.getMessage() for r in caplog.records)


def _modified_copy(src, dest, aet_name: str = "EVIL^OVERWRITE"):
    ds = dcmread(src)
    ds.PatientName = aet_name
    ds.save_as(dest, enforce_file_format=True)
    return dest


def test_a_second_copy_of_an_instance_never_replaces_the_first(tmp_path, caplog):
    """storescu of a modified copy (same SOP Instance UID) from an unknown AE replaced the stored file."""
    caplog.set_level(logging.DEBUG, logger=STORAGE_LOG)
    src = synthetic.write_study(synthetic.head_ct(seed=42, size="small", slices=1), tmp_path / "src")[0]
    evil = _modified_copy(src, tmp_path / "evil.dcm")
    sop = str(dcmread(src).SOPInstanceUID)
    got = []
    with StorageSCP(tmp_path / "rx", on_stored=got.append) as scp:
        assert storescu(scp.port, [src]).returncode == 0
        stored = got[0].path
        before = stored.read_bytes()
        r = storescu(scp.port, [evil], aet="EVIL")
        assert r.returncode == 0 and "Received Store Response (Success)" in r.stderr, r.stderr  # answered 0x0000
        assert stored.read_bytes() == before and str(dcmread(stored).PatientName) != "EVIL^OVERWRITE"
        warned = [r.getMessage() for r in caplog.records if r.name == STORAGE_LOG and r.levelno == logging.WARNING]
        assert len(warned) == 1 and "EVIL" in warned[0] and sop in warned[0], warned
        assert "OVERWRITE" not in caplog.text  # the calling AE and UIDs, never patient data
        assert storescu(scp.port, [src]).returncode == 0  # the same copy again (a repeated retrieve): not a warning
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
        assert [g.path for g in got] == [stored] * 3  # reported each time: a retrieve counts what it has
    with StorageSCP(tmp_path / "rx", overwrite=True) as scp:  # configured so: the new copy replaces it
        assert storescu(scp.port, [evil], aet="EVIL").returncode == 0
        assert str(dcmread(stored).PatientName) == "EVIL^OVERWRITE"


def undecodable_copy(src, dest, sop_uid: str):
    """``src`` with another SOP Instance UID and, after its Series Instance UID, an element of a VR that does not
    exist ('XX'): the UIDs are found, pydicom cannot read the header. DCMTK rewrites what it sends (an unknown VR
    becomes UN), so this instance comes from a scripted sender (pynetdicom, streaming the file's bytes)."""
    ds = dcmread(src)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.save_as(dest, enforce_file_format=True)
    raw = dest.read_bytes()
    series = str(ds.SeriesInstanceUID).encode()
    end = raw.index(series) + len(series) + len(series) % 2
    dest.write_bytes(raw[:end] + b"\x20\x00\x0f\x00XX\x04\x00junk" + raw[end:])  # (0020,000F), unused
    return dest


def send_as_is(port: int, path, aet: str = "SCRIPTED") -> int:
    """C-STORE the file's dataset bytes as they are (pynetdicom streams them without decoding); returns the status."""
    code = ("from pynetdicom import AE, _config\n"
            "_config.STORE_SEND_CHUNKED_DATASET = True\n"
            f"ae = AE({aet!r}); ae.add_requested_context('1.2.840.10008.5.1.4.1.1.2', '1.2.840.10008.1.2.1')\n"
            f"a = ae.associate('127.0.0.1', {port}, ae_title='ANY')\n"
            f"print(int(a.send_c_store({str(path)!r}).Status)); a.release()\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return int(r.stdout.split()[-1])


def without_study_uid(src, dest, sop_uid: str):
    ds = dcmread(src)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    del ds.StudyInstanceUID
    ds.save_as(dest, enforce_file_format=True)
    return dest


def test_an_undecodable_instance_is_set_aside_and_told_the_rest_counted(tmp_path, caplog):
    src = synthetic.write_study(synthetic.head_ct(seed=43, size="small", slices=3), tmp_path / "src")
    bad_sop, no_study_sop = "1.2.826.0.1.3680043.10.1452.8.1", "1.2.826.0.1.3680043.10.1452.8.2"
    bad = undecodable_copy(src[0], tmp_path / "bad.dcm", bad_sop)
    nostudy = without_study_uid(src[0], tmp_path / "nostudy.dcm", no_study_sop)
    ds = dcmread(src[0])
    settled, told = [], []
    with StorageSCP(tmp_path / "rx", on_quiet=lambda s, c: settled.append((s, c)), quiet_seconds=1,
                    on_failed=told.append) as scp:
        # first (its sender is slow to start), so that the study is one push however loaded the machine is
        assert send_as_is(scp.port, bad) == 0x0000  # its UIDs are fine: stored and answered success
        assert storescu(scp.port, src).returncode == 0
        said = storescu(scp.port, [nostudy]).stderr
        assert "Received Store Response (Error: CannotUnderstand)" in said, said  # 0xC000
        wait_until(lambda: settled, 15, what="the quiet report")
    assert settled == [(str(ds.StudyInstanceUID), {str(ds.SeriesInstanceUID): 3})]
    by_kind = {f.kind: f for f in told}
    assert set(by_kind) == {"undecodable", "refused"}
    aside = by_kind["undecodable"]
    assert aside.sop_instance_uid == bad_sop and aside.kept == tmp_path / "rx" / ".undecodable" / f"{bad_sop}.dcm"
    assert aside.kept.exists() and not list((tmp_path / "rx").glob(f"*/*/{bad_sop}.dcm"))
    assert str(aside.kept) in aside.action and "send a readable copy again" in aside.action
    assert by_kind["refused"].sop_instance_uid == no_study_sop and by_kind["refused"].status == 0xC000
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
