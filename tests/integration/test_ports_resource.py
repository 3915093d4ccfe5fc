"""Host ports as a resource, end to end: a real master and agent (`--resources …;ports:[…]`),
a framework written with juggler.sdk, and host-network tasks that really bind their port.

What a user sees: the agent offers exactly the ports it was given; a task asking for a port
another task holds is refused at Accept (INVALID_ARGUMENT naming the port), because no offer
holds that port while the first task runs, not even after the agent restarts; once the first
task ends, the port is offered again and the second task gets it.
"""

from __future__ import annotations

import asyncio
import signal
import socket

import grpc
import pytest

from juggler.common.ranges import Ranges
from juggler.common.resources import Resources
from juggler.sdk import FrameworkError
from juggler.testing.daemons import Daemons
from juggler.testing.task_python import PYTHON as TASK_PYTHON
from juggler.testing.waiting import wait_for
from juggler.v1 import common_pb2
from tests.framework_client import Client, run, story

pytestmark = [pytest.mark.root]
S = common_pb2.TaskState
PORTS = "[30500-30502]"
PORT = 30501

# Serves its task id to every connection on 127.0.0.1:PORT (fails at once if a listener
# holds it; SO_REUSEADDR as every server sets it, for the previous task's TIME_WAITs).
SERVE = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
while True:
    c, _ = s.accept()
    c.sendall(sys.argv[2].encode())
    c.close()
"""


def port_task(task_id: str, port: int) -> common_pb2.TaskInfo:
    """A host-network task holding `port` (published as itself) and serving on it."""
    t = common_pb2.TaskInfo(
        task_id=task_id, name=task_id,
        resources=Resources({"cpus": 0.1, "mem": 32}, ports=Ranges.single(port)).to_proto(),
        command=common_pb2.CommandInfo(argv=[TASK_PYTHON, "-c", SERVE, str(port), task_id]),
        container=common_pb2.ContainerInfo(
            network=common_pb2.NETWORK_HOST,
            port_mappings=[common_pb2.PortMapping(host_port=port, container_port=port)]))
    t.kill_policy.grace_period_seconds = 0.5
    return t


def who_serves(port: int) -> str | None:
    """The task id served on 127.0.0.1:`port`, or None while nothing answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
            return c.recv(100).decode() or None
    except OSError:
        return None


async def serving(c: Client, task_id: str) -> None:
    """Wait until `task_id` answers on PORT; fail at once, with its story, if it ended."""
    def answered() -> bool:
        if any(st.state != S.TASK_RUNNING and st.state != S.TASK_STARTING
               for st in c.history.get(task_id, [])):
            raise AssertionError(f"{task_id} ended: {story(c.history[task_id])}")
        return who_serves(PORT) == task_id
    await asyncio.to_thread(wait_for, answered, timeout=30, what=f"{task_id} to answer on {PORT}")


def test_an_agent_offers_its_ports_and_one_port_runs_one_task(daemons: Daemons) -> None:
    daemons.start_master()
    daemons.start_agent("h1-ports", resources=f"cpus:1;mem:512;disk:1024;ports:{PORTS}")
    daemons.wait_agents(1)
    [view] = daemons.agents()
    assert Resources.from_proto(view.total).ports == Ranges.parse(PORTS)
    assert Resources.from_proto(view.info.resources) == Resources.parse(
        f"cpus:1;mem:512;disk:1024;ports:{PORTS}")

    async def body() -> None:
        async with Client(daemons.master, "ports") as c:
            first = await c.offer(Resources({"cpus": 0.2}))
            assert Resources.from_proto(first.resources).ports == Ranges.parse(PORTS)
            await c.fw.launch([first.id], [port_task("serve-a", PORT)])
            await c.until("serve-a", S.TASK_RUNNING)
            await serving(c, "serve-a")

            # The rest of the agent comes back without the port serve-a holds.
            second = await c.offer(Resources({"cpus": 0.1}))
            assert Resources.from_proto(second.resources).ports == Ranges.parse("[30500,30502]")
            with pytest.raises(FrameworkError) as refused:
                await c.fw.launch([second.id], [port_task("serve-b", PORT)])
            assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
            assert f"ports [{PORT}] are not in the offers" in refused.value.message
            assert "serve-b" not in c.history  # never launched
            assert who_serves(PORT) == "serve-a"

            # The agent dies and comes back: it re-registers with serve-a (checkpointed, its
            # port in its resources), the offer of its old state is void, the new one still
            # lacks the port.
            daemons.send("h1-ports", signal.SIGKILL)
            daemons.procs["h1-ports"].wait(30)
            daemons.start_agent("h1-ports", resources=f"cpus:1;mem:512;disk:1024;ports:{PORTS}")
            again = await c.offer(Resources({"cpus": 0.1}))
            while again.id == second.id:
                again = await c.offer(Resources({"cpus": 0.1}))
            assert Resources.from_proto(again.resources).ports == Ranges.parse("[30500,30502]")
            assert who_serves(PORT) == "serve-a"

            # serve-a ends: its port is offered again and serve-b gets it.
            await c.fw.kill("serve-a")
            await c.until("serve-a", S.TASK_KILLED)
            third = await c.offer(Resources({"cpus": 0.1}, ports=Ranges.single(PORT)))
            await c.fw.launch([third.id], [port_task("serve-b", PORT)])
            await c.until("serve-b", S.TASK_RUNNING)
            await serving(c, "serve-b")
            await c.fw.kill("serve-b")
            await c.until("serve-b", S.TASK_KILLED)
    run(body)
