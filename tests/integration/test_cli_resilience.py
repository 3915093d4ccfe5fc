"""The CLI when the cluster is not whole, with real processes: what `juggler
run` says while every agent that could run its task is away or in
maintenance, that its output survives its agent restarting, what exec says of
an agent that is away, and how drain answers a name that is not one agent's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from juggler.testing.daemons import Daemons
from juggler.testing.waiting import wait_for
from juggler.v1 import operator_pb2

pytestmark = [pytest.mark.root]
A = operator_pb2.AgentState
DEADLINE = 60.0


def cli(daemons: Daemons, *args: str) -> list[str]:
    return [sys.executable, "-m", "juggler.cli.main", *args]


def env(daemons: Daemons) -> dict[str, str]:
    return dict(os.environ, JUGGLER_MASTER=daemons.master, JUGGLER_HOME=str(daemons.work))


def juggler(daemons: Daemons, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli(daemons, *args), env=env(daemons), capture_output=True, text=True,
                          timeout=DEADLINE)


def test_run_says_why_it_waits_when_every_agent_is_in_maintenance(daemons: Daemons) -> None:
    daemons.start_master()
    daemons.start_agent("a1")
    daemons.wait_agents(1)
    assert juggler(daemons, "drain", "a1").returncode == 0
    proc = subprocess.Popen(cli(daemons, "run", "--", "true"), env=env(daemons),
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # said before it waits, not after
        assert "waiting" in line and ("a1 DOWN" in line or "a1 DRAINING" in line), line
        assert proc.poll() is None  # it waits: maintenance ends some day
        assert juggler(daemons, "undrain", "a1").returncode == 0
        assert proc.wait(DEADLINE) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_run_keeps_the_output_of_a_task_whose_agent_restarts(daemons: Daemons,
                                                            host_dir: Path) -> None:
    daemons.start_master()
    daemons.start_agent("a1")
    daemons.wait_agents(1)
    go = host_dir / f"go-{uuid.uuid4().hex}"   # where the task sees it: its /tmp is its own
    script = f"echo before; while [ ! -e {go} ]; do sleep 0.05; done; echo after"
    proc = subprocess.Popen(cli(daemons, "run", "-q", "--", "sh", "-c", script),
                            env=env(daemons), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "before\n"
        daemons.stop("a1", signal.SIGTERM)  # the task runs on; its output stream breaks
        daemons.start_agent("a1")
        wait_for(lambda: daemons.agent("a1").state == A.AGENT_ACTIVE, DEADLINE,  # type: ignore[union-attr]
                 what="a1 back")
        go.touch()
        out, err = proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert out == "after\n", (out, err)  # the rest, and nothing twice


def test_exec_says_the_task_s_agent_is_away(daemons: Daemons) -> None:
    daemons.start_master()
    daemons.start_agent("a1")
    daemons.wait_agents(1)
    proc = subprocess.Popen(cli(daemons, "run", "-q", "--name", "away", "--", "sleep", "600"),
                            env=env(daemons), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: "RUNNING" in juggler(daemons, "tasks").stdout, DEADLINE,
                 what="the task to run")
        daemons.stop("a1", signal.SIGTERM)
        wait_for(lambda: daemons.agent("a1").state == A.AGENT_DISCONNECTED, DEADLINE,  # type: ignore[union-attr]
                 what="the master to see a1 away")
        done = juggler(daemons, "exec", "away", "--", "true")
        assert done.returncode == 125
        assert "a1" in done.stderr and "DISCONNECTED" in done.stderr, done.stderr
        assert "try again once it is back" in done.stderr
    finally:
        proc.kill()
        proc.wait()
        # Back, so that the daemons' clean-up kills the task (it ran on meanwhile).
        daemons.start_agent("a1")
        wait_for(lambda: daemons.agent("a1").state == A.AGENT_ACTIVE, DEADLINE,  # type: ignore[union-attr]
                 what="a1 back")


def test_drain_of_a_name_several_agents_have_asks_for_an_id(daemons: Daemons) -> None:
    daemons.start_master()
    daemons.start_agent("a1", "--hostname", "same")
    daemons.start_agent("a2", "--hostname", "same")
    daemons.wait_agents(2)
    done = juggler(daemons, "drain", "same")
    assert done.returncode == 1
    ids = [a.info.id for a in daemons.agents()]
    assert all(i in done.stderr for i in ids) and "give the agent id" in done.stderr
    assert all(a.maintenance == operator_pb2.MAINTENANCE_NONE for a in daemons.agents())


def test_a_second_master_on_a_port_in_use_fails_instead_of_sharing_it(daemons: Daemons) -> None:
    address = daemons.start_master()
    port = address.rsplit(":", 1)[1]
    second = subprocess.run(
        [sys.executable, "-m", "juggler.cli.main", "master", "--host", "127.0.0.1", "--port",
         port, "--metrics-port", "-1", "--work-dir", str(daemons.work / "second")],
        capture_output=True, text=True, timeout=DEADLINE)
    assert second.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in second.stderr, second.stderr
