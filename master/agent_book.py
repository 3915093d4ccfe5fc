"""The master's agents: registration, re-registration, health and maintenance.

A mixin of MasterState (state.py), pure like it: events in, commands out.

    (register) ─▶ ACTIVE ◀─▶ DISCONNECTED            (stream lost / re-registered)
                    │              │
                    └──────┬───────┘ silent for ping timeout × max ping timeouts
                           ▼            (or not back within the re-register timeout
                      UNREACHABLE ──(re-registers)──▶ ACTIVE   after a failover)
                           │ agent_gone_timeout
                           ▼
                          GONE  (a returning agent is told to shut its tasks down)

Maintenance (DRAINING, then DOWN once empty) is an operator's decision, kept
apart from connectivity in AgentEntry.maintenance.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from juggler.common import ids, task_states
from juggler.common.resources import ResourceError, Resources
from juggler.master.commands import (
    CallError,
    CloseAgentStream,
    Code,
    Command,
    Persist,
    ToAgent,
    kill_command,
)
from juggler.master.entries import (
    DEFAULT_ROLE,
    A,
    AgentEntry,
    AgentGone,
    FrameworkEntry,
    OfferEntry,
    S,
    TaskEntry,
)
from juggler.v1 import agent_pb2, common_pb2, operator_pb2

# A new leader offers nothing until every agent of its registry has
# re-registered, for at most RECOVERY_HOLD_SECONDS (and never past the
# re-register timeout). Allocating over and over while ten thousand agents come
# back costs the very CPU they need, and offers made from a part of the cluster
# are outdated moments later. (Mesos's allocator holds off the same way, until
# 80% of the agents are back, though only when quotas are set, and for up to
# ten minutes. Here the hold is short, so it can wait for all: cycles over the
# 8,000 agents back would take a third of the master while the last 2,000
# re-register. A cluster that lost agents with its master waits 5 s for offers.)
RECOVERY_FACTOR = 1.0
RECOVERY_HOLD_SECONDS = 5.0


@dataclass
class RecoveryHold:
    expected: int
    deadline: float
    back: int = 0


if TYPE_CHECKING:
    from juggler.master.state import MasterState

    _Base = MasterState
else:
    _Base = object


class AgentBook(_Base):
    def allocation_held(self, now: float) -> bool:
        """Whether allocation still waits for agents after a failover; the hold
        ends for good once RECOVERY_FACTOR of them are back or at its deadline."""
        hold = self.recovery
        if hold is None:
            return False
        if hold.back >= math.ceil(RECOVERY_FACTOR * hold.expected) or now >= hold.deadline:
            self.recovery = None
            return False
        return True

    def _agent_health(self, now: float) -> list[Command]:
        """Agents silent too long become UNREACHABLE; unreachable too long, GONE."""
        commands: list[Command] = []
        silent_for = self.agent_ping_timeout * self.max_agent_ping_timeouts
        for agent in list(self.agents.values()):
            if agent.reregister_deadline is not None:
                if now >= agent.reregister_deadline:
                    commands += self._mark_unreachable(agent)
            elif agent.state in (A.AGENT_ACTIVE, A.AGENT_DISCONNECTED):
                if now >= agent.last_seen + silent_for:
                    commands += self._mark_unreachable(agent)
            elif (agent.state == A.AGENT_UNREACHABLE and agent.unreachable_since is not None
                    and now >= agent.unreachable_since + self.agent_gone_timeout):
                commands += self._mark_gone(agent)
        return commands

    def _agent_offers(self, agent_id: str) -> list[OfferEntry]:
        agent = self.agents.get(agent_id)
        if agent is None:
            return []
        return [self.offers[oid] for oid in sorted(agent.offers)]

    def _mark_unreachable(self, agent: AgentEntry) -> list[Command]:
        """The agent missed its health checks: its resources leave the pool and its
        tasks are UNREACHABLE (LOST to frameworks that are not partition-aware)."""
        agent_id = agent.info.id
        commands: list[Command] = []
        for offer in self._agent_offers(agent_id):
            commands += self._rescind(offer)
        agent.state = A.AGENT_UNREACHABLE
        agent.unreachable_since = self.clock.now()
        agent.reregister_deadline = None
        commands.append(CloseAgentStream(agent_id))
        if self.allocator.has_agent(agent_id):
            self.allocator.remove_agent(agent_id)
        for key in sorted(agent.tasks):
            task = self.tasks[key]
            task.resources_recovered = True  # they left the pool with the agent
            if not task_states.is_terminal(task.state):
                commands += self._master_update(
                    task, S.TASK_UNREACHABLE, common_pb2.REASON_AGENT_UNREACHABLE,
                    f"agent {agent.info.hostname} ({agent_id}) stopped answering health checks")
        commands += self._persist_agent(agent)
        return commands

    def _mark_gone(self, agent: AgentEntry) -> list[Command]:
        agent_id = agent.info.id
        commands: list[Command] = []
        agent.state = A.AGENT_GONE
        for key in sorted(agent.tasks):
            task = self.tasks[key]
            if not task_states.is_terminal(task.state):
                commands += self._master_update(
                    task, S.TASK_GONE, common_pb2.REASON_AGENT_REMOVED,
                    f"agent {agent.info.hostname} ({agent_id}) was unreachable for longer "
                    f"than {self.agent_gone_timeout:g} s and is gone")
            self._complete_task(task)
        del self.agents[agent_id]
        self.gone_agents.add(agent_id)
        commands += self._persist_agent(agent)
        return commands

    def _persist_agent(self, agent: AgentEntry) -> list[Command]:
        """The write of the agent's registry record; none if the registry holds it
        already (ten thousand agents re-registering unchanged after a failover cost
        no writes, and their replies wait for none)."""
        record = operator_pb2.AgentView(info=agent.info, state=agent.state,
                                        total=agent.total.to_proto(),
                                        registered_time=agent.registered_time)
        if agent.maintenance is not None:
            record.state = agent.maintenance if agent.state == A.AGENT_ACTIVE else agent.state
        value = record.SerializeToString()
        if value == agent.persisted:
            return []
        agent.persisted = value
        return [Persist(f"agents/{agent.info.id}", value)]

    def persist_failed(self, key: str) -> None:
        """A registry write failed: the next write of that agent's record must not
        be skipped as unchanged."""
        if key.startswith("agents/"):
            agent = self.agents.get(key.removeprefix("agents/"))
            if agent is not None:
                agent.persisted = None

    def recover_registry(self, agents: Iterable[operator_pb2.AgentView],
                         frameworks: Iterable[common_pb2.FrameworkInfo],
                         reregister_timeout: float) -> None:
        """A new leader starts from the registry (design.md: tasks are not stored;
        agents bring them back when they re-register).

        Admitted agents must re-register within `reregister_timeout` or they are
        marked UNREACHABLE; frameworks are disconnected until they re-subscribe
        (their failover timeout counts from now)."""
        now = self.clock.now()
        for view in agents:
            agent_id = view.info.id
            if view.state == A.AGENT_GONE:
                self.gone_agents.add(agent_id)
                continue
            entry = AgentEntry(info=view.info, total=Resources.from_proto(view.total),
                               state=A.AGENT_DISCONNECTED, registered_time=view.registered_time,
                               last_seen=now, persisted=view.SerializeToString())
            if view.state == A.AGENT_UNREACHABLE:
                entry.state = A.AGENT_UNREACHABLE
                entry.unreachable_since = now
            else:
                entry.reregister_deadline = now + reregister_timeout
            if view.state in (A.AGENT_DRAINING, A.AGENT_DOWN):
                entry.maintenance = view.state
            self.agents[agent_id] = entry
        expected = sum(1 for a in self.agents.values() if a.reregister_deadline is not None)
        if expected:
            self.recovery = RecoveryHold(
                expected=expected, deadline=now + min(reregister_timeout, RECOVERY_HOLD_SECONDS))
        for info in frameworks:
            if info.id in self.frameworks:
                continue
            fw = FrameworkEntry(info=info, registered_time=self.clock.time(), disconnected_at=now)
            self.frameworks[info.id] = fw
            self.allocator.add_framework(info.id, info.roles or [DEFAULT_ROLE])
            self.allocator.deactivate_framework(info.id)

    def agent_seen(self, agent_id: str) -> None:
        """Any message from the agent proves it alive."""
        agent = self.agents.get(agent_id)
        if agent is not None:
            agent.last_seen = self.clock.now()
            agent.last_seen_time = self.clock.time()

    def drain_agent(self, agent_id: str) -> list[Command]:
        agent = self._known_agent(agent_id)
        commands: list[Command] = []
        if agent.maintenance is None:
            agent.maintenance = A.AGENT_DRAINING
            if agent.state == A.AGENT_ACTIVE:
                self.allocator.deactivate_agent(agent_id)
            for offer in self._agent_offers(agent_id):
                commands += self._rescind(offer)
        for key in sorted(agent.tasks):
            task = self.tasks[key]
            if not task_states.is_terminal(task.state):
                commands.append(kill_command(task))
        self._maybe_down(agent)
        commands += self._persist_agent(agent)
        return commands

    def up_agent(self, agent_id: str) -> list[Command]:
        agent = self._known_agent(agent_id)
        if agent.maintenance is not None:
            agent.maintenance = None
            if agent.state == A.AGENT_ACTIVE:
                self.allocator.activate_agent(agent_id)
        return self._persist_agent(agent)

    def _known_agent(self, agent_id: str) -> AgentEntry:
        if agent_id in self.gone_agents:
            raise CallError(Code.FAILED_PRECONDITION, f"agent {agent_id} is gone")
        agent = self.agents.get(agent_id)
        if agent is None:
            raise CallError(Code.NOT_FOUND, f"agent {agent_id!r} is not known to the master")
        return agent

    def _maybe_down(self, agent: AgentEntry) -> None:
        if agent.maintenance == A.AGENT_DRAINING and not any(
                not task_states.is_terminal(self.tasks[k].state) for k in agent.tasks):
            agent.maintenance = A.AGENT_DOWN

    def register_agent(self, info: common_pb2.AgentInfo) -> tuple[str, list[Command]]:
        """A new agent (or one whose id the master has never seen)."""
        if info.id in self.agents:
            # The same agent again (its stream broke): treat as re-registration.
            return self.reregister_agent(info, [], [])
        total = _agent_total(info)
        self._refuse_gone(info.id)
        info = common_pb2.AgentInfo().FromString(info.SerializeToString())
        if not info.id:
            info.id = ids.new()
        agent = AgentEntry(info=info, total=total, registered_time=self.clock.time())
        self.agents[info.id] = agent
        self.agent_seen(info.id)
        self.allocator.add_agent(info.id, total)
        return info.id, self._registered(agent)

    def _refuse_gone(self, agent_id: str) -> None:
        if agent_id and agent_id in self.gone_agents:
            raise AgentGone(agent_id)

    def _registered(self, agent: AgentEntry) -> list[Command]:
        info = agent.info
        return [
            *self._persist_agent(agent),
            ToAgent(info.id, agent_pb2.MasterMessage(registered=agent_pb2.MasterMessage.Registered(
                agent_id=info.id, heartbeat_interval_seconds=self.agent_ping_timeout,
                master_address=self.address, masters=self.succession()))),
        ]

    def reregister_agent(self, info: common_pb2.AgentInfo,
                         statuses: Iterable[common_pb2.TaskStatus],
                         running: Iterable[agent_pb2.AgentMessage.RunningTask],
                         ) -> tuple[str, list[Command]]:
        """An agent that has an id comes back with what it runs.

        Its report is the truth about its tasks: tasks the master knows but the
        agent does not are DROPPED (never started) or LOST/GONE; tasks the agent
        runs that the master does not know (after a master restart) are adopted.
        """
        total = _agent_total(info)
        self._refuse_gone(info.id)
        if not info.id:
            raise CallError(Code.INVALID_ARGUMENT, "re-registration without an agent id")
        statuses = list(statuses)
        running = list(running)
        latest = {(s.framework_id, s.task_id): s for s in statuses}
        # Tasks the agent still knows of. Terminal ones among them have an update
        # on its way (retried until acknowledged): they hold no resources any more.
        known = {(rt.framework.id, rt.task.task_id) for rt in running}
        staging = S.TASK_STAGING
        reported = {}
        for rt in running:
            key = (rt.framework.id, rt.task.task_id)
            st = latest.get(key)
            if not task_states.is_terminal(st.state if st is not None else staging):
                reported[key] = rt
        commands: list[Command] = []
        agent = self.agents.get(info.id)
        if agent is None:
            agent = AgentEntry(info=info, total=total, registered_time=self.clock.time())
            self.agents[info.id] = agent
        else:
            # Offers made against the agent's old state are void.
            for offer in self._agent_offers(info.id):
                commands += self._rescind(offer)
        if self.allocator.has_agent(info.id):
            self.allocator.remove_agent(info.id)
        agent.info = info
        agent.total = total
        back_from_unreachable = agent.state == A.AGENT_UNREACHABLE
        if agent.reregister_deadline is not None and self.recovery is not None:
            self.recovery.back += 1
        agent.state = A.AGENT_ACTIVE
        agent.unreachable_since = None
        agent.reregister_deadline = None
        self.agent_seen(info.id)
        # Tasks the master has on this agent that the agent no longer reports.
        for key in sorted(agent.tasks):
            task = self.tasks[key]
            if key in reported:
                continue
            if key in known or task_states.is_terminal(task.state):
                task.resources_recovered = True
                continue
            if task.state == S.TASK_STAGING:
                commands += self._master_update(
                    task, S.TASK_DROPPED, common_pb2.REASON_AGENT_RESTARTED,
                    "the agent re-registered without the task: it never started")
            else:
                commands += self._master_update(
                    task, S.TASK_GONE, common_pb2.REASON_AGENT_RESTARTED,
                    "the agent re-registered without the task")
            task.resources_recovered = True
        # Tasks the agent reports: adopt the unknown ones, reconcile the rest.
        used: dict[tuple[str, str], Resources] = {}
        for key, rt in sorted(reported.items()):
            fid = rt.framework.id
            role = (rt.task.resources[0].role if rt.task.resources else "") or DEFAULT_ROLE
            res = Resources.from_proto(rt.task.resources)
            st = latest.get(key)
            task = self.tasks.get(key)
            if task is None:
                if fid not in self.frameworks:
                    fw = FrameworkEntry(info=rt.framework, registered_time=self.clock.time())
                    fw.disconnected_at = self.clock.now()
                    self.frameworks[fid] = fw
                    self.allocator.add_framework(fid, rt.framework.roles or [DEFAULT_ROLE])
                    self.allocator.deactivate_framework(fid)
                task = TaskEntry(info=rt.task, framework_id=fid, agent_id=info.id, role=role,
                                 resources=res, launched_time=self.clock.time(),
                                 state=st.state if st else S.TASK_STAGING, status=st)
                if st is not None:
                    task.history.append(st)
                self.tasks[key] = task
                self.frameworks[fid].tasks.add(rt.task.task_id)
                agent.tasks.add(key)
            elif back_from_unreachable and not self._partition_aware(fid):
                # The framework was told LOST and has likely replaced the task: a
                # second copy must not keep running.
                if st is not None:
                    task.state = st.state
                commands.append(kill_command(task))
            elif back_from_unreachable and st is not None and st.state != task.state:
                commands += self._master_update(task, st.state, common_pb2.REASON_RECONCILIATION,
                                                "the agent is reachable again")
            task.resources_recovered = False
            used[(fid, role)] = used.get((fid, role), Resources()) + res
        self.allocator.add_agent(info.id, total, used)
        if agent.maintenance is not None:
            self.allocator.deactivate_agent(info.id)
            self._maybe_down(agent)
        return info.id, commands + self._registered(agent)

    def agent_disconnected(self, agent_id: str) -> list[Command]:
        agent = self.agents.get(agent_id)
        if agent is None or agent.state != A.AGENT_ACTIVE:
            return []
        agent.state = A.AGENT_DISCONNECTED
        self.allocator.deactivate_agent(agent_id)
        commands: list[Command] = []
        for offer in self._agent_offers(agent_id):
            commands += self._rescind(offer)
        return commands


def _agent_total(info: common_pb2.AgentInfo) -> Resources:
    try:
        return Resources.from_proto(info.resources)
    except ResourceError as e:
        raise CallError(Code.INVALID_ARGUMENT, f"agent resources: {e}") from None
