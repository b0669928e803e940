"""The delivery state in one process: sequence arithmetic (the wrap at 2**64), the journal, receipts, leases,
dead letters — real SQLite files in a temporary folder."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from pydicom.dataset import Dataset

from meshdcm.deadletters import DeadLetters
from meshdcm.journal import SEQ_MOD, Outbox, after, seq_add
from meshdcm.leases import Leases
from meshdcm.message import Message, stamp
from meshdcm import donelog
from meshdcm.donelog import DoneLog
from meshdcm.receipts import Inbox

STREAM = bytes(range(16))
TOP = SEQ_MOD - 1  # the last sequence number before the wrap


def frame(seq: int, uid: str = "1.2.3") -> bytes:
    ds = Dataset()
    ds.SeriesInstanceUID = uid
    return bytes(stamp(Message("stored.series", ds, sender=STREAM).to_bytes(), seq))


def test_sequence_numbers_wrap_from_2_64_minus_1_to_0():
    assert seq_add(TOP, 1) == 0 and seq_add(TOP, 3) == 2
    assert after(0, TOP) and after(2, TOP - 5) and not after(TOP, 0)
    assert after(5, 4) and not after(4, 5) and not after(7, 7)


def test_receiver_sees_no_gap_across_the_wrap_and_finds_a_real_one(tmp_path):
    inbox = Inbox(tmp_path / "inbox.sqlite")
    st = inbox.meet(STREAM, "pub", TOP - 2, 0.0)
    for seq in (TOP - 1, TOP, 0, 1):  # contiguous across the wrap
        assert inbox.accept(st, seq)
        inbox.record(st, seq)
    assert st.upto == 1 and not st.missing
    assert inbox.accept(st, 4)  # 2 and 3 are missing
    assert st.missing == [[2, 2]]
    assert not inbox.accept(st, 1) and not inbox.accept(st, 4)  # duplicates: settled, in flight
    assert inbox.duplicates == 2
    [(stream, first, last)] = inbox.wanted(time.monotonic())
    assert (stream.id, first, last) == (STREAM, 2, 3)
    assert inbox.accept(st, 2) and inbox.accept(st, 3) and not st.missing


def test_journal_replays_across_the_wrap_and_reports_what_it_no_longer_has(tmp_path):
    outbox = Outbox(tmp_path / "outbox.sqlite", max_age=3600, max_bytes=10**9)
    seqs = [seq_add(TOP - 3, i) for i in range(8)]  # TOP-3 .. 3
    for seq in seqs:
        outbox.append(STREAM, seq, frame(seq))
    outbox.commit()
    frames, oldest = outbox.replay(STREAM, TOP - 1, 1, limit=100)
    assert [s for s, _ in frames] == [TOP - 1, TOP, 0, 1] and oldest is None
    assert Message.from_bytes(frames[2][1]).seq == 0
    frames, _ = outbox.replay(STREAM, TOP, 3, limit=2)
    assert [s for s, _ in frames] == [TOP, 0]
    assert outbox.streams()[STREAM][0] == 3
    # a restarted node opens the same journal and still has them
    again = Outbox(tmp_path / "outbox.sqlite", max_age=3600, max_bytes=10**9)
    assert again.streams()[STREAM][0] == 3
    # asked for numbers older than the journal holds: it says from where it has them
    frames, oldest = again.replay(STREAM, TOP - 10, TOP - 2, limit=100)
    assert oldest == TOP - 3 and [s for s, _ in frames] == [TOP - 3, TOP - 2]
    outbox.close()
    again.close()


def test_journal_retention_by_age_and_size_keeps_unacknowledged_work(tmp_path):
    size = len(frame(1)) + 4  # a frame in a page: its length, then its bytes
    outbox = Outbox(tmp_path / "outbox.sqlite", max_age=3600, max_bytes=size * 5)
    for seq in range(1, 11):  # one page per commit, as the engine commits once per loop iteration
        outbox.append(STREAM, seq, frame(seq), groups=("convert",) if seq == 2 else ())
        outbox.commit()
    assert outbox.prune() == 5
    kept, oldest = outbox.replay(STREAM, 1, 10, 100)
    assert [s for s, _ in kept] == [6, 7, 8, 9, 10] and oldest == 6
    # the work item 2 is not acknowledged yet: kept (with its frame) whatever the size
    assert [(s, g) for _, s, g, _ in outbox.pending_work()] == [(2, "convert")]
    outbox.acknowledge(STREAM, 2, "convert")
    outbox.commit()
    assert outbox.pending_work() == []
    assert outbox.prune(now=time.time() + 7200) == 5  # all older than max_age
    outbox.close()


def test_receipts_survive_a_process_that_never_closed_them(tmp_path):
    inbox = Inbox(tmp_path / "inbox.sqlite")
    st = inbox.meet(STREAM, "pub", 0, 0.0)
    for seq in range(1, 11):
        inbox.accept(st, seq)
    for seq in (1, 2, 3, 5, 9):  # handled; 4, 6-8 and 10 were still in flight when the node "died"
        inbox.record(st, seq)
    inbox.accept_work(b"w" * 16, STREAM, 77)
    inbox.record_work(b"w" * 16)
    reopened = Inbox(tmp_path / "inbox.sqlite")  # the first one was never closed nor folded
    st2 = reopened.streams[STREAM]
    assert st2.upto == 3 and st2.done == {5, 9}
    assert st2.missing == [[4, 1], [6, 3]]
    assert [reopened.accept(st2, s) for s in (4, 5, 9, 10)] == [True, False, False, True]
    assert reopened.accept_work(b"w" * 16, STREAM, 77) == "done"  # by message id
    assert reopened.accept_work(b"v" * 16, STREAM, 77) == "new"


def test_a_restarted_sender_s_new_stream_is_wanted_from_its_start_by_those_who_knew_it(tmp_path):
    inbox = Inbox(tmp_path / "inbox.sqlite")
    inbox.meet(STREAM, "pub", 500, started=100.0)  # first meeting: from now on
    assert inbox.streams[STREAM].upto == 500
    new = bytes(reversed(STREAM))
    st = inbox.meet(new, "pub", 40, started=time.time())  # its next incarnation: all of it
    assert st.upto == 0 and st.missing == [[1, 40]]
    stranger = inbox.meet(bytes(16), "other", 40, started=time.time() - 3600)
    assert stranger.upto == 40 and not stranger.missing


def test_leases_give_work_back_when_its_holder_is_gone_or_silent():
    leases = Leases(lease=10, claim_timeout=5, window=2)
    for seq in (1, 2, 3):
        leases.add("g", STREAM, seq, frame(seq))
    sent = []
    while (item := leases.next_to_send("g")) is not None:
        leases.sent(item, now=0.0)
        sent.append(item.seq)
    assert sent == [1, 2]  # the window
    leases.report("g", "m1", STREAM, done=[], held=[1, 2], now=1.0)
    assert [i.seq for i in leases.report("g", "m1", STREAM, done=[1], held=[], now=2.0)] == [1]
    again = leases.expire(now=3.0, alive={"m2"})  # m1 died holding 2
    assert [(i.seq, "gone" in why) for i, why in again] == [(2, True)]
    assert leases.next_to_send("g").seq == 2


def test_dead_letters_keep_the_message_and_re_drive_it(tmp_path):
    redriven = []
    store = DeadLetters(tmp_path / "dead.sqlite", redrive=lambda letter: redriven.append(letter) or True)
    msg = Message.from_bytes(frame(9, uid="1.2.840.5"))
    letter = store.add(msg, "convert", "RuntimeError: boom", 3, time.time() - 5)
    assert [x.id for x in store.list()] == [letter.id]
    info = letter.describe("conv-1")
    assert info["node"] == "conv-1" and info["attempts"] == 3 and info["first_failed"].endswith("Z")
    assert store.get(letter.id).message.get("SeriesInstanceUID") == "1.2.840.5"
    assert store.retry(letter.id) and redriven[0].handler == "convert" and len(store) == 0
    other = store.add(msg, "convert", "x", 1, time.time())
    assert store.drop(other.id) and not store.drop(other.id) and not store.retry("nope")


def test_receipts_are_safe_from_many_worker_threads(tmp_path):
    inbox = Inbox(tmp_path / "inbox.sqlite")
    st = inbox.meet(STREAM, "pub", 0, 0.0)
    for seq in range(1, 4001):
        inbox.accept(st, seq)

    def work(part):
        for seq in range(part, 4001, 4):
            inbox.record(st, seq)
    threads = [threading.Thread(target=work, args=(p,)) for p in (1, 2, 3, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    inbox.fold()
    assert st.upto == 4000 and not st.done and not st.inflight
    assert Inbox(tmp_path / "inbox.sqlite").streams[STREAM].upto == 4000


def test_receipt_records_survive_a_sigkill_of_the_process_that_wrote_them(tmp_path):
    """The done log is a memory-mapped file: a record is in the page cache the moment it is copied in, so a process
    killed right after writing it (no close, no flush) has still written it."""
    child = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        from meshdcm.receipts import Inbox
        inbox = Inbox(__import__("pathlib").Path({str(tmp_path / "inbox.sqlite")!r}))
        st = inbox.meet({STREAM!r}, "pub", 0, 0.0)
        for seq in range(1, 5001):
            inbox.accept(st, seq)
            if seq != 4000:  # 4000 was in flight when the node died
                inbox.record(st, seq)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", child], timeout=60)
    assert proc.returncode == -signal.SIGKILL
    reopened = Inbox(tmp_path / "inbox.sqlite")
    st = reopened.streams[STREAM]
    assert st.upto == 3999 and st.done == set(range(4001, 5001)) and st.missing == [[4000, 1]]


def test_done_log_reads_only_whole_records_and_grows_when_full(tmp_path, monkeypatch):
    monkeypatch.setattr(donelog, "_LOG_START", 4096)
    log = DoneLog(tmp_path / "done.log")
    records = [donelog.RECORD.pack(b"e", STREAM, seq, 0.0) for seq in range(1, 401)]  # 13 KB: grows twice
    for record in records:
        log.append(record)
    assert log.size == 16384 and [r[2] for r in log.records()] == list(range(1, 401))
    log.close()
    with open(tmp_path / "done.log", "r+b") as f:  # a record cut short by a kill: everything but its kind byte
        f.seek(400 * donelog.RECORD.size)
        f.write(donelog.RECORD.pack(b"e", STREAM, 401, 0.0)[1:])
    log = DoneLog(tmp_path / "done.log")
    assert log.pos == 400 * donelog.RECORD.size and len(list(log.records())) == 400
    log.clear()
    log.close()
    assert list(DoneLog(tmp_path / "done.log").records()) == []


def test_done_log_written_by_an_earlier_version_with_plain_writes_is_read(tmp_path):
    with open(tmp_path / "done.log", "wb") as f:
        for seq in range(1, 4):
            f.write(donelog.RECORD.pack(b"e", STREAM, seq, 0.0))
        f.write(donelog.RECORD.pack(b"w", b"w" * 16, 0, 5.0))
    log = DoneLog(tmp_path / "done.log")
    assert [(k, r, w) for k, _, r, w in log.records()] == [(b"e", 1, 0.0), (b"e", 2, 0.0), (b"e", 3, 0.0),
                                                         (b"w", 0, 5.0)]
