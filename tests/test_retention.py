"""Working-folder retention (meshdcm.retention): real folders and files."""

import os
import time

import pytest

from meshdcm.retention import FolderRetention


def _series(root, name, size, used_at):
    folder = root / name
    (folder / "sub").mkdir(parents=True)
    (folder / "a.dcm").write_bytes(b"x" * (size // 2))
    (folder / "sub" / "b.dcm").write_bytes(b"x" * (size - size // 2))
    os.utime(folder, (used_at, used_at))
    return folder


def test_least_recently_used_series_go_first_until_within_the_size(tmp_path):
    now = time.time()
    for i, name in enumerate(["s1", "s2", "s3", "s4"]):
        _series(tmp_path, name, 1000, now - 100 + i)  # s1 used longest ago
    retention = FolderRetention(tmp_path, max_bytes=2500)
    retention.used("s1")  # s1 is read again: now the most recent
    assert retention.prune() == ["s2", "s3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s1", "s4"]
    assert retention.prune() == []


def test_series_older_than_the_age_go_whatever_the_size_but_kept_ones_stay(tmp_path):
    now = time.time()
    _series(tmp_path, "old", 10, now - 7200)
    _series(tmp_path, "old-but-open", 10, now - 7200)
    _series(tmp_path, "new", 10, now - 10)
    retention = FolderRetention(tmp_path, max_age=3600)
    assert retention.prune(keep={"old-but-open"}) == ["old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "old-but-open"]


def test_links_are_removed_as_links_and_their_targets_stay(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.dcm").write_bytes(b"p" * 5000)
    root = tmp_path / "cache"
    folder = _series(root, "s1", 100, time.time() - 50)
    (folder / "link").symlink_to(outside, target_is_directory=True)
    (root / "linked-series").symlink_to(outside, target_is_directory=True)
    retention = FolderRetention(root, max_bytes=0)
    assert [name for name, _, _ in retention.usage()] == ["s1"]  # a link at the top is no series folder
    assert retention.usage()[0][2] == 100  # the link's target is not counted
    assert retention.prune() == ["s1"]
    assert (outside / "precious.dcm").stat().st_size == 5000


def test_no_limits_remove_nothing_and_bad_limits_are_refused(tmp_path):
    _series(tmp_path, "s1", 100, 0)
    assert FolderRetention(tmp_path).prune() == []
    assert FolderRetention(tmp_path / "missing", max_bytes=0).prune() == []
    with pytest.raises(ValueError, match="max_age"):
        FolderRetention(tmp_path, max_age=0)
    with pytest.raises(ValueError, match="max_bytes"):
        FolderRetention(tmp_path, max_bytes=-1)


def test_the_sweeper_prunes_at_start_when_nudged_and_stops_with_its_node(tmp_path):
    import threading

    from conftest import wait_until

    now = time.time()
    _series(tmp_path, "s1", 1000, now - 30)
    _series(tmp_path, "s2", 1000, now - 20)
    retention = FolderRetention(tmp_path, max_bytes=1500)
    gone: list[str] = []
    stopping = threading.Event()
    sweep = threading.Thread(target=retention.sweeper(every=3600, keep=lambda: {"s3"}, removed=gone.extend),
                             args=(stopping,))
    sweep.start()
    wait_until(lambda: gone == ["s1"], 10, what="the sweep at start")
    _series(tmp_path, "s3", 1000, now)  # a new series, kept while it is written: the older one goes
    retention.nudge()
    wait_until(lambda: gone == ["s1", "s2"], 10, what="the sweep after a nudge (long before the hour)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s3"]
    stopping.set()
    sweep.join(5)
    assert not sweep.is_alive()
