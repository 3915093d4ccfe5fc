"""The master's scheduling contract with real processes: agent health (pause an
agent with SIGSTOP), framework failover, maintenance, offer timeouts and
reliable status updates. Each test starts its own master and agents with short
timeouts so that nothing waits long; every wait has a deadline. A test finds
its tasks' processes by a marker only it knows (juggler/testing/processes.py):
another suite may run the same tests on this host at the same time.
"""

from __future__ import annotations

import asyncio
import signal

import grpc
import pytest

from juggler.common import servers
from juggler.common.resources import Resources
from juggler.sdk import FrameworkError
from juggler.testing.daemons import Daemons
from juggler.testing.processes import marker, processes_with, the_process
from juggler.v1 import common_pb2, operator_pb2
from tests.conftest import wait_for
from tests.framework_client import Client, run, task

pytestmark = [pytest.mark.root]
S = common_pb2.TaskState
M = operator_pb2.MaintenanceState
A = operator_pb2.AgentState
SMALL = Resources({"cpus": 0.2, "mem": 32})
# Generous: two suites may share this 2-core machine.
DEADLINE = 30.0
# Agent health timeouts: short, so that a paused agent is noticed soon, yet long
# enough that a busy agent is not taken for a paused one (silent for 2 s).
PING = ("--agent-ping-timeout", "0.5", "--max-agent-ping-timeouts", "4")


def sleeper(task_id: str, seconds: str = "1000") -> common_pb2.TaskInfo:
    # With `seconds` from marker(), the task's process is findable in /proc.
    return task(task_id, 0.2, 32, "sh", "-c", f"exec sleep {seconds}")


async def wait_async(predicate, timeout: float = DEADLINE, what: str = "") -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.05)


def test_processes_with_finds_a_running_process() -> None:
    import subprocess
    seconds = marker()
    assert seconds != marker()
    with subprocess.Popen(["sleep", seconds]) as p:
        try:
            # Right after fork the child's cmdline can still be empty: wait for exec.
            wait_for(lambda: p.pid in processes_with(f"sleep {seconds}"), DEADLINE,
                     what="sleep to exec")
            assert processes_with(f"sleep {seconds}") == [p.pid]
        finally:
            p.kill()


def test_unreachable_agent_and_its_return(daemons: Daemons) -> None:
    daemons.start_master(*PING)
    daemons.start_agent("a1")
    daemons.wait_agents(1)

    async def body() -> None:
        # One framework after the other: subscribed together, either could be
        # offered the whole agent first and keep it while the other waits.
        async with Client(daemons.master, "aware", partition_aware=True) as aware:
            offer = await aware.offer(SMALL)
            await aware.fw.launch([offer.id], [sleeper("pa")])
            async with Client(daemons.master, "plain") as plain:
                await _unreachable_and_back(daemons, aware, plain)
    run(body)


async def _unreachable_and_back(daemons: Daemons, aware: Client, plain: Client) -> None:
    offer = await plain.offer(SMALL)
    npa = marker()
    await plain.fw.launch([offer.id], [sleeper("npa", npa)])
    await aware.until("pa", S.TASK_RUNNING)
    await plain.until("npa", S.TASK_RUNNING)
    await wait_async(lambda: the_process(f"sleep {npa}"), DEADLINE, "npa's process")

    daemons.send("a1", signal.SIGSTOP)
    # Partition-aware frameworks hear UNREACHABLE, the others LOST.
    seen = await aware.until("pa", S.TASK_UNREACHABLE)
    assert not seen[-1].uuid and seen[-1].reason == common_pb2.REASON_AGENT_UNREACHABLE
    await plain.until("npa", S.TASK_LOST)
    agent = daemons.agent("a1")
    assert agent is not None and agent.state == A.AGENT_UNREACHABLE

    daemons.send("a1", signal.SIGCONT)
    # It re-registers: the aware framework's task is RUNNING again; the other
    # framework was told LOST, so its copy is killed rather than left running.
    await wait_async(lambda: aware.history["pa"][-1].state == S.TASK_RUNNING, DEADLINE,
                     "pa RUNNING again after UNREACHABLE")
    await wait_async(lambda: not processes_with(f"sleep {npa}"), DEADLINE,
                     "the LOST task's process to be killed")
    daemons.wait_agents(1)
    assert daemons.agent("a1").state == A.AGENT_ACTIVE  # type: ignore[union-attr]
    await aware.fw.kill("pa")
    await aware.until("pa", S.TASK_KILLED)


def test_gone_agent_kills_its_tasks_and_registers_afresh(daemons: Daemons) -> None:
    daemons.start_master(*PING, "--agent-gone-timeout", "1")
    daemons.start_agent("a1")
    daemons.wait_agents(1)
    old_id = daemons.agent("a1").info.id  # type: ignore[union-attr]

    async def body() -> None:
        async with Client(daemons.master, "aware", partition_aware=True) as c:
            offer = await c.offer(SMALL)
            doomed = marker()
            await c.fw.launch([offer.id], [sleeper("doomed", doomed)])
            await c.until("doomed", S.TASK_RUNNING)
            await wait_async(lambda: the_process(f"sleep {doomed}"), DEADLINE,
                             "doomed's process")
            daemons.send("a1", signal.SIGSTOP)
            await c.until("doomed", S.TASK_UNREACHABLE)
            seen = await c.until("doomed", S.TASK_GONE)
            assert seen[-1].reason == common_pb2.REASON_AGENT_REMOVED
            assert daemons.agent("a1") is None
            daemons.send("a1", signal.SIGCONT)
            await wait_async(lambda: not processes_with(f"sleep {doomed}"), DEADLINE,
                             "the gone agent's task to be killed")
            await wait_async(lambda: daemons.agent("a1") is not None, DEADLINE,
                             "a1 to register again")
            new = daemons.agent("a1")
            assert new is not None and new.info.id != old_id and new.state == A.AGENT_ACTIVE
    run(body)


def test_framework_failover_keeps_tasks_and_timeout_removes_them(daemons: Daemons) -> None:
    daemons.start_master()
    daemons.start_agent("a1")
    daemons.wait_agents(1)

    async def body() -> None:
        # Within the failover timeout: re-subscribing with the id takes the task back.
        first = Client(daemons.master, "failover", failover_timeout=30, teardown=False)
        async with first:
            offer = await first.offer(SMALL)
            await first.fw.launch([offer.id], [sleeper("kept")])
            await first.until("kept", S.TASK_RUNNING)
        fid = first.fw.framework_id
        async with Client(daemons.master, "failover", failover_timeout=30,
                          framework_id=fid) as second:
            assert second.fw.framework_id == fid
            await second.fw.reconcile()
            await second.until("kept", S.TASK_RUNNING)
            await second.offer(SMALL)  # offers resume
            # The old stream id is dead.
            stale = second.fw.stream_id
            second.fw.stream_id = first.fw.stream_id
            with pytest.raises(FrameworkError) as e:
                await second.fw.revive()
            assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION
            second.fw.stream_id = stale
            await second.fw.kill("kept")
            await second.until("kept", S.TASK_KILLED)

        # Past the failover timeout: the framework is torn down and its task killed.
        brief = Client(daemons.master, "brief", failover_timeout=1, teardown=False)
        async with brief:
            offer = await brief.offer(SMALL)
            abandoned = marker()
            await brief.fw.launch([offer.id], [sleeper("abandoned", abandoned)])
            await brief.until("abandoned", S.TASK_RUNNING)
            await wait_async(lambda: the_process(f"sleep {abandoned}"), DEADLINE,
                             "abandoned's process")
        await wait_async(lambda: not processes_with(f"sleep {abandoned}"), DEADLINE,
                         "the abandoned task to be killed")
        # Torn down, it is listed until the master hears its task is KILLED (a
        # moment after the process is gone), then no more.
        ch, stub = daemons.operator()
        with ch:
            await wait_async(lambda: brief.fw.framework_id not in {
                f.info.id for f in stub.GetFrameworks(operator_pb2.GetFrameworksRequest(),
                                                      timeout=5).frameworks},
                DEADLINE, "the abandoned framework to be gone")
    run(body)


def test_drain_kills_tasks_marks_down_and_up_resumes_offers(daemons: Daemons) -> None:
    daemons.start_master()
    daemons.start_agent("a1")
    daemons.start_agent("a2")
    daemons.wait_agents(2)
    a1 = daemons.agent("a1").info.id  # type: ignore[union-attr]

    async def body() -> None:
        async with Client(daemons.master, "drained") as c:
            offer = await c.offer(SMALL)
            while offer.agent_id != a1:
                await c.fw.decline([offer.id], refuse_seconds=0.1)
                offer = await c.offer(SMALL)
            await c.fw.launch([offer.id], [sleeper("on-a1")])
            await c.until("on-a1", S.TASK_RUNNING)
            ch, stub = daemons.operator()
            with ch:
                stub.DrainAgent(operator_pb2.DrainAgentRequest(agent_id=a1), timeout=5)
                await c.until("on-a1", S.TASK_KILLED)
                await wait_async(
                    lambda: daemons.agent("a1").maintenance == M.MAINTENANCE_DOWN,  # type: ignore[union-attr]
                    DEADLINE, "a1 to be DOWN")
                assert daemons.agent("a1").state == A.AGENT_ACTIVE  # type: ignore[union-attr]
                # Only a2 is offered now, however often we decline.
                for _ in range(3):
                    o = await c.offer(Resources())
                    assert o.agent_id != a1
                    await c.fw.decline([o.id], refuse_seconds=0.05)
                # Maintenance ends from the CLI, naming the agent by its hostname.
                import subprocess
                import sys
                done = await asyncio.to_thread(subprocess.run, [
                    sys.executable, "-m", "juggler.cli.main", "undrain", "--master",
                    daemons.master, "a1"], capture_output=True, text=True, timeout=60)
                assert done.returncode == 0 and "maintenance ended" in done.stdout, done.stderr
                o = await c.offer(Resources())
                while o.agent_id != a1:
                    await c.fw.decline([o.id], refuse_seconds=0.05)
                    o = await c.offer(Resources())
                with pytest.raises(grpc.RpcError) as e:
                    stub.DrainAgent(operator_pb2.DrainAgentRequest(agent_id="nope"), timeout=5)
                assert e.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    run(body)


def test_offer_timeout_rescinds(daemons: Daemons) -> None:
    daemons.start_master("--offer-timeout", "0.3")
    daemons.start_agent("a1")
    daemons.wait_agents(1)

    async def body() -> None:
        async with Client(daemons.master, "idle") as c:
            offer = await c.offer(SMALL)
            await wait_async(lambda: offer.id in c.rescinded, DEADLINE,
                             "the offer to be rescinded")
            with pytest.raises(FrameworkError) as e:
                await c.fw.launch([offer.id], [sleeper("late")])
            assert e.value.code == grpc.StatusCode.NOT_FOUND
            again = await c.offer(SMALL)  # the resources come back
            assert again.agent_id == offer.agent_id and again.id != offer.id
    run(body)


def test_status_updates_are_retried_until_acknowledged(daemons: Daemons) -> None:
    daemons.start_master()
    daemons.start_agent("a1", "--status-update-retry", "0.2")
    daemons.wait_agents(1)

    async def body() -> None:
        c = Client(daemons.master, "forgetful")
        c.auto_ack = False
        async with c:
            offer = await c.offer(SMALL)
            await c.fw.launch([offer.id], [task("once", 0.2, 32, "true")])
            # Not acknowledged: the same update (same uuid) comes again, and the
            # task's next one (FINISHED) waits behind it.
            await wait_async(lambda: len(c.history.get("once", [])) >= 2, DEADLINE,
                             "a retried update")
            updates = c.history["once"]
            assert updates[0].state == S.TASK_RUNNING
            assert updates[1].uuid == updates[0].uuid
            assert all(u.state == S.TASK_RUNNING for u in updates)
            await c.fw.acknowledge(updates[0])
            await wait_async(lambda: c.history["once"][-1].state == S.TASK_FINISHED,
                             DEADLINE, "FINISHED after the ack")
            finished = c.history["once"][-1]
            await c.fw.acknowledge(finished)
            # Acknowledged: no more retries, and the task is completed at the master.
            ch, stub = daemons.operator()
            with ch:
                await wait_async(lambda: any(
                    t.info.task_id == "once" for t in stub.GetTasks(
                        operator_pb2.GetTasksRequest(include_completed=True),
                        timeout=5).completed_tasks), DEADLINE, "the task to complete")
    run(body)


def test_acknowledgements_made_together_go_in_one_call_and_fail_alone(daemons: Daemons) -> None:
    """The SDK sends acknowledgements made together in one call; a bad one among
    them fails only its own caller, and the others still count."""
    daemons.start_master()
    daemons.start_agent("a1", "--status-update-retry", "0.2")
    daemons.wait_agents(1)

    async def body() -> None:
        c = Client(daemons.master, "batcher")
        c.auto_ack = False
        async with c:
            offer = await c.offer(Resources({"cpus": 0.6, "mem": 96}))
            ids = ["b1", "b2", "b3"]
            await c.fw.launch([offer.id], [task(t, 0.2, 32, "true") for t in ids])
            await wait_async(lambda: all(c.history.get(t) for t in ids), DEADLINE,
                             "RUNNING x3")
            firsts = [c.history[t][0] for t in ids]
            bogus = common_pb2.TaskStatus(task_id="ghost", agent_id="nope", uuid=b"x" * 16)
            results = await asyncio.gather(*(c.fw.acknowledge(u) for u in [*firsts, bogus]),
                                           return_exceptions=True)
            assert results[:3] == [None, None, None]
            assert isinstance(results[3], FrameworkError)
            assert results[3].code == grpc.StatusCode.NOT_FOUND
            # Applied: each task's next update (FINISHED) follows its RUNNING.
            await wait_async(lambda: all(c.history[t][-1].state == S.TASK_FINISHED
                                         for t in ids), DEADLINE, "FINISHED x3")
    run(body)


def test_messages_queued_together_travel_as_one_batch(daemons: Daemons) -> None:
    """The run_tasks of one launch reach the agent as one Batch message, and an
    agent's Batch of status updates is handled as if each came alone (an agent
    stream spoken here by hand, as an agent in another language would)."""
    import uuid

    from juggler.v1 import agent_pb2, agent_pb2_grpc

    daemons.start_master()

    async def body() -> None:
        async with servers.channel(daemons.master) as ch:
            call = agent_pb2_grpc.AgentChannelStub(ch).Connect()
            await call.write(agent_pb2.AgentMessage(register=agent_pb2.AgentMessage.Register(
                agent=common_pb2.AgentInfo(hostname="by-hand", resources=Resources(
                    {"cpus": 4, "mem": 1024}).to_proto()))))
            first = await call.read()
            agent_id = first.registered.agent_id
            assert agent_id
            async with Client(daemons.master, "batch") as c:
                offer = await c.offer(Resources({"cpus": 0.8, "mem": 128}))
                ids = [f"t{i}" for i in range(4)]
                await c.fw.launch([offer.id], [task(t, 0.2, 32, "true") for t in ids])
                msg = await asyncio.wait_for(call.read(), DEADLINE)
                while msg.WhichOneof("message") == "heartbeat":
                    msg = await asyncio.wait_for(call.read(), DEADLINE)
                assert msg.WhichOneof("message") == "batch"
                runs = [m.run_task for m in msg.batch.messages]
                assert [r.task.task_id for r in runs] == ids
                await call.write(agent_pb2.AgentMessage(batch=agent_pb2.AgentMessage.Batch(
                    messages=[agent_pb2.AgentMessage(
                        status_update=agent_pb2.AgentMessage.StatusUpdate(
                            status=common_pb2.TaskStatus(
                                task_id=r.task.task_id, framework_id=r.framework.id,
                                agent_id=agent_id, state=S.TASK_RUNNING,
                                source=common_pb2.SOURCE_EXECUTOR, uuid=uuid.uuid4().bytes)))
                        for r in runs])))
                for t in ids:
                    await c.until(t, S.TASK_RUNNING)
            call.cancel()
    run(body)
