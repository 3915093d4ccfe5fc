"""Agent restart recovery with real processes: kill -9 the agent while tasks
run, change things while it is down, start it again.

Executors outlive their agent: running tasks keep running (same processes),
updates produced while the agent was down are delivered, an executor that died
meanwhile is noticed and its task reported FAILED, and nothing is left behind.
The tasks' processes are found by markers only this test knows
(juggler/testing/processes.py), not by a command line another suite could run too.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from juggler.agent.checkpoint import meta_dir
from juggler.container.cgroups import open_cgroup
from juggler.testing.daemons import Daemons
from juggler.testing.processes import marker, processes_with, the_process
from juggler.v1 import common_pb2
from tests.conftest import wait_for
from tests.framework_client import Client, run, task
from tests.integration.test_master_contract import DEADLINE, wait_async

pytestmark = [pytest.mark.root]
S = common_pb2.TaskState


def sandbox(daemons: Daemons, framework_id: str, task_id: str) -> Path:
    return daemons.work / "a1" / "frameworks" / framework_id / "tasks" / task_id


def test_agent_kill9_and_restart_keeps_tasks_and_delivers_updates(daemons: Daemons,
                                                                  host_dir: Path) -> None:
    daemons.start_master()
    agent_flags = ("--status-update-retry", "0.2")
    daemons.start_agent("a1", *agent_flags, resources="cpus:2;mem:1024;disk:1024")
    daemons.wait_agents(1)
    flag = host_dir / "finish-now"   # where the tasks see it: their /tmp is their own
    steady = {"steady-1": f"sleep {marker()}", "steady-2": f"sleep {marker()}",
              # its executor.pid is lost: the agent died before it wrote it
              "unrecorded": f"sleep {marker()}"}
    orphaned = f"sleep {marker()}"

    async def body() -> None:
        async with Client(daemons.master, "survivor") as c:
            tasks = [
                task("steady-1", 0.2, 32, "sh", "-c", f"exec {steady['steady-1']}"),
                task("steady-2", 0.2, 32, "sh", "-c", f"exec {steady['steady-2']}"),
                task("finisher", 0.2, 32, "sh", "-c",
                     f"while [ ! -e {flag} ]; do sleep 0.05; done; echo done"),
                task("orphan", 0.2, 32, "sh", "-c", f"exec {orphaned}"),
                task("unrecorded", 0.2, 32, "sh", "-c", f"exec {steady['unrecorded']}"),
            ]
            offer = await c.offer(sum_resources(tasks))
            await c.fw.launch([offer.id], tasks)
            for t in tasks:
                await c.until(t.task_id, S.TASK_RUNNING)
            fid = c.fw.framework_id
            await wait_async(lambda: all(the_process(m) for m in steady.values()), DEADLINE,
                             "one process for each steady task")
            before = {m: the_process(m) for m in steady.values()}

            # The agent dies hard. Meanwhile one task finishes and one executor dies.
            daemons.send("a1", signal.SIGKILL)
            daemons.procs["a1"].wait(DEADLINE)
            flag.touch()
            orphan_pid = int((meta_dir(sandbox(daemons, fid, "orphan")) / "executor.pid")
                             .read_text().split()[0])
            os.kill(orphan_pid, signal.SIGKILL)
            # An agent killed between its launcher's fork and writing executor.pid
            # (the fault campaign's seed 1): the executor runs the task all the
            # same, and the restarted agent finds it by its executor.lock.
            (meta_dir(sandbox(daemons, fid, "unrecorded")) / "executor.pid").unlink()
            wait_for(lambda: not os.path.exists(f"/proc/{orphan_pid}/stat")
                     or " Z " in Path(f"/proc/{orphan_pid}/stat").read_text(), DEADLINE,
                     what="the executor to die")

            daemons.start_agent("a1", *agent_flags, resources="cpus:2;mem:1024;disk:1024")
            seen = await c.until("finisher", S.TASK_FINISHED)
            assert seen[-1].uuid
            failed = await c.until("orphan", S.TASK_FAILED)
            assert failed[-1].reason == common_pb2.REASON_EXECUTOR_TERMINATED
            # The dead executor's container is not left running.
            await wait_async(lambda: not processes_with(orphaned), DEADLINE,
                             "the orphaned container to be killed")
            # The others never stopped: the very same processes still run.
            assert {m: the_process(m) for m in before} == before
            daemons.wait_agents(1)
            await c.fw.reconcile()
            assert [s.state for s in c.history["unrecorded"]] == [S.TASK_RUNNING] * len(
                c.history["unrecorded"])  # never reported FAILED
            for tid in ("steady-1", "steady-2", "unrecorded"):
                await wait_async(lambda tid=tid: any(
                    s.state == S.TASK_RUNNING and s.reason == common_pb2.REASON_RECONCILIATION
                    for s in c.history[tid]), DEADLINE, f"{tid} reconciled RUNNING")
                await c.fw.kill(tid)
                await c.until(tid, S.TASK_KILLED)
            executor_of_unrecorded = int((meta_dir(sandbox(daemons, fid, "unrecorded"))
                                          / "executor.pid").read_text().split()[0])
            await wait_async(lambda: not os.path.exists(f"/proc/{executor_of_unrecorded}"),
                             DEADLINE, "the unrecorded task's executor to exit")
            for tid in ("steady-1", "steady-2", "finisher", "orphan", "unrecorded"):
                cgroup = open_cgroup(daemons.task_cgroup(fid, tid))
                await wait_async(lambda cg=cgroup: not cg.exists(), DEADLINE,
                                 f"{tid}'s cgroup removed")
    run(body)


def sum_resources(tasks: list[common_pb2.TaskInfo]):  # type: ignore[no-untyped-def]
    from juggler.common.resources import Resources

    total = Resources()
    for t in tasks:
        total = total + Resources.from_proto(t.resources)
    return total
