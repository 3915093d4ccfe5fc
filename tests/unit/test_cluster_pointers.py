"""Whose cluster pointers are whose (cli/pointers.py): the last started up
owns all three; on exit (or found dead by a reader) it rewrites only what
still points at it, back to the newest other live cluster or away; and the
readers (cli/address.py) say a --no-apps cluster serves no apps rather than
fall to a default."""

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
    # C owns all three: the kinds it lacks go, never left pointing at B's cluster
    assert writes == {"master": "127.0.0.1:5050", "apps": None, "docker": None}


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


D = {"pid": 40, "start": 4, "master": "127.0.0.1:7050"}   # --no-apps, its own address


def test_a_no_apps_up_exiting_restores_the_previous_clusters_whole_set() -> None:
    kept, writes = pointers.withdrawn([A, D], D, files_of(D), alive=lambda r: r is A)
    assert kept == [A]
    assert writes == {"master": A["master"], "apps": "http://a", "docker": "unix:///a"}


def test_restoring_never_mixes_two_clusters() -> None:
    # D, the newest live one, has no apps: A's apps must not come back with D's master.
    kept, writes = pointers.withdrawn([A, D, B], B, files_of(B), alive=lambda r: True)
    assert kept == [A, D]
    assert writes == {"master": D["master"], "apps": None, "docker": None}


def test_a_file_written_since_stays_even_where_mine_had_none() -> None:
    files = dict(files_of(D), apps="http://hand")
    _, writes = pointers.withdrawn([A, D], D, files, alive=lambda r: True)
    assert writes == {"master": A["master"], "docker": "unix:///a"}


def test_an_up_that_is_not_the_newest_changes_nothing() -> None:
    kept, writes = pointers.withdrawn([A, D, B], D, files_of(B), alive=lambda r: True)
    assert kept == [A, B] and writes == {}


def test_healing_withdraws_a_dead_owner() -> None:
    # B was SIGKILLed: a reader (mine None) puts A's set back.
    kept, writes = pointers.withdrawn([A, B], None, files_of(B), alive=lambda r: r is A)
    assert kept == [A]
    assert writes == {"master": A["master"], "apps": "http://a", "docker": "unix:///a"}
    # the newest still runs: only the dead older record goes
    kept, writes = pointers.withdrawn([A, B], None, files_of(B), alive=lambda r: r is B)
    assert kept == [B] and writes == {}


def _record(tmp_path: Path, *, start: int | None, **kinds: str) -> dict:
    mine = pointers.record_for(work_dir=tmp_path, endpoints=[], master=kinds["master"],
                               apps=kinds.get("apps", ""), docker=kinds.get("docker", ""))
    return mine if start is None else dict(mine, start=start)


def test_a_reader_heals_pointers_left_by_a_killed_up(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from juggler.cli import address, containers

    for name in ("JUGGLER_MASTER", "JUGGLER_APPS", "JUGGLER_DOCKER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JUGGLER_HOME", str(tmp_path))
    monkeypatch.setattr(pointers, "alive", lambda r: True)
    first = _record(tmp_path, start=None, master="127.0.0.1:7050", apps="http://127.0.0.1:7080",
                    docker="unix:///a.sock")
    pointers.publish(first)
    # a newer up, --no-apps, SIGKILLed: no process has its pid and start time
    second = dict(_record(tmp_path, start=-1, master="127.0.0.1:8050"), pid=2**22 + 1)
    pointers.publish(second)
    assert not (tmp_path / "apps").exists() and not (tmp_path / "docker").exists()
    assert address.resolve(None) == "127.0.0.1:7050"   # healed: the first's again
    assert (tmp_path / "docker").read_text() == "unix:///a.sock\n"
    assert [r["master"] for r in pointers.records()] == ["127.0.0.1:7050"]
    # the first is a --no-apps cluster: the readers say so instead of a default
    pointers.publish(_record(tmp_path, start=None, master="127.0.0.1:7050"))
    with pytest.raises(address.NotServed, match=r"started last \(127.0.0.1:7050\) runs no apps"):
        address.resolve_apps(None)
    assert address.docker_host_source(None) == ("", "none")
    assert containers.service(None) is None            # `juggler run`: a task on it
    with pytest.raises(SystemExit, match=r"runs no apps service.*-H or \$JUGGLER_DOCKER"):
        containers.client(None)
    monkeypatch.setenv("JUGGLER_DOCKER", "unix:///named.sock")   # env wins
    monkeypatch.setenv("JUGGLER_APPS", "http://named:8080")
    assert address.docker_host_source(None) == ("unix:///named.sock", "env")
    assert address.resolve_apps(None) == "http://named:8080"
