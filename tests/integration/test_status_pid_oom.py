"""TaskStatus.pid and TaskStatus.oom_killed from a real executor (tests/
executor_harness.py plays the agent): the TASK_RUNNING update names the
task's PID 1 as the host sees it (Docker's State.Pid), the terminal one says
whether the kernel's OOM killer struck in the task's cgroup (State.OOMKilled)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from juggler.testing.task_python import PYTHON as TASK_PYTHON
from juggler.v1 import common_pb2 as pb
from tests.executor_harness import executor, task_info

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, cgroups, mounts)"),
]


def test_running_names_pid_1_and_a_clean_end_was_not_oom_killed(tmp_path: Path) -> None:
    async def scenario() -> None:
        task = task_info("sleep", shell=False)
        task.command.argv[:] = ["sleep", "1000"]
        async with executor(tmp_path, task) as run:
            running = await run.agent.wait_state(pb.TASK_RUNNING)
            assert running.HasField("pid") and running.pid > 1
            await run.agent.wait_for(lambda: any(h.container_pid for h in run.agent.hellos),
                                     "the hello naming the container's pid")
            assert running.pid == next(h.container_pid for h in run.agent.hellos
                                       if h.container_pid)
            assert Path(f"/proc/{running.pid}/comm").read_text().strip() == "sleep"
            assert Path(f"/proc/{running.pid}/cmdline").read_bytes() == b"sleep\x001000\x00"
            await run.agent.kill(grace=0)
            done = await run.agent.wait_terminal()
        assert done.state == pb.TASK_KILLED
        assert done.HasField("oom_killed") and not done.oom_killed
        assert not done.HasField("pid")

    asyncio.run(scenario())


def test_a_task_whose_process_the_oom_killer_took_says_so(tmp_path: Path) -> None:
    """A child is OOM-killed and the shell goes on to exit 0: Docker still
    says OOMKilled (it reads the cgroup's OOM kills, not the exit status)."""
    async def scenario() -> None:
        hog = f"{TASK_PYTHON} -c 'b = bytearray(200 * 2**20)'; echo survived"
        async with executor(tmp_path, task_info(hog, mem=32)) as run:
            done = await run.agent.wait_terminal()
        assert run.stdout() == "survived\n"
        assert (done.state, done.exit_code) == (pb.TASK_FINISHED, 0)
        assert done.HasField("oom_killed") and done.oom_killed

    asyncio.run(scenario())
