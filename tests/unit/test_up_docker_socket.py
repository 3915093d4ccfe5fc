"""Where `juggler up` serves the Docker Engine API (cli/up.py _docker_socket):
the well-known socket, or, when a live server holds it, one of the cluster's
own whose path a Unix socket can hold. Real sockets in a temporary directory."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from juggler.cli import up
from juggler.common.fdio import SUN_PATH_MAX


@pytest.fixture
def well_known(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "run" / "docker.sock"
    path.parent.mkdir()
    monkeypatch.setattr(up, "DOCKER_SOCKET", path)
    return path


def test_the_well_known_socket_when_free_or_stale(well_known: Path, tmp_path: Path) -> None:
    assert up._docker_socket(tmp_path / "work") == str(well_known)
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(well_known))   # bound, never listening: stale
    assert up._docker_socket(tmp_path / "work") == str(well_known)


def test_a_taken_socket_gives_the_work_dir_s_or_a_short_one(well_known: Path,
                                                             tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(str(well_known))
        live.listen()
        work = tmp_path / "work"
        assert up._docker_socket(work) == str(work.resolve() / "docker.sock")
        deep = tmp_path / ("a-work-dir-deeper-than-a-socket-path-may-be-" * 3)
        chosen = up._docker_socket(deep)
        assert len(os.fsencode(chosen)) <= SUN_PATH_MAX
        assert Path(chosen).parent == well_known.parent and chosen != str(well_known)
        assert up._docker_socket(deep) == chosen, "the same work dir, the same socket"
