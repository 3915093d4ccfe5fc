"""A container start that fails, as Docker's does, and what a user sees of a
run the platform ended: a start waiting for fixed host ports that every agent
it may use has allocated fails at once with dockerd's "port is already
allocated" and never starts later by itself; a start given up at its deadline
does not either; a run the agent killed (its port watch) has the kill's
message as State.Error, a plain exit none."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
from types import SimpleNamespace
from typing import Any

import pytest

from juggler.apps import cluster
from juggler.apps import docker_views as views
from juggler.apps.commands import Command, Launch
from juggler.apps.container_requests import ContainerRequests
from juggler.apps.containers import CS, ContainerConfig, ContainerError
from juggler.apps.containers_state import ContainersState
from juggler.common import published_ports as pp
from juggler.common.clock import FakeClock
from juggler.common.ranges import Ranges
from juggler.common.resources import Resources
from juggler.v1 import common_pb2 as pb

TOTAL = Ranges.parse("[31000-32000]")


def _core() -> ContainersState:
    ids = itertools.count(1)
    core = ContainersState(FakeClock(), lambda: hashlib.sha256(str(next(ids)).encode())
                           .hexdigest(), rng=random.Random(3))
    core.reconciling = False
    return core


def _config(*publish: str, cpus: float = 0.5) -> ContainerConfig:
    return ContainerConfig(image="busybox", cmd=["sleep", "300"], cpus=cpus,
                           network="bridge" if publish else "none",
                           ports=[b.record() for p in publish for b in pp.parse_publish(p)])


def _offer(agent: str, offer_id: str, cpus: float = 4, ports: Ranges = TOTAL) -> pb.Offer:
    return pb.Offer(id=offer_id, agent_id=agent, hostname=f"host-{agent}",
                    agent_address=f"{agent}:5051",
                    resources=Resources({"cpus": cpus, "mem": 4096}, ports=ports).to_proto())


def _launched(cmds: list[Command]) -> list[pb.TaskInfo]:
    return [t for c in cmds if isinstance(c, Launch) for t in c.tasks]


def _free(*agents: str) -> dict[str, tuple[str, Ranges, Ranges]]:
    return {a: (f"host-{a}", TOTAL, Ranges()) for a in agents}


BIND_FAILED = "Bind for 0.0.0.0:31003 failed: port is already allocated"


def test_racing_fixed_port_runs_the_one_left_over_fails_at_once_and_stays_stopped() -> None:
    core = _core()
    runs = [core.create(_config("31003:80"), f"r{i}")[0] for i in (1, 2, 3)]
    for r in runs:
        core.start(r.name)
    # Both agents offer 31003 at once: two runs take it, the third fails in
    # the same decision (what the offers just gave counts as allocated).
    cmds, _ = core.on_offers([_offer("a1", "o1"), _offer("a2", "o2")], _free("a1", "a2"))
    assert sorted(t.name for t in _launched(cmds)) == ["r1", "r2"]
    r3 = runs[2]
    assert r3.status == CS.EXITED and r3.desired == "stopped" and not r3.launched
    assert r3.error == ("failed to set up container networking: driver failed programming "
                        f"external connectivity on endpoint r3 ({r3.id}): {BIND_FAILED}")
    state = views.inspect(r3, "fw")["State"]
    # dockerd's for a failed first start: still created, exit code 128, the error.
    assert (state["Status"], state["Running"], state["ExitCode"]) == ("created", False, 128)
    assert views.status_text(r3, 0.0) == "Created"
    assert state["Error"].endswith(BIND_FAILED)
    # Offers with 31003 free again later: it does not start by itself.
    cmds, _ = core.on_offers([_offer("a1", "o3")], _free("a1"))
    assert _launched(cmds) == [] and r3.status == CS.EXITED
    # A new start of it is an ordinary start.
    core.start("r3")
    cmds, _ = core.on_offers([_offer("a1", "o4")], _free("a1"))
    assert [t.name for t in _launched(cmds)] == ["r3"]


def test_a_start_waits_while_an_agent_it_may_use_has_the_port_free() -> None:
    core = _core()
    c, _ = core.create(_config("31003:80"), "web")
    core.start("web")
    busy = {"a1": ("host-a1", TOTAL, Ranges.single(31003)), **_free("a2")}
    # a2 has 31003 free (offered elsewhere, or not offered yet): it waits.
    cmds, _ = core.on_offers([_offer("a1", "o1", ports=TOTAL - Ranges.single(31003))], busy)
    assert _launched(cmds) == [] and c.status == CS.STARTING
    # Not known (the master could not say): it waits too.
    core.on_offers([_offer("a1", "o2", cpus=0.1)], None)
    assert c.status == CS.STARTING
    # Once it ran on a2, only a2 counts.
    cmds, _ = core.on_offers([_offer("a2", "o3")], busy)
    [task] = _launched(cmds)
    core.on_updates([pb.TaskStatus(task_id=task.task_id, state=pb.TASK_RUNNING)])
    core.stop("web")
    core.on_updates([pb.TaskStatus(task_id=task.task_id, state=pb.TASK_KILLED)])
    core.start("web")
    elsewhere = {"a1": ("host-a1", TOTAL, Ranges.single(31003)), **_free("a2")}
    core.on_offers([_offer("a1", "o4", cpus=0.1)], elsewhere)
    assert c.status == CS.STARTING
    core.on_offers([_offer("a2", "o5", cpus=0.1)], {
        "a2": ("host-a2", TOTAL, Ranges.single(31003)),
        "a1": ("host-a1", TOTAL, Ranges.single(31003))})
    assert c.status == CS.EXITED and c.error.endswith(BIND_FAILED)


def test_a_cpu_shortage_still_waits() -> None:
    core = _core()
    c, _ = core.create(_config("31003:80", cpus=8), "big")
    core.start("big")
    cmds, _ = core.on_offers([_offer("a1", "o1")], _free("a1"))
    assert _launched(cmds) == [] and c.status == CS.STARTING and c.error == ""


def test_a_start_given_up_does_not_launch_later() -> None:
    core = _core()
    c, _ = core.create(_config(cpus=8), "big")
    core.start("big")
    core.fail_start("big", "container big did not start within 1 s")
    assert c.status == CS.EXITED and c.desired == "stopped"
    assert views.state(c) == "created"   # it never ran: Docker's failed start leaves it so
    assert c.error == "container big did not start within 1 s"
    cmds, _ = core.on_offers([_offer("a1", "o1", cpus=16)], None)
    assert _launched(cmds) == [] and c.status == CS.EXITED
    # A run launched already is not given up (it may be pulling its image).
    core.start("big")
    [task] = _launched(core.on_offers([_offer("a1", "o2", cpus=16)], None)[0])
    core.fail_start("big", "late")
    assert c.status == CS.STARTING and c.launched
    core.on_updates([pb.TaskStatus(task_id=task.task_id, state=pb.TASK_RUNNING)])
    assert c.status == CS.RUNNING and c.error == ""   # a start clears the last error


class _Service(ContainerRequests):
    """The real requests over the real core; the shell's launches are only
    recorded (no agent runs them)."""

    def __init__(self) -> None:
        self.containers = ContainersState(FakeClock(), lambda: "c" * 64)
        self.containers.reconciling = False
        self.config = SimpleNamespace(master="127.0.0.1:1")
        self.framework_id, self.acting = "fw", True
        self._lock, self._changes = asyncio.Lock(), asyncio.Event()

    async def _execute(self, cmds: list[Command]) -> None:
        self._changes.set()
        self._changes = asyncio.Event()


def test_a_start_that_timed_out_was_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_master(*_: Any) -> Any:
        raise cluster.ClusterUnavailable("no master")

    monkeypatch.setattr(cluster, "agents", no_master)

    async def go() -> None:
        service = _Service()
        c = await service.container_create(_config(cpus=8), "late")
        with pytest.raises(ContainerError) as e:
            await service.container_start("late", timeout=0.05)
        assert e.value.message.startswith("container late did not start within 0.05 s (no "
                                          "agent offered cpus 8, mem 128 MiB")
        assert e.value.message.endswith("it was not started: start it again")
        assert c.status == CS.EXITED and c.desired == "stopped" and c.error == e.value.message
        cmds, _ = service.containers.on_offers([_offer("a1", "o1", cpus=16)])
        assert _launched(cmds) == []

    asyncio.run(go())


def _ran(core: ContainersState, name: str) -> tuple[Any, str]:
    c, _ = core.create(_config(), name)
    core.start(name)
    [task] = _launched(core.on_offers([_offer("a1", f"o-{name}")])[0])
    core.on_updates([pb.TaskStatus(task_id=task.task_id, state=pb.TASK_RUNNING, pid=9)])
    return c, task.task_id


WATCH = ("listening on agent port 31050/tcp it was not given (its ports: []); killed by the "
         "agent's port watch")


@pytest.mark.parametrize(("status", "error", "code"), [
    (pb.TaskStatus(state=pb.TASK_FAILED, reason=pb.REASON_CONTAINER_LIMITATION,
                   message=WATCH, exit_code=137), WATCH, 137),
    (pb.TaskStatus(state=pb.TASK_FAILED, reason=pb.REASON_EXECUTOR_TERMINATED,
                   message="the executor exited"), "the executor exited", 125),
    (pb.TaskStatus(state=pb.TASK_FAILED, reason=pb.REASON_COMMAND_EXITED, exit_code=3,
                   message="exited with 3"), "", 3),
    (pb.TaskStatus(state=pb.TASK_FAILED, reason=pb.REASON_CONTAINER_LIMITATION_MEMORY,
                   exit_code=137, message="out of memory"), "", 137),
    (pb.TaskStatus(state=pb.TASK_KILLED, reason=pb.REASON_TASK_KILLED, exit_code=137,
                   message="killed"), "", 137),
    (pb.TaskStatus(state=pb.TASK_UNKNOWN, reason=pb.REASON_RECONCILIATION),
     "its task was lost: the master does not know it", 0),
])
def test_state_error_holds_why_the_platform_ended_a_run(status: pb.TaskStatus, error: str,
                                                        code: int) -> None:
    core = _core()
    c, task_id = _ran(core, "web")
    status.task_id = task_id
    core.on_updates([status])
    state = views.inspect(c, "fw")["State"]
    assert (state["Status"], state["ExitCode"], state["Error"]) == ("exited", code, error)
    assert views.status_text(c, c.finished_at).startswith(f"Exited ({code})")
    # The next start clears it, as Docker's.
    core.start("web")
    [task] = _launched(core.on_offers([_offer("a1", "o-again")])[0])
    core.on_updates([pb.TaskStatus(task_id=task.task_id, state=pb.TASK_RUNNING)])
    assert views.inspect(c, "fw")["State"]["Error"] == ""


def test_a_start_refused_at_once_keeps_dockerds_error_and_exit_code() -> None:
    """CI caught `docker inspect -f '{{.State.Error}}'` empty after a start
    refused before any run (the port taken on every agent at the start call):
    dockerd keeps the error and exit code 128 on the container."""
    core = _core()
    c, _ = core.create(_config("31003:80"), "late")
    why = pp.unavailable(Ranges.single(31003), [("host-a", TOTAL, Ranges.single(31003))])
    assert why
    cmds = core.refuse_start("late", why)
    assert c.status == CS.CREATED and not _launched(cmds)
    inspected = views.inspect(c, "fw")["State"]
    assert inspected["Error"] == why and inspected["ExitCode"] == 128
    assert any(type(cmd).__name__ == "Persist" for cmd in cmds)  # kept across a restart
