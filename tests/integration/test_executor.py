"""The executor for real: `python -m juggler.executor` in a subprocess building
real namespaces, cgroups (v1 on this host) and overlay root filesystems.

The agent is played by the test here: a small Unix-socket server speaking the
executor protocol (hello, updates, acks, kill). The full path through master
and agent is tested elsewhere (tests/integration/test_cluster*.py).
Every wait has a deadline; nothing sleeps and hopes.
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

import pytest

from juggler.common import framing
from juggler.container.cgroups import DEFAULT_ROOT, open_cgroup
from juggler.v1 import common_pb2 as pb
from juggler.v1 import executor_pb2 as epb

try:
    from tests.rootfs import make_busybox_rootfs
except ModuleNotFoundError:  # plain `pytest` without the repository on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.rootfs import make_busybox_rootfs

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, cgroups, mounts)"),
]

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
    (sandbox / "task.pb").write_bytes(spec.SerializeToString())
    run = Run(sandbox, agent, cgroup)
    with open(sandbox / "executor.log", "wb") as log:
        run.started_at = time.monotonic()
        run.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "juggler.executor", "--sandbox", str(sandbox),
            stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
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
        for controller in ("cpu", "cpuacct", "memory", "pids"):
            with contextlib.suppress(OSError):
                os.rmdir(DEFAULT_ROOT / controller / prefix)
        shutil.rmtree(sockdir, ignore_errors=True)


@pytest.fixture(scope="module")
def busybox(tmp_path_factory) -> Path:
    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


def test_true_finishes_and_reports_running_fast(tmp_path):
    async def scenario():
        async with executor(tmp_path, task_info("true", shell=False)) as run:
            running = await run.agent.wait_state(pb.TASK_RUNNING)
            elapsed = run.agent.update_times[0] - run.started_at
            print(f"executor start → TASK_RUNNING: {elapsed * 1000:.0f} ms")
            done = await run.agent.wait_terminal()
            assert running.source == pb.SOURCE_EXECUTOR
            assert running.task_id and running.agent_id == "agent-1"
            assert running.framework_id == "fw-1" and len(running.uuid) == 16
            assert done.state == pb.TASK_FINISHED
            assert done.reason == pb.REASON_COMMAND_EXITED
            assert done.exit_code == 0 and done.message == "Command exited with status 0"
            assert run.agent.hellos[0].task_id == done.task_id
            assert run.agent.hellos[0].pid == run.process.pid

    asyncio.run(scenario())


def test_namespaces_on_host_filesystem(tmp_path):
    command = ("echo pid=$$; echo host=$(hostname); "
               "echo procs=$(ls /proc | grep -E '^[0-9]+$' | tr '\\n' ' '); "
               "echo ifaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ' ')")
    async def scenario():
        task = task_info(command, hostname="web-1")
        async with executor(tmp_path, task) as run:
            done = await run.agent.wait_terminal()
            assert done.state == pb.TASK_FINISHED, (done, run.stderr())
        out = dict(line.split("=", 1) for line in run.stdout().splitlines())
        assert out["pid"] == "1"
        assert out["host"] == "web-1"
        pids = [int(p) for p in out["procs"].split()]
        assert 1 in pids and len(pids) <= 6 and max(pids) < 50, out["procs"]
        assert out["ifaces"].split() == ["lo"]

    asyncio.run(scenario())


def test_rootfs_shows_busybox_and_is_never_written(tmp_path, busybox):
    async def scenario():
        task = task_info("echo $$; hostname; ls /; touch /written; ps", rootfs=busybox)
        async with executor(tmp_path, task) as run:
            done = await run.agent.wait_terminal()
            assert done.state == pb.TASK_FINISHED, (done, run.stderr())
        lines = run.stdout().split()
        assert lines[0] == "1"
        assert lines[1] == task.task_id.lower().replace("_", "-")
        assert {"bin", "etc", "proc", "dev", "tmp"} <= set(lines)
        assert "work" not in lines and "root" in lines
        assert not (busybox / "written").exists()
        assert (run.sandbox / "rootfs" / "upper" / "written").exists()

    asyncio.run(scenario())


def test_nonzero_exit_fails_with_its_code(tmp_path, busybox):
    async def scenario():
        async with executor(tmp_path, task_info("echo oops >&2; exit 3", rootfs=busybox)) as run:
            done = await run.agent.wait_terminal()
        assert done.state == pb.TASK_FAILED
        assert done.reason == pb.REASON_COMMAND_EXITED
        assert done.exit_code == 3 and done.message == "Command exited with status 3"
        assert run.stderr() == "oops\n"

    asyncio.run(scenario())


def test_missing_binary_fails_the_launch(tmp_path, busybox):
    async def scenario():
        async with executor(tmp_path, task_info("nosuch", shell=False, rootfs=busybox)) as run:
            done = await run.agent.wait_terminal()
        assert done.state == pb.TASK_FAILED
        assert done.reason == pb.REASON_CONTAINER_LAUNCH_FAILED
        assert done.exit_code == 127
        assert "exec 'nosuch': No such file or directory" in done.message
        assert not any(u.state == pb.TASK_RUNNING for u in run.agent.updates)

    asyncio.run(scenario())


def test_memory_hog_is_oom_killed_and_reported(tmp_path):
    async def scenario():
        hog = f"{sys.executable} -c 'b = bytearray(200 * 2**20); print(len(b))'"
        async with executor(tmp_path, task_info(hog, mem=32)) as run:
            done = await run.agent.wait_terminal()
        assert done.state == pb.TASK_FAILED
        assert done.reason == pb.REASON_CONTAINER_LIMITATION_MEMORY
        assert done.exit_code == 137
        assert done.message == "Memory limit of 32 MiB exceeded: the task was OOM-killed"
        # The host is unaffected: the executor survived, reported and exited cleanly.

    asyncio.run(scenario())


def test_cpu_shares_visible_while_running_then_kill_ignoring_term(tmp_path, busybox):
    async def scenario():
        # `sleep` is pid 1 and installs no handler: SIGTERM is ignored, as in
        # Docker without --init; SIGKILL after the grace period ends it.
        task = task_info("sleep 60", shell=False, cpus=0.5, rootfs=busybox)
        task.command.argv[:] = ["sleep", "60"]
        async with executor(tmp_path, task) as run:
            await run.agent.wait_state(pb.TASK_RUNNING)
            shares = DEFAULT_ROOT / "cpu" / run.cgroup / "cpu.shares"
            assert shares.read_text().strip() == "512"
            limit = DEFAULT_ROOT / "memory" / run.cgroup / "memory.limit_in_bytes"
            assert int(limit.read_text()) == 64 * 2**20
            t0 = time.monotonic()
            await run.agent.kill(grace=0.5)
            await run.agent.wait_state(pb.TASK_KILLING)
            done = await run.agent.wait_terminal()
            assert time.monotonic() - t0 >= 0.5
        assert done.state == pb.TASK_KILLED
        assert done.reason == pb.REASON_TASK_KILLED
        assert done.exit_code == 137
        assert done.message == "Command terminated by signal 9 (SIGKILL)"

    asyncio.run(scenario())


def test_kill_delivers_term_to_a_trapping_task(tmp_path, busybox):
    async def scenario():
        command = "trap 'echo bye; exit 0' TERM; echo ready; while :; do sleep 0.1; done"
        async with executor(tmp_path, task_info(command, rootfs=busybox)) as run:
            await run.agent.wait_state(pb.TASK_RUNNING)
            deadline = time.monotonic() + DEADLINE
            while "ready" not in run.stdout():  # the trap is installed once it printed
                assert time.monotonic() < deadline, "the task never printed ready"
                await asyncio.sleep(0.02)
            await run.agent.kill(grace=20)
            done = await run.agent.wait_terminal()
        assert done.state == pb.TASK_KILLED and done.exit_code == 0
        assert run.stdout() == "ready\nbye\n"

    asyncio.run(scenario())


def test_unacked_updates_are_resent_after_reconnect(tmp_path):
    async def scenario():
        agent = FakeAgent("")
        agent.drop_after_first_update = True  # an agent restart, as seen by the executor
        async with executor(tmp_path, task_info("true", shell=False), agent=agent):
            await agent.wait_for(lambda: len(agent.hellos) >= 2, "a second hello")
            done = await agent.wait_terminal()
            assert done.state == pb.TASK_FINISHED
        first = agent.updates[0]
        resent = [u for u in agent.updates if u.uuid == first.uuid]
        assert len(resent) == 2 and first.state == pb.TASK_RUNNING
        states = [u.state for u in agent.updates]
        assert states.index(pb.TASK_FINISHED) > 1  # order kept: RUNNING resent first

    asyncio.run(scenario())
