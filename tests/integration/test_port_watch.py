"""A task without ports cannot keep a port of the agent's range in host mode: a real
master and agent (`--resources …;ports:[30600-30605]`, a short
--container-ports-watch-interval) and host-network tasks that really listen.

What a user sees: a task listening (TCP, or a bound UDP socket) on an agent port it
was not given is killed and its framework reads TASK_FAILED with a message naming
the port and the rule; the
task holding its own port, and a task listening outside the agent's range, run on
(each ends TASK_KILLED when its framework kills it, never TASK_FAILED).
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from juggler.common.ranges import Ranges
from juggler.common.resources import Resources
from juggler.testing.daemons import Daemons
from juggler.testing.task_python import PYTHON as TASK_PYTHON
from juggler.testing.waiting import wait_for
from juggler.v1 import common_pb2
from tests.framework_client import Client, run

pytestmark = [pytest.mark.root]
S = common_pb2.TaskState
# Away from other tests' ports (theirs are 30100-30599, 30700-30710 and 30800-30899) and below the
# kernel's ephemeral range.
RANGE = "[30600-30605]"
HELD, STOLEN, STOLEN_UDP, OUTSIDE = 30601, 30602, 30603, 30660
# A UDP server: bound, never connected.
UDP_SERVE = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
while True:
    s.recv(100)
"""


def host_task(task_id: str, ports: Ranges, *argv: str) -> common_pb2.TaskInfo:
    t = common_pb2.TaskInfo(
        task_id=task_id, name=task_id,
        resources=Resources({"cpus": 0.1, "mem": 32}, ports=ports).to_proto(),
        command=common_pb2.CommandInfo(argv=list(argv)),
        container=common_pb2.ContainerInfo(network=common_pb2.NETWORK_HOST))
    t.kill_policy.grace_period_seconds = 0.5
    return t


def serve(port: int) -> list[str]:
    return [TASK_PYTHON, "-m", "http.server", str(port), "--bind", "127.0.0.1"]


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def test_a_host_task_listening_on_an_agent_port_it_was_not_given_is_killed(
        daemons: Daemons) -> None:
    daemons.start_master()
    daemons.start_agent("h1-watch", "--container-ports-watch-interval", "0.3",
                        resources=f"cpus:1;mem:512;disk:1024;ports:{RANGE}")
    daemons.wait_agents(1)

    async def body() -> None:
        async with Client(daemons.master, "port-watch") as c:
            offer = await c.offer(Resources({"cpus": 0.3}, ports=Ranges.single(HELD)))
            await c.fw.launch([offer.id], [
                host_task("holder", Ranges.single(HELD), *serve(HELD)),
                host_task("outsider", Ranges(), *serve(OUTSIDE))])
            for task_id, port in (("holder", HELD), ("outsider", OUTSIDE)):
                await c.until(task_id, S.TASK_RUNNING)
                await asyncio.to_thread(wait_for, lambda p=port: answers(p), timeout=30,
                                        what=f"{task_id} to listen on {port}")

            offer = await c.offer(Resources({"cpus": 0.2}))
            await c.fw.launch([offer.id], [
                host_task("squatter", Ranges(), *serve(STOLEN)),
                host_task("udp-squatter", Ranges(),
                          TASK_PYTHON, "-c", UDP_SERVE, str(STOLEN_UDP))])
            updates = await c.until("squatter", S.TASK_FAILED)
            failed = updates[-1]
            assert failed.reason == common_pb2.REASON_CONTAINER_LIMITATION
            assert failed.message == (
                f"task squatter listens on port {STOLEN}, which is not one of its ports "
                "resources (it has none) (juggler's agent kills a host-network task listening "
                "on an agent port it was not given, as Mesos's network/ports isolator)")
            assert not answers(STOLEN)
            udp = (await c.until("udp-squatter", S.TASK_FAILED))[-1]
            assert udp.message.startswith(
                f"task udp-squatter listens on port {STOLEN_UDP}/udp, which is not one of its ")

            # The scan that found the squatter saw the others listening: they were let be,
            # so they end as their framework's kill makes them, TASK_KILLED.
            for task_id in ("holder", "outsider"):
                assert [st.state for st in c.history[task_id]][-1] == S.TASK_RUNNING
                await c.fw.kill(task_id)
                await c.until(task_id, S.TASK_KILLED)
    run(body)
