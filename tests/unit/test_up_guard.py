"""`juggler up`'s refusals (cli/up_guard.py): which ports it claims, clashes
among its own daemons, messages naming the holder, the work dir's lock, and
who serves a unix socket."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from juggler.cli import up_guard
from juggler.cli.up_guard import Claim


def test_claims_every_masters_grpc_and_http_port_and_each_apps_port() -> None:
    got = up_guard.claims(masters=3, port=5050, metrics_port=5055, apps=True, apps_port=8080)
    assert [c.port for c in got] == [5050, 5055, 5051, 5056, 5052, 5057, 8080, 8081, 8082]
    assert got[0].what == "master-1's gRPC port"
    one = up_guard.claims(masters=1, port=5050, metrics_port=5055, apps=False, apps_port=8080)
    assert [c.port for c in one] == [5050, 5055]


def test_a_port_given_to_two_of_its_own_daemons_is_a_clash() -> None:
    got = up_guard.claims(masters=3, port=5050, metrics_port=5051, apps=False, apps_port=0)
    assert up_guard.clashes(got) == [
        "port 5051 would be both master-1's HTTP port (web UI, metrics) and master-2's gRPC port",
        "port 5052 would be both master-2's HTTP port (web UI, metrics) and master-3's gRPC port"]
    fine = up_guard.claims(masters=1, port=5050, metrics_port=5055, apps=True, apps_port=8080)
    assert up_guard.clashes(fine) == []


def test_refusals_name_the_holder_in_claim_order() -> None:
    wanted = [Claim(5050, "master's gRPC port"), Claim(8080, "the apps service's REST port")]
    listening = {8080: ["pid 7 (juggler apps)"], 5050: [], 9999: ["pid 1 (x)"]}
    assert up_guard.refusals(wanted, listening) == [
        "port 5050, master's gRPC port, is in use by a process this user cannot see",
        "port 8080, the apps service's REST port, is in use by pid 7 (juggler apps)"]
    assert up_guard.refusals(wanted, {}) == []


def test_listeners_finds_this_process_on_its_listening_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        got = up_guard.listeners([port, 1])
    assert list(got) == [port]
    assert got[port] == [up_guard.describe(os.getpid())]
    assert got[port][0].startswith(f"pid {os.getpid()} (")


def test_describe_shortens_and_names_juggler() -> None:
    assert up_guard.describe(2**22 + 12345) == f"pid {2**22 + 12345}"   # no such process
    text = up_guard.describe(os.getpid())
    assert len(text) <= len(f"pid {os.getpid()} ()") + 80


def test_unix_listener_is_the_server_by_peer_credentials(tmp_path: Path) -> None:
    path = str(tmp_path / "d.sock")
    assert up_guard.unix_listener(path) is None   # no file
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(path)
        s.listen()
        assert up_guard.unix_listener(path) == [up_guard.describe(os.getpid())]
    assert up_guard.unix_listener(path) is None   # a stale file: refused


def test_work_dir_lock_names_its_holder_and_is_released(tmp_path: Path) -> None:
    first = up_guard.WorkDirLock(tmp_path / "work")
    with pytest.raises(up_guard.WorkDirInUse) as e:
        up_guard.WorkDirLock(tmp_path / "work")   # another open file: flock refuses it
    assert f"work dir {tmp_path / 'work'} is in use by pid {os.getpid()} (" in str(e.value)
    first.release()
    up_guard.WorkDirLock(tmp_path / "work").release()


def test_daemons_ask_for_a_parent_death_signal() -> None:
    import signal
    import subprocess
    import sys

    from juggler.cli import up_children

    assert up_children.death_signal("agent-1") == signal.SIGTERM   # leaves executors running
    # The child reads back its parent-death signal (prctl PR_GET_PDEATHSIG = 2).
    probe = ("import ctypes; v = ctypes.c_int(); "
             "ctypes.CDLL(None).prctl(2, ctypes.byref(v), 0, 0, 0); print(v.value)")
    got = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         preexec_fn=up_children.preexec(signal.SIGTERM), timeout=30, check=True)
    assert got.stdout == f"{int(signal.SIGTERM)}\n"
