"""meshdcm.pacs.storescu.StoreRequestor: a scripted peer on 127.0.0.1 for the odd cases (lengths that lie, limits,
wrong answers), DCMTK storescp for transfer syntaxes it does not accept."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import threading
from pathlib import Path

import pytest
from pydicom import dcmread

from conftest import Proc, wait_until
from meshdcm.pacs import pdu
from meshdcm.pacs.part10 import read_instance
from meshdcm.pacs.storescu import AssociationAborted, AssociationRejected, NotReached, StoreRequestor, status_meaning
from meshdcm.synthetic import head_ct, write_study
from pacs_fixtures import NetNs, netns_available, receive_pdu
from ports import free_port

STORESCP = "/usr/bin/storescp"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Path]:
    return write_study(head_ct(seed=23, slices=4, matrix=64), tmp_path_factory.mktemp("ct"))


def _accept_all(rq: bytes, max_pdu: int) -> bytes:
    """An A-ASSOCIATE-AC accepting every proposed context with its first transfer syntax."""
    items, i = [pdu.item(0x10, pdu.APPLICATION_CONTEXT)], 68
    while i < len(rq):
        kind, _, length = struct.unpack_from(">BBH", rq, i)
        if kind == 0x20:
            p = rq[i + 4: i + 4 + length]
            j, ts = 4, b""
            while j < len(p):
                sub, _, slen = struct.unpack_from(">BBH", p, j)
                if sub == 0x40 and not ts:
                    ts = p[j + 4: j + 4 + slen]
                j += 4 + slen
            items.append(pdu.item(0x21, struct.pack(">BBBB", p[0], 0, 0, 0) + pdu.item(0x40, ts)))
        i += 4 + length
    items.append(pdu.item(0x50, pdu.item(0x51, struct.pack(">I", max_pdu))))
    body = rq[:68] + b"".join(items)
    return struct.pack(">BBI", pdu.A_ASSOCIATE_AC, 0, len(body)) + body


def _store_rsp(cmd: dict[int, bytes], ctx: int, msg_id: int | None = None, status: int = 0) -> bytes:
    rsp = pdu.command([(0x0002, cmd[0x0002]), (0x0100, struct.pack("<H", 0x8001)),
                       (0x0120, struct.pack("<H", msg_id) if msg_id is not None else cmd[0x0110]),
                       (0x0800, struct.pack("<H", 0x0101)), (0x0900, struct.pack("<H", status)),
                       (0x1000, cmd[0x1000])])
    pdv = struct.pack(">IBB", len(rsp) + 2, ctx, 0x03) + rsp
    return struct.pack(">BBI", pdu.P_DATA_TF, 0, len(pdv)) + pdv


class ScriptedPeer:
    """Accepts one connection and runs ``script(conn, rq_body)`` on it; what it saw is kept in ``seen``."""

    def __init__(self, script):
        self.sock = socket.create_server(("127.0.0.1", free_port()))
        self.port = self.sock.getsockname()[1]
        self.script, self.seen, self.error = script, {}, None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            try:
                kind, rq = receive_pdu(conn)
                assert kind == pdu.A_ASSOCIATE_RQ
                self.script(conn, rq, self.seen)
            except (ConnectionError, OSError) as exc:
                self.error = exc

    def requestor(self, timeout: float = 3.0) -> StoreRequestor:
        return StoreRequestor("127.0.0.1", self.port, "PEER", "MESHDCM", timeout=timeout)

    def close(self) -> None:
        self.sock.close()
        self.thread.join(5)


def serve_stores(max_pdu: int, answer=_store_rsp):
    """A peer that accepts everything, notes the length of every PDU it receives, answers each C-STORE."""
    def script(conn, rq, seen):
        conn.sendall(_accept_all(rq, max_pdu))
        seen["pdu_lengths"], command = [], b""
        while True:
            kind, body = receive_pdu(conn)
            seen["pdu_lengths"].append(len(body))
            if kind == pdu.A_RELEASE_RQ:
                conn.sendall(pdu.release_rp())
                return
            if kind == pdu.A_ABORT:
                seen["aborted"] = True
                return
            i = 0
            while i < len(body):
                length, ctx, flags = struct.unpack_from(">IBB", body, i)
                if flags & 0x01:
                    command += body[i + 6: i + 4 + length]
                    if flags & 0x02:
                        cmd, command = pdu.parse_command(command), b""
                elif flags & 0x02:
                    conn.sendall(answer(cmd, ctx))
                i += 4 + length
    return script


def test_every_pdu_sent_respects_the_peers_maximum_length(files):
    peer = ScriptedPeer(serve_stores(max_pdu=4096))
    try:
        report = peer.requestor().send([read_instance(p) for p in files])
    finally:
        peer.close()
    assert report.stored == [str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files]
    lengths = peer.seen["pdu_lengths"]
    assert max(lengths) == 4096 and len(lengths) > 4 * len(files)  # 8 KB datasets: 3 PDUs each, plus commands


def test_a_pdu_length_past_what_we_accept_aborts_before_reading_it(files):
    def script(conn, rq, seen):
        conn.sendall(_accept_all(rq, 16384))
        receive_pdu(conn)  # the command
        conn.sendall(struct.pack(">BBI", pdu.P_DATA_TF, 0, 0xFFFFFFF0))  # "4 GiB follow"
        seen["after"] = b""
        while chunk := conn.recv(65536):  # the dataset, then our A-ABORT
            seen["after"] += chunk

    peer = ScriptedPeer(script)
    try:
        with pytest.raises(AssociationAborted) as ei:
            peer.requestor().send([read_instance(files[0])])
    finally:
        peer.close()
    assert "a PDU of 4294967280 bytes" in str(ei.value) and ei.value.report.stored == []
    assert peer.seen["after"].endswith(pdu.abort_pdu())


def test_an_item_length_that_lies_is_a_malformed_answer(files):
    def script(conn, rq, seen):
        ac = bytearray(_accept_all(rq, 16384))
        struct.pack_into(">H", ac, 6 + 68 + 2, 0x7FFF)  # the application context item claims 32 KiB
        conn.sendall(bytes(ac))
        conn.recv(64)

    peer = ScriptedPeer(script)
    try:
        with pytest.raises(AssociationRejected, match="the answer to the association request was malformed"):
            peer.requestor().send([read_instance(files[0])])
    finally:
        peer.close()


def test_a_rejection_is_reported_in_words(files):
    def script(conn, rq, seen):
        conn.sendall(struct.pack(">BBIBBBB", pdu.A_ASSOCIATE_RJ, 0, 4, 0, 1, 1, 3))

    peer = ScriptedPeer(script)
    try:
        with pytest.raises(AssociationRejected) as ei:
            peer.requestor().send([read_instance(files[0])])
    finally:
        peer.close()
    assert ("calling AE title not recognized (rejected-permanent, by the service user)" in str(ei.value)
            and ei.value.reached)


def test_a_response_to_another_message_is_a_protocol_error(files):
    peer = ScriptedPeer(serve_stores(16384, answer=lambda cmd, ctx: _store_rsp(cmd, ctx, msg_id=999)))
    sop = str(dcmread(files[0], stop_before_pixels=True).SOPInstanceUID)
    try:
        with pytest.raises(AssociationAborted) as ei:
            peer.requestor().send([read_instance(files[0])])
    finally:
        peer.close()
    assert "answering message 999 where the C-STORE response to message 1 was due" in str(ei.value)
    assert ei.value.instance == sop and peer.seen["aborted"]


def test_silence_after_connect_times_out_as_no_answer(files):
    release = threading.Event()
    peer = ScriptedPeer(lambda conn, rq, seen: release.wait(10))
    try:
        with pytest.raises(AssociationRejected, match=r"the association request got no answer: nothing received for 0.5 s"):
            peer.requestor(timeout=0.5).send([read_instance(files[0])])
    finally:
        release.set()
        peer.close()


def test_nobody_listening_is_not_reached(files):
    with pytest.raises(NotReached) as ei:
        StoreRequestor("127.0.0.1", free_port(), "PEER").send([read_instance(files[0])])
    assert "connection refused" in str(ei.value) and not ei.value.reached


def test_refusals_are_reported_per_instance_with_status_and_meaning(files):
    peer = ScriptedPeer(serve_stores(16384, answer=lambda cmd, ctx: _store_rsp(cmd, ctx, status=0xA701)))
    try:
        report = peer.requestor().send([read_instance(p) for p in files])
    finally:
        peer.close()
    assert report.stored == [] and len(report.refused) == len(files)
    assert str(report.refused[0]).endswith(": status 0xA701 (Refused: Out of resources)")
    assert status_meaning(0xC123) == "Error: Cannot understand"


# -- transfer syntaxes the receiver does not accept (DCMTK storescp) ---------------------------------------------

@pytest.mark.netns
@pytest.mark.skipif(not os.path.exists(STORESCP) or not os.path.exists("/usr/bin/dcmcrle")
                    or netns_available() is not None, reason="needs DCMTK and network namespaces")
@pytest.mark.parametrize("accepts,expected", [([], "1.2.840.10008.1.2.1"), (["+xi"], "1.2.840.10008.1.2"),
                                              (["+xa"], None)])
def test_a_syntax_the_viewer_refuses_is_converted_to_one_it_accepts(files, tmp_path, accepts, expected):
    compressed = []
    for tool, p in (("/usr/bin/dcmcrle", files[0]), ("/usr/bin/dcmcjpls", files[1])):
        out = tmp_path / f"{Path(tool).name}.dcm"
        subprocess.run([tool, str(p), str(out)], check=True, timeout=60)
        compressed.append(out)
    sending = [*compressed, files[2]]
    ns = NetNs.create()
    folder = tmp_path / "received"
    folder.mkdir()
    scp = Proc([STORESCP, "-aet", "HOROS", "+uf", *accepts, "-od", str(folder), "11112"], dict(os.environ),
               tmp_path / "storescp.log", netns=ns.name)
    try:
        def listening():
            with socket.socket() as s:
                return s.connect_ex((ns.ns_ip, 11112)) == 0
        wait_until(listening, 10, 0.02, "storescp")
        report = StoreRequestor(ns.ns_ip, 11112, "HOROS").send([read_instance(p) for p in sending])
    finally:
        scp.stop()
        ns.destroy()
    assert len(report.stored) == 3, [str(o) for o in report.outcomes]
    assert [o.converted_to for o in report.outcomes[:2]] == [expected, expected]
    got = {str(ds.SOPInstanceUID): ds for ds in (dcmread(p) for p in folder.iterdir())}
    for original, path in zip(files[:3], sending, strict=True):
        sop = str(dcmread(path).SOPInstanceUID)
        assert sop == str(dcmread(original).SOPInstanceUID)
        if expected is None:  # sent as stored, byte for byte
            assert got[sop].file_meta.TransferSyntaxUID == dcmread(path).file_meta.TransferSyntaxUID
            assert got[sop].PixelData == dcmread(path).PixelData
        else:  # lossless: the viewer gets the original pixels
            assert got[sop].PixelData == dcmread(original).PixelData
