"""Run `python -m juggler.executor` for real, with the test playing the agent.

`FakeAgent` is a small Unix-socket server speaking the executor protocol
(hello, updates, acks, kill); `executor()` writes a sandbox with the task's
ExecutorSpec, starts the executor in a subprocess, and on the way out checks
it exited 0 and left no cgroup behind. Every wait has a deadline.
Used by tests/integration/test_executor.py and test_isolation.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

from juggler.common import framing
from juggler.container.cgroups import DEFAULT_ROOT, open_cgroup
from juggler.v1 import common_pb2 as pb
from juggler.v1 import executor_pb2 as epb

DEADLINE = 30.0


class FakeAgent:
    """Plays the agent's side of the executor protocol."""

    def __init__(self, socket_path: str, *, ack: bool = True) -> None:
        self.socket_path = socket_path
        self.ack = ack
        self.hellos: list[epb.ExecutorMessage.Hello] = []
        self.updates: list[pb.TaskStatus] = []
        self.update_times: list[float] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.changed = asyncio.Condition()
        self.drop_after_first_update = False
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._handle, self.socket_path)

    async def close(self) -> None:
        for w in self.writers:
            w.close()
        if self.server:
            self.server.close()

    async def _handle(self, reader, writer) -> None:
        self.writers.append(writer)
        while True:
            try:
                message = await framing.read(reader, epb.ExecutorMessage)
            except (OSError, framing.FrameError):
                break
            if message is None:
                break
            async with self.changed:
                if message.WhichOneof("message") == "hello":
                    self.hellos.append(message.hello)
                else:
                    self.updates.append(message.update.status)
                    self.update_times.append(time.monotonic())
                    if self.drop_after_first_update:
                        self.drop_after_first_update = False
                        writer.close()
                        self.changed.notify_all()
                        return
                    if self.ack:
                        await framing.write(writer, epb.AgentToExecutor(
                            ack=epb.AgentToExecutor.Ack(uuid=message.update.status.uuid)))
                self.changed.notify_all()

    async def send(self, message: epb.AgentToExecutor) -> None:
        await framing.write(self.writers[-1], message)

    async def kill(self, grace: float | None = None) -> None:
        policy = pb.KillPolicy()
        if grace is not None:
            policy.grace_period_seconds = grace
        await self.send(epb.AgentToExecutor(kill=epb.AgentToExecutor.Kill(kill_policy=policy)))

    async def wait_for(self, predicate, what: str, timeout: float = DEADLINE):
        async with self.changed:
            try:
                await asyncio.wait_for(self.changed.wait_for(predicate), timeout)
            except TimeoutError:
                raise AssertionError(
                    f"timed out waiting for {what}; updates: "
                    f"{[pb.TaskState.Name(u.state) for u in self.updates]}") from None

    async def wait_state(self, state: int, timeout: float = DEADLINE) -> pb.TaskStatus:
        await self.wait_for(lambda: any(u.state == state for u in self.updates),
                            pb.TaskState.Name(state), timeout)
        return next(u for u in self.updates if u.state == state)

    async def wait_terminal(self) -> pb.TaskStatus:
        terminal = {pb.TASK_FINISHED, pb.TASK_FAILED, pb.TASK_KILLED}
        await self.wait_for(lambda: any(u.state in terminal for u in self.updates),
                            "a terminal update")
        return next(u for u in self.updates if u.state in terminal)


class Run:
    """One executor process and its sandbox."""

    def __init__(self, sandbox: Path, agent: FakeAgent, cgroup: str) -> None:
        self.sandbox, self.agent, self.cgroup = sandbox, agent, cgroup
        self.meta = sandbox.with_name("meta")  # task.pb, as the agent's meta dir holds it
        self.process: asyncio.subprocess.Process | None = None
        self.started_at = 0.0

    def stdout(self) -> str:
        return (self.sandbox / "stdout").read_text()

    def stderr(self) -> str:
        return (self.sandbox / "stderr").read_text()

    def log(self) -> str:
        return (self.sandbox / "executor.log").read_text()

    async def wait_exit(self, timeout: float = DEADLINE) -> int:
        assert self.process is not None
        try:
            return await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"executor did not exit; its log:\n{self.log()}") from None


def task_info(command: str, *, shell: bool = True, cpus: float = 0.1, mem: float = 64,
              rootfs: Path | None = None, **container) -> pb.TaskInfo:
    task = pb.TaskInfo(
        name="t", task_id=f"Task_{uuid.uuid4().hex[:8]}",
        command=pb.CommandInfo(argv=[command], shell=shell),
        resources=[pb.Resource(name="cpus", scalar=cpus), pb.Resource(name="mem", scalar=mem)],
        container=pb.ContainerInfo(rootfs=str(rootfs) if rootfs else "", **container),
    )
    return task


@contextlib.asynccontextmanager
async def executor(tmp_path: Path, task: pb.TaskInfo, *, agent: FakeAgent | None = None):
    sockdir = tempfile.mkdtemp(prefix="jx", dir="/tmp")
    agent = agent or FakeAgent(os.path.join(sockdir, "agent.sock"))
    agent.socket_path = os.path.join(sockdir, "agent.sock")
    await agent.start()
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    prefix = f"juggler/test-{uuid.uuid4().hex[:8]}"
    cgroup = f"{prefix}/{task.task_id}"
    spec = epb.ExecutorSpec(framework=pb.FrameworkInfo(id="fw-1", name="test"), task=task,
                            agent_id="agent-1", agent_socket=agent.socket_path, cgroup=cgroup)
    run = Run(sandbox, agent, cgroup)
    run.meta.mkdir(mode=0o700)
    (run.meta / "task.pb").write_bytes(spec.SerializeToString())
    with open(sandbox / "executor.log", "wb") as log:
        run.started_at = time.monotonic()
        run.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "juggler.executor", "--sandbox", str(sandbox),
            "--meta", str(run.meta), stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True)
    try:
        yield run
        assert await run.wait_exit() == 0, run.log()
        # Nothing left behind: the task's cgroup is gone from every controller.
        assert not open_cgroup(cgroup).exists(), f"cgroup {cgroup} left behind"
    finally:
        if run.process.returncode is None:
            run.process.kill()
            await run.process.wait()
        await agent.close()
        with contextlib.suppress(OSError):
            open_cgroup(cgroup).destroy()
        with contextlib.suppress(OSError):   # the prefix: v2's, then every v1 hierarchy's
            for hierarchy in [DEFAULT_ROOT, *DEFAULT_ROOT.iterdir()]:
                with contextlib.suppress(OSError):
                    os.rmdir(hierarchy / prefix)
        shutil.rmtree(sockdir, ignore_errors=True)


def run_to_end(tmp_path: Path, task: pb.TaskInfo) -> tuple[pb.TaskStatus, str, str]:
    """Run `task` in a real executor to its end: (terminal update, stdout, stderr)."""
    async def scenario():
        async with executor(tmp_path, task) as r:
            done = await r.agent.wait_terminal()
        return done, r.stdout(), r.stderr()

    return asyncio.run(scenario())


async def wait_until(predicate, what: str, timeout: float = DEADLINE, interval: float = 0.02):
    """Poll `predicate` until truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)
    return value
