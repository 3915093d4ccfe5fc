"""The master's agents: their entries, lifecycles, health and registry records.

A collaborator of MasterState (state.py), pure like it. It owns what is only
about agents — admission, the connectivity and maintenance lifecycles
(master/lifecycles.py), who is overdue for a health check, what the registry
holds for each agent, the hold on allocation while a new leader waits for its
agents — and tells MasterState what it decided; MasterState carries the
consequences for tasks, offers and the allocator.

Every connectivity or maintenance change goes through `move` or `set_maintenance`,
each recorded in the agent's story with its stimulus.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from juggler.common import attributes
from juggler.common.clock import Clock
from juggler.common.resources import ResourceError, Resources
from juggler.master.commands import CallError, Code, Persist
from juggler.master.entries import A, AgentEntry, AgentGone, M
from juggler.master.lifecycles import AGENT, MAINTENANCE
from juggler.v1 import common_pb2, operator_pb2

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
# The master pings its agents in slices, one every PING_SLICE seconds, each
# agent once per ping timeout (master/server.py _ping_loop; the simulated
# cluster, testing/cluster.py, does the same).
PING_SLICE = 0.1
RECOVERY_HOLD_SECONDS = 5.0

# Registries written before maintenance had its own field kept DRAINING (4) and
# DOWN (5) in AgentView.state; a new leader reads them as ACTIVE + maintenance.
_LEGACY_MAINTENANCE = {4: M.MAINTENANCE_DRAINING, 5: M.MAINTENANCE_DOWN}


@dataclass
class RecoveryHold:
    expected: int
    deadline: float
    back: int = 0


@dataclass(frozen=True)
class Overdue:
    """A health decision: `agent` must become `target` (UNREACHABLE or GONE)."""

    agent: AgentEntry
    target: int
    why: str


class AgentBook:
    """Agents by id (iterating, `in`, `[]` and `get` work as on a dict), the ids
    of GONE agents, and the recovery hold.

    `ping_timeout` and `gone_timeout` are seconds; an agent silent for
    ping_timeout × max_ping_timeouts is UNREACHABLE, unreachable for
    gone_timeout it is GONE (Mesos: 15 s × 5, and a week)."""

    def __init__(self, clock: Clock, *, ping_timeout: float = 15.0, max_ping_timeouts: int = 5,
                 gone_timeout: float = 7 * 86400.0) -> None:
        self.clock = clock
        self.ping_timeout = ping_timeout
        self.max_ping_timeouts = max_ping_timeouts
        self.gone_timeout = gone_timeout
        self._entries: dict[str, AgentEntry] = {}
        self.gone: set[str] = set()
        # After a failover (recover): agents expected back, how many are, and
        # until when allocation waits for them.
        self.recovery: RecoveryHold | None = None
        # Agents of the registry (UNREACHABLE ones too) that have not registered
        # with this leader yet: tasks this leader does not know may be on them.
        self.unsettled: set[str] = set()

    # -- the entries, as a mapping --------------------------------------------
    def __getitem__(self, agent_id: str) -> AgentEntry:
        return self._entries[agent_id]

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, agent_id: str) -> AgentEntry | None:
        """The agent's entry; None for an unknown (or GONE) id."""
        return self._entries.get(agent_id)

    def values(self) -> Iterable[AgentEntry]:
        """Every entry (not GONE ones), in admission order."""
        return self._entries.values()

    def items(self) -> Iterable[tuple[str, AgentEntry]]:
        """(agent id, entry) pairs, in admission order."""
        return self._entries.items()

    # -- admission -----------------------------------------------------------
    def admit(self, info: common_pb2.AgentInfo, total: Resources, why: str) -> AgentEntry:
        """A new entry, ACTIVE (registered, or re-registered unknown to this master)."""
        agent = AgentEntry(info=info, total=total, registered_time=self.clock.time())
        AGENT.begin(agent, A.AGENT_ACTIVE, why, self.clock.time())
        self._entries[info.id] = agent
        self.seen(info.id)
        return agent

    def known(self, agent_id: str) -> AgentEntry:
        """The agent, for an operator's call. Raises CallError: NOT_FOUND for an
        unknown agent, FAILED_PRECONDITION for a GONE one."""
        if agent_id in self.gone:
            raise CallError(Code.FAILED_PRECONDITION, f"agent {agent_id} is gone")
        agent = self._entries.get(agent_id)
        if agent is None:
            raise CallError(Code.NOT_FOUND, f"agent {agent_id!r} is not known to the master")
        return agent

    def refuse_gone(self, agent_id: str) -> None:
        """Raises AgentGone if `agent_id` was declared GONE."""
        if agent_id and agent_id in self.gone:
            raise AgentGone(agent_id)

    def forget(self, agent: AgentEntry) -> None:
        """A GONE agent leaves the book; its id is remembered as gone."""
        del self._entries[agent.info.id]
        self.gone.add(agent.info.id)
        self.unsettled.discard(agent.info.id)

    # -- lifecycles ----------------------------------------------------------
    def move(self, agent: AgentEntry, state: int, why: str) -> None:
        """The one way an agent's connectivity changes (raises InvalidTransition
        for a move the AGENT table does not allow)."""
        AGENT.move(agent, agent.info.id, state, why, self.clock.time())

    def set_maintenance(self, agent: AgentEntry, maintenance: int, why: str) -> None:
        """The one way an agent's maintenance changes (raises InvalidTransition)."""
        MAINTENANCE.move(agent, agent.info.id, maintenance, why, self.clock.time())

    def seen(self, agent_id: str) -> None:
        """Any message from the agent proves it alive (an unknown id is ignored)."""
        agent = self._entries.get(agent_id)
        if agent is not None:
            agent.last_seen = self.clock.now()
            agent.last_seen_time = self.clock.time()

    def overdue(self, now: float) -> list[Overdue]:
        """Agents that must become UNREACHABLE (silent too long, or not back
        within the re-register timeout after a failover) or GONE (unreachable
        too long), in id order. `now` is the clock's now() (monotonic seconds)."""
        out: list[Overdue] = []
        silent_for = self.ping_timeout * self.max_ping_timeouts
        for agent_id in sorted(self._entries):
            agent = self._entries[agent_id]
            if agent.reregister_deadline is not None:
                if now >= agent.reregister_deadline:
                    out.append(Overdue(agent, A.AGENT_UNREACHABLE,
                                       "it did not re-register with the new leader in time"))
            elif agent.state in (A.AGENT_ACTIVE, A.AGENT_DISCONNECTED):
                if now >= agent.last_seen + silent_for:
                    out.append(Overdue(agent, A.AGENT_UNREACHABLE,
                                       f"silent for more than {silent_for:g} s"))
            elif (agent.state == A.AGENT_UNREACHABLE and agent.unreachable_since is not None
                    and now >= agent.unreachable_since + self.gone_timeout):
                out.append(Overdue(agent, A.AGENT_GONE,
                                   f"unreachable for more than {self.gone_timeout:g} s"))
        return out

    # -- the registry --------------------------------------------------------
    def record(self, agent: AgentEntry) -> list[Persist]:
        """The write of the agent's registry record; none if the registry holds
        it already (ten thousand agents re-registering unchanged after a failover
        cost no writes, and their replies wait for none)."""
        view = operator_pb2.AgentView(info=agent.info, state=agent.state,
                                      maintenance=agent.maintenance,
                                      total=agent.total.to_proto(),
                                      registered_time=agent.registered_time,
                                      unreachable_time=agent.unreachable_time)
        value = view.SerializeToString()
        if value == agent.persisted:
            return []
        agent.persisted = value
        return [Persist(f"agents/{agent.info.id}", value)]

    def persist_failed(self, key: str) -> None:
        """A registry write failed: the next write of that agent's record must
        not be skipped as unchanged."""
        if key.startswith("agents/"):
            agent = self._entries.get(key.removeprefix("agents/"))
            if agent is not None:
                agent.persisted = None

    def recover(self, views: Iterable[operator_pb2.AgentView], reregister_timeout: float) -> None:
        """A new leader's agents, from the registry: each must re-register within
        `reregister_timeout` seconds (or becomes UNREACHABLE); maintenance is
        kept whatever the agent's connectivity."""
        now = self.clock.now()
        at = self.clock.time()
        for view in views:
            agent_id = view.info.id
            if view.state == A.AGENT_GONE:
                self.gone.add(agent_id)
                continue
            agent = AgentEntry(info=view.info, total=Resources.from_proto(view.total),
                               registered_time=view.registered_time, last_seen=now,
                               persisted=view.SerializeToString())
            maintenance = _LEGACY_MAINTENANCE.get(view.state, view.maintenance)
            if view.state == A.AGENT_UNREACHABLE:
                AGENT.begin(agent, A.AGENT_UNREACHABLE, "unreachable before the failover", at)
                # The gone timeout counts from when it became unreachable, not
                # from this failover.
                away = max(0.0, at - view.unreachable_time) if view.unreachable_time else 0.0
                agent.unreachable_since = now - away
                agent.unreachable_time = view.unreachable_time or at
            else:
                AGENT.begin(agent, A.AGENT_DISCONNECTED,
                            "recovered from the registry: waiting for it to re-register", at)
                agent.reregister_deadline = now + reregister_timeout
            if maintenance != M.MAINTENANCE_NONE:
                MAINTENANCE.begin(agent, maintenance, "kept in the registry", at)
            self._entries[agent_id] = agent
            self.unsettled.add(agent_id)
        expected = sum(1 for a in self._entries.values() if a.reregister_deadline is not None)
        if expected:
            self.recovery = RecoveryHold(
                expected=expected, deadline=now + min(reregister_timeout, RECOVERY_HOLD_SECONDS))

    def back(self, agent: AgentEntry) -> None:
        """The agent re-registered: it no longer counts as awaited."""
        if agent.reregister_deadline is not None and self.recovery is not None:
            self.recovery.back += 1
        agent.reregister_deadline = None
        self.unsettled.discard(agent.info.id)

    def awaited(self) -> bool:
        """Whether some agent of the registry (an UNREACHABLE one too) has not
        registered with this leader yet: it may bring back tasks this leader
        does not know."""
        return bool(self.unsettled)

    def allocation_held(self, now: float) -> bool:
        """Whether allocation still waits for agents after a failover; the hold
        ends for good once RECOVERY_FACTOR of them are back or at its deadline.
        `now` is the clock's now() (monotonic seconds)."""
        hold = self.recovery
        if hold is None:
            return False
        if hold.back >= math.ceil(RECOVERY_FACTOR * hold.expected) or now >= hold.deadline:
            self.recovery = None
            return False
        return True


def agent_total(info: common_pb2.AgentInfo) -> Resources:
    """The resources an agent registers with; CallError INVALID_ARGUMENT if they
    do not parse (common/resources.py)."""
    try:
        return Resources.from_proto(info.resources)
    except ResourceError as e:
        raise CallError(Code.INVALID_ARGUMENT, f"agent resources: {e}") from None


def check_attributes(info: common_pb2.AgentInfo) -> None:
    """CallError INVALID_ARGUMENT if the agent's attributes are not valid
    (common/attributes.py)."""
    try:
        attributes.check(info.attributes)
    except attributes.InvalidAttribute as e:
        raise CallError(Code.INVALID_ARGUMENT, f"agent {info.hostname}: {e}") from None


def ping_slices(ping_timeout: float) -> int:
    """How many slices the agents' pings of one ping timeout are spread over."""
    return max(1, round(ping_timeout / PING_SLICE))


def ping_slice(agent_id: str, slices: int) -> int:
    """The slice (0 … slices-1) in which `agent_id` is pinged: a stable hash
    of its id, the same in every process and run."""
    return zlib.crc32(agent_id.encode()) % slices
