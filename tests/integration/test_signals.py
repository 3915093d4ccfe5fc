"""Signals for real: a kill's first signal (KillPolicy.signal, given by the
task, by the scheduler's Kill, or by an image's StopSignal) and Agent.Signal
(`docker kill -s`) to a task's PID 1.

Every task traps the signals it may get and says which one came; the grace
period is 30 s, so a task that ends within a few seconds ended on the signal
under test, not on the SIGKILL after it. Tasks run in a busybox root
filesystem (or an image of the test registry), on the cluster of
test_writable_layers.py (one master, one agent) or under the executor
harness (tests/executor_harness.py).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from juggler.testing.daemons import Daemons
from juggler.testing.registry import ImageBuilder, TestImages
from juggler.testing.rootfs import make_busybox_rootfs
from juggler.testing.task_python import PYTHON as TASK_PYTHON
from juggler.v1 import agent_pb2, common_pb2
from tests.conftest import needs_root
from tests.executor_harness import executor, task_info, wait_until
from tests.framework_client import Client, run
from tests.integration.test_writable_layers import (
    agent_api,
    launch,
    one_agent,
    shell_task,
    stdout,
)

pytestmark = [pytest.mark.root]
S = common_pb2.TaskState
GRACE = 30.0
QUICK = 5.0  # far below GRACE
# Says which of USR1, USR2, INT, QUIT and TERM came first, and exits 0.
TRAPS = "".join(f"trap 'echo got {sig}; exit 0' {sig}; "
                for sig in ("USR1", "USR2", "INT", "QUIT", "TERM"))
WAITING = f"{TRAPS}sleep 1000 & echo ready; wait"


@pytest.fixture(scope="module")
def agent_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemons]:
    needs_root()
    with one_agent(tmp_path_factory.mktemp("signals")) as d:
        yield d


@pytest.fixture(scope="module")
def busybox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


def children_are_sleeping(pid: int) -> bool:
    """PID 1's children all exec'd `sleep` (a child signalled between its fork
    and its exec would run the shell's trap too)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return bool(children) and all(
            Path(f"/proc/{c}/comm").read_text().strip() == "sleep" for c in children)
    except OSError:
        return False


async def until_ready(c: Client, d: Daemons, task_id: str) -> int:
    """Once `task_id` runs its traps: its PID 1 (from TaskStatus.pid)."""
    updates = await c.until(task_id, S.TASK_RUNNING)
    pid = next(u.pid for u in updates if u.state == S.TASK_RUNNING)
    fid = c.fw.framework_id
    await wait_until(lambda: "ready" in stdout(d, fid, task_id), f"{task_id} ready")
    await wait_until(lambda: children_are_sleeping(pid), f"{task_id}'s sleep")
    return pid


def waiting_task(task_id: str, busybox: Path) -> common_pb2.TaskInfo:
    t = shell_task(task_id, WAITING, rootfs=busybox)
    t.kill_policy.grace_period_seconds = GRACE
    return t


async def killed_within(c: Client, task_id: str, since: float,
                        output: Callable[[], str] | None = None) -> common_pb2.TaskStatus:
    """TASK_KILLED within QUICK seconds of `since` (time.monotonic()). Else
    the message tells a signal that did not end the task (no "got" in its
    `output`; the SIGKILL came after the grace period) from an update that
    was late (the task said "got SIG"; each update's agent time shows when)."""
    updates = await c.until(task_id, S.TASK_KILLED)
    took = time.monotonic() - since
    if took >= QUICK:
        wall = time.time() - took   # the wall clock at `since`
        said = f"; its output: {output()!r}" if output is not None else ""
        raise AssertionError(
            f"the kill took {took:.1f} s: its first signal did not reach the task, or its "
            "end was reported late; updates (seconds after the kill): " + "; ".join(
                f"{S.Name(u.state)} {u.timestamp - wall:+.1f} s {u.message!r}"
                for u in updates) + said)
    return updates[-1]


# -- a kill's first signal -----------------------------------------------------------


def test_a_task_s_kill_signal_goes_first_then_sigkill_after_the_grace_period(
        tmp_path: Path) -> None:
    """Under the executor harness: an argv task (PID 1 only is signalled)."""
    program = ("import os, signal, sys, time\n"
               "signal.signal(signal.SIGINT, lambda *_: (os.write(1, b'got INT\\n'), "
               "sys.exit(0)))\n"
               "print('ready', flush=True)\n"
               "while True: time.sleep(1000)\n")

    async def scenario() -> None:
        task = task_info("python", shell=False)
        task.command.argv[:] = [TASK_PYTHON, "-c", program]
        task.kill_policy.signal = "SIGINT"
        async with executor(tmp_path, task) as r:
            await r.agent.wait_state(common_pb2.TASK_RUNNING)
            await wait_until(lambda: "ready" in r.stdout(), "the program to be ready")
            t0 = time.monotonic()
            await r.agent.kill(grace=GRACE)
            done = await r.agent.wait_terminal()
            took = time.monotonic() - t0
            killing = await r.agent.wait_state(common_pb2.TASK_KILLING)
        assert took < QUICK, f"the kill took {took:.1f} s"
        assert r.stdout() == "ready\ngot INT\n"
        assert (done.state, done.exit_code) == (common_pb2.TASK_KILLED, 0)
        assert killing.message == "Killing the task with SIGINT (grace period 30 s)"

    asyncio.run(scenario())


def test_a_task_starts_with_every_signal_at_its_default_whatever_its_executor_had(
        tmp_path: Path) -> None:
    """An agent started as a background job of a script (`juggler agent &`)
    has SIGINT and SIGQUIT ignored, and ignored signals survive fork and
    execve: its tasks must not inherit that (a shell could then not trap
    them: the image StopSignal SIGQUIT of a shell task did nothing, and its
    kill waited out the grace period). Under the executor harness, started
    here with those and SIGUSR1 ignored; the task reads its own dispositions
    and mask (/proc/self/status: SigIgn, SigBlk)."""
    async def scenario() -> None:
        task = task_info("cat", shell=False)
        task.command.argv[:] = ["cat", "/proc/self/status"]
        ignored = (signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1)
        before = {sig: signal.signal(sig, signal.SIG_IGN) for sig in ignored}
        try:
            async with executor(tmp_path, task) as r:
                done = await r.agent.wait_terminal()
        finally:
            for sig, handler in before.items():
                signal.signal(sig, handler)
        assert done.state == common_pb2.TASK_FINISHED, done.message
        status = dict(line.split(":\t", 1) for line in r.stdout().splitlines() if ":\t" in line)
        assert (status["SigIgn"], status["SigBlk"]) == ("0000000000000000", "0000000000000000")

    asyncio.run(scenario())


def test_the_scheduler_s_kill_signal_reaches_the_task(agent_cluster: Daemons,
                                                      busybox: Path) -> None:
    d = agent_cluster

    async def body() -> None:
        async with Client(d.master, "kill-signal") as c:
            await launch(c, waiting_task("k1", busybox))
            await until_ready(c, d, "k1")
            t0 = time.monotonic()
            await c.fw.kill("k1", grace_period_seconds=GRACE, signal="SIGUSR1")
            done = await killed_within(c, "k1", t0, lambda: stdout(d, c.fw.framework_id, "k1"))
            assert stdout(d, c.fw.framework_id, "k1") == "ready\ngot USR1\n"
            assert done.exit_code == 0
    run(body)


def test_a_kill_naming_only_a_signal_keeps_the_task_s_grace_period(
        agent_cluster: Daemons, busybox: Path) -> None:
    d = agent_cluster

    async def body() -> None:
        async with Client(d.master, "kill-signal-only") as c:
            await launch(c, waiting_task("k2", busybox))
            await until_ready(c, d, "k2")
            t0 = time.monotonic()
            await c.fw.kill("k2", signal="SIGUSR2")
            await killed_within(c, "k2", t0, lambda: stdout(d, c.fw.framework_id, "k2"))
            assert stdout(d, c.fw.framework_id, "k2") == "ready\ngot USR2\n"
    run(body)


def test_an_image_s_stop_signal_is_the_first_signal_of_its_kill(
        agent_cluster: Daemons, test_images: TestImages) -> None:
    d = agent_cluster
    builder = ImageBuilder(test_images.layout)
    builder.copy("base", "stopsignal")
    builder.config("stopsignal", "--config.stopsignal", "SIGQUIT")
    image = test_images.registry.push(builder.layout, "stopsignal", "stopsignal:1")

    async def body() -> None:
        async with Client(d.master, "stop-signal") as c:
            t = shell_task("s1", WAITING, image=image)
            t.kill_policy.grace_period_seconds = GRACE
            await launch(c, t)
            await until_ready(c, d, "s1")
            t0 = time.monotonic()
            await c.fw.kill("s1")
            await killed_within(c, "s1", t0, lambda: stdout(d, c.fw.framework_id, "s1"))
            assert stdout(d, c.fw.framework_id, "s1") == "ready\ngot QUIT\n"
    run(body)


# -- Agent.Signal -----------------------------------------------------------------------


def test_agent_signal_reaches_pid_1_and_changes_nothing_else(agent_cluster: Daemons,
                                                             busybox: Path) -> None:
    d = agent_cluster
    script = ("trap 'echo hup > /hup' HUP; echo ready; "
              "while :; do sleep 0.1; done")

    async def body() -> None:
        async with Client(d.master, "agent-signal") as c:
            fid = c.fw.framework_id
            await launch(c, shell_task("h1", script, rootfs=busybox))
            await c.until("h1", S.TASK_RUNNING)
            sandbox = d.work / "a1" / "frameworks" / fid / "tasks" / "h1"
            await wait_until(lambda: "ready" in stdout(d, fid, "h1"), "h1 ready")
            async with agent_api(d) as agent:
                await agent.Signal(agent_pb2.SignalRequest(task_id="h1", framework_id=fid,
                                                           signal="HUP"), timeout=10)
                hup = sandbox / "rootfs" / "upper" / "hup"  # the container's /hup
                await wait_until(hup.exists, "the trap to write /hup")
                assert hup.read_text() == "hup\n"
                assert c.history["h1"][-1].state == S.TASK_RUNNING  # still runs

                for request, code in (
                        (agent_pb2.SignalRequest(task_id="nope", framework_id=fid,
                                                 signal="HUP"), grpc.StatusCode.NOT_FOUND),
                        (agent_pb2.SignalRequest(task_id="h1", framework_id=fid,
                                                 signal="SIGNOPE"),
                         grpc.StatusCode.INVALID_ARGUMENT)):
                    with pytest.raises(grpc.aio.AioRpcError) as e:
                        await agent.Signal(request, timeout=10)
                    assert e.value.code() == code, e.value.details()
                assert "'SIGNOPE' is not a signal" in e.value.details()

                # SIGKILL as `docker kill` sends it: the task dies of it. (Its end
                # is left unacknowledged, so the agent keeps the task to answer.)
                c.auto_ack = False
                await agent.Signal(agent_pb2.SignalRequest(task_id="h1", framework_id=fid,
                                                           signal="9"), timeout=10)
                [*_, failed] = await c.until("h1", S.TASK_FAILED)
                assert failed.exit_code == 137
                with pytest.raises(grpc.aio.AioRpcError) as e:
                    await agent.Signal(agent_pb2.SignalRequest(
                        task_id="h1", framework_id=fid, signal="HUP"), timeout=10)
                assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                assert e.value.details() == ("task 'h1' is not running: it has ended "
                                             "(TASK_FAILED)")
    run(body)
