"""A new leader rebuilds its book-keeping from the registry and from agents'
re-registration (pure MasterState, fake clock)."""

from __future__ import annotations

from juggler.common.clock import FakeClock
from juggler.common.resources import Resources
from juggler.master.agent_book import RECOVERY_HOLD_SECONDS
from juggler.master.allocator import Allocator
from juggler.master.commands import Persist, ToAgent, ToFramework
from juggler.master.state import MasterState, RegistrySnapshot
from juggler.v1 import agent_pb2, common_pb2, operator_pb2

S = common_pb2.TaskState
A = operator_pb2.AgentState
TOTAL = Resources({"cpus": 2, "mem": 1024})


def registry_of(state: MasterState, commands: list) -> dict[str, bytes]:
    return {c.key: c.value for c in commands if isinstance(c, Persist) and c.value}


def _leader_with_an_agent(clock: FakeClock) -> tuple[MasterState, dict[str, bytes], str]:
    """A leader with agent h1 registered: it, what it wrote to the registry, h1's id."""
    old = MasterState(clock, Allocator(clock))
    agent_id, cmds = old.register_agent(common_pb2.AgentInfo(hostname="h1",
                                                             resources=TOTAL.to_proto()))
    return old, registry_of(old, cmds), agent_id


def _next_leader(clock: FakeClock, written: dict[str, bytes]) -> MasterState:
    """A new leader recovered from `written` (the registry's keys and values)."""
    new = MasterState(clock, Allocator(clock))
    new.recover_registry(RegistrySnapshot(
        agents=[operator_pb2.AgentView.FromString(v) for k, v in written.items()
                if k.startswith("agents/") and v],
        frameworks=[common_pb2.FrameworkInfo.FromString(v) for k, v in written.items()
                    if k.startswith("frameworks/") and v]),
        reregister_timeout=10)
    return new


def test_a_new_leader_takes_agents_and_frameworks_back_from_the_registry() -> None:
    clock = FakeClock()
    old, written, agent_id = _leader_with_an_agent(clock)
    fid, _, cmds = old.subscribe(common_pb2.FrameworkInfo(name="fw", failover_timeout=60))
    written |= registry_of(old, cmds)
    task = common_pb2.TaskInfo(task_id="t1", resources=Resources({"cpus": 1, "mem": 64})
                               .to_proto("*"), command=common_pb2.CommandInfo(argv=["sleep"]))

    new = _next_leader(clock, written)
    assert new.agents[agent_id].state == A.AGENT_DISCONNECTED
    assert not new.frameworks[fid].connected
    assert new.allocate() == []  # nothing is offered before the agent is back

    # The agent re-registers with its running task: the task is back, the framework
    # can re-subscribe and is offered the rest of the agent.
    running = agent_pb2.AgentMessage.RunningTask(task=task,
                                                 framework=new.frameworks[fid].info)
    status = common_pb2.TaskStatus(task_id="t1", framework_id=fid, state=S.TASK_RUNNING)
    new.reregister_agent(common_pb2.AgentInfo(id=agent_id, hostname="h1",
                                              resources=TOTAL.to_proto()), [status], [running])
    assert new.tasks[(fid, "t1")].state == S.TASK_RUNNING
    _, _, cmds = new.subscribe(common_pb2.FrameworkInfo(id=fid, name="fw", failover_timeout=60))
    offers = [c for c in new.allocate() if isinstance(c, ToFramework)]
    assert len(offers) == 1
    offered = Resources.from_proto(offers[0].event.offers.offers[0].resources)
    assert offered == TOTAL - Resources({"cpus": 1, "mem": 64})
    new.validate_state()


def test_agents_that_do_not_come_back_become_unreachable() -> None:
    clock = FakeClock()
    state = MasterState(clock, Allocator(clock))
    view = operator_pb2.AgentView(info=common_pb2.AgentInfo(id="a1", hostname="h1"),
                                  state=A.AGENT_ACTIVE, total=TOTAL.to_proto())
    gone = operator_pb2.AgentView(info=common_pb2.AgentInfo(id="a2", hostname="h2"),
                                  state=A.AGENT_GONE, total=TOTAL.to_proto())
    state.recover_registry(RegistrySnapshot(agents=[view, gone], frameworks=[]),
                           reregister_timeout=10)
    clock.advance(9.9)
    state.tick()
    assert state.agents["a1"].state == A.AGENT_DISCONNECTED
    clock.advance(0.2)
    state.tick()
    assert state.agents["a1"].state == A.AGENT_UNREACHABLE
    assert "a2" in state.agents.gone and "a2" not in state.agents
    state.validate_state()


def test_reconciliation_waits_for_agents_that_may_still_come_back() -> None:
    clock = FakeClock()
    state = MasterState(clock, Allocator(clock))
    view = operator_pb2.AgentView(info=common_pb2.AgentInfo(id="a1", hostname="h1"),
                                  state=A.AGENT_ACTIVE, total=TOTAL.to_proto())
    state.recover_registry(RegistrySnapshot(agents=[view], frameworks=[]),
                           reregister_timeout=10)
    fid, sid, _ = state.subscribe(common_pb2.FrameworkInfo(name="fw"))
    from juggler.v1 import scheduler_pb2

    ask = [scheduler_pb2.ReconcileRequest.Task(task_id="t1")]
    assert state.reconcile(fid, sid, ask) == []  # a1 may still bring t1 back
    named = [scheduler_pb2.ReconcileRequest.Task(task_id="t1", agent_id="a1")]
    assert state.reconcile(fid, sid, named) == []  # the same, naming a1
    clock.advance(11)
    state.tick()  # a1 did not come back in time
    answers = [c.event.update.status for c in state.reconcile(fid, sid, ask)]
    assert [(s.task_id, s.state) for s in answers] == [("t1", S.TASK_UNKNOWN)]
    # Naming a1, now UNREACHABLE: TASK_LOST, this framework not being partition-aware.
    answers = [c.event.update.status for c in state.reconcile(fid, sid, named)]
    assert [(s.task_id, s.state) for s in answers] == [("t1", S.TASK_LOST)]


def test_a_launch_lost_in_a_partition_and_a_failover_ends_gone_once_its_agent_is_back() -> None:
    """Found by the fault campaign (seed 1, CI): a launch the agent never
    got (its host was cut off as it was sent), the agent UNREACHABLE, the
    leader killed. The new leader never knew the task; the agent re-registers
    without it. Reconciling it with its agent then answers TASK_GONE (Mesos's
    rule), where it answered TASK_UNKNOWN for ever and the framework never
    learned the task had ended."""
    from juggler.v1 import scheduler_pb2

    clock = FakeClock()
    old, written, agent_id = _leader_with_an_agent(clock)
    info = common_pb2.FrameworkInfo(name="fw", failover_timeout=60,
                                    capabilities=[common_pb2.FrameworkInfo.PARTITION_AWARE])
    fid, sid, cmds = old.subscribe(info)
    written |= registry_of(old, cmds)
    offer = next(c for c in old.allocate() if isinstance(c, ToFramework)).event.offers.offers[0]
    launch = scheduler_pb2.Operation(launch=scheduler_pb2.Operation.Launch(tasks=[
        common_pb2.TaskInfo(task_id="t1", name="t1", agent_id=agent_id,
                            resources=Resources({"cpus": 1, "mem": 64}).to_proto("*"),
                            command=common_pb2.CommandInfo(argv=["sleep", "9"]))]))
    old.accept(fid, sid, [offer.id], [launch], None)   # the launch never reaches h1
    clock.advance(15 * 5 + 1)
    for c in old.tick():
        if isinstance(c, Persist):
            written[c.key] = c.value
    assert old.agents[agent_id].state == A.AGENT_UNREACHABLE
    ask = [scheduler_pb2.ReconcileRequest.Task(task_id="t1", agent_id=agent_id)]
    assert [c.event.update.status.state for c in old.reconcile(fid, sid, ask)] == [
        S.TASK_UNREACHABLE]

    new = _next_leader(clock, written)   # the old leader is killed
    info.id = fid
    _, sid, _ = new.subscribe(info)

    def answer() -> list[int]:
        return [c.event.update.status.state for c in new.reconcile(fid, sid, ask)]

    assert answer() == [S.TASK_UNREACHABLE]   # still cut off, as far as the new leader knows
    new.reregister_agent(common_pb2.AgentInfo(id=agent_id, hostname="h1",
                                              resources=TOTAL.to_proto()), [], [])
    assert answer() == [S.TASK_GONE]
    new.validate_state()


def test_a_task_that_ended_while_the_leader_failed_over_is_answered_as_it_ended() -> None:
    """A task failed as the leader was killed, its update not yet acknowledged.
    Its agent re-registers with the new leader reporting how it ended; until
    the update itself arrives, a reconciliation answered TASK_GONE ("its agent
    is back without it"), and an app's container run ended with exit 125
    instead of its own. Now the new leader holds the ended task (as Mesos's
    master adds an agent's terminal, unacknowledged tasks) and answers
    TASK_FAILED with its exit code; the task holds no resources, its update is
    relayed once and its acknowledgement completes it."""
    from juggler.v1 import scheduler_pb2

    clock = FakeClock()
    old, written, agent_id = _leader_with_an_agent(clock)
    info = common_pb2.FrameworkInfo(name="fw", failover_timeout=60)
    fid, sid, cmds = old.subscribe(info)
    written |= registry_of(old, cmds)
    offer = next(c for c in old.allocate() if isinstance(c, ToFramework)).event.offers.offers[0]
    t1 = common_pb2.TaskInfo(task_id="t1", name="t1", agent_id=agent_id,
                             resources=Resources({"cpus": 1, "mem": 64}).to_proto("*"),
                             command=common_pb2.CommandInfo(argv=["sleep", "9"]))
    old.accept(fid, sid, [offer.id],
               [scheduler_pb2.Operation(launch=scheduler_pb2.Operation.Launch(tasks=[t1]))], None)
    failed = common_pb2.TaskStatus(task_id="t1", framework_id=fid, agent_id=agent_id,
                                   state=S.TASK_FAILED, uuid=b"u-failed", exit_code=3,
                                   message="Command exited with status 3",
                                   source=common_pb2.SOURCE_EXECUTOR)

    new = _next_leader(clock, written)   # the old leader is killed
    info.id = fid
    _, sid, _ = new.subscribe(info)
    latest = common_pb2.TaskStatus(task_id="t1", framework_id=fid, agent_id=agent_id,
                                   state=S.TASK_FAILED, source=common_pb2.SOURCE_AGENT)
    reported = agent_pb2.AgentMessage.RunningTask(task=t1, framework=info, next_update=failed)
    new.reregister_agent(
        common_pb2.AgentInfo(id=agent_id, hostname="h1", resources=TOTAL.to_proto()),
        [latest], [reported])
    new.validate_state()
    ask = [scheduler_pb2.ReconcileRequest.Task(task_id="t1", agent_id=agent_id)]
    [answer] = [c.event.update.status for c in new.reconcile(fid, sid, ask)]
    assert (answer.state, answer.exit_code, answer.uuid) == (S.TASK_FAILED, 3, b"")
    clock.advance(RECOVERY_HOLD_SECONDS + 1)
    offered = [o for c in new.allocate() if isinstance(c, ToFramework)
               for o in c.event.offers.offers]
    assert Resources.from_proto(offered[0].resources) == TOTAL   # it holds nothing

    relayed = [c.event.update.status for c in new.status_update(agent_id, failed)
               if isinstance(c, ToFramework) and c.event.HasField("update")]
    assert [(s.state, s.uuid) for s in relayed] == [(S.TASK_FAILED, b"u-failed")]
    new.acknowledge(fid, sid, agent_id, "t1", b"u-failed")
    assert (fid, "t1") not in new.tasks
    assert [t.info.task_id for t in new.completed_tasks] == ["t1"]
    assert [h.state for h in new.completed_tasks[0].history] == [S.TASK_FAILED]
    new.validate_state()
    # The acknowledgement did not reach the agent: it reports the task again,
    # and its update comes again. Neither is news to the framework.
    new.agent_disconnected(agent_id)
    new.reregister_agent(
        common_pb2.AgentInfo(id=agent_id, hostname="h1", resources=TOTAL.to_proto()),
        [latest], [reported])
    assert (fid, "t1") not in new.tasks
    assert not [c for c in new.status_update(agent_id, failed) if isinstance(c, ToFramework)]
    new.validate_state()


def test_only_an_ended_task_with_updates_on_the_way_is_held_and_a_running_copy_wins() -> None:
    """What the reviewer of the change above found. A new leader holds an
    ended task only when its agent has updates of it to send (and names the
    next one) and its framework is held: a task with no update coming stayed
    held, its id refused, until its framework's teardown. A running copy of the same
    id that another agent reports (the id reused across failovers) wins over
    the ended one, whichever agent is back first, as before such copies were
    held: it was killed as a stale copy."""
    clock = FakeClock()
    new, fid = _recovered_cluster(2, clock)
    info = common_pb2.FrameworkInfo(id=fid, name="fw")

    def ended(task_id: str, uuid: bytes, framework_id: str = fid) -> common_pb2.TaskStatus:
        return common_pb2.TaskStatus(task_id=task_id, framework_id=framework_id, agent_id="a0",
                                     state=S.TASK_FAILED, uuid=uuid)

    def reported(task_id: str, framework: common_pb2.FrameworkInfo = info,
                 next_update: common_pb2.TaskStatus | None = None
                 ) -> agent_pb2.AgentMessage.RunningTask:
        return agent_pb2.AgentMessage.RunningTask(
            framework=framework, next_update=next_update, task=common_pb2.TaskInfo(
                task_id=task_id, resources=Resources({"cpus": 1, "mem": 64}).to_proto("*")))

    stranger = common_pb2.FrameworkInfo(id="fw-gone", name="gone")
    new.reregister_agent(common_pb2.AgentInfo(id="a0", hostname="h0", resources=TOTAL.to_proto()),
                         [ended("t1", b""), ended("t2", b""), ended("t3", b"", "fw-gone")],
                         [reported("t1", next_update=ended("t1", b"u1")), reported("t2"),
                          reported("t3", stranger, ended("t3", b"u3", "fw-gone"))])
    assert sorted(new.tasks) == [(fid, "t1")]   # t2: no update coming; t3: no framework
    assert "fw-gone" not in new.frameworks
    running = common_pb2.TaskStatus(task_id="t1", framework_id=fid, agent_id="a1",
                                    state=S.TASK_RUNNING)
    _, commands = new.reregister_agent(
        common_pb2.AgentInfo(id="a1", hostname="h1", resources=TOTAL.to_proto()),
        [running], [reported("t1")])
    assert not [c for c in commands if isinstance(c, ToAgent) and c.message.HasField("kill_task")]
    t1 = new.tasks[(fid, "t1")]
    assert (t1.agent_id, t1.state) == ("a1", S.TASK_RUNNING)
    # a0's terminal update of its copy is acknowledged, never told.
    assert not [c for c in new.status_update("a0", ended("t1", b"u1"))
                if isinstance(c, ToFramework)]
    new.validate_state()


def test_a_held_ended_task_whose_end_was_told_keeps_its_id_against_a_running_copy() -> None:
    """Once the framework heard the held task's update, the task is the
    framework's: a running copy of its id that another agent brings back
    later is the stale one (killed), and the framework's acknowledgement,
    naming the first agent, completes the task. (When the running copy won
    here, that acknowledgement was refused: the task ran on the other agent.)"""
    clock = FakeClock()
    new, fid = _recovered_cluster(2, clock)
    info = common_pb2.FrameworkInfo(id=fid, name="fw")
    _, sid, _ = new.subscribe(common_pb2.FrameworkInfo(id=fid, name="fw", failover_timeout=60))
    t1 = common_pb2.TaskInfo(task_id="t1", resources=Resources({"cpus": 1}).to_proto("*"))
    failed = common_pb2.TaskStatus(task_id="t1", framework_id=fid, agent_id="a0",
                                   state=S.TASK_FAILED, uuid=b"f")
    new.reregister_agent(
        common_pb2.AgentInfo(id="a0", hostname="h0", resources=TOTAL.to_proto()), [failed],
        [agent_pb2.AgentMessage.RunningTask(task=t1, framework=info, next_update=failed)])
    assert [c for c in new.status_update("a0", failed) if isinstance(c, ToFramework)]
    running = common_pb2.TaskStatus(task_id="t1", framework_id=fid, agent_id="a1",
                                    state=S.TASK_RUNNING)
    _, commands = new.reregister_agent(
        common_pb2.AgentInfo(id="a1", hostname="h1", resources=TOTAL.to_proto()),
        [running], [agent_pb2.AgentMessage.RunningTask(task=t1, framework=info)])
    assert [c.agent_id for c in commands
            if isinstance(c, ToAgent) and c.message.HasField("kill_task")] == ["a1"]
    new.acknowledge(fid, sid, "a0", "t1", b"f")
    assert (fid, "t1") not in new.tasks
    new.validate_state()


def test_an_ended_task_whose_running_update_is_still_unacknowledged_is_told_in_order() -> None:
    """The task started and failed while the leader failed over: its agent
    holds RUNNING (unacknowledged) and FAILED behind it. The new leader holds
    it as FAILED (a reconciliation says so) and tells RUNNING, then FAILED:
    a re-subscribed framework hears RUNNING first, and only FAILED's
    acknowledgement completes the task."""
    from juggler.v1 import scheduler_pb2

    clock = FakeClock()
    new, fid = _recovered_cluster(1, clock)

    def update(state: int, uuid: bytes) -> common_pb2.TaskStatus:
        return common_pb2.TaskStatus(task_id="t1", framework_id=fid, agent_id="a0",
                                     state=state, uuid=uuid, source=common_pb2.SOURCE_EXECUTOR)

    t1 = common_pb2.TaskInfo(task_id="t1", resources=Resources({"cpus": 1}).to_proto("*"))
    info = common_pb2.FrameworkInfo(id=fid, name="fw", failover_timeout=60)
    new.reregister_agent(
        common_pb2.AgentInfo(id="a0", hostname="h0", resources=TOTAL.to_proto()),
        [update(S.TASK_FAILED, b"")],
        [agent_pb2.AgentMessage.RunningTask(task=t1, framework=info,
                                            next_update=update(S.TASK_RUNNING, b"r"))])
    _, sid, commands = new.subscribe(info)   # the framework re-subscribes
    told = [c.event.update.status for c in commands
            if isinstance(c, ToFramework) and c.event.HasField("update")]
    assert [(s.state, s.uuid) for s in told] == [(S.TASK_RUNNING, b"r")]
    ask = [scheduler_pb2.ReconcileRequest.Task(task_id="t1", agent_id="a0")]
    assert [c.event.update.status.state for c in new.reconcile(fid, sid, ask)] == [S.TASK_FAILED]
    for state, uuid in ((S.TASK_RUNNING, b"r"), (S.TASK_FAILED, b"f")):
        relayed = [c.event.update.status for c in new.status_update("a0", update(state, uuid),
                                                                    S.TASK_FAILED)
                   if isinstance(c, ToFramework)]
        assert [(s.state, s.uuid) for s in relayed] == [(state, uuid)]
        assert (fid, "t1") in new.tasks
        new.acknowledge(fid, sid, "a0", "t1", uuid)
    assert (fid, "t1") not in new.tasks
    assert [h.state for h in new.completed_tasks[-1].history] == [S.TASK_RUNNING, S.TASK_FAILED]
    new.validate_state()


def _recovered_cluster(n: int, clock: FakeClock) -> tuple[MasterState, str]:
    """A new leader whose registry holds `n` active agents and one framework
    that has re-subscribed; no agent is back yet."""
    state = MasterState(clock, Allocator(clock))
    views = [operator_pb2.AgentView(info=common_pb2.AgentInfo(id=f"a{i}", hostname=f"h{i}",
                                                              resources=TOTAL.to_proto()),
                                    state=A.AGENT_ACTIVE, total=TOTAL.to_proto())
             for i in range(n)]
    info = common_pb2.FrameworkInfo(id="fw-1", name="fw", failover_timeout=60)
    state.recover_registry(RegistrySnapshot(agents=views, frameworks=[info]),
                           reregister_timeout=30)
    state.subscribe(info)
    return state, "fw-1"


def _back(state: MasterState, i: int) -> None:
    state.reregister_agent(common_pb2.AgentInfo(id=f"a{i}", hostname=f"h{i}",
                                                resources=TOTAL.to_proto()), [], [])


def _offered_agents(commands: list) -> set[str]:
    return {o.agent_id for c in commands if isinstance(c, ToFramework)
            for o in c.event.offers.offers}


def test_a_new_leader_offers_nothing_until_every_agent_is_back() -> None:
    clock = FakeClock()
    state, _ = _recovered_cluster(10, clock)
    for i in range(9):
        _back(state, i)
        assert state.allocate() == []  # 9 of 10 back
    _back(state, 9)  # all 10: the hold ends and everything is offered
    assert _offered_agents(state.allocate()) == {f"a{i}" for i in range(10)}
    state.validate_state()


def test_an_agent_back_unchanged_costs_no_registry_write() -> None:
    clock = FakeClock()
    state, _ = _recovered_cluster(2, clock)
    same = state.reregister_agent(common_pb2.AgentInfo(id="a0", hostname="h0",
                                                       resources=TOTAL.to_proto()), [], [])[1]
    assert [c for c in same if isinstance(c, Persist)] == []
    moved = state.reregister_agent(common_pb2.AgentInfo(id="a1", hostname="elsewhere",
                                                        resources=TOTAL.to_proto()), [], [])[1]
    [write] = [c for c in moved if isinstance(c, Persist)]
    assert write.key == "agents/a1"
    assert operator_pb2.AgentView.FromString(write.value).info.hostname == "elsewhere"
    assert any(isinstance(c, ToAgent) and c.message.HasField("registered") for c in same)
    # A write that failed is not taken as done: the next registration writes again.
    state.persist_failed("agents/a1")
    again = state.reregister_agent(common_pb2.AgentInfo(id="a1", hostname="elsewhere",
                                                        resources=TOTAL.to_proto()), [], [])[1]
    assert [c.key for c in again if isinstance(c, Persist)] == ["agents/a1"]


def test_the_allocation_hold_is_short() -> None:
    clock = FakeClock()
    state, _ = _recovered_cluster(10, clock)  # re-register timeout 30 s
    _back(state, 0)
    clock.advance(RECOVERY_HOLD_SECONDS - 0.1)
    assert state.allocate() == []
    clock.advance(0.2)
    assert _offered_agents(state.allocate()) == {"a0"}
    state.validate_state()


def test_an_unreadable_registry_entry_stops_the_master_with_where_it_is(tmp_path) -> None:
    import asyncio

    import pytest

    from juggler.master.server import Master, MasterConfig
    from juggler.store.embedded import EmbeddedStore
    from juggler.store.interface import StoreError

    store = EmbeddedStore(tmp_path)
    good = operator_pb2.AgentView(info=common_pb2.AgentInfo(id="a1", hostname="h1"))

    async def read() -> list:
        await store.put("agents/a1", good.SerializeToString())
        await store.put("agents/a2", b"\xff\xff not a record")
        return await Master(MasterConfig(), store)._read_registry("agents/",
                                                                  operator_pb2.AgentView)

    with pytest.raises(StoreError) as e:
        asyncio.run(read())
    assert "'agents/a2'" in str(e.value) and str(tmp_path / "registry.log") in str(e.value)
