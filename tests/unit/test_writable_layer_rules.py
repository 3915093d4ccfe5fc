"""Writable layers kept by name (ContainerInfo.writable_layer): the task check,
the agent's core refusing a layer a live task uses, and where a layer lives on
disk (agent/writable_layers.py, on a temporary work dir). Mounted for real in
tests/integration/test_writable_layers.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from juggler.agent import commands as c
from juggler.agent import events as ev
from juggler.agent import writable_layers
from juggler.common import task_check
from juggler.common.task_check import TaskError
from juggler.v1 import agent_pb2, common_pb2
from tests.unit.test_agent_state import FW, Harness, ack, registered, run, sent, task, update

S = common_pb2.TaskState


def layered(task_id: str, layer: str = "web", image: str = "") -> common_pb2.TaskInfo:
    info = task(task_id, image=image)
    if not image:
        info.container.rootfs = "/srv/rootfs"
    info.container.writable_layer = layer
    return info


# -- the task check --------------------------------------------------------------------


def test_a_layer_on_an_image_or_a_root_filesystem_is_accepted() -> None:
    task_check.check(layered("t1"))
    task_check.check(layered("t2", "db.data_1", image="busybox:1.36"))


def test_a_layer_on_the_host_s_filesystem_is_refused_naming_the_field() -> None:
    info = task("t1")
    info.container.writable_layer = "web"
    with pytest.raises(TaskError) as e:
        task_check.check(info)
    assert e.value.field == "container.writable_layer"
    assert str(e.value) == (
        "task 't1': container.writable_layer 'web' needs container.image or "
        "container.rootfs (a task on the host's filesystem has no layer of its own to keep)")


@pytest.mark.parametrize("name", ["../etc", "a/b", ".hidden", "-x", "x" * 201, "a b"])
def test_a_layer_name_uses_the_task_id_characters(name: str) -> None:
    with pytest.raises(TaskError, match=r"container\.writable_layer .* is not valid") as e:
        task_check.check(layered("t1", name))
    assert e.value.field == "container.writable_layer"


# -- the agent's core --------------------------------------------------------------------


def start(h: Harness, info: common_pb2.TaskInfo) -> None:
    """`info` launched, its executor connected and RUNNING reported."""
    key = ("fw", info.task_id)
    h(run(info), ev.SandboxMade(key, Path(f"/work/frameworks/fw/tasks/{info.task_id}")),
      ev.ExecutorHello(key, container_pid=4242),
      update(S.TASK_RUNNING, f"{info.task_id}-r".encode(), info.task_id))


def test_a_second_live_task_on_a_layer_is_refused_and_the_first_goes_on() -> None:
    h = Harness()
    h(ev.Started(""), registered())
    start(h, layered("t1"))
    out = h(run(layered("t2")))
    [failed] = sent(out)
    assert not any(isinstance(x, c.StartExecutor) for x in out)
    assert (failed.task_id, failed.state, failed.reason) == (
        "t2", S.TASK_FAILED, common_pb2.REASON_CONTAINER_LAUNCH_FAILED)
    assert failed.message == ("writable layer 'web' is in use by task 't1' (TASK_RUNNING) on "
                              "this agent: a writable layer is mounted by one task at a time")
    assert h.core.layer_user("fw", "web").info.task_id == "t1"
    # The refused task is done with once its end is acknowledged.
    h(ack(failed.uuid, "t2"))
    assert ("fw", "t2") not in h.core.tasks


def test_a_layer_is_free_once_its_task_ended_even_before_its_executor_exits() -> None:
    h = Harness()
    h(ev.Started(""), registered())
    start(h, layered("t1"))
    h(update(S.TASK_KILLED, b"t1-k", "t1"))  # the executor still waits for the ack
    assert h.core.layer_user("fw", "web") is None
    [started] = [x for x in h(run(layered("t2"))) if isinstance(x, c.StartExecutor)]
    assert started.spec.task.container.writable_layer == "web"


def test_a_task_pulling_its_image_holds_its_layer() -> None:
    h = Harness()
    h(ev.Started(""), registered(), run(layered("t1", image="busybox")))
    assert h.core.layer_user("fw", "web").info.task_id == "t1"
    [failed] = sent(h(run(layered("t2", image="busybox"))))
    assert failed.state == S.TASK_FAILED and "in use by task 't1' (TASK_STAGING)" in \
        failed.message


def test_layers_are_per_framework_and_per_name() -> None:
    h = Harness()
    h(ev.Started(""), registered())
    start(h, layered("t1"))
    other = common_pb2.FrameworkInfo(id="fw2", name="fw2")
    out = h(ev.FromMaster(agent_pb2.MasterMessage(run_task=agent_pb2.MasterMessage.RunTask(
        framework=other, task=layered("t2")))))
    assert any(isinstance(x, c.StartExecutor) for x in out)
    assert any(isinstance(x, c.StartExecutor) for x in h(run(layered("t3", "db"))))
    assert h.core.layer_user("fw2", "web").framework.id == "fw2"
    assert h.core.layer_user("fw", "web").framework.id == FW.id
    assert h.core.layer_user("fw", "nope") is None


def test_a_recovered_live_task_still_holds_its_layer() -> None:
    from juggler.v1 import executor_pb2

    h = Harness()
    spec = executor_pb2.ExecutorSpec(framework=FW, task=layered("t1"), cgroup="juggler-test/x")
    running = common_pb2.TaskStatus(task_id="t1", framework_id="fw", state=S.TASK_RUNNING,
                                    uuid=b"x1")
    h(ev.Started("a1", (ev.Recovered(Path("/s/t1"), spec, [running], frozenset({b"x1"}),
                                     True),)), registered("a1"))
    assert sent(h(run(layered("t2"))))[0].state == S.TASK_FAILED


# -- on disk -------------------------------------------------------------------------------


def test_attach_makes_the_layer_in_the_work_dir_and_links_the_sandbox_to_it(
        tmp_path: Path) -> None:
    work = tmp_path / "work"
    sandbox = work / "frameworks" / "fw" / "tasks" / "t1"
    sandbox.mkdir(parents=True)
    layer = writable_layers.attach(work, sandbox, "fw", "web")
    assert layer == work / "layers" / "fw" / "web"
    assert sorted(p.name for p in layer.iterdir()) == ["merged", "upper", "work"]
    assert os.readlink(sandbox / "rootfs") == str(layer)
    (sandbox / "rootfs" / "upper" / "kept").write_text("x")  # what the executor sees
    # A later task's sandbox links to the same layer, files and all.
    other = work / "frameworks" / "fw" / "tasks" / "t2"
    other.mkdir(parents=True)
    writable_layers.attach(work, other, "fw", "web")
    assert (other / "rootfs" / "upper" / "kept").read_text() == "x"


def test_take_away_then_purge_removes_the_layer_and_nothing_else(tmp_path: Path) -> None:
    work = tmp_path / "work"
    sandbox = work / "frameworks" / "fw" / "tasks" / "t1"
    sandbox.mkdir(parents=True)
    writable_layers.attach(work, sandbox, "fw", "web")
    sandbox.with_name("t2").mkdir()
    writable_layers.attach(work, sandbox.with_name("t2"), "fw", "db")
    (work / "layers" / "fw" / "web" / "upper" / "kept").write_text("x")
    doomed = writable_layers.take_away(work, "fw", "web")
    assert doomed is not None and (doomed / "upper" / "kept").exists()
    assert not (work / "layers" / "fw" / "web").exists()
    assert (work / "layers" / "fw" / "db").is_dir()  # the framework's other layer stays
    writable_layers.purge(work, doomed)
    assert not doomed.exists()
    assert writable_layers.take_away(work, "fw", "web") is None  # absent: nothing to do
    # The framework's last layer gone, its directory goes too.
    writable_layers.purge(work, writable_layers.take_away(work, "fw", "db"))
    assert not (work / "layers" / "fw").exists()
    assert sandbox.is_dir() and (sandbox / "rootfs").is_symlink()  # the sandbox is left


def test_purge_at_start_deletes_what_an_interrupted_removal_left(tmp_path: Path) -> None:
    work = tmp_path / "work"
    left = work / "layers" / ".removing" / "fw.web.1234abcd" / "upper"
    left.mkdir(parents=True)
    writable_layers.purge(work)
    assert list((work / "layers" / ".removing").iterdir()) == []
    writable_layers.purge(tmp_path / "empty")  # no layers at all: nothing to do
