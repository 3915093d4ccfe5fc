"""Agent.Top (`docker top`) against a real task: the host's `ps`, cut down to
the processes of the task's cgroup, on the cluster of test_writable_layers.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from juggler.testing.daemons import Daemons
from juggler.testing.rootfs import make_busybox_rootfs
from juggler.v1 import agent_pb2, common_pb2
from tests.conftest import needs_root
from tests.executor_harness import wait_until
from tests.framework_client import Client, run
from tests.integration.test_writable_layers import agent_api, launch, one_agent, shell_task

pytestmark = [pytest.mark.root]
S = common_pb2.TaskState


@pytest.fixture(scope="module")
def agent_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemons]:
    needs_root()
    with one_agent(tmp_path_factory.mktemp("top")) as d:
        yield d


@pytest.fixture(scope="module")
def busybox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


def children_of(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_top_lists_the_task_s_processes_as_ps_shows_them(agent_cluster: Daemons,
                                                         busybox: Path) -> None:
    d = agent_cluster

    async def body() -> None:
        async with Client(d.master, "top") as c:
            fid = c.fw.framework_id
            await launch(c, shell_task("t1", "sleep 1000 & sleep 2000; wait", rootfs=busybox))
            updates = await c.until("t1", S.TASK_RUNNING)
            pid1 = next(u.pid for u in updates if u.state == S.TASK_RUNNING)
            assert Path(f"/proc/{pid1}/comm").read_text().strip() == "sh"  # the host's view
            await wait_until(lambda: len(children_of(pid1)) == 2, "both sleeps")
            sleeps = children_of(pid1)

            async with agent_api(d) as agent:
                got = await agent.Top(agent_pb2.TopRequest(task_id="t1", framework_id=fid),
                                      timeout=10)
                assert list(got.titles) == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME",
                                            "CMD"]
                rows = {int(p.fields[1]): list(p.fields) for p in got.processes}
                assert set(rows) == {pid1, *sleeps}  # the task's processes, no other
                assert all(len(r) == 8 for r in rows.values())
                assert rows[pid1][7].startswith("/bin/sh -c sleep 1000")
                assert sorted(rows[p][7] for p in sleeps) == ["sleep 1000", "sleep 2000"]
                assert {rows[p][2] for p in sleeps} == {str(pid1)}

                got = await agent.Top(agent_pb2.TopRequest(task_id="t1", framework_id=fid,
                                                           ps_args="aux"), timeout=10)
                assert list(got.titles)[:2] == ["USER", "PID"] and len(got.processes) == 3
                got = await agent.Top(agent_pb2.TopRequest(task_id="t1", framework_id=fid,
                                                           ps_args="-o pid,comm"), timeout=10)
                assert sorted(tuple(p.fields) for p in got.processes) == sorted(
                    [(str(pid1), "sh"), *((str(p), "sleep") for p in sleeps)])

                for request, code, details in (
                        (agent_pb2.TopRequest(task_id="t1", framework_id=fid,
                                              ps_args="-zzz"),
                         grpc.StatusCode.INVALID_ARGUMENT, "ps -zzz: error: unsupported "
                         "SysV option"),
                        (agent_pb2.TopRequest(task_id="t1", framework_id=fid,
                                              ps_args="-o comm=PID"),
                         grpc.StatusCode.INVALID_ARGUMENT, "ps options may not title another "
                         "column PID (comm=PID)"),
                        (agent_pb2.TopRequest(task_id="t2", framework_id=fid),
                         grpc.StatusCode.NOT_FOUND, "task 't2' does not run on this agent")):
                    with pytest.raises(grpc.aio.AioRpcError) as e:
                        await agent.Top(request, timeout=10)
                    assert (e.value.code(), e.value.details()) == (code, details)

                c.auto_ack = False  # the agent keeps the ended task to answer
                await agent.Signal(agent_pb2.SignalRequest(task_id="t1", framework_id=fid,
                                                           signal="KILL"), timeout=10)
                await c.until("t1", S.TASK_FAILED)
                with pytest.raises(grpc.aio.AioRpcError) as e:
                    await agent.Top(agent_pb2.TopRequest(task_id="t1", framework_id=fid),
                                    timeout=10)
                assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                assert e.value.details() == "task 't1' is not running: it has ended " \
                    "(TASK_FAILED)"
    run(body)
