"""The replay journal: a miner process restarted within a task's deadline window still refuses the
task's replay (``ReplayJournal``, ``ReplayGuard.restore``, ``open_guard``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from kubetensor.miner.errors import MinerBusyError, ReplayedTaskError, StateDirError
from kubetensor.miner.replay import ReplayGuard, ReplayJournal, open_guard
from kubetensor.miner.settings import MinerSettings

HOTKEY = "ab" * 32


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_an_admitted_pair_is_in_the_file_before_admit_returns(tmp_path: Path) -> None:
    guard = open_guard(tmp_path, hotkey=HOTKEY, now_unix_ms=0)
    guard.admit("v1", nonce=7, deadline_unix_ms=500, now_unix_ms=10)
    assert lines(tmp_path / f"replay-{HOTKEY[:16]}.log") == ["500 7 v1"]


def test_a_new_guard_from_the_journal_refuses_unexpired_pairs_and_forgets_expired_ones(
    tmp_path: Path,
) -> None:
    before = open_guard(tmp_path, hotkey=HOTKEY, now_unix_ms=0)
    before.admit("v1", nonce=1, deadline_unix_ms=1_000, now_unix_ms=0)
    before.admit("v1", nonce=2, deadline_unix_ms=60_000, now_unix_ms=0)
    before.admit("v2", nonce=1, deadline_unix_ms=60_000, now_unix_ms=0)
    # The process dies (no close); a new one starts at t=2s.
    after = open_guard(tmp_path, hotkey=HOTKEY, now_unix_ms=2_000)
    for validator, nonce in (("v1", 2), ("v2", 1)):
        with pytest.raises(ReplayedTaskError):
            after.admit(validator, nonce=nonce, deadline_unix_ms=60_000, now_unix_ms=2_000)
    after.admit("v1", nonce=1, deadline_unix_ms=60_000, now_unix_ms=2_000)  # its deadline had passed
    # Loading compacted the file to the unexpired pairs; the new admission was appended.
    assert sorted(lines(tmp_path / f"replay-{HOTKEY[:16]}.log")) == ["60000 1 v1", "60000 1 v2", "60000 2 v1"]


def test_a_torn_or_malformed_line_is_named_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / f"replay-{HOTKEY[:16]}.log"
    path.write_text("60000 1 v1\nnot a line\n60000 2 v1\n6000")  # the last write was cut short
    with caplog.at_level(logging.WARNING):
        guard = open_guard(tmp_path, hotkey=HOTKEY, now_unix_ms=0)
    for nonce in (1, 2):
        with pytest.raises(ReplayedTaskError):
            guard.admit("v1", nonce=nonce, deadline_unix_ms=60_000, now_unix_ms=0)
    warned = [r.getMessage() for r in caplog.records]
    assert any(f"{path}:2: skipped a malformed replay journal line 'not a line'" in m for m in warned)
    assert any(f"{path}:4:" in m for m in warned)
    assert sorted(lines(path)) == ["60000 1 v1", "60000 2 v1"]


def test_a_sweep_compacts_a_journal_grown_past_its_limit(tmp_path: Path) -> None:
    journal = ReplayJournal(tmp_path / "replay.log", compact_bytes=100)
    guard = ReplayGuard(sweep_ms=1_000)
    guard.restore(journal, now_unix_ms=0)
    for nonce in range(20):
        guard.admit("v1", nonce=nonce, deadline_unix_ms=500, now_unix_ms=0)
    assert journal.size > 100
    guard.admit("v1", nonce=99, deadline_unix_ms=5_000, now_unix_ms=1_000)  # a sweep is due
    assert lines(tmp_path / "replay.log") == ["5000 99 v1"]
    assert journal.size == len("5000 99 v1\n")


def test_a_journal_that_cannot_be_written_makes_the_miner_busy_not_forgetful(tmp_path: Path) -> None:
    journal = ReplayJournal(tmp_path / "replay.log")
    guard = ReplayGuard()
    guard.restore(journal, now_unix_ms=0)
    read_only = os.open(tmp_path / "replay.log", os.O_RDONLY)
    journal.close()
    journal._fd = read_only  # a descriptor that cannot be written, as on a full or broken disk
    try:
        with pytest.raises(MinerBusyError, match=r"the replay journal .*replay\.log cannot be written"):
            guard.admit("v1", nonce=1, deadline_unix_ms=500, now_unix_ms=0)
    finally:
        journal.close()
    # The refused task was not remembered: it can be taken once the journal works again.
    guard.restore(ReplayJournal(tmp_path / "replay.log"), now_unix_ms=0)
    guard.admit("v1", nonce=1, deadline_unix_ms=500, now_unix_ms=0)


def test_a_state_dir_that_is_not_a_folder_refuses_to_start_naming_the_setting(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StateDirError, match=r"^KT_MINER_STATE_DIR: cannot keep the replay journal in .*file"):
        open_guard(blocker, hotkey=HOTKEY, now_unix_ms=0)


def test_without_a_state_dir_the_guard_is_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KT_MINER_STATE_DIR", "")
    assert MinerSettings().state_dir is None  # "" is unset, not the working folder
    guard = open_guard(None, hotkey=HOTKEY, now_unix_ms=0)
    guard.admit("v1", nonce=1, deadline_unix_ms=500, now_unix_ms=0)
    assert list(tmp_path.iterdir()) == []
