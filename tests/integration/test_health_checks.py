"""Health checks for real: `python -m juggler.executor` runs busybox tasks in real
containers and their checks enter those containers (executor/health.py).

The agent is the test (tests/executor_harness.py FakeAgent). Checks use short
delays and intervals; every wait has a deadline. A check may run as soon as the
task is RUNNING, before the task did anything: so a check passes on a task
that has not started yet (the file it looks for is one the task makes when
told to turn sick), an HTTP check is healthy before it is made to fail, and a
task flips its own health on a signal from the test (SIGUSR1). No test
depends on timing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from juggler.container import capabilities
from juggler.container.spec import ContainerSpec
from juggler.executor import health
from juggler.testing.rootfs import make_busybox_rootfs
from juggler.v1 import common_pb2 as pb
from tests.executor_harness import executor, task_info, wait_until

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, cgroups, mounts)"),
]

# Short delay and interval; the timeout is long, as a check's fork and exec can
# take seconds on a loaded machine (a timeout is a failure).
FAST = dict(delay_seconds=0.01, interval_seconds=0.2, timeout_seconds=30)
# Runs until SIGTERM; SIGUSR1 makes /tmp/sick. Healthy while /tmp/sick is not
# there: even before the shell runs its first line.
SERVE = ("trap 'touch /tmp/sick' USR1; trap 'exit 0' TERM; echo ready; "
         "while :; do sleep 0.05; done")
HEALTHY_UNTIL_SICK = "test ! -e /tmp/sick"
DEADLINE = 30.0


@pytest.fixture(scope="module")
def busybox(tmp_path_factory) -> Path:
    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")  # has httpd


def health_updates(run) -> list[pb.TaskStatus]:
    return [u for u in run.agent.updates
            if u.reason == pb.REASON_TASK_HEALTH_CHECK_STATUS_UPDATED]


async def wait_health(run, healthy: bool) -> pb.TaskStatus:
    def found():
        return next((u for u in health_updates(run) if u.healthy is healthy), None)
    await run.agent.wait_for(found, f"a health update with healthy={healthy}")
    return found()


async def wait_ready(run) -> int:
    """The container's pid (host view) once the task printed `ready`."""
    await run.agent.wait_state(pb.TASK_RUNNING)
    await wait_until(lambda: "ready" in run.stdout(), "the task to print ready")
    await run.agent.wait_for(lambda: any(h.container_pid for h in run.agent.hellos),
                             "a hello with the container's pid")
    return next(h.container_pid for h in run.agent.hellos if h.container_pid)


def test_command_check_turns_healthy_then_unhealthy(tmp_path, busybox):
    async def scenario():
        task = task_info(SERVE, rootfs=busybox)
        task.kill_policy.grace_period_seconds = 5
        task.health_check.CopyFrom(pb.HealthCheck(
            command=pb.HealthCheck.Command(argv=[HEALTHY_UNTIL_SICK], shell=True),
            consecutive_failures=2, **FAST))
        async with executor(tmp_path, task) as run:
            pid = await wait_ready(run)
            healthy = await wait_health(run, True)
            assert healthy.state == pb.TASK_RUNNING
            assert healthy.message.startswith("Task is healthy: command health check passed")
            os.kill(pid, signal.SIGUSR1)
            unhealthy = await wait_health(run, False)
            assert unhealthy.state == pb.TASK_RUNNING
            assert unhealthy.message.startswith(
                "Task is unhealthy: command health check failed 2 times in a row "
                "(last: exit status 1)")
            await run.agent.kill()
            done = await run.agent.wait_terminal()
        first = run.agent.updates[0]
        assert first.state == pb.TASK_RUNNING and not first.HasField("healthy")
        assert [u.healthy for u in health_updates(run)] == [True, False]
        assert done.state == pb.TASK_KILLED and done.reason == pb.REASON_TASK_KILLED
        assert done.HasField("healthy") and done.healthy is False
        # /tmp/sick only ever existed in the container's own upper layer.
        assert not (busybox / "tmp" / "sick").exists()
        assert (run.sandbox / "rootfs" / "upper" / "tmp" / "sick").exists()

    asyncio.run(scenario())


def test_command_check_runs_inside_the_container_as_the_task(tmp_path, busybox):
    """Same namespaces, cgroup, capabilities, user and no_new_privs as the task."""
    probe = ("id -u > /tmp/check.uid; hostname > /tmp/check.host; echo $$ > /tmp/check.pid; "
             "cat /proc/self/cgroup > /tmp/check.cgroup; cat /proc/self/status > /tmp/check.st; "
             "readlink /proc/1/exe > /tmp/check.init; pwd > /tmp/check.pwd")
    async def scenario():
        task = task_info("echo ready; exec sleep 60", rootfs=busybox, hostname="checked")
        task.command.user = "nobody"
        task.command.working_directory = "/tmp"
        task.kill_policy.grace_period_seconds = 0
        task.health_check.CopyFrom(pb.HealthCheck(
            command=pb.HealthCheck.Command(argv=[probe], shell=True), **FAST))
        async with executor(tmp_path, task) as run:
            await wait_ready(run)
            await wait_health(run, True)
            await run.agent.kill()
            await run.agent.wait_terminal()
        upper = run.sandbox / "rootfs" / "upper" / "tmp"

        def read(name: str) -> str:
            return (upper / f"check.{name}").read_text().strip()

        assert read("uid") == "65534"
        assert read("host") == "checked"
        assert read("pwd") == "/tmp"
        assert 1 < int(read("pid")) < 100  # the container's pid namespace
        assert read("init") == "/bin/busybox"  # its pid 1 is the task (busybox sleep)
        assert run.cgroup in read("cgroup")
        status = dict(line.split(":\t", 1) for line in read("st").splitlines())
        assert int(status["CapEff"], 16) == 0  # a non-root user keeps no capability
        assert int(status["CapBnd"], 16) == capabilities.DEFAULT_MASK
        assert status["NoNewPrivs"].strip() == "0"   # the task's: Docker's default

    asyncio.run(scenario())


def test_kill_when_unhealthy_ends_killed_with_reason_unhealthy(tmp_path, busybox):
    async def scenario():
        task = task_info(SERVE, rootfs=busybox)
        task.kill_policy.grace_period_seconds = 5
        task.health_check.CopyFrom(pb.HealthCheck(
            command=pb.HealthCheck.Command(argv=HEALTHY_UNTIL_SICK.split()),
            consecutive_failures=2, kill_when_unhealthy=True, **FAST))
        async with executor(tmp_path, task) as run:
            pid = await wait_ready(run)
            await wait_health(run, True)
            os.kill(pid, signal.SIGUSR1)
            done = await run.agent.wait_terminal()
        states = [(pb.TaskState.Name(u.state), u.healthy if u.HasField("healthy") else None)
                  for u in run.agent.updates]
        assert states == [("TASK_RUNNING", None), ("TASK_RUNNING", True),
                          ("TASK_RUNNING", False), ("TASK_KILLING", False),
                          ("TASK_KILLED", False)], states
        killing = run.agent.updates[3]
        assert killing.reason == pb.REASON_TASK_UNHEALTHY
        assert done.state == pb.TASK_KILLED and done.reason == pb.REASON_TASK_UNHEALTHY
        assert done.exit_code == 0  # SIGTERM within the grace period: the trap exited 0

    asyncio.run(scenario())


def test_failures_in_the_grace_period_are_ignored_until_the_first_success(tmp_path, busybox):
    """Marathon's gracePeriodSeconds: a task that is not up yet fails its checks and
    is neither unhealthy nor killed, though one failure would do both; once it has
    passed a check, the next failure counts, long before the period is over.

    The check counts its own runs in /tmp/checks; the task comes up (/tmp/up) on
    SIGUSR1 and goes down on SIGUSR2, both from the test. The 300 s period covers
    the whole test."""
    async def scenario():
        task = task_info("trap 'touch /tmp/up' USR1; trap 'rm -f /tmp/up' USR2; "
                         "trap 'exit 0' TERM; echo ready; while :; do sleep 0.05; done",
                         rootfs=busybox)
        task.kill_policy.grace_period_seconds = 5
        task.health_check.CopyFrom(pb.HealthCheck(
            command=pb.HealthCheck.Command(argv=["echo . >> /tmp/checks; test -e /tmp/up"],
                                           shell=True),
            consecutive_failures=1, kill_when_unhealthy=True, grace_period_seconds=300,
            **FAST))
        async with executor(tmp_path, task) as run:
            pid = await wait_ready(run)
            checks = run.sandbox / "rootfs" / "upper" / "tmp" / "checks"
            await wait_until(lambda: checks.exists() and len(checks.read_text()) >= 3 * 2,
                             "three failed checks")
            assert health_updates(run) == []
            assert [u.state for u in run.agent.updates] == [pb.TASK_RUNNING]
            os.kill(pid, signal.SIGUSR1)
            healthy = await wait_health(run, True)
            assert healthy.message.startswith("Task is healthy: command health check passed")
            os.kill(pid, signal.SIGUSR2)
            done = await run.agent.wait_terminal()
        states = [(pb.TaskState.Name(u.state), u.healthy if u.HasField("healthy") else None)
                  for u in run.agent.updates]
        assert states == [("TASK_RUNNING", None), ("TASK_RUNNING", True),
                          ("TASK_RUNNING", False), ("TASK_KILLING", False),
                          ("TASK_KILLED", False)], states
        assert run.agent.updates[2].message.startswith(
            "Task is unhealthy: command health check failed 1 time in a row")
        assert done.state == pb.TASK_KILLED and done.reason == pb.REASON_TASK_UNHEALTHY

    asyncio.run(scenario())


def test_http_check_in_a_network_none_container(tmp_path, busybox):
    async def scenario():
        serve = ("mkdir -p /www && echo ok > /www/index.html && echo ready && "
                 "exec httpd -f -p 8080 -h /www")
        task = task_info(serve, rootfs=busybox, network=pb.NETWORK_NONE)
        task.kill_policy.grace_period_seconds = 0
        task.health_check.CopyFrom(pb.HealthCheck(
            http=pb.HealthCheck.Http(port=8080, path="/index.html"), **FAST))
        async with executor(tmp_path, task) as run:
            await wait_ready(run)
            healthy = await wait_health(run, True)
            assert healthy.message == ("Task is healthy: http health check passed "
                                       "(GET http://127.0.0.1:8080/index.html: 200)")
            # The server listens in the container's own network namespace only.
            with pytest.raises(OSError):
                await asyncio.open_connection("127.0.0.1", 8080)
            await run.agent.kill()
            await run.agent.wait_terminal()

    asyncio.run(scenario())


def test_http_check_failing_status_is_unhealthy(tmp_path, busybox):
    """A 404 turns the task unhealthy. The check may probe before httpd listens
    (connection refused, a failure too): so the page is served first, the task
    turns healthy, and only then is the page removed (SIGUSR1)."""
    async def scenario():
        serve = ("mkdir -p /www; echo ok > /www/page; "
                 "trap 'rm -f /www/page' USR1; trap 'exit 0' TERM; "
                 "httpd -f -p 8080 -h /www & echo ready; while :; do sleep 0.05; done")
        task = task_info(serve, rootfs=busybox)
        task.kill_policy.grace_period_seconds = 0
        task.health_check.CopyFrom(pb.HealthCheck(
            http=pb.HealthCheck.Http(port=8080, path="/page"), consecutive_failures=1,
            **FAST))
        async with executor(tmp_path, task) as run:
            pid = await wait_ready(run)
            healthy = await wait_health(run, True)
            os.kill(pid, signal.SIGUSR1)
            unhealthy = await wait_health_after(run, healthy, False)
            assert "GET http://127.0.0.1:8080/page: 404" in unhealthy.message, unhealthy.message
            await run.agent.kill()
            await run.agent.wait_terminal()

    asyncio.run(scenario())


async def wait_health_after(run, after: pb.TaskStatus, healthy: bool) -> pb.TaskStatus:
    """The first health update with `healthy` that came after the update `after`."""
    def found():
        later = health_updates(run)[health_updates(run).index(after) + 1:]
        return next((u for u in later if u.healthy is healthy), None)
    await run.agent.wait_for(found, f"a later health update with healthy={healthy}")
    return found()


def test_tcp_check_on_a_closed_port_is_unhealthy_and_open_port_healthy(tmp_path, busybox):
    async def scenario():
        task = task_info("echo ready; exec httpd -f -p 8081 -h /", rootfs=busybox)
        task.kill_policy.grace_period_seconds = 0
        task.health_check.CopyFrom(pb.HealthCheck(
            tcp=pb.HealthCheck.Tcp(port=8082), consecutive_failures=1, **FAST))
        async with executor(tmp_path, task) as run:
            pid = await wait_ready(run)
            unhealthy = await wait_health(run, False)
            assert unhealthy.message == ("Task is unhealthy: tcp health check failed 1 time "
                                         "in a row (last: connect to 127.0.0.1:8082: "
                                         "Connection refused)")
            # The same probe on the port the task listens on (its own namespace).
            ok, detail = await wait_until_probe(pid, 8081)
            assert ok, detail
            await run.agent.kill()
            await run.agent.wait_terminal()
        assert [u.healthy for u in health_updates(run)] == [False]

    asyncio.run(scenario())


async def wait_until_probe(pid: int, port: int):
    """The probe's last answer, once it connects or after DEADLINE (httpd may not
    listen yet)."""
    deadline = asyncio.get_running_loop().time() + DEADLINE
    while True:
        ok, detail = await health.probe_tcp(pid, port)
        if ok or asyncio.get_running_loop().time() > deadline:
            return ok, detail
        await asyncio.sleep(0.05)


def test_a_check_that_times_out_is_killed_and_counts_as_failure(tmp_path, busybox):
    async def scenario():
        task = task_info("echo ready; exec sleep 60", rootfs=busybox)
        task.kill_policy.grace_period_seconds = 0
        task.health_check.CopyFrom(pb.HealthCheck(
            command=pb.HealthCheck.Command(argv=["sleep 30"], shell=True),
            delay_seconds=0.01, interval_seconds=0.2, timeout_seconds=0.3,
            consecutive_failures=1))
        async with executor(tmp_path, task) as run:
            await wait_ready(run)
            unhealthy = await wait_health(run, False)
            assert unhealthy.message.endswith("(last: timed out after 0.3 s)")
            # The timed-out check is gone: only the task (pid 1) stays in the cgroup,
            # apart from a check started since.
            procs = Path("/sys/fs/cgroup/pids") / run.cgroup / "cgroup.procs"
            if procs.exists():
                await wait_until(lambda: len(procs.read_text().split()) <= 2,
                                 "timed-out checks to be killed")
            await run.agent.kill()
            await run.agent.wait_terminal()

    asyncio.run(scenario())


def _in_pid_ns(ns_ino: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/pid").st_ino == ns_ino:
                    out.append(int(entry))
            except OSError:
                pass
    return out


async def not_born_scenario() -> None:
    outer = await asyncio.create_subprocess_exec(
        "unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "--uts", "sleep", "60",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        children = Path(f"/proc/{outer.pid}/task/{outer.pid}/children")
        found = await wait_until(lambda: children.read_text().split(), "unshare's child")
        pid = int(found[0])
        await wait_until(lambda: Path(f"/proc/{pid}/comm").read_text() == "sleep\n",
                         "the namespace's pid 1 to exec sleep")
        spec = ContainerSpec.from_task(task_info("true"))
        target = health.Target(pid=pid, cgroup=None, spec=spec)
        ok, detail = await health.run_command(
            target, ["/bin/sh", "-c", 'echo "pid=$$ init=$(cat /proc/1/comm)"'])
        assert ok, detail
        assert detail.startswith("exit status 0: pid=") and detail.endswith(" init=sleep")
        assert int(detail.split("pid=")[1].split()[0]) < 10

        ns = os.stat(f"/proc/{pid}/ns/pid").st_ino
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(health.run_command(target, ["sleep", "30"]), 0.3)
        await wait_until(lambda: _in_pid_ns(ns) == [pid], "the timed-out check to die")
    finally:
        outer.kill()
        await outer.wait()


def test_command_check_enters_a_pid_namespace_it_was_not_born_in():
    """The path for a container the executor did not fork itself (a pre-started
    launcher): the check setns(pid) and forks once more; a timeout kills both.

    Run in a fresh interpreter, as in an executor: this test process has gRPC's
    threads, and forking it is not what an executor does."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    code = ("import asyncio; from tests.integration import test_health_checks as t; "
            "asyncio.run(t.not_born_scenario())")
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                            text=True, timeout=60,
                            env=dict(os.environ, PYTHONPATH=str(root)))
    assert result.returncode == 0, result.stdout + result.stderr




# -- commands that cannot start: Docker's exit codes (container/process.py) ------------


def test_a_command_check_that_is_not_found_says_so_with_127(tmp_path, busybox):
    async def scenario():
        task = task_info("echo ready; exec sleep 60", rootfs=busybox)
        task.kill_policy.grace_period_seconds = 0
        task.health_check.CopyFrom(pb.HealthCheck(
            command=pb.HealthCheck.Command(argv=["nosuch"]), consecutive_failures=1, **FAST))
        async with executor(tmp_path, task) as run:
            await wait_ready(run)
            unhealthy = await wait_health(run, False)
            assert unhealthy.message.endswith(
                "(last: exit status 127: exec 'nosuch': No such file or directory)"), \
                unhealthy.message
            await run.agent.kill()
            await run.agent.wait_terminal()

    asyncio.run(scenario())


async def bad_commands_scenario() -> None:
    """run_command's answers for commands that cannot start, in a container the
    executor did not fork (the path that also enters its pid namespace)."""
    import dataclasses
    import tempfile

    outer = await asyncio.create_subprocess_exec(
        "unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "sleep", "60",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        children = Path(f"/proc/{outer.pid}/task/{outer.pid}/children")
        pid = int((await wait_until(lambda: children.read_text().split(), "unshare's child"))[0])
        await wait_until(lambda: Path(f"/proc/{pid}/comm").read_text() == "sleep\n",
                         "the namespace's pid 1 to exec sleep")
        with tempfile.TemporaryDirectory() as d:  # the host's filesystem is the container's
            no_x = Path(d) / "no-x-bit"
            no_x.write_text("#!/bin/sh\necho hi\n")
            no_x.chmod(0o644)
            spec = ContainerSpec.from_task(task_info("true"))
            target = health.Target(pid=pid, cgroup=None, spec=spec)
            assert await health.run_command(target, ["nosuch"]) == (
                False, "exit status 127: exec 'nosuch': No such file or directory")
            assert await health.run_command(target, [str(no_x)]) == (
                False, f"exit status 126: exec '{no_x}': Permission denied")
            assert await health.run_command(target, [d]) == (
                False, f"exit status 126: exec '{d}': Permission denied")
            lost = health.Target(pid=pid, cgroup=None,
                                 spec=dataclasses.replace(spec, working_dir="/no/such/dir"))
            assert await health.run_command(lost, ["true"]) == (
                False, "exit status 125: chdir '/no/such/dir': No such file or directory")
            assert await health.run_command(target, ["true"]) == (True, "exit status 0")
    finally:
        outer.kill()
        await outer.wait()


def test_command_checks_that_cannot_start_answer_with_dockers_codes():
    """127 not found, 126 not executable, 125 a step before the exec (a missing
    working directory). In a fresh interpreter, as in an executor (see above)."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    code = ("import asyncio; from tests.integration import test_health_checks as t; "
            "asyncio.run(t.bad_commands_scenario())")
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                            text=True, timeout=60,
                            env=dict(os.environ, PYTHONPATH=str(root)))
    assert result.returncode == 0, result.stdout + result.stderr
