"""Followers of the group's state: a FIFO each, woken by every save."""

from __future__ import annotations

import os
import select
from pathlib import Path

from madgroup.local import watch


def test_a_save_wakes_a_follower(tmp_path: Path) -> None:
    with watch.follow(tmp_path) as follower:
        watch.notify(tmp_path)
        readable, _, _ = select.select([follower.fd], [], [], 30)
        assert readable == [follower.fd]
        assert follower.path.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_fifo_without_its_reader_yet_is_not_taken_for_stale(tmp_path: Path) -> None:
    """A save between a follower's mkfifo and its open must not remove the FIFO (under
    load that window is wide, and the follower then failed with FileNotFoundError)."""
    preparing = tmp_path / f"{watch.PREPARING}123-456"
    os.mkfifo(preparing, 0o600)
    stale = tmp_path / "999-1"
    os.mkfifo(stale, 0o600)
    watch.notify(tmp_path)
    assert preparing.exists()
    assert not stale.exists(), "a FIFO nobody reads is removed"


def test_a_follower_appears_only_once_it_can_be_woken(tmp_path: Path) -> None:
    with watch.follow(tmp_path) as follower:
        assert [p.name for p in tmp_path.iterdir()] == [follower.path.name]
        assert not follower.path.name.startswith(watch.PREPARING)
