"""The master's book-keeping (MasterState) with the real allocator and a fake clock.

Each test plays a framework and agents: it makes calls, then checks the commands the
master hands its shell (events to frameworks, messages to agents) and the state an
operator would see. A refused call must leave everything as it was.
"""

from __future__ import annotations

import itertools
import math

import pytest

from juggler.common.clock import FakeClock
from juggler.common.resources import Resources
from juggler.master.allocator import Allocator, AllocatorError
from juggler.master.commands import (
    Allocate,
    CallError,
    CloseStream,
    Code,
    Log,
    Persist,
    ToAgent,
    ToFramework,
)
from juggler.master.state import MasterState
from juggler.v1 import common_pb2, operator_pb2, scheduler_pb2

S = common_pb2.TaskState
F = operator_pb2.FrameworkState
A = operator_pb2.AgentState
AGENT = Resources({"cpus": 4, "mem": 4096})


# -- helpers -------------------------------------------------------------------------


class World:
    """A master plus the ids a test needs; helpers read like a framework's calls."""

    def __init__(self, new_id=None) -> None:  # type: ignore[no-untyped-def]
        """`new_id`: the id source (default: one counting id0000001, id0000002, …, so
        that every run, and every Hypothesis replay, sees the same ids)."""
        self.clock = FakeClock()
        counter = itertools.count(1)
        self.state = MasterState(self.clock, Allocator(self.clock), address="master:5050",
                                 new_id=new_id or (lambda: f"id{next(counter):07d}"))

    def agent(self, name: str = "a1", total: Resources = AGENT) -> str:
        info = common_pb2.AgentInfo(hostname=name, resources=total.to_proto(),
                                    address=f"{name}:5051")
        agent_id, commands = self.state.register_agent(info)
        assert any(isinstance(c, ToAgent) and c.message.HasField("registered") for c in commands)
        return agent_id

    def framework(self, name: str = "fw", failover_timeout: float = 0.0,
                  roles: tuple[str, ...] = ()) -> tuple[str, str]:
        fid, sid, _ = self.state.subscribe(common_pb2.FrameworkInfo(
            name=name, failover_timeout=failover_timeout, roles=roles))
        return fid, sid

    def offers(self) -> dict[str, list[common_pb2.Offer]]:
        """One allocation cycle: the offers each framework receives."""
        out: dict[str, list[common_pb2.Offer]] = {}
        for c in self.state.allocate():
            assert isinstance(c, ToFramework) and c.event.HasField("offers")
            out.setdefault(c.framework_id, []).extend(c.event.offers.offers)
        self.state.validate_state()
        return out

    def one_offer(self, fid: str) -> common_pb2.Offer:
        offers = self.offers()[fid]
        assert len(offers) == 1
        return offers[0]

    def launch(self, fid: str, sid: str, offer: common_pb2.Offer, *tasks: common_pb2.TaskInfo,
               refuse_seconds: float | None = 0.0) -> list:
        filters = None if refuse_seconds is None else common_pb2.Filters(
            refuse_seconds=refuse_seconds)
        commands = self.state.accept(fid, sid, [offer.id], [launch_op(*tasks)], filters)
        self.state.validate_state()
        return commands

    def update(self, agent_id: str, fid: str, task_id: str, state: int, uuid: bytes) -> list:
        commands = self.state.status_update(agent_id, common_pb2.TaskStatus(
            task_id=task_id, framework_id=fid, agent_id=agent_id, state=state, uuid=uuid,
            source=common_pb2.SOURCE_EXECUTOR))
        self.state.validate_state()
        return commands

    def snapshot(self) -> tuple:
        """Everything a refused call must leave as it was."""
        st = self.state
        return (
            sorted(st.offers),
            sorted((k, t.state, t.latest_uuid, t.resources_recovered) for k, t in st.tasks.items()),
            len(st.completed_tasks),
            sorted((fid, f.stream_id, f.connected, sorted(f.offers), sorted(f.tasks))
                   for fid, f in st.frameworks.items()),
            sorted((aid, a.state, self._pool(aid)) for aid, a in st.agents.items()),
        )

    def _pool(self, agent_id: str) -> tuple:
        """What the allocator has of the agent (nothing once it left the pool)."""
        alloc = self.state.allocator
        try:
            return (str(alloc.available(agent_id)),
                    sorted((k, str(v)) for k, v in alloc.allocated(agent_id).items()))
        except AllocatorError:
            return ()


def task(task_id: str, cpus: float = 1, mem: float = 128, argv: tuple[str, ...] = ("true",),
         **fields) -> common_pb2.TaskInfo:
    resources = [common_pb2.Resource(name="cpus", scalar=cpus),
                 common_pb2.Resource(name="mem", scalar=mem)]
    return common_pb2.TaskInfo(name=task_id, task_id=task_id, resources=resources,
                               command=common_pb2.CommandInfo(argv=argv), **fields)


def launch_op(*tasks: common_pb2.TaskInfo) -> scheduler_pb2.Operation:
    return scheduler_pb2.Operation(launch=scheduler_pb2.Operation.Launch(tasks=tasks))


def events(commands: list, fid: str) -> list[scheduler_pb2.Event]:
    return [c.event for c in commands if isinstance(c, ToFramework) and c.framework_id == fid]


def updates(commands: list, fid: str) -> list[common_pb2.TaskStatus]:
    return [e.update.status for e in events(commands, fid) if e.HasField("update")]


def to_agent(commands: list, agent_id: str, kind: str) -> list:
    return [getattr(c.message, kind) for c in commands
            if isinstance(c, ToAgent) and c.agent_id == agent_id and c.message.HasField(kind)]


def offered(offers: list[common_pb2.Offer]) -> Resources:
    total = Resources()
    for o in offers:
        total = total + Resources.from_proto(o.resources)
    return total


@pytest.fixture
def w() -> World:
    return World()


def refused(w: World, code: Code, call, *args, match: str = "") -> CallError:
    """Make a call that must fail with `code` and change nothing."""
    before = w.snapshot()
    with pytest.raises(CallError) as info:
        call(*args)
    assert info.value.code == code, info.value.message
    if match:
        assert match in info.value.message, info.value.message
    assert w.snapshot() == before
    w.state.validate_state()
    return info.value


# -- subscribing ---------------------------------------------------------------------


def test_subscribe_assigns_ids_and_sends_subscribed_first(w):
    fid, sid, commands = w.state.subscribe(common_pb2.FrameworkInfo(name="web"))
    assert fid and sid and fid != sid
    first = events(commands, fid)[0]
    assert first.WhichOneof("event") == "subscribed"
    assert first.subscribed.framework_id == fid
    assert first.subscribed.stream_id == sid
    assert first.subscribed.master_address == "master:5050"
    assert first.subscribed.heartbeat_interval_seconds > 0
    saved = [c for c in commands if isinstance(c, Persist)]
    assert saved and saved[0].key == f"frameworks/{fid}"
    assert list(common_pb2.FrameworkInfo.FromString(saved[0].value).roles) == ["*"]
    other, other_sid = w.framework("other")
    assert len({fid, other}) == 2 and len({sid, other_sid}) == 2
    w.state.validate_state()


@pytest.mark.parametrize(
    "info",
    [common_pb2.FrameworkInfo(id="bad id!"),
     common_pb2.FrameworkInfo(failover_timeout=-1),
     common_pb2.FrameworkInfo(failover_timeout=math.nan),
     common_pb2.FrameworkInfo(roles=["web", "web"]),
     common_pb2.FrameworkInfo(roles=["../etc"])],
)
def test_subscribe_rejects_malformed_framework_info(w, info):
    refused(w, Code.INVALID_ARGUMENT, w.state.subscribe, info)
    assert not w.state.frameworks


def test_resubscribing_closes_the_old_stream_and_invalidates_its_id(w):
    w.agent()
    fid, old_sid = w.framework(failover_timeout=60)
    fid2, new_sid, commands = w.state.subscribe(common_pb2.FrameworkInfo(
        id=fid, failover_timeout=60))
    assert fid2 == fid and new_sid != old_sid
    closes = [c for c in commands if isinstance(c, CloseStream)]
    assert [(c.framework_id, c.stream_id) for c in closes] == [(fid, old_sid)]
    assert events(commands, fid)[0].subscribed.stream_id == new_sid
    for call, args in [(w.state.revive, ([],)), (w.state.reconcile, ([],)),
                       (w.state.kill, ("t",)), (w.state.teardown, ())]:
        refused(w, Code.FAILED_PRECONDITION, call, fid, old_sid, *args)
    # The old stream ending later must not disconnect the new subscription.
    assert w.state.framework_disconnected(fid, old_sid) == []
    assert w.state.frameworks[fid].connected
    assert w.offers()[fid]  # the new stream works
    w.state.reconcile(fid, new_sid, [])


def test_a_failed_over_framework_gets_the_resources_its_old_instance_was_offered(w):
    w.agent()
    fid, _ = w.framework(failover_timeout=60)
    assert w.offers()[fid]  # the old instance holds the only agent's offer, then dies
    w.state.subscribe(common_pb2.FrameworkInfo(id=fid, failover_timeout=60))
    w.state.validate_state()
    # The new instance never saw that offer id; it must not stay locked away.
    assert offered(w.offers().get(fid, [])) == AGENT


def test_calls_for_an_unknown_framework_are_not_found(w):
    for call, args in [(w.state.revive, ([],)), (w.state.decline, (["o"],)),
                       (w.state.accept, (["o"], [])), (w.state.kill, ("t",)),
                       (w.state.acknowledge, ("", "t", b"u")), (w.state.reconcile, ([],)),
                       (w.state.teardown, ())]:
        refused(w, Code.NOT_FOUND, call, "no-such-framework", "stream", *args)
    refused(w, Code.INVALID_ARGUMENT, w.state.revive, "", "stream", [])


def test_a_torn_down_framework_cannot_come_back_under_its_id(w):
    fid, sid = w.framework()
    w.state.teardown(fid, sid)
    refused(w, Code.FAILED_PRECONDITION, w.state.subscribe, common_pb2.FrameworkInfo(id=fid))


# -- offers --------------------------------------------------------------------------


def test_allocate_sends_offers_describing_the_agent(w):
    aid = w.agent("host1")
    fid, _ = w.framework()
    offer = w.one_offer(fid)
    assert offer.framework_id == fid and offer.agent_id == aid
    assert offer.hostname == "host1" and offer.agent_address == "host1:5051"
    assert offer.role == "*"
    assert Resources.from_proto(offer.resources) == AGENT
    assert w.offers() == {}  # everything is offered already


def test_two_frameworks_two_agents_each_framework_gets_one_agent(w):
    agents = {w.agent("a1"), w.agent("a2")}
    f1, _ = w.framework("one")
    f2, _ = w.framework("two")
    out = w.offers()
    assert set(out) == {f1, f2}
    assert [len(out[f1]), len(out[f2])] == [1, 1]
    assert {out[f1][0].agent_id, out[f2][0].agent_id} == agents


def test_decline_with_refuse_seconds_filters_the_agent_until_the_time_passes(w):
    w.agent()
    fid, sid = w.framework()
    offer = w.one_offer(fid)
    assert w.state.decline(fid, sid, [offer.id], common_pb2.Filters(refuse_seconds=30)) == [
        Allocate()]
    assert offer.id not in w.state.offers
    refused(w, Code.NOT_FOUND, w.state.decline, fid, sid, [offer.id])
    w.clock.advance(29.9)
    assert w.offers() == {}
    w.clock.advance(0.1)
    assert offered(w.offers()[fid]) == AGENT


@pytest.mark.parametrize("seconds", [-1.0, math.nan, math.inf])
def test_decline_rejects_bad_refuse_seconds(w, seconds):
    w.agent()
    fid, sid = w.framework()
    offer = w.one_offer(fid)
    refused(w, Code.INVALID_ARGUMENT, w.state.decline, fid, sid, [offer.id],
            common_pb2.Filters(refuse_seconds=seconds))


# -- accept: validation --------------------------------------------------------------


@pytest.fixture
def offered_world(w):
    """One agent, one framework holding the agent's offer: (w, fid, sid, aid, offer)."""
    aid = w.agent()
    fid, sid = w.framework()
    return w, fid, sid, aid, w.one_offer(fid)


def refused_accept(w, fid, sid, offer_ids, *tasks, code=Code.INVALID_ARGUMENT, match=""):
    """An Accept that must fail: no task created, the offers still valid (snapshot)."""
    return refused(w, code, w.state.accept, fid, sid, offer_ids, [launch_op(*tasks)], None,
                   match=match)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (task("big", cpus=4.001), "the tasks need"),
        (task("big", mem=5000), "the tasks need"),
        (task("nan", cpus=math.nan), "not a finite number"),
        (task("inf", mem=math.inf), "not a finite number"),
        (task("neg", cpus=-1), "negative"),
        (common_pb2.TaskInfo(task_id="gpu", command=common_pb2.CommandInfo(argv=["x"]),
                             resources=[common_pb2.Resource(name="gpus", scalar=1)]),
         "unknown resource"),
        (common_pb2.TaskInfo(task_id="noname", command=common_pb2.CommandInfo(argv=["x"]),
                             resources=[common_pb2.Resource(scalar=1)]), "no name"),
        (task("zero", cpus=0, mem=0), "no cpus and no mem"),
        (task("bad id!"), "is not valid"),
        (task(""), "has no task_id"),
        (task("-dash"), "is not valid"),
        (task("x" * 201), "is not valid"),
        (task("empty", argv=()), "the command is empty"),
        (task("other-agent", agent_id="someone-else"), "is not the offers' agent"),
        (task("image", container=common_pb2.ContainerInfo(image="BusyBox")), "lowercase"),
        (task("image2", container=common_pb2.ContainerInfo(image="busybox", rootfs="/r")),
         "not both"),
        (task("grace", kill_policy=common_pb2.KillPolicy(grace_period_seconds=-1)),
         "grace_period_seconds"),
    ],
)
def test_accept_refuses_a_bad_task_and_changes_nothing(offered_world, bad, match):
    w, fid, sid, _, offer = offered_world
    refused_accept(w, fid, sid, [offer.id], task("fine"), bad, match=match)
    assert offer.id in w.state.offers  # still valid: the framework may use it correctly
    w.launch(fid, sid, offer, task("fine"))


def test_accept_refuses_tasks_that_together_exceed_the_offer(offered_world):
    w, fid, sid, _, offer = offered_world
    refused_accept(w, fid, sid, [offer.id], task("a", cpus=2), task("b", cpus=2.5),
                   match="the tasks need cpus 4.5")


def test_accept_refuses_a_duplicate_task_id(offered_world):
    w, fid, sid, aid, offer = offered_world
    refused_accept(w, fid, sid, [offer.id], task("t1"), task("t1"), match="already used")
    w.launch(fid, sid, offer, task("t1"))
    w.update(aid, fid, "t1", S.TASK_RUNNING, b"u1")
    offer2 = w.one_offer(fid)
    refused_accept(w, fid, sid, [offer2.id], task("t1"), match="already used")


def test_accept_refuses_unknown_used_and_foreign_offers(offered_world):
    w, fid, sid, _, offer = offered_world
    refused_accept(w, fid, sid, ["no-such-offer"], task("t"), code=Code.NOT_FOUND)
    refused_accept(w, fid, sid, [], task("t"), match="no offer ids")
    refused_accept(w, fid, sid, [offer.id, offer.id], task("t"), match="twice")
    other, other_sid = w.framework("other")
    refused_accept(w, other, other_sid, [offer.id], task("t"), code=Code.PERMISSION_DENIED)
    w.launch(fid, sid, offer, task("t"))
    refused_accept(w, fid, sid, [offer.id], task("t2"), code=Code.NOT_FOUND,
                   match="already used")


def test_accept_refuses_offers_of_two_agents(w):
    w.agent("a1", Resources({"cpus": 1, "mem": 512}))
    w.agent("a2", Resources({"cpus": 1, "mem": 512}))
    fid, sid = w.framework()
    offers = w.offers()[fid]
    assert len(offers) == 2
    before = w.snapshot()
    with pytest.raises(CallError) as info:
        w.state.accept(fid, sid, [o.id for o in offers], [launch_op(task("t", cpus=2))])
    assert info.value.code == Code.INVALID_ARGUMENT and "one agent" in info.value.message
    assert w.snapshot() == before


def test_accept_with_a_stale_stream_is_refused(offered_world):
    w, fid, _, _, offer = offered_world
    refused_accept(w, fid, "old-stream", [offer.id], task("t"), code=Code.FAILED_PRECONDITION)


# -- accept: launching ---------------------------------------------------------------


def test_accept_runs_the_task_on_the_offer_s_agent(w):
    a1 = w.agent("a1")
    a2 = w.agent("a2")
    fid, sid = w.framework()
    offer = w.offers()[fid][0]
    target = offer.agent_id
    commands = w.launch(fid, sid, offer, task("web-1", cpus=1, mem=256,
                                              labels={"app": "web"}))
    runs = to_agent(commands, target, "run_task")
    assert len(runs) == 1 and commands[1:] == [Allocate()]
    assert to_agent(commands, ({a1, a2} - {target}).pop(), "run_task") == []
    run = runs[0]
    assert run.framework.id == fid
    assert run.task.task_id == "web-1" and run.task.agent_id == target
    assert run.task.labels["app"] == "web"
    assert {r.role for r in run.task.resources} == {"*"}
    assert Resources.from_proto(run.task.resources) == Resources({"cpus": 1, "mem": 256})
    entry = w.state.tasks[(fid, "web-1")]
    assert entry.state == S.TASK_STAGING
    assert [h.state for h in entry.history] == [S.TASK_STAGING]
    assert offer.id not in w.state.offers


def test_unused_resources_return_to_the_pool_after_the_filter(offered_world):
    w, fid, sid, _, offer = offered_world
    w.launch(fid, sid, offer, task("t", cpus=1, mem=1024), refuse_seconds=10)
    w.clock.advance(9)
    assert w.offers() == {}
    w.clock.advance(1)
    assert offered(w.offers()[fid]) == Resources({"cpus": 3, "mem": 3072})


def test_unused_resources_are_offered_again_at_once_with_refuse_seconds_zero(offered_world):
    w, fid, sid, _, offer = offered_world
    w.launch(fid, sid, offer, task("a", cpus=1, mem=1024), task("b", cpus=2, mem=1024),
             refuse_seconds=0)
    assert offered(w.offers()[fid]) == Resources({"cpus": 1, "mem": 2048})


def test_accept_with_no_operations_declines_the_offer(offered_world):
    w, fid, sid, _, offer = offered_world
    assert w.state.accept(fid, sid, [offer.id], [], common_pb2.Filters(refuse_seconds=0)) == [
        Allocate()]
    assert not w.state.tasks
    assert offered(w.offers()[fid]) == AGENT


# -- status updates ------------------------------------------------------------------


@pytest.fixture
def running(offered_world):
    """A task "t" launched on the only agent: (w, fid, sid, aid)."""
    w, fid, sid, aid, offer = offered_world
    w.launch(fid, sid, offer, task("t", cpus=1, mem=1024, kill_policy=common_pb2.KillPolicy(
        grace_period_seconds=7)), refuse_seconds=1000)
    return w, fid, sid, aid


def test_updates_are_relayed_in_order(running):
    w, fid, _, aid = running
    relayed = []
    for state, uuid in [(S.TASK_STARTING, b"u0"), (S.TASK_RUNNING, b"u1"),
                        (S.TASK_FINISHED, b"u2")]:
        commands = w.update(aid, fid, "t", state, uuid)
        relayed += updates(commands, fid)
        assert w.state.tasks[(fid, "t")].state == state
    assert [(s.state, s.uuid) for s in relayed] == [
        (S.TASK_STARTING, b"u0"), (S.TASK_RUNNING, b"u1"), (S.TASK_FINISHED, b"u2")]
    assert [h.state for h in w.state.tasks[(fid, "t")].history] == [
        S.TASK_STAGING, S.TASK_STARTING, S.TASK_RUNNING, S.TASK_FINISHED]


def test_a_retried_update_is_forwarded_again_but_not_applied_twice(running):
    w, fid, _, aid = running
    w.update(aid, fid, "t", S.TASK_RUNNING, b"u1")
    history = len(w.state.tasks[(fid, "t")].history)
    again = w.update(aid, fid, "t", S.TASK_RUNNING, b"u1")
    assert [(s.state, s.uuid) for s in updates(again, fid)] == [(S.TASK_RUNNING, b"u1")]
    assert len(w.state.tasks[(fid, "t")].history) == history
    w.update(aid, fid, "t", S.TASK_FINISHED, b"u2")
    again = w.update(aid, fid, "t", S.TASK_FINISHED, b"u2")  # a retried terminal update
    assert [s.uuid for s in updates(again, fid)] == [b"u2"]
    assert len(w.state.tasks[(fid, "t")].history) == history + 1


def test_an_illegal_update_is_acknowledged_logged_with_the_history_and_not_applied(running):
    """An agent's update is an observed fact the master cannot refuse (the agent
    would retry it forever): it is acknowledged and logged, nothing changes."""
    w, fid, _, aid = running
    w.update(aid, fid, "t", S.TASK_RUNNING, b"u1")
    w.update(aid, fid, "t", S.TASK_FINISHED, b"u2")
    before = w.snapshot()
    commands = w.state.status_update(aid, common_pb2.TaskStatus(
        task_id="t", framework_id=fid, state=S.TASK_RUNNING, uuid=b"u3"))
    assert [a.uuid for a in to_agent(commands, aid, "acknowledgement")] == [b"u3"]
    assert events(commands, fid) == []
    (warning,) = [c for c in commands if isinstance(c, Log)]
    error = dict(warning.fields)["error"]
    assert "TASK_FINISHED → TASK_RUNNING" in error
    assert "history: TASK_STAGING → TASK_RUNNING → TASK_FINISHED" in error
    assert w.snapshot() == before
    w.state.validate_state()


def test_acknowledgements_in_one_call_are_applied_together_or_not_at_all(running):
    w, fid, sid, aid = running
    w.update(aid, fid, "t", S.TASK_RUNNING, b"u1")
    w.update(aid, fid, "t", S.TASK_FINISHED, b"u2")
    # One bad acknowledgement in the batch: the call is refused and the good
    # ones are not applied either (refused() checks nothing changed).
    refused(w, Code.INVALID_ARGUMENT, w.state.acknowledge_many, fid, sid,
            [(aid, "t", b"u1"), ("other-agent", "t", b"u2")], match="runs on agent")
    refused(w, Code.INVALID_ARGUMENT, w.state.acknowledge_many, fid, sid,
            [(aid, "t", b"u1"), (aid, "t", b"")], match="uuid is required")
    refused(w, Code.NOT_FOUND, w.state.acknowledge_many, fid, sid,
            [(aid, "t", b"u1"), ("ghost", "nope", b"x")], match="not known")
    # All good, the terminal one acknowledged twice in the same call: applied
    # in order, the task completed once, every ack passed to the agent.
    commands = w.state.acknowledge_many(fid, sid, [(aid, "t", b"u1"), ("", "t", b"u2"),
                                                   (aid, "t", b"u2")])
    assert [a.uuid for a in to_agent(commands, aid, "acknowledgement")] == [b"u1", b"u2", b"u2"]
    assert (fid, "t") not in w.state.tasks
    assert [t.info.task_id for t in w.state.completed_tasks] == ["t"]
    w.state.validate_state()


def test_an_update_from_an_unknown_agent_is_refused(running):
    w, fid, _, _ = running
    refused(w, Code.FAILED_PRECONDITION, w.state.status_update, "ghost",
            common_pb2.TaskStatus(task_id="t", framework_id=fid, state=S.TASK_RUNNING, uuid=b"u"))


def test_acknowledging_the_terminal_update_completes_the_task(running):
    w, fid, sid, aid = running
    w.update(aid, fid, "t", S.TASK_RUNNING, b"u1")
    acks = to_agent(w.state.acknowledge(fid, sid, aid, "t", b"u1"), aid, "acknowledgement")
    assert [(a.framework_id, a.task_id, a.uuid) for a in acks] == [(fid, "t", b"u1")]
    assert (fid, "t") in w.state.tasks
    w.update(aid, fid, "t", S.TASK_FINISHED, b"u2")
    assert (fid, "t") in w.state.tasks  # until the framework has seen it
    acks = to_agent(w.state.acknowledge(fid, sid, "", "t", b"u2"), aid, "acknowledgement")
    assert [a.uuid for a in acks] == [b"u2"]
    assert (fid, "t") not in w.state.tasks
    assert "t" not in w.state.frameworks[fid].tasks
    assert [t.info.task_id for t in w.state.completed_tasks] == ["t"]
    assert w.state.completed_tasks[-1].state == S.TASK_FINISHED
    w.state.validate_state()
    # A late retry of the terminal update is acknowledged by the master itself.
    late = w.update(aid, fid, "t", S.TASK_FINISHED, b"u2")
    assert updates(late, fid) == []
    assert [a.uuid for a in to_agent(late, aid, "acknowledgement")] == [b"u2"]
    # The task id is free again.
    w.clock.advance(1000)
    w.launch(fid, sid, w.one_offer(fid), task("t"))


def test_a_terminal_task_s_resources_are_offered_again(running):
    w, fid, _, aid = running
    w.clock.advance(1000)  # past the accept's filter
    assert offered(w.offers()[fid]) == Resources({"cpus": 3, "mem": 3072})
    w.update(aid, fid, "t", S.TASK_FAILED, b"u1")
    assert offered(w.offers()[fid]) == Resources({"cpus": 1, "mem": 1024})


def test_acknowledge_needs_a_uuid_and_a_known_task(running):
    w, fid, sid, aid = running
    w.update(aid, fid, "t", S.TASK_RUNNING, b"u1")
    refused(w, Code.INVALID_ARGUMENT, w.state.acknowledge, fid, sid, aid, "t", b"",
            match="uuid is required")
    refused(w, Code.NOT_FOUND, w.state.acknowledge, fid, sid, "no-such-agent", "nope", b"u1")
    refused(w, Code.INVALID_ARGUMENT, w.state.acknowledge, fid, sid, "other-agent", "t", b"u1")


def test_an_ack_for_a_task_the_master_does_not_track_goes_to_its_agent(running):
    """After a failover the new leader may not know a task that ended meanwhile; the
    agent still retries its updates, so the framework's ack must reach the agent."""
    w, fid, sid, aid = running
    acks = to_agent(w.state.acknowledge(fid, sid, aid, "ended-earlier", b"u9"), aid,
                    "acknowledgement")
    assert [(a.task_id, a.uuid) for a in acks] == [("ended-earlier", b"u9")]


# -- kill ----------------------------------------------------------------------------


def test_kill_sends_the_task_s_kill_policy_or_the_override(running):
    w, fid, sid, aid = running
    kills = to_agent(w.state.kill(fid, sid, "t"), aid, "kill_task")
    assert [(k.framework_id, k.task_id) for k in kills] == [(fid, "t")]
    assert kills[0].kill_policy.grace_period_seconds == 7
    override = common_pb2.KillPolicy(grace_period_seconds=0)
    kills = to_agent(w.state.kill(fid, sid, "t", override), aid, "kill_task")
    assert kills[0].kill_policy.HasField("grace_period_seconds")
    assert kills[0].kill_policy.grace_period_seconds == 0
    # An override without a grace period keeps the task's own policy.
    kills = to_agent(w.state.kill(fid, sid, "t", common_pb2.KillPolicy()), aid, "kill_task")
    assert kills[0].kill_policy.grace_period_seconds == 7
    assert w.state.tasks[(fid, "t")].state == S.TASK_STAGING  # the agent reports the kill


def test_kill_of_an_unknown_task_is_not_found(running):
    w, fid, sid, _ = running
    refused(w, Code.NOT_FOUND, w.state.kill, fid, sid, "nope")


def test_kill_of_a_finished_task_sends_nothing(running):
    w, fid, sid, aid = running
    w.update(aid, fid, "t", S.TASK_FINISHED, b"u1")
    assert w.state.kill(fid, sid, "t") == []


# -- reconcile -----------------------------------------------------------------------


def test_implicit_reconciliation_returns_every_task_s_latest_state_without_uuid(w):
    aid = w.agent()
    fid, sid = w.framework()
    w.launch(fid, sid, w.one_offer(fid), task("a"), task("b"), refuse_seconds=0)
    w.update(aid, fid, "a", S.TASK_RUNNING, b"ua")
    answers = updates(w.state.reconcile(fid, sid, []), fid)
    assert [(s.task_id, s.state) for s in answers] == [("a", S.TASK_RUNNING),
                                                       ("b", S.TASK_STAGING)]
    for s in answers:
        assert s.uuid == b""  # never to be acknowledged
        assert s.reason == common_pb2.REASON_RECONCILIATION
        assert s.source == common_pb2.SOURCE_MASTER
        assert s.framework_id == fid and s.agent_id == aid
    assert w.state.tasks[(fid, "a")].latest_uuid == b"ua"  # the stored update is untouched


def test_explicit_reconciliation_answers_unknown_tasks_with_task_unknown(running):
    w, fid, sid, _ = running
    asked = [scheduler_pb2.ReconcileRequest.Task(task_id="t"),
             scheduler_pb2.ReconcileRequest.Task(task_id="ghost", agent_id="nowhere"),
             scheduler_pb2.ReconcileRequest.Task(task_id="ghost2")]
    answers = updates(w.state.reconcile(fid, sid, asked), fid)
    assert [(s.task_id, s.state) for s in answers] == [("t", S.TASK_STAGING),
                                                       ("ghost", S.TASK_UNKNOWN),
                                                       ("ghost2", S.TASK_UNKNOWN)]
    assert answers[1].agent_id == "nowhere" and answers[1].uuid == b""


@pytest.mark.parametrize("aware", [True, False])
@pytest.mark.parametrize("agent, expected", [
    ("registered", S.TASK_GONE),       # it re-registered without it: it does not run
    ("unreachable", S.TASK_UNREACHABLE),
    ("gone", S.TASK_GONE_BY_OPERATOR),   # gone for good, as Mesos's marked-gone agents
])
def test_a_task_the_master_does_not_hold_is_answered_by_what_it_knows_of_its_agent(
        w, agent, expected, aware):
    """Mesos's table (Master::_reconcileTasks): a framework naming the agent
    of a task the master does not hold hears a terminal state once the master
    knows that agent runs no such task (TASK_LOST when not partition-aware)."""
    capabilities = [common_pb2.FrameworkInfo.PARTITION_AWARE] if aware else []
    fid, sid, _ = w.state.subscribe(common_pb2.FrameworkInfo(name="fw",
                                                             capabilities=capabilities))
    aid = w.agent()
    if agent in ("unreachable", "gone"):
        w.clock.advance(15 * 5 + 1)
        w.state.tick()
        assert w.state.agents[aid].state == A.AGENT_UNREACHABLE
    if agent == "gone":
        w.clock.advance(7 * 86400 + 1)
        w.state.tick()
        assert aid in w.state.agents.gone
    asked = [scheduler_pb2.ReconcileRequest.Task(task_id="ghost", agent_id=aid)]
    answers = updates(w.state.reconcile(fid, sid, asked), fid)
    assert [(s.task_id, s.state) for s in answers] == [
        ("ghost", expected if aware else S.TASK_LOST)]
    assert answers[0].reason == common_pb2.REASON_RECONCILIATION and answers[0].uuid == b""


@pytest.mark.parametrize("aware", [True, False])
def test_a_task_of_an_agent_gone_for_good_is_answered_gone_by_operator(w, aware):
    """Its record says TASK_GONE (REASON_AGENT_REMOVED); the answer must not
    read as "its agent is back without it" (TASK_GONE), and a framework that
    is not partition-aware hears TASK_LOST, as it was told."""
    capabilities = [common_pb2.FrameworkInfo.PARTITION_AWARE] if aware else []
    fid, sid, _ = w.state.subscribe(common_pb2.FrameworkInfo(name="fw",
                                                             capabilities=capabilities))
    aid = w.agent()
    w.launch(fid, sid, w.one_offer(fid), task("t"))
    w.update(aid, fid, "t", S.TASK_RUNNING, b"u1")
    w.clock.advance(15 * 5 + 1)
    w.state.tick()
    w.clock.advance(7 * 86400 + 1)
    w.state.tick()
    assert aid in w.state.agents.gone and (fid, "t") not in w.state.tasks
    asked = [scheduler_pb2.ReconcileRequest.Task(task_id="t", agent_id=aid)]
    assert [s.state for s in updates(w.state.reconcile(fid, sid, asked), fid)] == [
        S.TASK_GONE_BY_OPERATOR if aware else S.TASK_LOST]


def test_a_completed_task_is_answered_with_how_it_ended(running):
    """Not TASK_GONE from the table above: the master still has its record."""
    w, fid, sid, aid = running
    w.update(aid, fid, "t", S.TASK_FINISHED, b"u1")
    w.state.acknowledge(fid, sid, aid, "t", b"u1")
    assert (fid, "t") not in w.state.tasks  # completed
    asked = [scheduler_pb2.ReconcileRequest.Task(task_id="t", agent_id=aid)]
    assert [(s.task_id, s.state) for s in updates(w.state.reconcile(fid, sid, asked), fid)] == [
        ("t", S.TASK_FINISHED)]


# -- frameworks going away -----------------------------------------------------------


def kills_of(commands: list, aid: str) -> list[str]:
    return sorted(k.task_id for k in to_agent(commands, aid, "kill_task"))


def test_disconnect_without_failover_timeout_removes_the_framework_and_kills_its_tasks(w):
    aid = w.agent()
    fid, sid = w.framework(failover_timeout=0)
    w.launch(fid, sid, w.one_offer(fid), task("a"), task("b"), refuse_seconds=0)
    w.update(aid, fid, "b", S.TASK_FINISHED, b"ub")
    assert w.offers()[fid]  # an outstanding offer, too
    commands = w.state.framework_disconnected(fid, sid)
    w.state.validate_state()
    assert kills_of(commands, aid) == ["a"]  # b is finished already
    # b's last update will never be acknowledged by the framework: the master does.
    assert [a.uuid for a in to_agent(commands, aid, "acknowledgement")] == [b"ub"]
    assert Persist(f"frameworks/{fid}", None) in commands
    assert fid not in w.state.frameworks and not w.state.offers
    assert w.state.torn_down[fid].state == F.FRAMEWORK_TORN_DOWN
    # a still runs until its agent says it ended: its resources stay taken.
    assert list(w.state.tasks) == [(fid, "a")]
    assert w.state.allocator.available(aid) == AGENT - Resources({"cpus": 1, "mem": 128})
    refused(w, Code.NOT_FOUND, w.state.reconcile, fid, sid, [])
    commands = w.update(aid, fid, "a", S.TASK_KILLED, b"ua")
    assert [a.uuid for a in to_agent(commands, aid, "acknowledgement")] == [b"ua"]
    assert not w.state.tasks and w.state.completed_tasks[-1].state == S.TASK_KILLED
    assert w.state.allocator.available(aid) == AGENT
    assert not w.state.allocator.has_framework(fid)


def test_a_disconnected_framework_is_kept_until_its_failover_timeout(w):
    aid = w.agent()
    fid, sid = w.framework(failover_timeout=60)
    w.launch(fid, sid, w.one_offer(fid), task("a"), refuse_seconds=0)
    w.offers()
    assert w.state.framework_disconnected(fid, sid) == [Allocate()]
    assert not w.state.offers  # its offers are taken back at once
    assert w.offers() == {}  # and it gets none while away
    w.clock.advance(59.9)
    assert w.state.tick() == []
    assert (fid, "a") in w.state.tasks
    w.clock.advance(0.1)
    commands = w.state.tick()
    w.state.validate_state()
    assert kills_of(commands, aid) == ["a"]
    assert fid not in w.state.frameworks
    assert w.state.tasks[(fid, "a")].state == S.TASK_STAGING  # until its agent says so
    assert w.state.kill_wanted(w.state.tasks[(fid, "a")]) is not None
    assert w.state.allocator.available(aid) == AGENT - Resources({"cpus": 1, "mem": 128})
    assert w.state.tick() == []
    w.update(aid, fid, "a", S.TASK_KILLED, b"ua")
    assert w.state.allocator.available(aid) == AGENT


def test_resubscribing_within_the_failover_timeout_keeps_tasks_and_redelivers_updates(w):
    aid = w.agent()
    fid, sid = w.framework(failover_timeout=60)
    w.launch(fid, sid, w.one_offer(fid), task("a"), task("b"), task("c"), refuse_seconds=0)
    w.update(aid, fid, "a", S.TASK_RUNNING, b"a1")
    w.update(aid, fid, "a", S.TASK_RUNNING, b"a2")  # a health update, say
    w.update(aid, fid, "b", S.TASK_RUNNING, b"b1")
    w.state.acknowledge(fid, sid, aid, "b", b"b1")
    w.state.framework_disconnected(fid, sid)
    w.clock.advance(30)
    _, new_sid, commands = w.state.subscribe(common_pb2.FrameworkInfo(id=fid,
                                                                      failover_timeout=60))
    w.state.validate_state()
    assert not [c for c in commands if isinstance(c, CloseStream)]  # the old one is gone
    evs = events(commands, fid)
    assert evs[0].HasField("subscribed")
    # Every task's latest update that carries a uuid: b's was acknowledged already, but
    # the master cannot know whether the agent got that ack, so it may come again.
    assert [(s.task_id, s.uuid) for s in updates(commands, fid)] == [("a", b"a2"),
                                                                    ("b", b"b1")]
    w.clock.advance(31)  # past the first disconnection's timeout
    assert w.state.tick() == []
    assert {k[1] for k in w.state.tasks} == {"a", "b", "c"}
    assert w.offers()[fid]
    w.state.kill(fid, new_sid, "a")


def test_teardown_kills_tasks_rescinds_offers_and_closes_the_stream(w):
    aid = w.agent()
    fid, sid = w.framework(failover_timeout=3600)
    w.launch(fid, sid, w.one_offer(fid), task("a"), refuse_seconds=0)
    w.offers()
    commands = w.state.teardown(fid, sid)
    w.state.validate_state()
    assert kills_of(commands, aid) == ["a"]
    closes = [c for c in commands if isinstance(c, CloseStream)]
    assert [(c.framework_id, c.stream_id) for c in closes] == [(fid, sid)]
    assert Persist(f"torn_down/{fid}", w.state.torn_down[fid].info.SerializeToString()) \
        in commands
    assert fid not in w.state.frameworks and not w.state.offers
    refused(w, Code.NOT_FOUND, w.state.kill, fid, sid, "a")
    refused(w, Code.FAILED_PRECONDITION, w.state.subscribe,
            common_pb2.FrameworkInfo(id=fid, name="again"))
    w.update(aid, fid, "a", S.TASK_KILLED, b"ua")
    assert not w.state.tasks
    assert w.state.allocator.available(aid) == AGENT


def test_agent_disconnect_rescinds_its_offers(w):
    a1 = w.agent("a1")
    a2 = w.agent("a2")
    fid, _ = w.framework()
    out = w.offers()[fid]
    assert {o.agent_id for o in out} == {a1, a2}
    gone = next(o for o in out if o.agent_id == a1)
    commands = w.state.agent_disconnected(a1)
    w.state.validate_state()
    assert [e.rescind.offer_id for e in events(commands, fid)] == [gone.id]
    assert gone.id not in w.state.offers
    assert w.offers() == {}  # a disconnected agent is not offered
    assert w.state.agent_disconnected(a1) == []  # once is enough


def test_unused_resources_are_filtered_for_5_seconds_by_default(offered_world):
    """No filters on Accept: Mesos's (and the proto's) default 5 s refusal applies."""
    w, fid, sid, _, offer = offered_world
    w.launch(fid, sid, offer, task("t1"), refuse_seconds=None)
    assert fid not in w.offers()
    w.clock.advance(4.9)
    assert fid not in w.offers()
    w.clock.advance(0.2)
    assert fid in w.offers()


def test_accept_refuses_a_health_check_that_cannot_run(offered_world):
    w, fid, sid, _, offer = offered_world
    bad = task("hc")
    bad.health_check.tcp.port = 70000
    refused_accept(w, fid, sid, [offer.id], bad, match="health_check")
