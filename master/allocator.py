"""The allocator: hierarchical DRF over agents' free resources, pure and deterministic.

Events in (agents, frameworks, recovered resources, weights, quota limits), allocations out;
the master turns each Allocation into an offer. No I/O, no asyncio, time from an injected Clock.

Model (Mesos's HierarchicalAllocator with the DRF sorter, two levels):

    cluster total ── roles, ordered by weighted share = dominant share of the role's
                     allocation / role weight  (lowest first, ties by role name)
                       └─ frameworks subscribed to the role, ordered by the dominant
                          share of their allocation *in that role* (ties by framework id)

A dominant share is max over resource names of (allocated / cluster total of that name).
The cluster total counts every added agent, active or not (as the Mesos sorter does).
Shares and quota limits count the scalars (cpus, mem, disk) only: Mesos's DRF sorter and its
quota count scalar resources only, so host ports never weigh in a share.

Ports (a range resource) are booked beside the scalars, per agent: free ports, and the ports
each (framework, role) holds there. A grant carries every free port of the agent with its
scalars (as a Mesos offer carries the agent's free port ranges); a filter covers an offer
only when the offer's ports are a subset of the refused ports too.

Book-keeping invariants (checked by validate_state):
- per agent: free + sum(allocated[(framework, role)]) == total, nothing negative; its
  free ports and the ports each pair holds there are disjoint and together are its ports;
- per (framework, role): the sorter's allocation == sum over agents of what that pair holds
  there, for every pair including frameworks already removed ("orphans" the master has not
  recovered yet);
- per role: its allocation == sum of its *known* frameworks' allocations in it. A removed
  framework stops counting towards its roles' shares; its resources return to agents only
  through recover(). A framework added again with the same id picks its holdings up again.

One cycle (allocate): agents in id order; for each active agent whose free resources are
allocatable (scalars: free ports alone are not), the lowest (role, framework) that is
eligible gets all of them, with all the agent's free ports, as one allocation:
framework active, role not suppressed, no refusal filter on that agent covering the offer, and
the role's quota limit respected (a capped offer hands out only the part that fits). Shares
are updated after every grant. Only if a quota cap left something allocatable behind does the
agent go on to the next role (each role at most once per agent per cycle).

Which agents a cycle visits. An agent a cycle visited and left with free resources had no
eligible taker for them, and it still has none until something changes for it or for
everyone. So a cycle visits every agent only after a change that may make any agent's free
resources takeable (a framework added, activated, revived or re-subscribed, or removed; a
weight or quota limit set; an agent removed; resources recovered in a role with a quota limit,
whose room grows on every agent); otherwise only the agents whose free resources grew, that
were added or activated, or on which a refusal filter ended, since the last cycle. The result
is the same as visiting all (agents are still visited in id order, and an agent left out
would have been given nothing); what it saves is the walk over a thousand idle agents on each
of the cycles that every Accept and Decline triggers (the master's allocation loop, up to 50
a second). Mesos's allocator does the same with its allocation candidates
(HierarchicalAllocatorProcess: `allocate(slaveId)` after a recovery, `allocate()` for all).

Internally amounts are tuples of integer thousandths in resources.KNOWN order, and ports
are Ranges; Resources objects are built only at the edges (arguments and returned
Allocations).

Units are Resources' (cpus in cores, mem and disk in MiB) and times are seconds of the
injected Clock. Errors: AllocatorError for an event naming an agent or framework the
allocator does not have (or already has), or a bad weight; ResourceError for resources that
do not fit (more used than an agent's total, more recovered than held) or a bad quota limit.
A call that raises has changed nothing.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from operator import add, mul, sub

from juggler.common.clock import Clock
from juggler.common.ranges import EMPTY, Ranges
from juggler.common.resources import KNOWN, ResourceError, Resources

_N = len(KNOWN)
_ZERO: tuple[int, ...] = (0,) * _N
_UNLIMITED = 1 << 62  # a quota limit for names the limit does not mention


class AllocatorError(ValueError):
    """An event that does not fit the allocator's state (unknown or duplicate id), or
    a weight that is not a positive finite number."""


@dataclass(frozen=True, slots=True)
class Allocation:
    """One grant of allocate(): `resources` (never empty; cores, MiB, and the
    agent's free ports) of agent `agent_id` to framework `framework_id` in
    `role`, held by that pair until recover() gives them back. The master makes
    one offer of each."""

    framework_id: str
    role: str
    agent_id: str
    resources: Resources


Vec = tuple[int, ...]


def _vec(r: Resources) -> Vec:
    return r.milli_vector(KNOWN)


def _add(a: Vec, b: Vec) -> Vec:
    return tuple(map(add, a, b))


def _sub(a: Vec, b: Vec) -> Vec:
    return tuple(map(sub, a, b))


def _fits(small: Vec, big: Vec) -> bool:
    return all(s <= b for s, b in zip(small, big, strict=True))


def _show(v: Vec) -> str:
    return str(Resources.from_milli_vector([max(x, 0) for x in v])) + (
        f" (raw {v})" if any(x < 0 for x in v) else ""
    )


class _Agent:
    __slots__ = ("active", "allocated", "free", "id", "ports_free", "ports_held", "ports_total",
                 "total")

    def __init__(self, agent_id: str, total: Vec, ports: Ranges) -> None:
        self.id = agent_id
        self.total = total
        self.free = total
        self.allocated: dict[tuple[str, str], Vec] = {}  # (framework, role) -> held here
        self.ports_total = ports
        self.ports_free = ports
        self.ports_held: dict[tuple[str, str], Ranges] = {}  # (framework, role) -> ports here
        self.active = True


class _Framework:
    __slots__ = ("active", "filters", "id", "roles", "suppressed")

    def __init__(self, framework_id: str, roles: Iterable[str], suppressed: Iterable[str]) -> None:
        self.id = framework_id
        self.roles: tuple[str, ...] = tuple(dict.fromkeys(roles))
        self.suppressed: set[str] = set(suppressed)
        self.active = True
        # (role, agent) -> [(refused amounts, refused ports, expiry)]; an empty dict costs
        # one truth test.
        self.filters: dict[tuple[str, str], list[tuple[Vec, Ranges, float]]] = {}


class _Role:
    __slots__ = ("alloc", "limit", "name", "weight")

    def __init__(self, name: str) -> None:
        self.name = name
        self.weight = 1.0
        self.limit: Vec | None = None
        self.alloc: Vec = _ZERO  # sum of known frameworks' allocations in this role


class Allocator:
    def __init__(
        self,
        clock: Clock,
        *,
        min_allocatable: Resources = Resources({"cpus": 0.01, "mem": 32}),  # noqa: B008
        default_refuse_seconds: float = 5.0,
    ) -> None:
        """`clock`: now() in seconds, read for refusal filters' expiry.
        `min_allocatable`: an agent's free resources are offered only when they
        reach at least one of its amounts (Mesos's MIN_CPUS 0.01 core, MIN_MEM
        32 MiB); empty: whenever anything is free. `default_refuse_seconds`: the
        filter of decline() without refuse_seconds and of recover() with a
        negative or NaN one (Mesos's 5 s)."""
        self._clock = clock
        self.default_refuse_seconds = default_refuse_seconds
        # Allocatable when ANY named minimum is met (Mesos: cpus >= MIN_CPUS or mem >= MIN_MEM).
        mv = _vec(min_allocatable)
        self._min_items = tuple((i, m) for i, m in enumerate(mv) if m > 0)
        self._agents: dict[str, _Agent] = {}
        self._order: list[_Agent] | None = None  # agents sorted by id, rebuilt on add/remove
        self._frameworks: dict[str, _Framework] = {}
        self._roles: dict[str, _Role] = {}
        self._alloc: dict[tuple[str, str], Vec] = {}  # (framework, role) -> held, all agents
        self._total: Vec = _ZERO
        # The next cycle's agents (module docstring): all of them, or those changed.
        self._visit_all = True
        self._changed: set[str] = set()
        self._expiries: list[tuple[float, str]] = []  # heap: (a refusal filter's expiry, agent)

    # -- agents -----------------------------------------------------------
    def add_agent(
        self,
        agent_id: str,
        total: Resources,
        used: Mapping[tuple[str, str], Resources] | None = None,
    ) -> None:
        """Admit an agent, active, with `total` resources; `used` is what it
        already runs, per (framework_id, role) (an agent re-registering after a
        failover), and counts towards those roles and frameworks at once, known
        or not yet. AllocatorError if the agent is already added; ResourceError
        when `used` exceeds `total`, or uses ports `total` lacks or one port twice."""
        if agent_id in self._agents:
            raise AllocatorError(f"agent {agent_id} is already added")
        agent = _Agent(agent_id, _vec(total), total.ports)
        held: dict[tuple[str, str], Vec] = {}
        ports_held: dict[tuple[str, str], Ranges] = {}
        free = agent.total
        ports_free = agent.ports_free
        for key, res in (used or {}).items():
            p = res.ports
            if p:
                if not ports_free.contains(p):
                    raise ResourceError(
                        f"agent {agent_id}: used ports {p - ports_free} are not in its ports "
                        f"{total.ports} or are used twice"
                    )
                ports_held[key] = ports_held.get(key, EMPTY) | p
                ports_free = ports_free - p
            v = _vec(res)
            if not any(v):
                continue
            held[key] = _add(held.get(key, _ZERO), v)
            free = _sub(free, v)
        if any(x < 0 for x in free):
            raise ResourceError(
                f"agent {agent_id}: used resources exceed its total {total} by {_show(free)}"
            )
        agent.free = free
        agent.allocated = held
        agent.ports_free = ports_free
        agent.ports_held = ports_held
        for key, v in held.items():
            self._track(key, v)
        self._agents[agent_id] = agent
        self._total = _add(self._total, agent.total)
        self._order = None
        self._changed.add(agent_id)

    def has_agent(self, agent_id: str) -> bool:
        """Whether the agent is added (active or not)."""
        return agent_id in self._agents

    def remove_agent(self, agent_id: str) -> None:
        """Forget the agent: its total leaves the cluster's, what it held stops
        counting towards every framework and role, and refusal filters on it
        go. AllocatorError for an unknown agent."""
        agent = self._agent(agent_id)
        for key, v in agent.allocated.items():
            self._untrack(key, v)
        self._total = _sub(self._total, agent.total)
        del self._agents[agent_id]
        self._order = None
        self._visit_all = True  # what it held counted towards quota limits
        for fw in self._frameworks.values():
            if fw.filters:
                for key in [k for k in fw.filters if k[1] == agent_id]:
                    del fw.filters[key]

    def activate_agent(self, agent_id: str) -> None:
        """Offer the agent again. AllocatorError for an unknown agent."""
        self._agent(agent_id).active = True
        self._changed.add(agent_id)

    def deactivate_agent(self, agent_id: str) -> None:
        """Offer nothing of the agent (disconnected, in maintenance); what it
        holds, and its total in the shares, stay. AllocatorError for an
        unknown agent."""
        self._agent(agent_id).active = False

    def available(self, agent_id: str) -> Resources:
        """The agent's free resources (ports included): neither offered nor in
        use. AllocatorError for an unknown agent."""
        agent = self._agent(agent_id)
        return Resources.from_milli_vector(agent.free, ports=agent.ports_free)

    def allocated(self, agent_id: str) -> dict[tuple[str, str], Resources]:
        """What the agent holds per (framework_id, role), ports included: offered
        or in use; pairs holding nothing are absent. AllocatorError for an
        unknown agent."""
        agent = self._agent(agent_id)
        return {
            k: Resources.from_milli_vector(agent.allocated.get(k, _ZERO),
                                           ports=agent.ports_held.get(k))
            for k in sorted(set(agent.allocated) | set(agent.ports_held))
        }

    # -- frameworks -------------------------------------------------------
    def add_framework(
        self, framework_id: str, roles: Iterable[str], suppressed_roles: Iterable[str] = ()
    ) -> None:
        """Add an active framework subscribed to `roles` (duplicates dropped,
        order kept; none: it is offered nothing), not offered in
        `suppressed_roles`. What it already holds (recorded by add_agent's
        `used`) counts towards its roles again. AllocatorError if it is already
        added."""
        if framework_id in self._frameworks:
            raise AllocatorError(f"framework {framework_id} is already added")
        self._frameworks[framework_id] = _Framework(framework_id, roles, suppressed_roles)
        self._visit_all = True
        # Holdings recorded while the framework was unknown (agents re-registering with `used`
        # before it, or before it was removed) count towards its roles again.
        for (fid, role), v in self._alloc.items():
            if fid == framework_id:
                r = self._role(role)
                r.alloc = _add(r.alloc, v)

    def update_framework(
        self, framework_id: str, roles: Iterable[str], suppressed_roles: Iterable[str] = ()
    ) -> None:
        """Change a framework's roles and suppressed roles (both replaced); what
        it holds in roles it left still counts there, its refusal filters in
        them go. AllocatorError for an unknown framework."""
        fw = self._framework(framework_id)
        fw.roles = tuple(dict.fromkeys(roles))
        fw.suppressed = set(suppressed_roles)
        fw.filters = {k: f for k, f in fw.filters.items() if k[0] in fw.roles}
        self._visit_all = True

    def remove_framework(self, framework_id: str) -> None:
        """Forget the framework in the sorter: what it holds stops counting
        towards its roles but stays held on the agents until the master
        recover()s it. AllocatorError for an unknown framework."""
        self._framework(framework_id)
        for (fid, role), v in self._alloc.items():
            if fid == framework_id:
                r = self._roles[role]
                r.alloc = _sub(r.alloc, v)
        del self._frameworks[framework_id]
        self._visit_all = True

    def has_framework(self, framework_id: str) -> bool:
        """Whether the framework is added (active or not)."""
        return framework_id in self._frameworks

    def activate_framework(self, framework_id: str) -> None:
        """Offer to the framework again. AllocatorError for an unknown one."""
        self._framework(framework_id).active = True
        self._visit_all = True

    def deactivate_framework(self, framework_id: str) -> None:
        """A disconnected framework gets no offers; its filters go (as in Mesos).
        AllocatorError for an unknown framework."""
        fw = self._framework(framework_id)
        fw.active = False
        fw.filters.clear()

    def suppress(self, framework_id: str, roles: Iterable[str] = ()) -> None:
        """No offers to the framework in `roles` (empty: all its roles) until
        revive(). Roles are not checked against the framework's (the master
        does). AllocatorError for an unknown framework."""
        fw = self._framework(framework_id)
        fw.suppressed.update(tuple(roles) or fw.roles)

    def revive(self, framework_id: str, roles: Iterable[str] = ()) -> None:
        """Unsuppress the roles (empty: all) and clear the framework's filters in them.
        AllocatorError for an unknown framework."""
        fw = self._framework(framework_id)
        chosen = set(roles) or set(fw.roles) | fw.suppressed | {k[0] for k in fw.filters}
        fw.suppressed -= chosen
        fw.filters = {k: f for k, f in fw.filters.items() if k[0] not in chosen}
        self._visit_all = True

    # -- resources flow ---------------------------------------------------
    def recover(
        self,
        framework_id: str,
        agent_id: str,
        resources: Resources,
        role: str,
        refuse_seconds: float | None = None,
    ) -> None:
        """Resources come back to the agent (declined, rescinded, timed out, task finished).

        With refuse_seconds > 0 the framework is not offered, on that agent in that role, any
        resources that are a subset of `resources` (scalars and ports) until now +
        refuse_seconds (seconds of the clock). None or 0: no filter; negative or NaN: the
        default (Mesos does the same). An agent already removed is ignored; a framework not
        added gets no filter. Recovering more than the (framework, role) pair holds on the
        agent (or ports it does not hold there) is a ResourceError, and changes nothing.
        """
        agent = self._agents.get(agent_id)
        if agent is None:
            return
        v = _vec(resources)
        p = resources.ports
        key = (framework_id, role)
        held = agent.allocated.get(key, _ZERO)
        left = _sub(held, v)
        if any(x < 0 for x in left):
            raise ResourceError(
                f"framework {framework_id} role {role} on agent {agent_id}: cannot recover "
                f"{resources}, it holds {_show(held)}"
            )
        if p:
            held_p = agent.ports_held.get(key, EMPTY)
            if not held_p.contains(p):
                raise ResourceError(
                    f"framework {framework_id} role {role} on agent {agent_id}: cannot recover "
                    f"ports {p - held_p}, it holds ports {held_p}"
                )
            left_p = held_p - p
            if left_p:
                agent.ports_held[key] = left_p
            else:
                del agent.ports_held[key]
            agent.ports_free = agent.ports_free | p
            self._changed.add(agent_id)
        if any(v):
            if any(left):
                agent.allocated[key] = left
            else:
                del agent.allocated[key]
            agent.free = _add(agent.free, v)
            self._untrack(key, v)
            self._changed.add(agent_id)
            r = self._roles.get(role)
            if r is not None and r.limit is not None:
                self._visit_all = True  # the role has room again, on every agent
        if refuse_seconds is None or refuse_seconds == 0:
            return
        if math.isnan(refuse_seconds) or refuse_seconds < 0:
            refuse_seconds = self.default_refuse_seconds
        fw = self._frameworks.get(framework_id)
        if fw is None or refuse_seconds <= 0:
            return
        expiry = self._clock.now() + refuse_seconds
        fw.filters.setdefault((role, agent_id), []).append((v, p, expiry))
        heapq.heappush(self._expiries, (expiry, agent_id))

    def decline(
        self,
        framework_id: str,
        agent_id: str,
        resources: Resources,
        role: str,
        refuse_seconds: float | None = None,
    ) -> None:
        """recover() with a filter of refuse_seconds, default_refuse_seconds when None
        (0: no filter). Raises as recover()."""
        if refuse_seconds is None:
            refuse_seconds = self.default_refuse_seconds
        self.recover(framework_id, agent_id, resources, role, refuse_seconds)

    # -- roles --------------------------------------------------------------
    def set_weight(self, role: str, weight: float) -> None:
        """The role's DRF weight (default 1): its dominant share is divided by it when
        roles are ordered, so a role of weight 3 is offered about three times what a role
        of weight 1 is (Mesos's weights). Takes effect at the next allocate().
        AllocatorError for a weight that is not a positive finite number."""
        if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight > 0):
            raise AllocatorError(f"role {role}: weight {weight!r} must be a positive number")
        self._role(role).weight = float(weight)
        self._visit_all = True

    def set_quota_limit(self, role: str, limit: Resources | Mapping[str, float] | None) -> None:
        """Cap what the role may hold (allocated + offered); None removes the cap.
        Names not given are unlimited; amounts are cores and MiB (Mesos's quota limits).

        A Resources value drops zero amounts, so to limit a name to 0 pass a mapping.
        Takes effect at the next allocate(); nothing already held is taken back.
        ResourceError for a mapping Resources() refuses (unknown name, ports, an amount
        that is not a finite number >= 0), or a limit with ports (quota counts scalars
        only, as Mesos's); the role's limit is left as it was then.
        """
        r = self._role(role)
        self._visit_all = True
        if limit is None:
            r.limit = None
            return
        if isinstance(limit, Resources) and limit.ports:
            raise ResourceError(f"role {role}: a quota limit counts scalars only, not ports")
        given = limit.names() if isinstance(limit, Resources) else list(limit)
        amounts = limit if isinstance(limit, Resources) else Resources(limit)
        v = _vec(amounts)
        r.limit = tuple(v[i] if n in given else _UNLIMITED for i, n in enumerate(KNOWN))

    def role_shares(self) -> dict[str, float]:
        """Each role's weighted dominant share, the key roles are ordered by:
        max over the scalars of (its allocation, offered or in use) / cluster
        total, divided by its weight (0 for an empty cluster). For metrics."""
        inv = tuple(1.0 / t if t > 0 else 0.0 for t in self._total)
        return {name: max(map(mul, r.alloc, inv)) / r.weight
                for name, r in sorted(self._roles.items())}

    # -- the cycle ----------------------------------------------------------
    def allocate(self) -> list[Allocation]:
        """One allocation cycle over all active agents (the module's docstring says how).

        Returns the grants in agent id order; an agent appears more than once when a quota
        cap left part of it to other roles. Every grant is held from now on (free shrinks);
        an empty list when nothing is allocatable or nobody may take it. Visits every
        agent, or only those changed since the last cycle when that gives the same
        (the module's docstring says when)."""
        now = self._clock.now()
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:  # a filter over: its agent may be taken again
            self._changed.add(heapq.heappop(expiries)[1])
        if self._visit_all:
            agents = self._sorted_agents()
        else:
            agents = [self._agents[a] for a in sorted(self._changed) if a in self._agents]
        self._visit_all = False
        self._changed.clear()
        inv = tuple(1.0 / t if t > 0 else 0.0 for t in self._total)
        allocatable = self._allocatable

        # Per-cycle heaps: keys (share, id) are unique, so pop order does not depend on the
        # order entries were built in. Shares only grow within a cycle.
        fheaps: dict[str, list] = {}
        for fw in self._frameworks.values():
            if not fw.active:
                continue
            for role in fw.roles:
                if role in fw.suppressed:
                    continue
                a = self._alloc.get((fw.id, role), _ZERO)
                fheaps.setdefault(role, []).append((max(map(mul, a, inv)), fw.id, fw))
        role_heap: list = []
        for name, fheap in fheaps.items():
            heapq.heapify(fheap)
            r = self._role(name)
            role_heap.append((max(map(mul, r.alloc, inv)) / r.weight, name, r, fheap))
        heapq.heapify(role_heap)
        if not role_heap:
            return []

        heappop, heappush, heapreplace = heapq.heappop, heapq.heappush, heapq.heapreplace
        alloc = self._alloc
        from_vec = Resources.from_milli_vector
        out: list[Allocation] = []
        for agent in agents:
            if not agent.active:
                continue
            free = agent.free
            if not allocatable(free):
                continue
            agent_id = agent.id
            skipped_roles = []
            while role_heap:
                rentry = role_heap[0]
                rname, role, fheap = rentry[1], rentry[2], rentry[3]
                offer = free
                capped = role.limit is not None
                if capped:
                    offer = tuple(
                        min(f, max(lim - a, 0))
                        for f, lim, a in zip(free, role.limit, role.alloc, strict=True)
                    )
                    if not allocatable(offer):
                        skipped_roles.append(heappop(role_heap))
                        continue
                # The lowest framework in the role that no filter keeps off this offer.
                ports = agent.ports_free
                skipped = []
                fw = None
                while fheap:
                    cand = fheap[0][2]
                    if cand.filters and self._filtered(cand, rname, agent_id, offer, ports, now):
                        skipped.append(heappop(fheap))
                        continue
                    fw = cand
                    break
                if fw is None:
                    for e in skipped:
                        heappush(fheap, e)
                    skipped_roles.append(heappop(role_heap))
                    continue
                key = (fw.id, rname)
                held = alloc.get(key)
                held = offer if held is None else tuple(map(add, held, offer))
                alloc[key] = held
                role.alloc = tuple(map(add, role.alloc, offer))
                here = agent.allocated.get(key)
                agent.allocated[key] = offer if here is None else tuple(map(add, here, offer))
                free = agent.free = tuple(map(sub, free, offer))
                if ports:
                    held_p = agent.ports_held.get(key)
                    agent.ports_held[key] = ports if held_p is None else held_p | ports
                    agent.ports_free = EMPTY
                heapreplace(fheap, (max(map(mul, held, inv)), fw.id, fw))
                for e in skipped:
                    heappush(fheap, e)
                out.append(Allocation(fw.id, rname, agent_id, from_vec(offer, ports=ports)))
                new_rentry = (max(map(mul, role.alloc, inv)) / role.weight, rname, role, fheap)
                if not capped or not allocatable(free):
                    heapreplace(role_heap, new_rentry)
                    break
                # A quota cap left something behind: other roles may take it, not this one.
                heappop(role_heap)
                skipped_roles.append(new_rentry)
            for e in skipped_roles:
                heappush(role_heap, e)
        return out

    # -- checks -------------------------------------------------------------
    def validate_state(self) -> None:
        """Raise AssertionError, listing every problem, when the book-keeping breaks an
        invariant of the module's docstring; for tests (it walks every agent)."""
        problems: list[str] = []
        total = _ZERO
        per_pair: dict[tuple[str, str], Vec] = {}
        for agent in self._agents.values():
            total = _add(total, agent.total)
            held = _ZERO
            for key, v in agent.allocated.items():
                if any(x < 0 for x in v) or not any(v):
                    problems.append(f"agent {agent.id}: {key} holds {v}")
                held = _add(held, v)
                per_pair[key] = _add(per_pair.get(key, _ZERO), v)
            if any(x < 0 for x in agent.free):
                problems.append(f"agent {agent.id}: negative free {agent.free}")
            if _add(held, agent.free) != agent.total:
                problems.append(
                    f"agent {agent.id}: free {agent.free} + allocated {held} != total {agent.total}"
                )
            parts = [agent.ports_free, *agent.ports_held.values()]
            union = EMPTY
            for part in parts:
                union = union | part
            if any(not x for x in agent.ports_held.values()):
                problems.append(f"agent {agent.id}: a pair holds no ports {agent.ports_held}")
            if union != agent.ports_total or sum(x.count() for x in parts) != union.count():
                problems.append(
                    f"agent {agent.id}: free ports {agent.ports_free} and held ports "
                    f"{agent.ports_held} are not a partition of its ports {agent.ports_total}"
                )
        if total != self._total:
            problems.append(f"cluster total {self._total} != sum of agents {total}")
        if per_pair != self._alloc:
            diff = {
                k: (self._alloc.get(k), per_pair.get(k))
                for k in set(per_pair) | set(self._alloc)
                if self._alloc.get(k) != per_pair.get(k)
            }
            problems.append(f"sorter allocations != agents' (sorter, agents): {diff}")
        role_sums: dict[str, Vec] = {}
        for (fid, role), v in self._alloc.items():
            if fid in self._frameworks:
                role_sums[role] = _add(role_sums.get(role, _ZERO), v)
        for name, r in self._roles.items():
            if r.alloc != role_sums.get(name, _ZERO):
                problems.append(
                    f"role {name}: allocation {r.alloc} != its frameworks' {role_sums.get(name)}"
                )
        for name in role_sums:
            if name not in self._roles:
                problems.append(f"role {name} holds resources but is not tracked")
        if problems:
            raise AssertionError("allocator state is inconsistent:\n  " + "\n  ".join(problems))

    # -- internals ------------------------------------------------------------
    def _agent(self, agent_id: str) -> _Agent:
        try:
            return self._agents[agent_id]
        except KeyError:
            raise AllocatorError(f"unknown agent {agent_id}") from None

    def _framework(self, framework_id: str) -> _Framework:
        try:
            return self._frameworks[framework_id]
        except KeyError:
            raise AllocatorError(f"unknown framework {framework_id}") from None

    def _role(self, name: str) -> _Role:
        r = self._roles.get(name)
        if r is None:
            r = self._roles[name] = _Role(name)
        return r

    def _sorted_agents(self) -> list[_Agent]:
        if self._order is None:
            self._order = [self._agents[k] for k in sorted(self._agents)]
        return self._order

    def _track(self, key: tuple[str, str], v: Vec) -> None:
        self._alloc[key] = _add(self._alloc.get(key, _ZERO), v)
        if key[0] in self._frameworks:
            r = self._role(key[1])
            r.alloc = _add(r.alloc, v)
        else:
            self._role(key[1])

    def _untrack(self, key: tuple[str, str], v: Vec) -> None:
        left = _sub(self._alloc[key], v)
        if any(left):
            self._alloc[key] = left
        else:
            del self._alloc[key]
        if key[0] in self._frameworks:
            r = self._roles[key[1]]
            r.alloc = _sub(r.alloc, v)

    def _allocatable(self, v: Vec) -> bool:
        if self._min_items:
            return any(v[i] >= m for i, m in self._min_items)
        return any(v)

    @staticmethod
    def _filtered(fw: _Framework, role: str, agent_id: str, offer: Vec, ports: Ranges,
                  now: float) -> bool:
        """True when a live refusal filter covers the whole offer (its scalars fit in the
        refused ones and its ports are a subset of the refused ports); drops expired
        filters."""
        fkey = (role, agent_id)
        filters = fw.filters.get(fkey)
        if not filters:
            return False
        live = [f for f in filters if f[2] > now]
        if len(live) != len(filters):
            if live:
                fw.filters[fkey] = live
            else:
                del fw.filters[fkey]
        return any(_fits(offer, refused) and refused_ports.contains(ports)
                   for refused, refused_ports, _ in live)
