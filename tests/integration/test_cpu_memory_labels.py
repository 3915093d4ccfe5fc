"""Docker's --cpu-shares (without --cpus) and --memory-swap as task labels, in
a task's real cgroup v1 (tests/executor_harness.py plays the agent):
juggler.cpu_shares=256 with juggler.cpu_quota=false is cpu.shares 256 and no
CFS quota; juggler.memory_swap is memory.memsw.limit_in_bytes where the kernel
accounts swap, and one warning line in the task's stderr where it does not
(this host's case is whichever it is; the other is tests/unit/
test_cpu_memory_labels.py's)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from juggler.container.cgroups import DEFAULT_ROOT, NO_SWAP_LIMIT, detect
from juggler.v1 import common_pb2 as pb
from tests.executor_harness import executor, task_info, wait_until

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, cgroups, mounts)"),
    pytest.mark.skipif(os.geteuid() == 0 and detect() != 1, reason="requires cgroups v1"),
]
MiB = 2**20


def cgroup_file(cgroup: str, controller: str, name: str) -> str:
    return (DEFAULT_ROOT / controller / cgroup / name).read_text().strip()


def test_cpu_shares_without_a_quota_as_docker_s_cpu_shares(tmp_path: Path) -> None:
    async def scenario() -> None:
        task = task_info("sleep 1000", cpus=0.5)
        task.labels.update({"juggler.cpu_shares": "256", "juggler.cpu_quota": "false"})
        async with executor(tmp_path, task) as run:
            await run.agent.wait_state(pb.TASK_RUNNING)
            assert cgroup_file(run.cgroup, "cpu", "cpu.shares") == "256"
            assert cgroup_file(run.cgroup, "cpu", "cpu.cfs_quota_us") == "-1"
            await run.agent.kill(grace=0)
            await run.agent.wait_terminal()

    asyncio.run(scenario())


def test_memory_swap_is_memsw_or_a_warning_where_swap_is_not_accounted(
        tmp_path: Path) -> None:
    accounted = (DEFAULT_ROOT / "memory" / "memory.memsw.limit_in_bytes").exists()

    async def scenario() -> None:
        task = task_info("echo out; sleep 1000", mem=64)
        task.labels["juggler.memory_swap"] = str(96 * MiB)
        async with executor(tmp_path, task) as run:
            await run.agent.wait_state(pb.TASK_RUNNING)
            assert cgroup_file(run.cgroup, "memory", "memory.limit_in_bytes") == str(64 * MiB)
            if accounted:
                assert cgroup_file(run.cgroup, "memory",
                                   "memory.memsw.limit_in_bytes") == str(96 * MiB)
            # RUNNING is the exec; the shell prints a little later, and a
            # kill before that would leave nothing to read
            await wait_until(lambda: run.stdout() == "out\n", "the task to print out")
            await run.agent.kill(grace=0)
            done = await run.agent.wait_terminal()
        assert done.state == pb.TASK_KILLED  # it ran either way
        assert run.stdout() == "out\n"
        assert run.stderr() == ("" if accounted else f"WARNING: {NO_SWAP_LIMIT}\n")

    asyncio.run(scenario())
