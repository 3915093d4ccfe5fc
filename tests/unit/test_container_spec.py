"""ContainerSpec: what container a TaskInfo asks for (pure, no I/O)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from juggler.container.spec import (
    DEFAULT_PATH,
    ContainerSpec,
    SpecError,
    cpu_shares,
    hostname_for,
)
from juggler.executor import status as st
from juggler.v1 import common_pb2 as pb
from juggler.v1 import executor_pb2 as epb


def task(**kw) -> pb.TaskInfo:
    t = pb.TaskInfo(task_id=kw.pop("task_id", "web.1"),
                    command=pb.CommandInfo(argv=kw.pop("argv", ["echo hi"]),
                                           shell=kw.pop("shell", True)))
    for name, value in kw.pop("resources", {"cpus": 0.5, "mem": 32}).items():
        t.resources.append(pb.Resource(name=name, scalar=value))
    for key, value in kw.items():
        getattr(t, key).CopyFrom(value) if hasattr(value, "CopyFrom") else setattr(t, key, value)
    return t


def test_shell_command_runs_under_sh():
    spec = ContainerSpec.from_task(task())
    assert spec.argv == ["/bin/sh", "-c", "echo hi"]


def test_plain_argv_is_kept():
    spec = ContainerSpec.from_task(task(argv=["sleep", "10"], shell=False))
    assert spec.argv == ["sleep", "10"]


def test_environment_defaults_task_env_and_task_id():
    t = task()
    t.command.environment["FOO"] = "bar"
    t.command.environment["PATH"] = "/opt/bin"
    spec = ContainerSpec.from_task(t)
    assert spec.env["FOO"] == "bar"
    assert spec.env["PATH"] == "/opt/bin"
    assert spec.env["HOSTNAME"] == "web-1"
    assert spec.env["HOME"] == "/root"
    assert spec.env["JUGGLER_TASK_ID"] == "web.1"
    assert ContainerSpec.from_task(task()).env["PATH"] == DEFAULT_PATH


def test_task_cannot_override_its_task_id():
    t = task()
    t.command.environment["JUGGLER_TASK_ID"] = "other"
    assert ContainerSpec.from_task(t).env["JUGGLER_TASK_ID"] == "web.1"


def test_limits_from_resources():
    spec = ContainerSpec.from_task(task())
    assert spec.limits.cpu_shares == 512
    assert spec.limits.memory_bytes == 32 * 2**20
    assert spec.memory_mib == 32
    assert cpu_shares(0.001) == 2
    unlimited = ContainerSpec.from_task(task(resources={"cpus": 1}))
    assert unlimited.limits.memory_bytes is None


def test_hostname_from_container_or_task_id():
    t = task(task_id="My_App.Task-7")
    assert ContainerSpec.from_task(t).hostname == "my-app-task-7"
    t.container.hostname = "db-1"
    assert ContainerSpec.from_task(t).hostname == "db-1"
    t.container.hostname = "bad_name"
    with pytest.raises(SpecError, match="not a valid hostname"):
        ContainerSpec.from_task(t)


@given(hs.text(alphabet=hs.characters(codec="ascii"), min_size=1, max_size=200))
def test_derived_hostname_is_always_valid(task_id):
    name = hostname_for(task_id)
    assert 1 <= len(name) <= 63
    assert all(c.islower() or c.isdigit() or c == "-" for c in name)
    assert not name.startswith("-") and not name.endswith("-")


def test_network_rootfs_workdir_user():
    t = task()
    assert ContainerSpec.from_task(t).network_host is False
    t.container.network = pb.NETWORK_HOST
    t.container.rootfs = "/images/busybox"
    t.command.working_directory = "/tmp"
    t.command.user = "nobody"
    spec = ContainerSpec.from_task(t)
    assert spec.network_host and spec.rootfs == "/images/busybox"
    assert spec.working_dir == "/tmp" and spec.user == "nobody" and spec.env["HOME"] == "/"
    # On the host's network without a hostname of its own: the host's, as
    # `docker run --network host`; with one, that one.
    assert spec.hostname == os.uname().nodename == spec.env["HOSTNAME"]
    t.container.hostname = "mine"
    assert ContainerSpec.from_task(t).hostname == "mine"


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda t: t.command.ClearField("argv"), "command is empty"),
    (lambda t: t.command.argv.append("extra"), "shell command is one string"),
    (lambda t: setattr(t.container, "rootfs", "relative"), "absolute path"),
    (lambda t: setattr(t.command, "working_directory", "tmp"), "must be absolute"),
    (lambda t: setattr(t.container, "image", "busybox"), "not resolved"),
    (lambda t: t.resources.append(pb.Resource(name="gpus", scalar=1)), "unknown resource"),
    (lambda t: setattr(t, "task_id", ""), "no task_id"),
])
def test_invalid_tasks_are_refused_with_a_reason(mutate, message):
    t = task()
    mutate(t)
    with pytest.raises(SpecError, match=message):
        ContainerSpec.from_task(t)


def test_grace_period_from_kill_policy():
    t = task()
    assert ContainerSpec.from_task(t).grace_seconds == 3.0
    t.kill_policy.grace_period_seconds = 0
    assert ContainerSpec.from_task(t).grace_seconds == 0


def test_from_executor_spec():
    spec = epb.ExecutorSpec(task=task(), agent_id="a", cgroup="juggler/a/web.1")
    assert ContainerSpec.from_executor_spec(spec).task_id == "web.1"


# -- how a container's end becomes a status update ---------------------------

def test_outcomes():
    ok = st.outcome(0)
    assert (ok.state, ok.exit_code, ok.message) == (
        pb.TASK_FINISHED, 0, "Command exited with status 0")
    failed = st.outcome(3 << 8)
    assert (failed.state, failed.exit_code) == (pb.TASK_FAILED, 3)
    signalled = st.outcome(9)
    assert signalled.exit_code == 137
    assert signalled.message == "Command terminated by signal 9 (SIGKILL)"
    oom = st.outcome(9, oom_kills=1, memory_mib=32)
    assert (oom.state, oom.reason, oom.exit_code) == (
        pb.TASK_FAILED, pb.REASON_CONTAINER_LIMITATION_MEMORY, 137)
    assert oom.message == "Memory limit of 32 MiB exceeded: the task was OOM-killed"
    killed = st.outcome(15, killed=True)
    assert (killed.state, killed.reason, killed.exit_code) == (
        pb.TASK_KILLED, pb.REASON_TASK_KILLED, 143)
