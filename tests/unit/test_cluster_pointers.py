"""Whose cluster pointers are whose (cli/pointers.py): the last started up
wins; on exit an up rewrites only what still points at it, back to the newest
other live cluster or away."""

from __future__ import annotations

from pathlib import Path

import pytest

from juggler.cli import pointers

A = {"pid": 10, "start": 1, "master": "127.0.0.1:5050", "apps": "http://a", "docker": "unix:///a"}
B = {"pid": 20, "start": 2, "master": "127.0.0.1:6050", "apps": "http://b", "docker": "unix:///b"}
C = {"pid": 30, "start": 3, "master": "127.0.0.1:5050"}   # same address as A, --no-apps


def files_of(r: dict) -> dict[str, str | None]:
    return {k: r.get(k) for k in pointers.KINDS}


def test_publishing_wins_every_pointer_it_has() -> None:
    kept, writes = pointers.published([A], B)
    assert kept == [A, B]
    assert writes == {"master": B["master"], "apps": "http://b", "docker": "unix:///b"}
    kept, writes = pointers.published([A, B], C)
    assert writes == {"master": "127.0.0.1:5050"}   # apps and docker stay B's


def test_second_up_exiting_points_back_at_the_first_still_alive() -> None:
    kept, writes = pointers.withdrawn([A, B], B, files_of(B), alive=lambda r: r is A)
    assert kept == [A]
    assert writes == {"master": A["master"], "apps": "http://a", "docker": "unix:///a"}


def test_pointers_go_when_no_other_cluster_is_alive() -> None:
    kept, writes = pointers.withdrawn([A, B], B, files_of(B), alive=lambda r: False)
    assert kept == []
    assert writes == {"master": None, "apps": None, "docker": None}


def test_first_up_exiting_leaves_the_seconds_pointers() -> None:
    kept, writes = pointers.withdrawn([A, B], A, files_of(B), alive=lambda r: r is B)
    assert kept == [B] and writes == {}


def test_same_address_is_not_the_same_owner() -> None:
    # C (same master address as A, whose up was SIGKILLed) exits: the master
    # pointer says C's text; A is dead, so it goes.
    kept, writes = pointers.withdrawn([A, B, C], C, {"master": "127.0.0.1:5050",
                                                     "apps": "http://b", "docker": "unix:///b"},
                                      alive=lambda r: r is B)
    assert writes == {"master": B["master"]}   # the newest live cluster with a master
    assert kept == [B]


def test_a_pointer_someone_rewrote_is_left_alone() -> None:
    files = dict(files_of(B), master="10.0.0.9:5050")
    _, writes = pointers.withdrawn([A, B], B, files, alive=lambda r: True)
    assert "master" not in writes and writes["apps"] == "http://a"


def test_publish_and_withdraw_on_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUGGLER_HOME", str(tmp_path))
    monkeypatch.setattr(pointers, "alive", lambda r: r.get("pid") != 999)
    mine = pointers.record_for(master="127.0.0.1:7050", apps="", docker="", work_dir=tmp_path,
                               endpoints=["http://127.0.0.1:7055/"])
    pointers.publish(mine)
    assert (tmp_path / "master").read_text() == "127.0.0.1:7050\n"
    assert not (tmp_path / "apps").exists()
    assert pointers.find("127.0.0.1:7050") == mine
    pointers.withdraw(mine)
    assert not (tmp_path / "master").exists()
    assert pointers.records() == []
