"""The in-process cluster (juggler/testing/cluster.py) under random faults
(Hypothesis): frameworks launch (reusing task ids now and then), kill, fail over
to a new instance and tear down; new frameworks come; operators drain and bring
agents up; agents disconnect, are cut off, stop and restart, their executors
start slowly (tasks stay STAGING); the master fails over; time passes.
Invariants hold after every step, and once every fault is repaired, everything
asked for has happened:

- every task whose Kill was accepted has ended, and its process is gone;
- every agent drained (and not brought up since) is DOWN and runs nothing;
- every task of a torn-down framework has ended, and its process is gone;
- no task id runs twice, and what runs is what the master tracks;
- no kill record is left, and no framework saw an acknowledgement refused.
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from juggler.common import task_states
from juggler.master.commands import CallError
from juggler.testing.cluster import Cluster, SimFramework, sleep_task
from juggler.v1 import common_pb2, operator_pb2

S = common_pb2.TaskState
M = operator_pb2.MaintenanceState
AGENTS = ["a1", "a2", "a3"]


class ClusterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # One torn-down framework kept: eviction happens in short runs.
        self.cluster = Cluster(AGENTS, agent_ping_timeout=2, max_agent_ping_timeouts=3,
                               agent_reregister_timeout=20, torn_down_kept=1)
        self.frameworks = [self.cluster.framework("f1", failover_timeout=30),
                           self.cluster.framework("f2", failover_timeout=30,
                                                  partition_aware=True)]
        self.ids = (f"t{n}" for n in itertools.count())
        self.launched: dict[str, SimFramework] = {}
        self.killed: set[str] = set()  # tasks whose Kill was accepted
        self.drained: set[str] = set()  # agents drained and not brought up since
        self.torn: set[str] = set()  # frameworks torn down (by a Teardown call)

    # -- helpers ------------------------------------------------------------------
    def _framework(self, i: int) -> SimFramework:
        return self.frameworks[i % len(self.frameworks)]

    def _launch(self, fw: SimFramework, info: common_pb2.TaskInfo, agent: str | None) -> bool:
        """`fw` launches the task on an offer (of `agent` if given). Without one,
        the frameworks holding the offers, having nothing to run, decline them
        for a while, as real ones do, and `fw` tries again: healthy agents stay
        offered to whoever holds them, so offers go round only this way.
        False: no offer still. Raises CallError when the launch is refused."""
        try:
            fw.launch(info, agent)
            return True
        except AssertionError:
            pass
        for other in self.frameworks:
            if other is not fw and other.connected:
                other.decline_all(refuse_seconds=5)
        try:
            fw.launch(info, agent)
        except AssertionError:
            return False
        event(f"launch: {fw.info.name} once offers went round")
        return True

    def _task_ids(self) -> list[str]:
        return sorted(self.launched)

    # -- frameworks ---------------------------------------------------------------
    @rule(i=st.integers(0, 3), agent=st.sampled_from([None, *AGENTS]),
          grace=st.sampled_from([0.0, 1.0, 5.0]), reuse=st.sampled_from([None, 0, -1]))
    def launch(self, i: int, agent: str | None, grace: float, reuse: int | None) -> None:
        fw = self._framework(i)
        if not fw.connected:
            return
        mine = [t for t, f in self.launched.items() if f is fw]
        task_id = mine[reuse] if reuse is not None and mine else next(self.ids)
        try:
            launched = self._launch(fw, sleep_task(task_id, grace), agent)
        except CallError as e:  # its id is in use
            event(f"launch: refused {e.code.name}")
            return
        if not launched:  # no offer from that agent now
            event(f"launch: no offer for {fw.info.name}")
            return
        self.launched[task_id] = fw
        self.killed.discard(task_id)  # a new task under that id
        event("launch: reused an id" if task_id in mine else "launch: launched")
        event(f"launch: by {fw.info.name}")

    @precondition(lambda self: self.launched)
    @rule(data=st.data(), with_agent=st.booleans())
    def kill(self, data: st.DataObject, with_agent: bool) -> None:
        task_id = data.draw(st.sampled_from(self._task_ids()), label="task")
        fw = self.launched[task_id]
        agent_id = ""
        if with_agent:
            entry = self.cluster.master.tasks.get((fw.framework_id, task_id))
            agent_id = entry.agent_id if entry is not None else ""
        try:
            fw.kill(task_id, agent_id=agent_id)
        except CallError as e:
            event(f"kill: refused {e.code.name}")
            return
        self.killed.add(task_id)
        agent = next((a for a in self.cluster.agents.values()
                      if any(k[1] == task_id for k in a.executors)), None)
        event("kill: accepted" + ("" if agent is not None and agent.linked else
                                  " while its agent is away"))

    @precondition(lambda self: self.launched)
    @rule(data=st.data(), state=st.sampled_from([S.TASK_FINISHED, S.TASK_FAILED]))
    def task_ends_by_itself(self, data: st.DataObject, state: int) -> None:
        task_id = data.draw(st.sampled_from(self._task_ids()), label="task")
        for agent in self.cluster.agents.values():
            for key, executor in agent.executors.items():
                if (key[1] == task_id and executor.alive
                        and not task_states.is_terminal(executor.state)):
                    agent.report(executor, state)
        self.cluster.settle()

    @precondition(lambda self: self.launched)
    @rule(data=st.data(), how=st.sampled_from(["stop", "cut", "disconnect"]),
          failover=st.booleans())
    def kill_while_its_agent_is_away(self, data: st.DataObject, how: str,
                                     failover: bool) -> None:
        """The case that matters most: the agent cannot hear the kill now."""
        live = sorted((k[1], a.name) for a in self.cluster.agents.values() if a.linked
                      for k, e in a.executors.items()
                      if e.alive and not task_states.is_terminal(e.state))
        if not live:
            return
        task_id, agent = data.draw(st.sampled_from(live), label="task")
        getattr(self.cluster.agent(agent), how)()
        self.cluster.settle()
        fw = self.launched[task_id]
        if failover:
            self.cluster.failover()
            if fw.framework_id in self.cluster.master.frameworks:
                fw.subscribe()
        self.kill(data, with_agent=True)

    def _running_on_linked_agents(self) -> list[tuple[str, str]]:
        return sorted((k[1], a.name) for a in self.cluster.agents.values() if a.linked
                      for k, e in a.executors.items()
                      if e.alive and not task_states.is_terminal(e.state)
                      and self.launched.get(k[1]) is not None
                      and self.launched[k[1]].framework_id == k[0])

    @precondition(lambda self: self.launched)
    @rule(data=st.data(), failover=st.booleans())
    def reuse_an_id_while_its_agent_is_away(self, data: st.DataObject, failover: bool) -> None:
        """The framework gives up on a task whose agent is away and runs a new
        task under its id elsewhere; the old copy comes back later."""
        live = self._running_on_linked_agents()
        if not live:
            return
        task_id, agent = data.draw(st.sampled_from(live), label="task")
        fw = self.launched[task_id]
        self.cluster.agent(agent).cut()
        self.cluster.settle()
        if failover:
            self.cluster.failover()
            if fw.framework_id not in self.cluster.master.frameworks:
                return
            fw.subscribe()
            self.cluster.advance(6)  # the new leader's hold on offers (RECOVERY_HOLD_SECONDS)
        launched = False
        for other in [a for a in AGENTS if a != agent]:
            try:
                launched = self._launch(fw, sleep_task(task_id, 0.0), other)
            except CallError as e:  # its id is still tracked (no failover)
                event(f"reuse away: refused {e.code.name}")
                return
            if launched:
                break
        if not launched:
            event("reuse away: no offer")
            return
        self.killed.discard(task_id)
        event("reuse away: launched")

    @precondition(lambda self: self.launched)
    @rule(data=st.data())
    def tear_down_while_an_agent_is_away(self, data: st.DataObject) -> None:
        """A framework is torn down while one of its tasks' agents is away; the
        master fails over, and more frameworks come and go (evicting records)."""
        live = self._running_on_linked_agents()
        if not live:
            return
        task_id, agent = data.draw(st.sampled_from(live), label="task")
        fw = self.launched[task_id]
        if not fw.connected:
            return
        self.cluster.agent(agent).cut()
        self.cluster.settle()
        fw.call("teardown")
        self.torn.add(fw.framework_id)
        self.cluster.failover()
        for other in self.frameworks:
            if other.framework_id in self.cluster.master.frameworks:
                other.subscribe()
        for n in range(3):  # more torn-down frameworks than are kept
            brief = self.cluster.framework(f"brief{n}")
            brief.call("teardown")
        event("teardown away: done")

    @rule(i=st.integers(0, 3))
    def framework_fails_over(self, i: int) -> None:
        """A new instance of the scheduler subscribes with the framework's id."""
        fw = self._framework(i)
        if fw.connected:
            fw.subscribe()

    @rule()
    def new_framework(self) -> None:
        if len(self.frameworks) < 4:
            name = f"f{len(self.frameworks) + 1}"
            self.frameworks.append(self.cluster.framework(name, failover_timeout=30))

    @rule(agent=st.sampled_from(AGENTS), slow=st.booleans())
    def executors_start_slowly(self, agent: str, slow: bool) -> None:
        self.cluster.agent(agent).slow_executors = slow

    @rule(i=st.integers(0, 3))
    def framework_disconnects(self, i: int) -> None:
        self._framework(i).disconnect()
        self.cluster.settle()

    @rule(i=st.integers(0, 3))
    def framework_subscribes_again(self, i: int) -> None:
        fw = self._framework(i)
        if not fw.connected and fw.framework_id in self.cluster.master.frameworks:
            fw.subscribe()

    @rule(i=st.integers(0, 3))
    def framework_tears_down(self, i: int) -> None:
        fw = self._framework(i)
        if fw.connected:
            fw.call("teardown")
            self.torn.add(fw.framework_id)

    # -- operators ------------------------------------------------------------------
    @rule(agent=st.sampled_from(AGENTS))
    def drain(self, agent: str) -> None:
        agent_id = self.cluster.agent_id(agent)
        if agent_id in self.cluster.master.agents:
            self.cluster.operator("drain_agent", agent_id)
            self.drained.add(agent)

    @rule(agent=st.sampled_from(AGENTS))
    def up(self, agent: str) -> None:
        agent_id = self.cluster.agent_id(agent)
        if agent_id in self.cluster.master.agents:
            self.cluster.operator("up_agent", agent_id)
            self.drained.discard(agent)

    # -- faults -------------------------------------------------------------------
    @rule(agent=st.sampled_from(AGENTS),
          fault=st.sampled_from(["disconnect", "cut", "reconnect", "stop", "start"]))
    def agent_fault(self, agent: str, fault: str) -> None:
        sim = self.cluster.agent(agent)
        if fault == "start" and sim.running:
            return
        if fault == "reconnect" and not sim.running:
            return
        getattr(sim, fault)()
        self.cluster.settle()

    @rule()
    def master_fails_over(self) -> None:
        self.cluster.failover()

    @rule(seconds=st.sampled_from([0.5, 2.0, 7.0, 40.0]))
    def time_passes(self, seconds: float) -> None:
        self.cluster.advance(seconds)

    # -- once everything is repaired, everything asked for has happened ---------------
    @rule()
    def heal_and_check(self) -> None:
        cluster = self.cluster
        cluster.heal()
        cluster.advance(12)  # grace periods (5 s at most), acknowledgements, retries
        cluster.heal()
        cluster.settle()
        master = cluster.master
        for task_id in sorted(self.killed):
            fw = self.launched[task_id]
            state = cluster.task(task_id, fw)
            assert state is None or task_states.is_terminal(state), (task_id, state)
            assert not cluster.executor_alive(task_id), f"{task_id} was killed, still runs"
        for name in sorted(self.drained):
            agent_id = cluster.agent_id(name)
            assert master.agents[agent_id].maintenance == M.MAINTENANCE_DOWN, name
            running = [k for k, e in cluster.agent(name).executors.items()
                       if e.alive and not task_states.is_terminal(e.state)]
            assert running == [], f"drained {name} still runs {running}"
        for task_id, fw in sorted(self.launched.items()):
            if fw.framework_id in self.torn or fw.framework_id in master.torn_down:
                assert not cluster.executor_alive(task_id), f"{task_id} of a torn-down fw"
        # No task id runs twice (a stale copy of a reused id is killed), and
        # what runs is what the master tracks, where it tracks it.
        running: dict[tuple[str, str], list[str]] = {}
        for agent in cluster.agents.values():
            for key, executor in agent.executors.items():
                if executor.alive and not task_states.is_terminal(executor.state):
                    running.setdefault(key, []).append(agent.agent_id)
        for key, where in sorted(running.items()):
            assert len(where) == 1, f"{key} runs on {where}"
            tracked = master.tasks.get(key)
            assert tracked is not None and tracked.agent_id == where[0], (key, where)
            assert not task_states.is_terminal(tracked.state), (key, tracked.state)
        # Every kill fulfilled: no record of one is left, in the registry or pending.
        assert [k for k in cluster.registry if k.startswith("kills/")] == []
        assert master.pending_kills == {}
        event(f"heal: {len(self.killed)} killed, {len(self.drained)} drained")

    @invariant()
    def consistent(self) -> None:
        self.cluster.validate()
        for fw in self.frameworks:
            assert fw.errors == [], fw.errors


ClusterMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestClusterStateMachine = ClusterMachine.TestCase
