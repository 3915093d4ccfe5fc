"""Issue 15, item 2: an OOM kill does not rewrite PID 1's exit status.

With a 32 MiB limit, `sh -c 'python3 -c "bytearray(200*2**20)"; exit 3'`
loses its python child to the OOM killer and then exits 3 by itself: the task
ends TASK_FAILED with exit code 3 and REASON_COMMAND_EXITED, its message
says a process was killed for memory, and `oom_killed` is set (Docker's
State.OOMKilled, true for any OOM kill in the container). Only when PID 1
itself dies of the OOM killer is the end the memory limitation (exit 137).
executor/status.py has the rule; tests/unit/test_status_outcome_oom.py its
table.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from juggler.testing.task_python import PYTHON as TASK_PYTHON
from juggler.v1 import common_pb2 as pb
from tests.conftest import Cluster
from tests.executor_harness import executor, task_info
from tests.integration.test_cluster_cli import task_view

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, cgroups, mounts)"),
]

ISSUE_INPUT = 'python3 -c "bytearray(200*2**20)"; exit 3'
NOTE = "1 process of the task was killed for memory (limit 32 MiB)"


def test_pid_1_exits_3_after_a_childs_oom_kill(tmp_path: Path) -> None:
    async def scenario() -> pb.TaskStatus:
        async with executor(tmp_path, task_info(ISSUE_INPUT, mem=32)) as run:
            return await run.agent.wait_terminal()

    done = asyncio.run(scenario())
    assert (done.state, done.exit_code) == (pb.TASK_FAILED, 3)
    assert done.reason == pb.REASON_COMMAND_EXITED
    assert done.message == f"Command exited with status 3; {NOTE}"
    assert done.HasField("oom_killed") and done.oom_killed


def test_pid_1_itself_oom_killed_is_the_memory_limitation(tmp_path: Path) -> None:
    task = task_info("hog", shell=False, mem=32)
    task.command.argv[:] = [TASK_PYTHON, "-c", "bytearray(200 * 2**20)"]

    async def scenario() -> pb.TaskStatus:
        async with executor(tmp_path, task) as run:
            return await run.agent.wait_terminal()

    done = asyncio.run(scenario())
    assert (done.state, done.exit_code) == (pb.TASK_FAILED, 137)
    assert done.reason == pb.REASON_CONTAINER_LIMITATION_MEMORY
    assert done.message == "Memory limit of 32 MiB exceeded: the task was OOM-killed"
    assert done.oom_killed


def test_juggler_run_exits_with_pid_1s_code(cluster: Cluster) -> None:
    """The issue's command line, as its user typed it."""
    r = cluster.juggler("run", "--name", "oom-child-3", "--mem", "32M", "--",
                        "sh", "-c", ISSUE_INPUT)
    assert r.returncode == 3, r.stderr
    assert "REASON_CONTAINER_LIMITATION_MEMORY" not in r.stderr
    assert NOTE in r.stderr  # said once, as a note
    view = task_view(cluster, "oom-child-3")
    assert view is not None and view.state == pb.TASK_FAILED
    assert (view.status.exit_code, view.status.reason) == (3, pb.REASON_COMMAND_EXITED)
