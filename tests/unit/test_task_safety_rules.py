"""Pure parts of issue 18's task defaults: the host filesystem view's plan,
secret redaction, and who may speak on the executor link."""

from __future__ import annotations

import pytest
import structlog

from juggler.agent.executor_link import Peer, refusal
from juggler.common import secrets
from juggler.container import host_view
from juggler.container.spec import ContainerSpec
from juggler.v1 import common_pb2, executor_pb2


def test_plan_read_only_with_sandbox_and_private_tmp():
    view = host_view.plan("/var/lib/juggler/frameworks/f/tasks/t/", writable=False)
    assert view == host_view.HostView(sandbox="/var/lib/juggler/frameworks/f/tasks/t",
                                      tmp="/var/lib/juggler/frameworks/f/tasks/t/tmp")


def test_plan_rebinds_a_sandbox_under_tmp():
    view = host_view.plan("/tmp/work/a1/frameworks/f/tasks/t", writable=False)
    assert view is not None and view.sandbox_in_tmp == "work/a1/frameworks/f/tasks/t"
    assert host_view.plan("/tmpfoo/x", writable=False).sandbox_in_tmp == ""


def test_plan_writable_is_todays_view_and_bad_sandboxes_are_refused():
    assert host_view.plan("/srv/sandbox", writable=True) is None
    for bad in ("relative/sandbox", "/", "/tmp", "/tmp/"):
        with pytest.raises(ValueError):
            host_view.plan(bad, writable=False)


def _task(**container) -> common_pb2.TaskInfo:
    return common_pb2.TaskInfo(
        task_id="t", name="t", command=common_pb2.CommandInfo(argv=["true"]),
        resources=[common_pb2.Resource(name="cpus", scalar=0.1)],
        container=common_pb2.ContainerInfo(**container))


def test_spec_carries_the_field_and_the_framework_user():
    assert not ContainerSpec.from_task(_task()).writable_host_filesystem
    assert ContainerSpec.from_task(_task(writable_host_filesystem=True)).writable_host_filesystem
    spec = executor_pb2.ExecutorSpec(task=_task(),
                                     framework=common_pb2.FrameworkInfo(user="nobody"))
    assert ContainerSpec.from_executor_spec(spec).user == "nobody"   # Mesos's rule
    spec.task.command.user = "daemon"
    assert ContainerSpec.from_executor_spec(spec).user == "daemon"   # the task's wins
    assert ContainerSpec.from_task(_task()).user == ""               # root


def _secret_task() -> common_pb2.TaskInfo:
    t = _task()
    t.command.environment.update({"TOKEN": "hunter2-abc", "PLAIN": "x"})
    t.command.secret_environment.extend(["TOKEN", "NOT_SET"])
    return t


def test_redaction_copies_and_leaves_the_original():
    t = _secret_task()
    red = secrets.task(t)
    assert dict(red.command.environment) == {"TOKEN": "<secret>", "PLAIN": "x"}
    assert t.command.environment["TOKEN"] == "hunter2-abc"
    plain = _task()
    assert secrets.task(plain) is plain
    assert secrets.env_list(["TOKEN=a=b", "PLAIN=x", "BARE"], ["TOKEN", "BARE"]) == [
        "TOKEN=<secret>", "PLAIN=x", "BARE"]
    assert secrets.environment({"A": "1", "B": "2"}, ["B"]) == {"A": "1", "B": "<secret>"}


def test_log_processor_redacts_messages_and_registered_values():
    t = _secret_task()
    secrets.register([*secrets.values(t.command), "ab"])   # too short to mask: kept
    try:
        out = secrets.log_processor(None, "info", {"event": "x hunter2-abc ab", "task": t})
        assert out["event"] == "x <secret> ab"
        assert out["task"].command.environment["TOKEN"] == "<secret>"
        rendered = structlog.processors.JSONRenderer()(None, "info", dict(out))
        assert "hunter2" not in rendered
    finally:
        secrets._registered.clear()


def test_only_the_executor_the_agent_started_may_speak():
    me = Peer(pid=100, uid=0, gid=0)
    assert refusal(me, 0, 100, 100) is None
    assert "not that task's executor" in refusal(Peer(101, 0, 0), 0, 100, 100)
    assert "names pid 99" in refusal(me, 0, 99, 100)
    assert "runs no executor" in refusal(me, 0, 100, None)
    assert "uid 1000" in refusal(Peer(100, 1000, 1000), 0, 100, 100)
    assert "cannot be read" in refusal(None, 0, 100, 100)
