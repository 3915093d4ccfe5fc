"""The pre-forked executor launcher (agent/launcher.py) with real processes.

An agent starts executors by asking its zygote, which double-forks them: an
executor is then neither the agent's child nor the zygote's, runs in its own
session, and outlives both. A dead zygote is restarted; an agent started with
`--no-launcher` starts executors itself.

Processes are found from this test's own agent (its children) or by markers
only this test knows (juggler/testing/processes.py): another suite may run
the same tests on this host at the same time.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from juggler.container import cgroups, native_init
from juggler.testing.daemons import Daemons
from juggler.testing.processes import argv_of, children_of, marker, the_process
from juggler.v1 import common_pb2
from tests.conftest import wait_for
from tests.framework_client import Client, run, task
from tests.integration.test_master_contract import DEADLINE, wait_async

pytestmark = [pytest.mark.root]
S = common_pb2.TaskState


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def parent_of(pid: int) -> int:
    return int(_stat(pid)[1])


def zygote_of(agent_pid: int) -> int | None:
    """The agent's launcher: its child running `juggler.agent.launcher` (the
    executors it forked share that command line, but not that parent)."""
    return next((pid for pid in children_of(agent_pid)
                 if "juggler.agent.launcher" in argv_of(pid)), None)


def executor_pid(daemons: Daemons, framework_id: str, task_id: str) -> int:
    meta = daemons.work / "a1" / "meta" / "frameworks" / framework_id / "tasks" / task_id
    return int((meta / "executor.pid").read_text().split()[0])


def ignores_sigpipe(pid: int) -> bool:
    line = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines()
                if ln.startswith("SigIgn:"))
    return bool(int(line.split()[1], 16) & (1 << (signal.SIGPIPE - 1)))


def assert_launched_by_zygote(pid: int, agent_pid: int, zygote_pid: int) -> None:
    assert parent_of(pid) == zygote_pid  # forked by it, not started by the agent
    assert zygote_pid != agent_pid
    assert os.getsid(pid) == pid  # its own session
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "juggler-exec"
    # As a fresh interpreter: a write to its agent's socket after the agent went
    # away is an EPIPE its link recovers from, not death by SIGPIPE (which left
    # the task to die with it, reported EXECUTOR_TERMINATED).
    assert ignores_sigpipe(pid)


# Where an executor starts juggler-init (container/native_init.py): it must, through
# the launcher (which checks the program once, before it forks) and without it.
NATIVE = (native_init.built() and cgroups.detect() == 1
          and native_init._EXEC_KEEPS_CAPABILITIES)


def container_init(daemons: Daemons, framework_id: str, task_id: str) -> str:
    """What set the task's container up, from its executor's log."""
    log = daemons.work / "a1" / "frameworks" / framework_id / "tasks" / task_id / "executor.log"
    return json.loads(next(line for line in log.read_text().splitlines()
                           if '"container started"' in line))["init"]


def alive(pid: int) -> bool:
    try:
        return _stat(pid)[0] not in ("Z", "X")
    except OSError:
        return False


def test_executors_outlive_the_launcher_and_the_agent(daemons: Daemons) -> None:
    daemons.start_master()
    flags = ("--status-update-retry", "0.2")
    daemons.start_agent("a1", *flags, resources="cpus:2;mem:1024;disk:1024")
    daemons.wait_agents(1)
    agent = daemons.procs["a1"].pid
    zygote = wait_for(lambda: zygote_of(agent), DEADLINE, what="the agent's launcher")
    sleeps = [f"sleep {marker()}", f"sleep {marker()}"]

    async def body() -> None:
        async with Client(daemons.master, "zygote-survivor") as c:
            tasks = [task("z-1", 0.2, 32, "sh", "-c", f"exec {sleeps[0]}"),
                     task("z-2", 0.2, 32, "sh", "-c", f"exec {sleeps[1]}")]
            offer = await c.offer(_total(tasks))
            await c.fw.launch([offer.id], tasks)
            for t in tasks:
                await c.until(t.task_id, S.TASK_RUNNING)
            fid = c.fw.framework_id
            executors = [executor_pid(daemons, fid, t.task_id) for t in tasks]
            for pid in executors:
                assert_launched_by_zygote(pid, agent, zygote)
            if NATIVE:
                assert [container_init(daemons, fid, t.task_id) for t in tasks] == [
                    "juggler-init", "juggler-init"]
            await wait_async(lambda: all(the_process(m) for m in sleeps), DEADLINE,
                             "one process for each task")
            before = {m: the_process(m) for m in sleeps}

            # Both die hard; the executors and their tasks carry on.
            os.kill(zygote, signal.SIGKILL)
            daemons.send("a1", signal.SIGKILL)
            daemons.procs["a1"].wait(DEADLINE)
            await wait_async(lambda: not alive(zygote), DEADLINE, "the launcher to die")
            assert all(alive(pid) for pid in executors)
            # Re-parented (to init or a subreaper), not killed with their parent.
            assert all(parent_of(pid) not in (agent, zygote) for pid in executors)
            assert {m: the_process(m) for m in before} == before

            daemons.start_agent("a1", *flags, resources="cpus:2;mem:1024;disk:1024")
            agent2 = daemons.procs["a1"].pid
            daemons.wait_agents(1)
            await c.fw.reconcile()
            for t in tasks:
                await wait_async(lambda tid=t.task_id: any(
                    s.state == S.TASK_RUNNING and s.reason == common_pb2.REASON_RECONCILIATION
                    for s in c.history.get(tid, [])), DEADLINE,
                    f"{t.task_id} reconciled RUNNING")
            assert {m: the_process(m) for m in before} == before

            # The new agent has a new launcher, and launches through it.
            zygote2 = wait_for(lambda: zygote_of(agent2), DEADLINE, what="the new launcher")
            late = task("z-3", 0.2, 32, "sh", "-c", "exec sleep 1000")
            offer = await c.offer(_total([late]))
            await c.fw.launch([offer.id], [late])
            await c.until("z-3", S.TASK_RUNNING)
            assert_launched_by_zygote(executor_pid(daemons, fid, "z-3"), agent2, zygote2)

            for tid in ("z-1", "z-2", "z-3"):
                await c.fw.kill(tid)
                await c.until(tid, S.TASK_KILLED)
            await wait_async(lambda: not any(alive(p) for p in executors), DEADLINE,
                             "the executors to exit")
    run(body)


def test_a_killed_launcher_is_restarted_and_launches_again(daemons: Daemons) -> None:
    daemons.start_master()
    daemons.start_agent("a1", resources="cpus:2;mem:1024;disk:1024")
    daemons.wait_agents(1)
    agent = daemons.procs["a1"].pid
    zygote = wait_for(lambda: zygote_of(agent), DEADLINE, what="the agent's launcher")
    os.kill(zygote, signal.SIGKILL)
    zygote2 = wait_for(lambda: (z := zygote_of(agent)) not in (None, zygote) and z, DEADLINE,
                       what="a new launcher")

    async def body() -> None:
        async with Client(daemons.master, "after-restart") as c:
            t = task("echo", 0.2, 32, "sh", "-c", "echo launched; exec sleep 1000")
            offer = await c.offer(_total([t]))
            await c.fw.launch([offer.id], [t])
            await c.until("echo", S.TASK_RUNNING)
            pid = executor_pid(daemons, c.fw.framework_id, "echo")
            assert_launched_by_zygote(pid, agent, zygote2)
            await c.fw.kill("echo")
            await c.until("echo", S.TASK_KILLED)
            # Its executor exits once the update is acknowledged, and the
            # zygote (ignoring SIGCHLD) leaves no zombie behind.
            await wait_async(lambda: not os.path.exists(f"/proc/{pid}"), DEADLINE,
                             "the executor to exit and be reaped")
    run(body)


def test_no_launcher_starts_executors_as_children(daemons: Daemons) -> None:
    daemons.start_master()
    daemons.start_agent("a1", "--no-launcher", resources="cpus:2;mem:1024;disk:1024")
    daemons.wait_agents(1)
    agent = daemons.procs["a1"].pid
    assert zygote_of(agent) is None

    async def body() -> None:
        async with Client(daemons.master, "plain") as c:
            # A task that runs until killed: its executor is alive to be looked at.
            t = task("plain", 0.2, 32, "sleep", "1000")
            offer = await c.offer(_total([t]))
            await c.fw.launch([offer.id], [t])
            await c.until("plain", S.TASK_RUNNING)
            pid = executor_pid(daemons, c.fw.framework_id, "plain")
            assert parent_of(pid) == agent
            if NATIVE:
                assert container_init(daemons, c.fw.framework_id, "plain") == "juggler-init"
            await c.fw.kill("plain")
            await c.until("plain", S.TASK_KILLED)
    run(body)


def _total(tasks: list[common_pb2.TaskInfo]):  # type: ignore[no-untyped-def]
    from juggler.common.resources import Resources

    total = Resources()
    for t in tasks:
        total = total + Resources.from_proto(t.resources)
    return total


PRELOADED = """
import json, subprocess, sys
from juggler.agent import launcher
launcher._preload()
print(json.dumps(sorted(m for m in ("rich", "pygments") if sys.modules.get(m) is not None)))
from juggler.common import logs
logs.configure("executor", json=True)
try:
    1 / 0
except ZeroDivisionError:
    logs.get("t").exception("it failed")
"""


def test_the_launcher_preloads_no_terminal_formatting() -> None:
    """structlog takes rich (and pygments) when they are installed, for
    tracebacks on a terminal; the zygote leaves them out (every executor's
    fork and exit is 4.7 MB lighter), and an executor's log of an exception
    is still a JSON line with its traceback."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", PRELOADED], capture_output=True,
                          text=True, timeout=60, check=True)
    assert json.loads(done.stdout.splitlines()[0]) == []
    line = json.loads(done.stderr.splitlines()[-1])
    assert line["event"] == "it failed"
    assert "ZeroDivisionError: division by zero" in line["exception"]
