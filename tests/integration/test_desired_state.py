"""Nothing a user asks for is lost (issue 12's scenarios), with real processes,
the real CLI and the SDK: a kill while the task's agent is down, a drain across
a master restart, the records of a torn-down framework's tasks, and `juggler
ps` showing what runs. (`juggler exec` into a task from an image, the fourth,
is in test_images.py; the same scenarios run in-process, fast, in
tests/unit/test_in_process_cluster.py.)

Tasks are found in the process table by a marker only this test knows
(juggler/testing/processes.py): another suite may run on this host.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest

from juggler.common import servers
from juggler.common.resources import Resources
from juggler.testing.daemons import Daemons
from juggler.testing.processes import marker, processes_with, the_process
from juggler.testing.waiting import wait_for
from juggler.v1 import common_pb2, operator_pb2
from tests.framework_client import Client, run, task

pytestmark = [pytest.mark.root]
S = common_pb2.TaskState
A = operator_pb2.AgentState
M = operator_pb2.MaintenanceState
SMALL = Resources({"cpus": 0.2, "mem": 32})
DEADLINE = 60.0  # a loaded 2-core machine, perhaps running a second suite


def juggler(daemons: Daemons, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The `juggler` CLI against these daemons, as a user runs it."""
    env = dict(os.environ, JUGGLER_MASTER=daemons.master, JUGGLER_HOME=str(daemons.work))
    return subprocess.run([sys.executable, "-m", "juggler.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def sleeper(task_id: str, seconds: str) -> common_pb2.TaskInfo:
    return task(task_id, 0.2, 32, "sh", "-c", f"exec sleep {seconds}")


async def until_async(predicate, what: str, timeout: float = DEADLINE) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_a_kill_sent_while_the_agent_is_down_takes_effect_when_it_is_back(
        daemons: Daemons) -> None:
    daemons.start_master()
    daemons.start_agent("a1")
    daemons.wait_agents(1)
    seconds = marker()

    async def body() -> None:
        async with Client(daemons.master, "killer", failover_timeout=120) as c:
            offer = await c.offer(SMALL)
            await c.fw.launch([offer.id], [sleeper("t1", seconds)])
            await c.until("t1", S.TASK_RUNNING)
            pid = wait_for(lambda: the_process(f"sleep {seconds}"), DEADLINE, what="the task")
            daemons.stop("a1", signal.SIGTERM)  # the agent stops; its task runs on
            await until_async(lambda: daemons.agent("a1").state == A.AGENT_DISCONNECTED,
                              "the master to see a1 gone")
            await c.fw.kill("t1")  # accepted at once, though nobody can deliver it now
            tasks = juggler(daemons, "tasks")
            assert "RUNNING (kill requested)" in tasks.stdout, tasks.stdout
            assert processes_with(f"sleep {seconds}") == [pid]
            daemons.start_agent("a1")  # same work dir: it finds its task again
            await c.until("t1", S.TASK_KILLED)
            await until_async(lambda: not processes_with(f"sleep {seconds}"),
                              "the task's process to be gone")

    run(body)


def test_a_drain_of_an_away_agent_survives_a_master_restart(daemons: Daemons) -> None:
    address = daemons.start_master()
    port = int(address.rsplit(":", 1)[1])
    daemons.start_agent("a1")
    daemons.start_agent("a2")
    daemons.wait_agents(2)
    seconds = marker()

    async def launch_on_a1() -> None:
        async with Client(daemons.master, "drained", failover_timeout=300,
                          teardown=False) as c:
            a1 = daemons.agent("a1").info.id  # type: ignore[union-attr]
            offer = await c.offer(SMALL)
            while offer.agent_id != a1:
                await c.fw.decline([offer.id], refuse_seconds=0.1)
                offer = await c.offer(SMALL)
            await c.fw.launch([offer.id], [sleeper("on-a1", seconds)])
            await c.until("on-a1", S.TASK_RUNNING)

    run(launch_on_a1)
    wait_for(lambda: the_process(f"sleep {seconds}"), DEADLINE, what="the task on a1")
    daemons.stop("a1", signal.SIGTERM)
    wait_for(lambda: daemons.agent("a1").state == A.AGENT_DISCONNECTED, DEADLINE,  # type: ignore[union-attr]
             what="the master to see a1 gone")
    drained = juggler(daemons, "drain", "a1")
    assert drained.returncode == 0, drained.stderr
    # It says what it did, and that the agent being away delays the kills.
    assert "DRAINING" in drained.stdout and "DISCONNECTED" in drained.stdout, drained.stdout
    daemons.stop("master", signal.SIGTERM)
    daemons.start_master(port=port)  # the same work dir: the same registry
    daemons.start_agent("a1")
    wait_for(lambda: daemons.agent("a1").state == A.AGENT_ACTIVE, DEADLINE,  # type: ignore[union-attr]
             what="a1 to re-register")
    # Still in maintenance: its task is killed, then it is DOWN.
    wait_for(lambda: not processes_with(f"sleep {seconds}"), DEADLINE, what="a1's task killed")
    wait_for(lambda: daemons.agent("a1").maintenance == M.MAINTENANCE_DOWN, DEADLINE,  # type: ignore[union-attr]
             what="a1 to be DOWN")
    agents = juggler(daemons, "agents").stdout
    row = next(line for line in agents.splitlines() if " a1 " in f" {line} ")
    assert " ACTIVE " in row and " DOWN " in row, agents

    async def offers_only_from_a2() -> None:
        async with Client(daemons.master, "after") as c:
            for _ in range(3):
                o = await c.offer(Resources())
                assert o.hostname == "a2"
                await c.fw.decline([o.id], refuse_seconds=0.05)

    run(offers_only_from_a2)


def test_ps_shows_a_torn_down_framework_s_task_killed_not_running(daemons: Daemons) -> None:
    """`juggler run` killed -9: after its failover timeout (30 s) its framework
    is torn down and its task killed; the master's record says KILLED."""
    daemons.start_master()
    daemons.start_agent("a1")
    daemons.wait_agents(1)
    seconds = marker()
    env = dict(os.environ, JUGGLER_MASTER=daemons.master, JUGGLER_HOME=str(daemons.work))
    client = subprocess.Popen([sys.executable, "-m", "juggler.cli.main", "run", "-q",
                               "--name", "orphan", "--grace-period", "0.5", "--",
                               "sleep", seconds], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)

    def state_in_tasks(flags: tuple[str, ...]) -> str | None:
        out = juggler(daemons, "tasks", *flags).stdout
        row = next((line for line in out.splitlines() if line.startswith("orphan ")), None)
        return row.split()[1] if row else None

    def task_processes() -> list[int]:  # the client's own command line holds the marker too
        return [p for p in processes_with(f"sleep {seconds}") if p != client.pid]

    try:
        wait_for(lambda: state_in_tasks(()) == "RUNNING" and task_processes(), DEADLINE,
                 what="the task to run")
        client.kill()  # -9: no Ctrl-C handling, no teardown
        client.wait(10)
    finally:
        if client.poll() is None:
            client.kill()
    assert state_in_tasks(()) == "RUNNING"  # its framework is away, within its failover timeout
    wait_for(lambda: state_in_tasks(("-a",)) == "KILLED", 30 + DEADLINE,
             what="tasks -a to show the task KILLED")
    assert state_in_tasks(()) is None  # not among the tasks that run
    assert task_processes() == []


def test_plain_tasks_lists_only_tasks_that_run(daemons: Daemons) -> None:
    """A disconnected framework's ended task, not yet acknowledged, is listed by
    `tasks -a` only."""
    daemons.start_master()
    daemons.start_agent("a1")
    daemons.wait_agents(1)
    seconds = marker()

    async def body() -> None:
        c = Client(daemons.master, "away", failover_timeout=300, teardown=False)
        async with c:
            c.auto_ack = False
            offer = await c.offer(Resources({"cpus": 0.4, "mem": 64}))
            await c.fw.launch([offer.id], [task("fails", 0.2, 32, "sh", "-c", "exit 3"),
                                           sleeper("runs", seconds)])
            seen: set[tuple[str, int]] = set()
            while not {("fails", S.TASK_FAILED), ("runs", S.TASK_RUNNING)} <= seen:
                status = await asyncio.wait_for(c.updates.get(), DEADLINE)
                seen.add((status.task_id, status.state))
                if status.state != S.TASK_FAILED:  # the end is never acknowledged
                    await c.fw.acknowledge(status)
        # The framework is gone (its stream closed), within its failover timeout.

    run(body)
    plain = juggler(daemons, "tasks").stdout
    everything = juggler(daemons, "tasks", "-a").stdout
    assert "runs" in plain and "fails" not in plain, plain
    row = next(line for line in everything.splitlines() if line.startswith("fails "))
    assert row.split()[1] == "FAILED", everything


def test_a_framework_failing_over_ends_the_old_instance_s_stream(daemons: Daemons) -> None:
    """A new scheduler instance subscribing with the framework's id takes over:
    the old instance's stream ends with an error saying so (Mesos's failover)."""

    from juggler.v1 import scheduler_pb2, scheduler_pb2_grpc

    daemons.start_master()
    with servers.sync_channel(daemons.master) as channel:
        stub = scheduler_pb2_grpc.SchedulerStub(channel)
        info = common_pb2.FrameworkInfo(name="twice", failover_timeout=60)
        first = stub.Subscribe(scheduler_pb2.SubscribeRequest(framework=info), timeout=DEADLINE)
        subscribed = next(first).subscribed
        info.id = subscribed.framework_id
        second = stub.Subscribe(scheduler_pb2.SubscribeRequest(framework=info), timeout=DEADLINE)
        assert next(second).subscribed.framework_id == info.id
        ended = [e for e in first if e.WhichOneof("event") != "heartbeat"]
        assert [e.WhichOneof("event") for e in ended] == ["error"]
        assert "failed over" in ended[0].error.message
        second.cancel()
