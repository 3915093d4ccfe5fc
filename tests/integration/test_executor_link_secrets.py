"""A real master and agent (issue 18): the executor link takes hellos only
from the executor the agent started, and a task's secret environment values
reach the task but no state view and no log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from juggler.agent.checkpoint import meta_dir
from juggler.common import framing, servers
from juggler.testing.daemons import Daemons
from juggler.v1 import agent_pb2, agent_pb2_grpc, common_pb2, executor_pb2, operator_pb2
from tests.conftest import wait_for
from tests.framework_client import Client, run, task

pytestmark = [pytest.mark.root]
S = common_pb2.TaskState
SECRET = f"s3cret-{uuid.uuid4().hex}"
DEADLINE = 60.0


def _forge(sock_path: Path, framework_id: str, task_id: str, claimed_pid: int) -> bytes:
    """Connect as `executor` would, say hello and send a terminal update; what
    the agent answers before it closes the connection (b"" if nothing)."""
    status = common_pb2.TaskStatus(task_id=task_id, framework_id=framework_id,
                                   state=S.TASK_FINISHED, uuid=uuid.uuid4().bytes,
                                   message="forged")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(DEADLINE)
        s.connect(str(sock_path))
        s.sendall(framing.encode(executor_pb2.ExecutorMessage(
            hello=executor_pb2.ExecutorMessage.Hello(framework_id=framework_id,
                                                     task_id=task_id, pid=claimed_pid))))
        received = b""
        # Closed already, as the hello was read: refused as well.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(framing.encode(executor_pb2.ExecutorMessage(
                update=executor_pb2.ExecutorMessage.Update(status=status))))
        # What the agent wrote before it closed is read either way (a unix
        # socket gives queued data before the end or the peer's reset).
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(65536):  # the agent closes a refused link: EOF
                received += chunk
        return received


def test_forged_executor_link_is_refused_and_secrets_stay_secret(daemons: Daemons) -> None:
    master = daemons.start_master()
    daemons.start_agent("a1")
    daemons.wait_agents(1)
    work = daemons.work / "a1"

    async def body() -> None:
        async with Client(master, "secrets") as c:
            t = task("keeper", 0.1, 32, "sh", "-c",
                     'echo "token=$TOKEN"; exec sleep 600')
            t.command.environment["TOKEN"] = SECRET
            t.command.environment["PLAIN"] = "visible"
            t.command.secret_environment.append("TOKEN")
            offer = await c.offer(_resources(t))
            await c.fw.launch([offer.id], [t])
            await c.until("keeper", S.TASK_RUNNING)
            fid = c.fw.framework_id
            sandbox = work / "frameworks" / fid / "tasks" / "keeper"
            # The task got the value.
            wait_for(lambda: f"token={SECRET}" in (sandbox / "stdout").read_text(),
                     DEADLINE, what="the task to print its secret")

            # The socket: 0600 in a 0700 directory.
            sock_path = work / "executor-link" / "agent.sock"
            assert stat.S_IMODE(os.stat(sock_path.parent).st_mode) == 0o700
            assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o600
            executor_pid = int((meta_dir(sandbox) / "executor.pid").read_text().split()[0])
            for claimed in (os.getpid(), executor_pid):  # its own pid, or the executor's
                answer = await asyncio.to_thread(_forge, sock_path, fid, "keeper", claimed)
                assert answer == b""
            log = (daemons.work / "a1.log").read_text()
            assert log.count("executor link refused") == 2, log[-3000:]
            # An executor of a task this agent does not know (one that outlived
            # an agent that never recorded it) is told to shut down, not left to
            # call again forever; one of a task it runs (above) is not.
            answer = await asyncio.to_thread(_forge, sock_path, fid, "no-such-task",
                                             os.getpid())
            assert answer == framing.encode(executor_pb2.AgentToExecutor(
                shutdown=executor_pb2.AgentToExecutor.Shutdown()))
            # The forged FINISHED was never applied: the task still runs.
            assert all(u.message != "forged" for u in c.history["keeper"])
            ch, op = daemons.operator()
            with ch:
                tasks = op.GetTasks(operator_pb2.GetTasksRequest(), timeout=10).tasks
                state = op.GetState(operator_pb2.GetStateRequest(), timeout=10)
            (view,) = [v for v in tasks if v.info.task_id == "keeper"]
            assert view.state == S.TASK_RUNNING

            # Secrets: "<secret>" in the master's views, absent from the agent's, the logs.
            assert dict(view.info.command.environment) == {"TOKEN": "<secret>",
                                                           "PLAIN": "visible"}
            assert SECRET.encode() not in state.SerializeToString()
            address = daemons.agent("a1").info.address
            with servers.sync_channel(address) as ach:
                agent_state = agent_pb2_grpc.AgentStub(ach).GetState(
                    agent_pb2.GetAgentStateRequest(), timeout=10)
            assert SECRET.encode() not in agent_state.SerializeToString()
            for path in (daemons.work / "a1.log", daemons.work / "master.log",
                         sandbox / "executor.log"):
                assert SECRET not in path.read_text(), path

            # Its end is the kill's: the forged FINISHED (which would have come
            # first, on the same path) never reached the framework.
            await c.fw.kill("keeper")
            await c.until("keeper", S.TASK_KILLED)
            assert [u for u in c.history["keeper"] if u.message == "forged"] == []
    run(body)


def _resources(t: common_pb2.TaskInfo):  # type: ignore[no-untyped-def]
    from juggler.common.resources import Resources

    return Resources.from_proto(t.resources)


def test_juggler_run_secret_env_and_writable_host_fs(daemons: Daemons, host_dir: Path) -> None:
    master = daemons.start_master()
    daemons.start_agent("a1")
    daemons.wait_agents(1)
    env = dict(os.environ, JUGGLER_MASTER=master, JUGGLER_HOME=str(daemons.work),
               TOKEN2=SECRET)
    written = host_dir / "written"

    def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "juggler.cli.main", "run", "-q",
                               "--master", master, *args], env=env, capture_output=True,
                              text=True, timeout=120)

    # NAME alone: the value from this environment, never on a command line.
    r = run_cli("--name", "plain-run", "--secret-env", "TOKEN2", "--", "sh", "-c",
                f'echo "got $TOKEN2"; touch {written}')
    assert r.returncode == 1 and f"got {SECRET}" in r.stdout, (r.stdout, r.stderr)
    assert "Read-only file system" in r.stderr and not written.exists()
    r = run_cli("--name", "rw-run", "--writable-host-fs", "--", "touch", str(written))
    assert r.returncode == 0, r.stderr
    assert written.exists()
    ch, op = daemons.operator()
    with ch:
        got = op.GetTasks(operator_pb2.GetTasksRequest(include_completed=True), timeout=10)
    (view,) = [v for v in got.completed_tasks if v.info.task_id == "plain-run"]
    assert view.info.command.environment["TOKEN2"] == "<secret>"
    assert list(view.info.command.secret_environment) == ["TOKEN2"]
    assert SECRET not in (daemons.work / "a1.log").read_text()
