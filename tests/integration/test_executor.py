"""The executor for real: `python -m juggler.executor` in a subprocess building
real namespaces, cgroups (v1 on this host) and overlay root filesystems.

The agent is played by the test here (tests/executor_harness.py: a small
Unix-socket server speaking the executor protocol: hello, updates, acks, kill).
The full path through master and agent is tested elsewhere
(tests/integration/test_cluster*.py); the security properties of the
container are in test_isolation.py. Every wait has a deadline; nothing sleeps
and hopes.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from juggler.container.cgroups import DEFAULT_ROOT
from juggler.testing.rootfs import make_busybox_rootfs
from juggler.testing.task_python import PYTHON as TASK_PYTHON
from juggler.v1 import common_pb2 as pb
from tests.executor_harness import DEADLINE, FakeAgent, executor, task_info

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, cgroups, mounts)"),
]


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
        # exec: the hog is PID 1 (dash does not exec a last command by itself);
        # a shell that outlives its OOM-killed child is test_oom_exit_code.py's.
        hog = f"exec {TASK_PYTHON} -c 'b = bytearray(200 * 2**20); print(len(b))'"
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


def test_a_second_kill_with_a_shorter_grace_period_kills_sooner(tmp_path, busybox):
    """As Mesos: a kill re-sent with a shorter grace period escalates (`sleep`
    ignores SIGTERM as pid 1, so only SIGKILL ends it)."""
    async def scenario():
        task = task_info("sleep 60", shell=False, rootfs=busybox)
        task.command.argv[:] = ["sleep", "60"]
        async with executor(tmp_path, task) as run:
            await run.agent.wait_state(pb.TASK_RUNNING)
            await run.agent.kill(grace=120)
            await run.agent.wait_state(pb.TASK_KILLING)
            await run.agent.kill(grace=0)  # waiting 120 s is not what the killer wants now
            done = await run.agent.wait_terminal()  # within DEADLINE, far below 120 s
        assert done.state == pb.TASK_KILLED and done.exit_code == 137

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


# -- commands that cannot start: Docker's exit codes (container/process.py) ------------


def _rootfs_with_bad_commands(path: Path) -> Path:
    """busybox plus /opt holding a script without the x bit, a directory, a script
    whose '#!' interpreter is missing and an executable that is not a program."""
    root = make_busybox_rootfs(path)
    opt = root / "opt"
    (opt / "a-dir").mkdir(parents=True)
    (opt / "no-x-bit").write_text("#!/bin/sh\necho hi\n")
    (opt / "no-x-bit").chmod(0o644)
    (opt / "orphan").write_text("#!/no/such/sh\necho hi\n")
    (opt / "orphan").chmod(0o755)
    (opt / "garbage").write_bytes(b"neither a binary nor a script\n")
    (opt / "garbage").chmod(0o755)
    return root


@pytest.mark.parametrize(("argv0", "code", "words"), [
    ("nosuch", 127, "exec 'nosuch': No such file or directory"),
    ("/opt/orphan", 127, "exec '/opt/orphan': No such file or directory (its interpreter "
     "'/no/such/sh', named on its '#!' line, is missing)"),
    ("/opt/no-x-bit", 126, "exec '/opt/no-x-bit': Permission denied"),
    ("/opt/a-dir", 126, "exec '/opt/a-dir': Permission denied"),
    ("/opt/garbage", 126, "exec '/opt/garbage': Exec format error"),
], ids=["not-found", "no-interpreter", "no-x-bit", "a-directory", "not-a-program"])
def test_a_command_that_cannot_start_fails_the_launch_with_dockers_code(tmp_path, argv0, code,
                                                                       words):
    root = _rootfs_with_bad_commands(tmp_path / "rootfs")

    async def scenario():
        async with executor(tmp_path, task_info(argv0, shell=False, rootfs=root)) as run:
            done = await run.agent.wait_terminal()
        assert (done.state, done.reason) == (pb.TASK_FAILED, pb.REASON_CONTAINER_LAUNCH_FAILED)
        assert done.exit_code == code, done.message
        assert done.message == f"Failed to launch the container: {words}"
        assert not any(u.state == pb.TASK_RUNNING for u in run.agent.updates)

    asyncio.run(scenario())


def test_a_missing_working_directory_is_made_one_in_the_way_fails_the_launch(tmp_path, busybox):
    """Issue 15, item 3: `-w /srv/new` in a root filesystem is created (as
    runc does; tests/integration/test_runc_differential.py compares the rest);
    a file in the way fails the launch before the exec (125)."""
    async def scenario(workdir: str, where: Path):
        task = task_info("pwd", rootfs=busybox)
        task.command.working_directory = workdir
        where.mkdir()
        async with executor(where, task) as run:
            return await run.agent.wait_terminal(), run.sandbox

    done, sandbox = asyncio.run(scenario("/srv/new", tmp_path / "made"))
    assert done.state == pb.TASK_FINISHED, done.message
    assert (sandbox / "stdout").read_text() == "/srv/new\n"
    done, _ = asyncio.run(scenario("/etc/passwd/x", tmp_path / "in-the-way"))
    assert (done.state, done.reason) == (pb.TASK_FAILED, pb.REASON_CONTAINER_LAUNCH_FAILED)
    assert done.exit_code == 125  # juggler's own setup failed, before the exec
    assert done.message == ("Failed to launch the container: create the working directory "
                            "'/etc/passwd/x': '/etc/passwd' is not a directory")


def test_one_executor_per_task_a_second_one_for_the_same_sandbox_exits(tmp_path, busybox):
    """A launcher that forks late (stopped while the agent gave up on it and
    started a fresh executor) must not run the task twice."""
    async def scenario():
        task = task_info("sleep 60", shell=False, rootfs=busybox)
        task.command.argv[:] = ["sleep", "60"]
        async with executor(tmp_path, task) as run:
            await run.agent.wait_state(pb.TASK_RUNNING)
            second = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "juggler.executor", "--sandbox", str(run.sandbox),
                "--meta", str(run.meta), stderr=asyncio.subprocess.PIPE)
            _, err = await asyncio.wait_for(second.communicate(), DEADLINE)
            assert second.returncode == 3
            assert b"another executor supervises" in err
            assert {h.pid for h in run.agent.hellos} == {run.process.pid}  # it never said hello
            await run.agent.kill(grace=0)
            await run.agent.wait_terminal()

    asyncio.run(scenario())
