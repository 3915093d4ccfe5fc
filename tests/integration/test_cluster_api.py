"""The Scheduler API of a real cluster (`juggler up`, two agents), spoken by a
framework written with juggler.sdk: offers, launches on both agents, status
updates with acknowledgements, and bad calls answered with the right status.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest

from juggler.common import servers
from juggler.common.resources import Resources
from juggler.sdk import FrameworkError
from juggler.v1 import common_pb2, operator_pb2, operator_pb2_grpc
from tests.conftest import Cluster
from tests.framework_client import Client, run, task

pytestmark = [pytest.mark.root]
S = common_pb2.TaskState


def master_tasks(cluster: Cluster) -> set[str]:
    with servers.sync_channel(cluster.master) as ch:
        got = operator_pb2_grpc.OperatorStub(ch).GetTasks(
            operator_pb2.GetTasksRequest(include_completed=True), timeout=10)
    return {v.info.task_id for v in [*got.tasks, *got.completed_tasks]}


def test_tasks_land_on_both_agents(cluster: Cluster) -> None:
    async def body() -> None:
        async with Client(cluster, "spread") as c:
            # Each agent of the test cluster has 1 cpu: two 1-cpu tasks need both.
            need = Resources({"cpus": 1, "mem": 32})
            first = await c.offer(need)
            await c.fw.launch([first.id], [task("spread-a", 1, 32, "sleep", "30")])
            second = await c.offer(need)
            assert second.agent_id != first.agent_id
            await c.fw.launch([second.id], [task("spread-b", 1, 32, "sleep", "30")])
            await c.until("spread-a", S.TASK_RUNNING)
            await c.until("spread-b", S.TASK_RUNNING)
            with servers.sync_channel(cluster.master) as ch:
                got = operator_pb2_grpc.OperatorStub(ch).GetTasks(
                    operator_pb2.GetTasksRequest(), timeout=10)
            agents = {v.agent_id for v in got.tasks if v.info.task_id.startswith("spread-")}
            assert len(agents) == 2
            for tid in ("spread-a", "spread-b"):
                await c.fw.kill(tid)
            for tid in ("spread-a", "spread-b"):
                seen = await c.until(tid, S.TASK_KILLED)
                assert seen[-1].uuid  # agent-generated updates carry a uuid
    run(body)


def test_bad_accepts_get_clear_errors_and_launch_nothing(cluster: Cluster) -> None:
    async def body() -> None:
        async with Client(cluster, "bad-input") as c:
            offer = await c.offer(Resources({"cpus": 0.5, "mem": 64}))
            have = Resources.from_proto(offer.resources)
            before = master_tasks(cluster)

            async def refused(code: grpc.StatusCode, *tasks: common_pb2.TaskInfo,
                              offer_id: str = offer.id) -> str:
                with pytest.raises(FrameworkError) as e:
                    await c.fw.launch([offer_id], list(tasks))
                assert e.value.code == code, e.value
                return e.value.message

            msg = await refused(grpc.StatusCode.INVALID_ARGUMENT,
                                task("too-big", have.get("cpus") + 1, 32, "true"))
            assert "offers hold" in msg
            msg = await refused(grpc.StatusCode.INVALID_ARGUMENT,
                                task("dup", 0.1, 32, "true"), task("dup", 0.1, 32, "true"))
            assert "already used" in msg
            neg = task("neg", 0.1, 32, "true")
            neg.resources[0].scalar = -1
            await refused(grpc.StatusCode.INVALID_ARGUMENT, neg)
            await refused(grpc.StatusCode.INVALID_ARGUMENT, task("bad id!", 0.1, 32, "true"))
            nan = task("nan", 0.1, 32, "true")
            nan.resources[0].scalar = float("nan")
            await refused(grpc.StatusCode.INVALID_ARGUMENT, nan)
            msg = await refused(grpc.StatusCode.NOT_FOUND, task("x", 0.1, 32, "true"),
                                offer_id="no-such-offer")
            assert "no-such-offer" in msg
            assert master_tasks(cluster) == before

            # The offer survived every refusal: a correct launch on it works.
            await c.fw.launch([offer.id], [task("dup", 0.1, 32, "sleep", "30")])
            await c.until("dup", S.TASK_RUNNING)
            # The same id again, on a fresh offer: refused while the first runs.
            again = await c.offer(Resources({"cpus": 0.1, "mem": 32}))
            msg = await refused(grpc.StatusCode.INVALID_ARGUMENT,
                                task("dup", 0.1, 32, "true"), offer_id=again.id)
            assert "already used" in msg
            # A used offer is gone.
            msg = await refused(grpc.StatusCode.NOT_FOUND, task("y", 0.1, 32, "true"))
            await c.fw.kill("dup")
            await c.until("dup", S.TASK_KILLED)
    run(body)


def test_stale_stream_and_unknown_framework(cluster: Cluster) -> None:
    async def body() -> None:
        async with Client(cluster, "stale") as c:
            real = c.fw.stream_id
            c.fw.stream_id = "not-my-stream"
            with pytest.raises(FrameworkError) as e:
                await c.fw.revive()
            assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION
            c.fw.stream_id = real
            await c.fw.revive()
            with pytest.raises(FrameworkError) as e:
                await c.fw.kill("never-launched")
            assert e.value.code == grpc.StatusCode.NOT_FOUND
    run(body)


def test_explicit_reconciliation_of_unknown_task(cluster: Cluster) -> None:
    async def body() -> None:
        async with Client(cluster, "reconcile") as c:
            await c.fw.reconcile([("ghost", "")])
            st = await asyncio.wait_for(c.updates.get(), 30)
            assert st.task_id == "ghost" and st.state == S.TASK_UNKNOWN
            assert not st.uuid  # master-generated: not to be acknowledged
    run(body)
