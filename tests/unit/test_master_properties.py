"""MasterState under random calls (Hypothesis): valid and malformed calls, status
updates from agents, agents and frameworks coming and going, time passing. Only
CallError (or InvalidTransition for illegal updates) may come out; no agent is
ever over-committed; validate_state() holds after every step.

The World helpers live in test_master_state.py, beside the example-based tests.
"""

from __future__ import annotations

import math

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from juggler.common import task_states
from juggler.common.ranges import Ranges
from juggler.common.resources import Resources
from juggler.master.allocator import AllocatorError
from juggler.master.commands import CallError, Code, ToFramework
from juggler.v1 import agent_pb2, common_pb2, operator_pb2, scheduler_pb2
from tests.unit.test_master_state import World, events, launch_op, task, updates

S = common_pb2.TaskState


# -- random calls: only CallError, never over-committed, invariants hold -------------

LEGAL_NEXT = {
    S.TASK_STAGING: [S.TASK_STARTING, S.TASK_RUNNING, S.TASK_KILLING, S.TASK_UNREACHABLE],
    S.TASK_STARTING: [S.TASK_RUNNING, S.TASK_KILLING, S.TASK_UNREACHABLE],
    S.TASK_RUNNING: [S.TASK_RUNNING, S.TASK_KILLING, S.TASK_UNREACHABLE],
    S.TASK_KILLING: [S.TASK_KILLING, S.TASK_UNREACHABLE],
    S.TASK_UNREACHABLE: [S.TASK_STAGING, S.TASK_STARTING, S.TASK_RUNNING, S.TASK_KILLING],
}
TERMINAL_STATES = sorted(task_states.TERMINAL)
ALL_STATES = [v.number for v in S.DESCRIPTOR.values]
SMALL = Resources({"cpus": 2, "mem": 1024}, ports="[31000-31003]")

amounts = st.one_of(
    st.sampled_from([0.0, 0.001, 0.1, 0.5, 1.0, 2.0, 512.0, 1024.0, 1e12, -1.0, -0.0,
                     math.nan, math.inf, -math.inf]),
    st.floats(allow_nan=True, allow_infinity=True),
)
resource_names = st.sampled_from(["cpus", "cpus", "mem", "mem", "disk", "gpus", ""])
task_ids = st.one_of(st.sampled_from(["t0", "t1", "t2", "t3"]), st.text(max_size=4))
uuids = st.sampled_from([b"", b"u0", b"u1", b"u2", b"u3"])


@st.composite
def task_infos(draw) -> common_pb2.TaskInfo:
    resources = [common_pb2.Resource(name=draw(resource_names), scalar=draw(amounts))
                 for _ in range(draw(st.integers(0, 3)))]
    info = common_pb2.TaskInfo(task_id=draw(task_ids), resources=resources,
                               command=common_pb2.CommandInfo(
                                   argv=draw(st.sampled_from([[], ["true"], ["sleep", "9"]]))))
    if draw(st.booleans()):
        info.kill_policy.grace_period_seconds = draw(amounts)
    return info


@st.composite
def sensible_tasks(draw) -> common_pb2.TaskInfo:
    """Mostly-valid tasks, so that launches actually happen; some hold host ports
    (31004 is no agent's)."""
    t = task(draw(st.sampled_from(["t0", "t1", "t2", "t3"])),
             cpus=draw(st.sampled_from([0.1, 0.5, 1.0, 2.0])),
             mem=draw(st.sampled_from([32.0, 128.0, 512.0])))
    ports = draw(st.lists(st.integers(31000, 31004), max_size=2))
    if ports:
        t.resources.extend(Resources(ports=Ranges.single(*ports)).to_proto())
    return t


class MasterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # Hypothesis replays draws: ids (and so every sorted order) repeat too, as
        # World's id source counts from 1 in every run.
        self.w = World()
        self.agent_ids = [self.w.agent(f"a{i}", SMALL) for i in range(2)]
        self.fids: list[str] = []
        self.sids: dict[str, str] = {}
        self.old_sids: list[str] = ["stale"]
        self.offer_ids: list[str] = ["bogus"]
        for name in ("f1", "f2"):
            self._subscribe(common_pb2.FrameworkInfo(name=name, failover_timeout=30))

    # -- helpers --
    def _subscribe(self, info: common_pb2.FrameworkInfo) -> None:
        fid, sid, commands = self.w.state.subscribe(info)
        assert events(commands, fid)[0].HasField("subscribed")
        if fid in self.sids:
            self.old_sids.append(self.sids[fid])
        else:
            self.fids.append(fid)
        self.sids[fid] = sid

    def _call(self, fn, *args, expect=(CallError,)):
        before = self.w.snapshot()
        try:
            return fn(*args)
        except expect:
            assert self.w.snapshot() == before, f"{fn.__name__} failed half-way"
            return None

    def _framework(self, data) -> tuple[str, str]:
        """Mostly a subscribed framework and its current stream; now and then not."""
        fid = data.draw(st.sampled_from(self.fids), label="framework")
        sid = self.sids[fid]
        if data.draw(st.integers(0, 9), label="stranger") == 0:
            fid = "unknown-fw"
        if data.draw(st.integers(0, 9), label="stale") == 0:
            sid = data.draw(st.sampled_from(self.old_sids[-2:]), label="stream")
        return fid, sid

    def _offers(self, data) -> list[str]:
        live = sorted(self.w.state.offers)
        pool = live + self.offer_ids[-4:] + [data.draw(st.text(max_size=3), label="random")]
        return data.draw(st.lists(st.sampled_from(pool), max_size=3), label="offers")

    # -- rules --
    @rule()
    def allocate(self) -> None:
        for c in self.w.state.allocate():
            if isinstance(c, ToFramework) and c.event.HasField("offers"):
                self.offer_ids += [o.id for o in c.event.offers.offers]

    @rule(data=st.data(), tasks=st.lists(sensible_tasks(), min_size=1, max_size=2),
          refuse=st.sampled_from([None, 0.0, 1.0, 10.0]))
    def accept_own_offer(self, data, tasks, refuse) -> None:
        fid, sid = self._framework(data)
        own = sorted(o.offer_id for o in self.w.state.offers.values() if o.framework_id == fid)
        if not own:
            self.allocate()
            own = sorted(o.offer_id for o in self.w.state.offers.values()
                         if o.framework_id == fid)
        if not own:
            return
        offer_id = data.draw(st.sampled_from(own), label="offer")
        filters = None if refuse is None else common_pb2.Filters(refuse_seconds=refuse)
        commands = self._call(self.w.state.accept, fid, sid, [offer_id], [launch_op(*tasks)],
                              filters)
        event("accept: launched" if commands else "accept: refused")

    @rule(data=st.data(), tasks=st.lists(st.one_of(task_infos(), sensible_tasks()), max_size=3),
          refuse=st.one_of(st.none(), amounts))
    def accept_anything(self, data, tasks, refuse) -> None:
        fid, sid = self._framework(data)
        filters = None if refuse is None else common_pb2.Filters(refuse_seconds=refuse)
        self._call(self.w.state.accept, fid, sid, self._offers(data), [launch_op(*tasks)],
                   filters)

    @rule(data=st.data(), refuse=st.one_of(st.none(), amounts))
    def decline(self, data, refuse) -> None:
        fid, sid = self._framework(data)
        filters = None if refuse is None else common_pb2.Filters(refuse_seconds=refuse)
        self._call(self.w.state.decline, fid, sid, self._offers(data), filters)

    @rule(data=st.data(), task_id=task_ids, grace=st.one_of(st.none(), amounts))
    def kill(self, data, task_id, grace) -> None:
        fid, sid = self._framework(data)
        policy = None if grace is None else common_pb2.KillPolicy(grace_period_seconds=grace)
        self._call(self.w.state.kill, fid, sid, task_id, policy)

    @rule(data=st.data(), task_id=task_ids, uuid=uuids)
    def acknowledge(self, data, task_id, uuid) -> None:
        fid, sid = self._framework(data)
        task_entry = self.w.state.tasks.get((fid, task_id))
        if task_entry is not None and data.draw(st.booleans()):
            uuid = task_entry.latest_uuid
        self._call(self.w.state.acknowledge, fid, sid, "", task_id, uuid)

    @rule(data=st.data(), ids=st.lists(task_ids, max_size=3))
    def reconcile(self, data, ids) -> None:
        fid, sid = self._framework(data)
        asked = [scheduler_pb2.ReconcileRequest.Task(task_id=t) for t in ids]
        commands = self._call(self.w.state.reconcile, fid, sid, asked)
        for status in updates(commands or [], fid):
            assert status.uuid == b""

    @rule(data=st.data(), roles=st.lists(st.sampled_from(["*", "web", "x y"]), max_size=2),
          suppress=st.booleans())
    def revive_or_suppress(self, data, roles, suppress) -> None:
        fid, sid = self._framework(data)
        self._call(self.w.state.suppress if suppress else self.w.state.revive, fid, sid, roles)

    @rule(data=st.data(), legal=st.booleans(), uuid=uuids)
    def status_update(self, data, legal, uuid) -> None:
        """An agent reports on one of its tasks: a legal next state, or anything at all."""
        if not self.w.state.tasks:
            return
        key = data.draw(st.sampled_from(sorted(self.w.state.tasks)), label="task")
        entry = self.w.state.tasks[key]
        nexts = LEGAL_NEXT.get(entry.state)
        legal = legal and nexts is not None
        choices = nexts + TERMINAL_STATES if legal else ALL_STATES
        new = data.draw(st.sampled_from(choices), label="state")
        retry = uuid != b"" and uuid == entry.latest_uuid
        status = common_pb2.TaskStatus(task_id=key[1], framework_id=key[0], state=new,
                                       uuid=uuid, agent_id=entry.agent_id)
        expect = (CallError,) if legal else (CallError, task_states.InvalidTransition)
        result = self._call(self.w.state.status_update, entry.agent_id, status, expect=expect)
        event(f"update: {'applied' if result else 'refused'}")
        if legal and not retry and result is not None:
            task_now = self.w.state.tasks.get(key)
            if task_now is None:
                # Completed by the master in the framework's place: its framework
                # is torn down, or was told the task ended (LOST, GONE) already.
                assert task_states.is_terminal(new)
                assert key[0] in self.w.state.torn_down or entry.told_end
            else:
                assert task_now.state == new

    @rule(task_id=task_ids, state=st.sampled_from(ALL_STATES), uuid=uuids, fw=st.integers(0, 3))
    def update_for_unknown_task(self, task_id, state, uuid, fw) -> None:
        fid = (self.fids + ["gone"] * 4)[fw]
        if (fid, task_id) in self.w.state.tasks:
            return
        status = common_pb2.TaskStatus(task_id=task_id, framework_id=fid, state=state, uuid=uuid)
        self._call(self.w.state.status_update, self.agent_ids[0], status)

    @rule(data=st.data())
    def framework_disconnects(self, data) -> None:
        fid, sid = self._framework(data)
        self.w.state.framework_disconnected(fid, sid)

    @rule(data=st.data(), timeout=st.sampled_from([0.0, 10.0, 30.0]))
    def framework_resubscribes(self, data, timeout) -> None:
        fid = data.draw(st.sampled_from(self.fids), label="framework")
        info = common_pb2.FrameworkInfo(id=fid, failover_timeout=timeout)
        try:
            self._subscribe(info)
        except CallError as e:
            assert e.code == Code.FAILED_PRECONDITION  # removed for good

    @rule(timeout=amounts, roles=st.lists(st.sampled_from(["*", "web", "bad role"]),
                                          max_size=2))
    def new_framework(self, timeout, roles) -> None:
        try:
            self._subscribe(common_pb2.FrameworkInfo(failover_timeout=timeout, roles=roles))
        except CallError as e:
            assert e.code == Code.INVALID_ARGUMENT

    @rule(data=st.data())
    def framework_tears_down(self, data) -> None:
        fid, sid = self._framework(data)
        self._call(self.w.state.teardown, fid, sid)

    @rule(seconds=st.sampled_from([0.5, 5.0, 15.0, 31.0]))
    def time_passes(self, seconds) -> None:
        self.w.clock.advance(seconds)
        self.w.state.tick()

    @rule(i=st.integers(0, 1), up=st.booleans())
    def maintenance(self, i, up) -> None:
        """An operator drains an agent or brings it up, whatever its connectivity."""
        aid = self.agent_ids[i]
        call = self.w.state.up_agent if up else self.w.state.drain_agent
        commands = self._call(call, aid)
        if commands is not None and not up:
            agent = self.w.state.agents[aid]
            assert agent.maintenance != operator_pb2.MAINTENANCE_NONE
            assert not agent.offers
            # Every task it runs is to be killed, now or when it is back.
            for key in agent.tasks:
                t = self.w.state.tasks[key]
                assert task_states.is_terminal(t.state) or self.w.state.kill_wanted(t)

    @rule(i=st.integers(0, 1), back=st.booleans())
    def agent_flaps(self, i, back) -> None:
        aid = self.agent_ids[i]
        agent = self.w.state.agents.get(aid)
        if agent is None:
            return
        if not back:
            self.w.state.agent_disconnected(aid)
            return
        # It comes back and reports, truthfully, what it runs.
        statuses, running = [], []
        for (fid, _), t in sorted(self.w.state.tasks.items()):
            if t.agent_id != aid or task_states.is_terminal(t.state):
                continue
            fw = self.w.state.frameworks.get(fid) or self.w.state.torn_down[fid]
            running.append(agent_pb2.AgentMessage.RunningTask(task=t.info, framework=fw.info))
            if t.status is not None and t.latest_uuid:
                statuses.append(t.status)
        got, _ = self._call(self.w.state.reregister_agent, agent.info, statuses, running)
        assert got == aid

    # -- invariants --
    @invariant()
    def never_over_committed(self) -> None:
        st_ = self.w.state
        st_.validate_state()
        for aid, agent in st_.agents.items():
            used = Resources()
            for t in st_.tasks.values():
                if t.agent_id == aid and not task_states.is_terminal(t.state):
                    used = used + t.resources
            for o in st_.offers.values():
                if o.agent_id == aid:
                    used = used + o.resources
            assert agent.total.contains(used), f"{aid}: {used} of {agent.total}"
            try:
                holdings = st_.allocator.allocated(aid)
            except AllocatorError:  # an unreachable agent's resources left the pool
                continue
            held = Resources()
            for r in holdings.values():
                held = held + r
            assert held + st_.allocator.available(aid) == agent.total
            assert held == used  # the allocator and the master agree on who holds what


MasterMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestMasterStateMachine = MasterMachine.TestCase
