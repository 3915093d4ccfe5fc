"""The master's operator metrics (issue 17): leadership, registry writes,
offers, launch latency, status updates, and resources per agent and per role.

Counters and histograms the shell updates as things happen are defined here;
what is a function of MasterState (per-agent and per-role resources, DRF
shares, offers outstanding, updates pending) is computed when Prometheus
scrapes, by `MasterCollector`, from a `MasterSnapshot`: a plain, immutable
value `snapshot(state)` builds from the book on the master's asyncio loop (the
HTTP server runs on another thread; MasterState is only ever read on the loop,
master/server.py arranges that). Only the leader has a snapshot: a standby
exports `juggler_master_is_leader 0` and none of the derived gauges.

Units are Prometheus's base units: cpus in cores, memory and disk in bytes
(juggler keeps MiB: × 2**20), ports as a count, times in seconds. Labels stay
bounded on this cluster-wide endpoint: agent ids and roles, never task ids.

The names were agreed in issue 17: the dashboard and alert rules under
deploy/ read them, so a rename must change those too (their tests fail on a
metric that no longer exists).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from juggler.common import task_states
from juggler.common.resources import Resources
from juggler.master.state import MasterState
from juggler.v1 import common_pb2

MIB = 2**20
S = task_states.S

# What cli/daemons.py passes across the re-exec of a master whose leadership
# ended (it starts over as a fresh standby, same pid): terms ended so far.
TERMS_LOST_ENV = "JUGGLER_MASTER_TERMS_LOST"

ELECTIONS = Counter(
    "juggler_master_elections_total",
    "Times this master process became the leader (a master without etcd leads once, at start); "
    "kept across its restart as a standby")
LEADERSHIP_LOST = Counter(
    "juggler_master_leadership_lost_total",
    "Times this master's term as leader ended (lease lost, fenced write refused); "
    "kept across its restart as a standby")
REGISTRY_WRITE = Histogram(
    "juggler_master_registry_write_seconds",
    "Seconds one registry write (put or delete in etcd or the embedded store) took until "
    "committed, as the master waited for it (batched etcd writes include the batch's wait)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
OFFERS_DECLINED = Counter(
    "juggler_master_offers_declined_total",
    "Offers frameworks returned with a Decline call (unused parts of accepted offers not counted)")
TASK_LAUNCH = Histogram(
    "juggler_master_task_launch_seconds",
    "Seconds from the master accepting a task (Accept, RunTask sent to the agent) to its first "
    "TASK_RUNNING update (image pulls included)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))

TASKS_ENDED = Counter(
    "juggler_master_tasks_ended_total",
    "Tasks that ended, once per task (its first terminal status update), by terminal state and "
    "reason (Reason value names, as Mesos's per-reason task counters): e.g. TASK_FAILED "
    "with REASON_CONTAINER_LIMITATION_MEMORY for a task whose pid 1 the OOM killer ended",
    ["state", "reason"])
# At 0 from the start, so that increase() counts the first OOM kill and the
# dashboard's stat reads 0 rather than "no data" (Prometheus's advice on
# missing series).
OOM_KILLED = ("TASK_FAILED", "REASON_CONTAINER_LIMITATION_MEMORY")
TASKS_ENDED.labels(*OOM_KILLED)


def ended_labels(status: common_pb2.TaskStatus,
                 history: Iterable[common_pb2.TaskStatus] | None) -> tuple[str, str] | None:
    """(state, reason) names to count in TASKS_ENDED for a status update from
    an agent, or None: the update is not terminal, its task is unknown
    (`history` None: another agent's stale copy, a forgotten task), or the
    task's history (the updates the master applied before this one) has a
    terminal update already (this one is a retry or a later copy). Labels are
    TaskState / Reason value names, bounded by those enums (a
    number neither names becomes "UNKNOWN")."""
    if history is None or not task_states.is_terminal(status.state):
        return None
    if any(task_states.is_terminal(h.state) for h in history):
        return None
    return _enum_name(common_pb2.TaskState, status.state), _enum_name(
        common_pb2.Reason, status.reason)


def _enum_name(enum: Any, number: int) -> str:
    try:
        return str(enum.Name(number))
    except ValueError:
        return "UNKNOWN"


def carried_terms() -> int:
    """Terms this process lost before its last re-exec (TERMS_LOST_ENV; 0
    when unset or not a number)."""
    try:
        return max(0, int(os.environ.get(TERMS_LOST_ENV, "0")))
    except ValueError:
        return 0


_carried = carried_terms()
if _carried:  # every lost term began with an election
    ELECTIONS.inc(_carried)
    LEADERSHIP_LOST.inc(_carried)


class LaunchTimer:
    """When each task was sent to its agent, until its first TASK_RUNNING
    (then the seconds it took are returned) or its end. Holds at most `kept`
    tasks (the oldest are forgotten), and `keep_only` drops tasks the master
    no longer tracks: it never grows without bound. Times are Clock.now()
    seconds."""

    def __init__(self, kept: int = 100_000) -> None:
        self.kept = kept
        self._sent: dict[tuple[str, str], float] = {}

    def __len__(self) -> int:
        return len(self._sent)

    def sent(self, key: tuple[str, str], now: float) -> None:
        """Task `key` (framework_id, task_id) was sent to its agent at `now`."""
        self._sent.pop(key, None)
        self._sent[key] = now
        while len(self._sent) > self.kept:
            del self._sent[next(iter(self._sent))]

    def update(self, key: tuple[str, str], states: tuple[int, ...], now: float) -> float | None:
        """An update of task `key` telling of `states` (the update's state and
        the task's latest): the seconds since it was sent when one of them is
        TASK_RUNNING and it was being timed; None otherwise. A terminal state
        stops the timing."""
        if S.TASK_RUNNING in states:
            started = self._sent.pop(key, None)
            return None if started is None else max(0.0, now - started)
        if any(task_states.is_terminal(s) for s in states):
            self._sent.pop(key, None)
        return None

    def keep_only(self, tracked: Container[tuple[str, str]]) -> None:
        """Forget tasks not in `tracked` (ended without an update through here:
        lost with their agent, killed before their agent had them)."""
        for key in [k for k in self._sent if k not in tracked]:
            del self._sent[key]


@dataclass(frozen=True)
class AgentUsage:
    agent_id: str
    hostname: str
    total: Resources
    used: Resources
    offered: Resources


@dataclass(frozen=True)
class RoleUsage:
    role: str
    used: Resources
    offered: Resources
    quota: tuple[tuple[str, float], ...]  # (name, amount in cores or MiB); () for none
    weight: float
    dominant_share: float


@dataclass(frozen=True)
class MasterSnapshot:
    """What the leader's derived gauges show, read from MasterState at one
    moment on its loop."""

    agents: tuple[AgentUsage, ...] = ()
    roles: tuple[RoleUsage, ...] = ()
    offers_outstanding: int = 0
    status_updates_pending: int = 0


def snapshot(state: MasterState) -> MasterSnapshot:
    """The snapshot of `state` (pure; O(agents + tasks + offers)). Agents are
    every agent the master knows (unreachable ones too, their tasks counted as
    used: Mesos's view); used is what tasks whose resources were not recovered
    hold; roles are those with settings, frameworks, tasks or offers."""
    agents = tuple(
        AgentUsage(a.info.id, a.info.hostname, a.total, state.allocated_on(a),
                   state.offered_on(a))
        for a in sorted(state.agents.values(), key=lambda a: a.info.id))
    used: dict[str, Resources] = {}
    offered: dict[str, Resources] = {}
    pending = 0
    for t in state.tasks.values():
        if not t.resources_recovered:
            used[t.role] = used.get(t.role, Resources()) + t.resources
        if (t.latest_uuid and t.acked_uuid != t.latest_uuid and not t.told_end
                and t.framework_id in state.frameworks):
            pending += 1
    for o in state.offers.values():
        offered[o.role] = offered.get(o.role, Resources()) + o.resources
    shares = state.allocator.role_shares()
    names = set(state.roles.configs) | set(used) | set(offered) | set(shares)
    for fw in state.frameworks.values():
        names.update(fw.info.roles)
    roles = tuple(
        RoleUsage(role, used.get(role, Resources()), offered.get(role, Resources()),
                  tuple((r.name, r.scalar) for r in state.roles.quota(role)),
                  state.roles.weight(role), shares.get(role, 0.0))
        for role in sorted(names))
    return MasterSnapshot(agents, roles, len(state.offers), pending)


def _amount(r: Resources, name: str) -> float:
    """cpus in cores, mem and disk in bytes, ports as a count."""
    if name == "ports":
        return float(r.ports.count())
    return r.get(name) * (MIB if name in ("mem", "disk") else 1)


# (resource name, metric suffix, unit words for the help text)
_KINDS = (("cpus", "cpus", "cores"), ("mem", "memory_bytes", "bytes"),
          ("disk", "disk_bytes", "bytes"), ("ports", "ports", "host ports (a count)"))


class MasterCollector(Collector):
    """Scrape-time metrics: juggler_master_is_leader from `leading()`, and
    (on the leader, from `source()`, None on a standby) the derived gauges.
    Both callables are called on the scraping thread: they must be safe there
    (master/server.py's read the loop's state through the loop)."""

    def __init__(self, leading: Callable[[], bool] = lambda: False,
                 source: Callable[[], MasterSnapshot | None] = lambda: None) -> None:
        self.leading = leading
        self.source = source

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(self._families(False, MasterSnapshot()))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        leading = bool(self.leading())
        snap = self.source() if leading else None
        return iter(self._families(leading, snap))

    @staticmethod
    def _families(leading: bool, snap: MasterSnapshot | None) -> list[GaugeMetricFamily]:
        out = [GaugeMetricFamily("juggler_master_is_leader",
                                 "1 while this master is the leader and acting, 0 on a standby",
                                 value=1.0 if leading else 0.0)]
        if snap is None:
            return out
        out.append(GaugeMetricFamily(
            "juggler_master_offers_outstanding",
            "Offers sent to frameworks and not yet accepted, declined or rescinded",
            value=snap.offers_outstanding))
        out.append(GaugeMetricFamily(
            "juggler_master_status_updates_pending",
            "Tasks whose latest status update (from an agent) was relayed to their framework "
            "and not yet acknowledged (at most one per task)",
            value=snap.status_updates_pending))
        for name, suffix, unit in _KINDS:
            family = GaugeMetricFamily(
                f"juggler_master_agent_{suffix}",
                f"Agent {name} in {unit}: kind=total (what it registered), used (held by its "
                "tasks), offered (in outstanding offers)",
                labels=["agent", "hostname", "kind"])
            for a in snap.agents:
                for kind, r in (("total", a.total), ("used", a.used), ("offered", a.offered)):
                    family.add_metric([a.agent_id, a.hostname, kind], _amount(r, name))
            out.append(family)
        for name, suffix, unit in _KINDS[:3]:
            family = GaugeMetricFamily(
                f"juggler_master_role_{suffix}",
                f"Role {name} in {unit}: kind=used (held by its tasks), offered (in outstanding "
                "offers), quota (its quota limit; absent when the limit leaves it out)",
                labels=["role", "kind"])
            for role in snap.roles:
                family.add_metric([role.role, "used"], _amount(role.used, name))
                family.add_metric([role.role, "offered"], _amount(role.offered, name))
                for q, amount in role.quota:
                    if q == name:
                        family.add_metric([role.role, "quota"],
                                          amount * (MIB if name in ("mem", "disk") else 1))
            out.append(family)
        share = GaugeMetricFamily(
            "juggler_master_role_dominant_share",
            "The role's DRF dominant share as the allocator orders roles by it: max over cpus, "
            "mem and disk of (offered + used) / cluster total, divided by the role's weight",
            labels=["role"])
        weight = GaugeMetricFamily("juggler_master_role_weight",
                                   "The role's DRF weight (1 unless an operator set one)",
                                   labels=["role"])
        for role in snap.roles:
            share.add_metric([role.role], role.dominant_share)
            weight.add_metric([role.role], role.weight)
        return [*out, share, weight]


COLLECTOR = MasterCollector()
REGISTRY.register(COLLECTOR)


def attach(leading: Callable[[], bool], source: Callable[[], MasterSnapshot | None]) -> None:
    """Point the process's collector at a master (the last one attached
    wins: one master per process, except in tests)."""
    COLLECTOR.leading = leading
    COLLECTOR.source = source
