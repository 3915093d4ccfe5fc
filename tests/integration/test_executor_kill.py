"""Who a kill's SIGTERM reaches, for real (executor/kill.py): every process of a
shell task (`/bin/sh -c CMD`, Mesos's command executor), PID 1 only of an argv
task (`docker stop`).

Each task runs on the host's filesystem (no rootfs: the host's /bin/sh and this
Python), with a grace period of 30 s: a task that ends within a few seconds
got its SIGTERM, one that did not would end with SIGKILL at 30 s. Programs say
`ready` once their handlers are installed; the test kills only then.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import time
from pathlib import Path

import pytest

from juggler.testing.task_python import PYTHON as TASK_PYTHON
from juggler.v1 import common_pb2 as pb
from tests.executor_harness import executor, task_info, wait_until

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, cgroups, mounts)"),
]

GRACE = 30.0
QUICK = 5.0  # far below GRACE: the task ended on its SIGTERM, not on SIGKILL
PY = shlex.quote(TASK_PYTHON)

# Exits 0 from its SIGTERM handler, saying so with its name. (Handlers write
# with os.write: a print may be what the signal interrupted, and print is not
# reentrant.)
GRACEFUL = """
import os, signal, sys, time
def term(*_):
    os.write(1, f"{NAME} got TERM\\n".encode())
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
print(NAME, "ready", flush=True)
while True:
    time.sleep(1000)
"""


def program_source(name: str, source: str = GRACEFUL) -> str:
    return f"NAME = {name!r}" + source


def program(source: str, name: str = "app") -> str:
    """A shell word running `source` with this Python, NAME set to `name`."""
    return f"{PY} -c {shlex.quote(program_source(name, source))}"


async def wait_ready(run, *names: str) -> None:
    """Until the task runs, the hello naming its PID 1 is in and every program
    in `names` printed ready."""
    await run.agent.wait_state(pb.TASK_RUNNING)
    await run.agent.wait_for(lambda: any(h.container_pid for h in run.agent.hellos),
                             "a hello with the container's pid")
    await wait_until(lambda: all(f"{n} ready" in run.stdout() for n in names),
                     f"{names} to print ready")


async def kill_when_ready(run, *names: str) -> float:
    """Kill the task (grace GRACE) once `wait_ready`; the kill's time."""
    await wait_ready(run, *names)
    t0 = time.monotonic()
    await run.agent.kill(grace=GRACE)
    return t0


def pid1_comm(run) -> str:
    pid = next(h.container_pid for h in run.agent.hellos if h.container_pid)
    return Path(f"/proc/{pid}/comm").read_text().strip()


def test_a_shell_task_s_program_gets_sigterm_and_the_task_ends_at_once(tmp_path):
    async def scenario():
        task = task_info(program(GRACEFUL))
        async with executor(tmp_path, task) as run:
            t0 = await kill_when_ready(run, "app")
            assert pid1_comm(run) == "sh"  # the premise: the shell is PID 1, not the program
            done = await run.agent.wait_terminal()
            took = time.monotonic() - t0
        assert took < QUICK, f"the kill took {took:.1f} s: SIGTERM never reached the program"
        assert run.stdout() == "app ready\napp got TERM\n"
        assert (done.state, done.reason) == (pb.TASK_KILLED, pb.REASON_TASK_KILLED)
        # The shell's own exit: the status its program returned.
        assert done.exit_code == 0 and done.message == "Command exited with status 0"
        assert [pb.TaskState.Name(u.state) for u in run.agent.updates] == [
            "TASK_RUNNING", "TASK_KILLING", "TASK_KILLED"]

    asyncio.run(scenario())


def test_a_program_that_dies_of_sigterm_ends_the_shell_with_143(tmp_path):
    async def scenario():
        ready = "import time; print('app ready', flush=True); time.sleep(1000)"
        async with executor(tmp_path, task_info(f"{PY} -c {shlex.quote(ready)}")) as run:
            t0 = await kill_when_ready(run, "app")
            assert pid1_comm(run) == "sh"
            done = await run.agent.wait_terminal()
            took = time.monotonic() - t0
        assert took < QUICK, f"the kill took {took:.1f} s"
        assert (done.state, done.reason) == (pb.TASK_KILLED, pb.REASON_TASK_KILLED)
        assert done.exit_code == 143 and done.message == "Command exited with status 143"

    asyncio.run(scenario())


# Starts a child in a session of its own (as a daemon does), and on SIGTERM
# waits for that child to end of its own SIGTERM before saying it got one.
PARENT = f"""
import os, signal, sys, time
child = os.posix_spawn({TASK_PYTHON!r}, [{TASK_PYTHON!r}, "-c", {program_source("grandchild")!r}],
                       os.environ, setsid=True)
def term(*_):
    os.waitpid(child, 0)
    os.write(1, f"{{NAME}} got TERM\\n".encode())
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
print(NAME, "ready", flush=True)
while True:
    time.sleep(1000)
"""


def test_every_process_of_a_shell_task_gets_it_background_and_grandchildren(tmp_path):
    """Not only the shell's foreground child: jobs in the background, and a
    program's own child in a session of its own, all in the task's cgroup."""
    async def scenario():
        command = f"{program(GRACEFUL, 'one')} & {program(PARENT, 'two')} & wait"
        async with executor(tmp_path, task_info(command)) as run:
            t0 = await kill_when_ready(run, "one", "two", "grandchild")
            done = await run.agent.wait_terminal()
            took = time.monotonic() - t0
        assert took < QUICK, f"the kill took {took:.1f} s; output: {run.stdout()!r}"
        out = run.stdout().splitlines()
        assert {"one got TERM", "two got TERM", "grandchild got TERM"} <= set(out), out
        assert out.index("grandchild got TERM") < out.index("two got TERM")
        assert done.state == pb.TASK_KILLED and done.exit_code == 0

    asyncio.run(scenario())


# Spawns `sleep` as fast as it can, keeping the 20 newest (SIGKILLs the
# oldest). Neither it nor its children handle SIGTERM: it kills them at once,
# and a fork the spawner is in the middle of is aborted (a fatal signal ends a
# clone(2) in progress), so no child can be born after its SIGTERM. Its stdout,
# which every child inherits, is a pipe to WATCHER (which ignores SIGTERM): the
# pipe's end, and the task's, come once every one of them is gone. A child
# forked as the kill went through the cgroup's processes and missed by it would
# sleep on, holding the pipe: the task would end at the grace period's SIGKILL.
# The shell starts SLEEPERS sleeps first, with lower pids than the spawner's,
# so the kill reaches the spawner late, and it spawns meanwhile.
SLEEPERS = 300
SPAWNER = """
import os, signal
children, sleep = [], "/bin/sleep"
print(NAME, "ready", flush=True)
while True:
    children.append(os.posix_spawn(sleep, [sleep, "1000"], os.environ))
    if len(children) > 20:
        old = children.pop(0)
        os.kill(old, signal.SIGKILL)
        os.waitpid(old, 0)
"""
WATCHER = """
import signal, sys
signal.signal(signal.SIGTERM, signal.SIG_IGN)
for line in sys.stdin:
    print(line, end="", flush=True)
print(NAME, "saw every writer gone", flush=True)
"""


def test_processes_forking_as_the_kill_comes_do_not_escape_it(tmp_path):
    async def scenario(tmp: Path):
        command = (f"i=0; while [ $i -lt {SLEEPERS} ]; do sleep 1000 & i=$((i + 1)); done; "
                   f"{program(SPAWNER, 'spawner')} | {program(WATCHER, 'watcher')}")
        task = task_info(command, cpus=1, mem=512)
        async with executor(tmp, task) as run:
            t0 = await kill_when_ready(run, "spawner")
            done = await run.agent.wait_terminal()
            took = time.monotonic() - t0
        assert took < QUICK, f"the kill took {took:.1f} s: a child escaped the SIGTERM"
        assert run.stdout().endswith("watcher saw every writer gone\n")
        assert done.state == pb.TASK_KILLED and done.exit_code == 0  # the watcher's

    for attempt in range(3):  # the race is at the kill's instant: give it a few chances
        (tmp_path / str(attempt)).mkdir()
        asyncio.run(scenario(tmp_path / str(attempt)))


def test_an_argv_task_gets_sigterm_at_pid_1_only(tmp_path):
    """As `docker stop`: PID 1 (this Python, with a handler) gets SIGTERM; its
    child (with a handler too) does not, and says so when PID 1 asks it to."""
    child = """
import os, signal, sys, time
got = []
signal.signal(signal.SIGTERM, lambda *_: got.append(1))
def report(*_):
    os.write(1, f"child got TERM: {bool(got)}\\n".encode())
    sys.exit(0)
signal.signal(signal.SIGUSR1, report)
print("child ready", flush=True)
while True:
    time.sleep(1000)
"""
    pid1 = f"""
import os, signal, sys, time
child = os.posix_spawn({TASK_PYTHON!r}, [{TASK_PYTHON!r}, "-c", {child!r}], os.environ)
def term(*_):
    os.write(1, b"pid1 got TERM\\n")
    os.kill(child, signal.SIGUSR1)
    os.waitpid(child, 0)
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
print("pid1 ready", flush=True)
while True:
    time.sleep(1000)
"""

    async def scenario():
        task = task_info("python", shell=False)
        task.command.argv[:] = [TASK_PYTHON, "-c", pid1]
        async with executor(tmp_path, task) as run:
            t0 = await kill_when_ready(run, "pid1", "child")
            done = await run.agent.wait_terminal()
            took = time.monotonic() - t0
        assert took < QUICK, f"the kill took {took:.1f} s"
        out = run.stdout().splitlines()
        assert out[-2:] == ["pid1 got TERM", "child got TERM: False"], out
        assert done.state == pb.TASK_KILLED and done.exit_code == 0

    asyncio.run(scenario())


def test_a_kill_for_health_takes_the_same_path(tmp_path, host_dir):
    async def scenario():
        sick = host_dir / "sick"   # the task's /tmp is its own
        task = task_info(program(GRACEFUL))
        task.health_check.CopyFrom(pb.HealthCheck(
            command=pb.HealthCheck.Command(argv=["test", "!", "-e", str(sick)]),
            consecutive_failures=1, kill_when_unhealthy=True, delay_seconds=0.01,
            interval_seconds=0.2, timeout_seconds=30))
        task.kill_policy.grace_period_seconds = GRACE
        async with executor(tmp_path, task) as run:
            await wait_ready(run, "app")
            await run.agent.wait_for(lambda: any(u.healthy for u in run.agent.updates),
                                     "a healthy update")
            sick.touch()
            killing = await run.agent.wait_state(pb.TASK_KILLING)
            t0 = time.monotonic()
            done = await run.agent.wait_terminal()
            took = time.monotonic() - t0
        assert killing.reason == pb.REASON_TASK_UNHEALTHY
        assert took < QUICK, f"the kill took {took:.1f} s"
        assert run.stdout() == "app ready\napp got TERM\n"
        assert (done.state, done.reason) == (pb.TASK_KILLED, pb.REASON_TASK_UNHEALTHY)
        assert done.exit_code == 0

    asyncio.run(scenario())


def children_of_pid1(run) -> list[str]:
    pid = next(h.container_pid for h in run.agent.hellos if h.container_pid)
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [Path(f"/proc/{child}/comm").read_text().strip() for child in children]


def test_trap_exit_makes_a_looping_shell_stop_with_its_command(tmp_path):
    """The advice in executor/kill.py for a script that loops: the shell as PID 1
    ignores SIGTERM, `trap exit TERM` makes it end with the command that did not.
    (Killed once `sleep` runs: a child signalled between its fork and its exec
    would take the SIGTERM in the trap handler it shares with the shell.)"""
    async def scenario():
        command = "trap exit TERM; while :; do sleep 1000; done"
        async with executor(tmp_path, task_info(command)) as run:
            await wait_ready(run)
            await wait_until(lambda: children_of_pid1(run) == ["sleep"], "sleep to run")
            t0 = time.monotonic()
            await run.agent.kill(grace=GRACE)
            done = await run.agent.wait_terminal()
            took = time.monotonic() - t0
        assert took < QUICK, f"the kill took {took:.1f} s"
        assert done.state == pb.TASK_KILLED and done.exit_code == 143  # sleep's

    asyncio.run(scenario())
