"""Writable layers kept by name (ContainerInfo.writable_layer) on a real agent:
a task writes files, ends; the next task of its framework naming the layer
reads them (after an agent restart too), as `docker stop` + `docker start`
keep a container's files; Agent.RemoveWritableLayer deletes them. A busybox
root filesystem and an image from the test registry, each mounted for real.

The module's cluster (one master, one agent) is shared by its tests; each
test has its own framework, so its own layers.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from juggler.common import servers
from juggler.common.resources import Resources
from juggler.sdk import FrameworkError
from juggler.testing.daemons import Daemons
from juggler.testing.registry import TestImages
from juggler.testing.rootfs import make_busybox_rootfs
from juggler.v1 import agent_pb2, agent_pb2_grpc, common_pb2
from tests.conftest import needs_root
from tests.framework_client import Client, run, task

pytestmark = [pytest.mark.root]
S = common_pb2.TaskState
AGENT_FLAGS = ("--status-update-retry", "0.2")
AGENT_RESOURCES = "cpus:2;mem:1024;disk:1024"


# -- a cluster of one agent, for the module (used by test_signals.py and test_top.py too) --


@contextlib.contextmanager
def one_agent(work: Path) -> Iterator[Daemons]:
    """A master and one agent ("a1") in `work`, until the end of the block."""
    d = Daemons(work)
    try:
        d.start_master()
        d.start_agent("a1", *AGENT_FLAGS, resources=AGENT_RESOURCES)
        d.wait_agents(1)
        yield d
    finally:
        d.close()


@pytest.fixture(scope="module")
def agent_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemons]:
    needs_root()
    with one_agent(tmp_path_factory.mktemp("layers")) as d:
        yield d


@pytest.fixture(scope="module")
def busybox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


async def launch(c: Client, *tasks: common_pb2.TaskInfo) -> None:
    """Launch `tasks` on the next offer that holds them all (what they leave
    comes back at once: refuse 0). An offer the master took back meanwhile (its
    agent restarted) is passed over for the next."""
    need = Resources()
    for t in tasks:
        need = need + Resources.from_proto(t.resources)
    while True:
        offer = await c.offer(need)
        try:
            await c.fw.launch([offer.id], list(tasks), refuse_seconds=0)
            return
        except FrameworkError as e:
            if e.code != grpc.StatusCode.NOT_FOUND:
                raise


@contextlib.asynccontextmanager
async def agent_api(d: Daemons) -> AsyncIterator[agent_pb2_grpc.AgentStub]:
    """The Agent API of "a1", at the address it registered with last."""
    view = d.agent("a1")
    assert view is not None
    async with servers.channel(view.info.address) as channel:
        yield agent_pb2_grpc.AgentStub(channel)


def stdout(d: Daemons, framework_id: str, task_id: str) -> str:
    return (d.work / "a1" / "frameworks" / framework_id / "tasks" / task_id
            / "stdout").read_text()


def shell_task(task_id: str, script: str, *, layer: str = "", rootfs: Path | None = None,
               image: str = "") -> common_pb2.TaskInfo:
    t = task(task_id, 0.1, 32, script)
    t.command.shell = True
    t.container.writable_layer = layer
    t.container.rootfs = str(rootfs) if rootfs else ""
    t.container.image = image
    return t


async def remove(d: Daemons, framework_id: str, name: str) -> bool:
    async with agent_api(d) as agent:
        reply = await agent.RemoveWritableLayer(agent_pb2.RemoveWritableLayerRequest(
            framework_id=framework_id, name=name), timeout=30)
    return reply.removed


# -- the tests ---------------------------------------------------------------------------


def test_files_in_a_layer_outlive_the_task_and_the_agent_and_go_with_the_layer(
        agent_cluster: Daemons, busybox: Path) -> None:
    d = agent_cluster

    async def body() -> None:
        async with Client(d.master, "layers") as c:
            fid = c.fw.framework_id
            await launch(c, shell_task("w1", "echo kept > /data.txt; mkdir -p /var/lib/app; "
                                       "echo 1 > /var/lib/app/n", layer="web", rootfs=busybox))
            await c.until("w1", S.TASK_FINISHED)
            # In the agent's work dir, under the framework and the name; not in a sandbox.
            layer = d.work / "a1" / "layers" / fid / "web"
            assert (layer / "upper" / "data.txt").read_text() == "kept\n"
            assert not (busybox / "data.txt").exists()  # the root filesystem is untouched

            d.stop("a1")  # the agent restarts between the two tasks
            d.start_agent("a1", *AGENT_FLAGS, resources=AGENT_RESOURCES)
            await launch(c, shell_task("w2", "cat /data.txt /var/lib/app/n; echo more >> "
                                       "/data.txt", layer="web", rootfs=busybox))
            await c.until("w2", S.TASK_FINISHED)
            assert stdout(d, fid, "w2") == "kept\n1\n"
            assert (layer / "upper" / "data.txt").read_text() == "kept\nmore\n"

            assert await remove(d, fid, "web") is True
            assert not layer.exists()
            assert await remove(d, fid, "web") is False  # gone already: nothing to do

            await launch(c, shell_task("w3", "test -e /data.txt && echo dirty || echo clean",
                                       layer="web", rootfs=busybox))
            await c.until("w3", S.TASK_FINISHED)
            assert stdout(d, fid, "w3") == "clean\n"
    run(body)


def test_an_image_task_keeps_its_changes_to_the_image_s_files(
        agent_cluster: Daemons, test_images: TestImages) -> None:
    d = agent_cluster
    image = test_images.refs["base"]  # /data/keep holds "kept"

    async def body() -> None:
        async with Client(d.master, "image-layers") as c:
            fid = c.fw.framework_id
            await launch(c, shell_task("i1", "echo changed > /data/keep; rm /etc/motd; "
                                       "echo new > /data/new", layer="db", image=image))
            await c.until("i1", S.TASK_FINISHED)
            await launch(c, shell_task("i2", "cat /data/keep /data/new; ls /etc/motd 2>&1 || "
                                       "echo no motd", layer="db", image=image))
            await c.until("i2", S.TASK_FINISHED)
            assert stdout(d, fid, "i2").splitlines()[:2] == ["changed", "new"]
            assert "no motd" in stdout(d, fid, "i2")
            # Without the layer, the image as it is.
            await launch(c, shell_task("i3", "cat /data/keep", image=image))
            await c.until("i3", S.TASK_FINISHED)
            assert stdout(d, fid, "i3") == "kept\n"
            assert await remove(d, fid, "db") is True
    run(body)


def test_one_live_task_per_layer_and_no_removal_while_it_runs(
        agent_cluster: Daemons, busybox: Path) -> None:
    d = agent_cluster

    async def body() -> None:
        async with Client(d.master, "busy-layers") as c:
            fid = c.fw.framework_id
            await launch(c, shell_task("b1", "exec sleep 1000", layer="busy", rootfs=busybox))
            await c.until("b1", S.TASK_RUNNING)
            await launch(c, shell_task("b2", "true", layer="busy", rootfs=busybox))
            [*_, failed] = await c.until("b2", S.TASK_FAILED)
            assert failed.reason == common_pb2.REASON_CONTAINER_LAUNCH_FAILED
            assert failed.message == (
                "writable layer 'busy' is in use by task 'b1' (TASK_RUNNING) on this agent: "
                "a writable layer is mounted by one task at a time")

            with pytest.raises(grpc.aio.AioRpcError) as e:
                await remove(d, fid, "busy")
            assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert e.value.details() == ("writable layer 'busy' is in use by task 'b1' "
                                         "(TASK_RUNNING); remove it once that task has ended")
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await remove(d, fid, "../etc")
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT

            await c.fw.kill("b1")
            await c.until("b1", S.TASK_KILLED)
            assert await remove(d, fid, "busy") is True

            # The host's filesystem has no layer to keep: refused at launch.
            with pytest.raises(FrameworkError) as refused:
                await launch(c, shell_task("h1", "true", layer="host"))
            assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
            assert "container.writable_layer 'host' needs container.image or " \
                "container.rootfs" in refused.value.message
    run(body)
