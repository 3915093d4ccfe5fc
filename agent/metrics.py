"""The agent's operator metrics (issue 17): its status-update manager, and
each live task's cgroup usage, on the agent's own /metrics endpoint.

Per-task series are labelled by task and framework id: bounded by what one
agent runs, and only here (the master's cluster-wide endpoint never labels by
task). They are read when Prometheus scrapes, by `AgentCollector`, from the
cgroups of the tasks whose executor has not exited (container/cgroups.py's
`stats()`: v1 for real on this CI's hosts, v2 from the same files runc reads,
tested against a fake tree). A task whose cgroup is gone (it just ended) has
no series. Base units: seconds and bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from juggler.container.cgroups import DEFAULT_ROOT, Stats, open_cgroup

NS = 1e-9


@dataclass(frozen=True)
class TaskCgroup:
    """A live task and its cgroup's name (relative, e.g. "juggler/<fw>.<task>")."""

    task_id: str
    framework_id: str
    cgroup: str


@dataclass(frozen=True)
class TaskUsage:
    task_id: str
    framework_id: str
    stats: Stats


def read_usage(tasks: Iterable[TaskCgroup], root: Path = DEFAULT_ROOT,
               version: int | None = None) -> list[TaskUsage]:
    """Each task's usage from its cgroup under `root` (cgroup `version`, 1 or
    2; None: the host's). Tasks without a cgroup name, or whose cgroup does
    not exist (any more), or cannot be read, are left out."""
    out = []
    for t in tasks:
        if not t.cgroup:
            continue
        try:
            cgroup = open_cgroup(t.cgroup, root, version)
            if not cgroup.exists():
                continue
            out.append(TaskUsage(t.task_id, t.framework_id, cgroup.stats()))
        except (OSError, ValueError):  # it went while being read
            continue
    return out


def families(pending: int, resent: int, usage: Iterable[TaskUsage]) -> list[Metric]:
    """The collector's metric families (pure)."""
    labels = ["task", "framework"]
    cpu = CounterMetricFamily(
        "juggler_agent_task_cpu_seconds_total",
        "CPU time the task's cgroup used, in seconds (v1 cpuacct.usage, v2 cpu.stat usage_usec)",
        labels=labels)
    throttled = CounterMetricFamily(
        "juggler_agent_task_cpu_throttled_seconds_total",
        "Seconds the task's cgroup was held back by its CPU quota (cpu.stat throttled_time "
        "in v1, throttled_usec in v2)", labels=labels)
    memory = GaugeMetricFamily(
        "juggler_agent_task_memory_bytes",
        "Memory the task's cgroup uses now, in bytes, page cache included (v1 "
        "memory.usage_in_bytes, v2 memory.current)", labels=labels)
    peak = GaugeMetricFamily(
        "juggler_agent_task_memory_peak_bytes",
        "The most memory the task's cgroup has used, in bytes (v1 memory.max_usage_in_bytes, "
        "v2 memory.peak; 0 where the kernel keeps no peak)", labels=labels)
    ooms = CounterMetricFamily(
        "juggler_agent_task_oom_kills_total",
        "Processes of the task the kernel's OOM killer killed (oom_kill in v1 "
        "memory.oom_control, v2 memory.events)", labels=labels)
    for u in usage:
        key = [u.task_id, u.framework_id]
        cpu.add_metric(key, u.stats.cpu_usage_ns * NS)
        throttled.add_metric(key, u.stats.cpu_throttled_ns * NS)
        memory.add_metric(key, u.stats.memory_bytes)
        peak.add_metric(key, u.stats.memory_peak_bytes)
        ooms.add_metric(key, u.stats.oom_kills)
    return [
        GaugeMetricFamily("juggler_agent_status_updates_pending",
                          "Status updates this agent generated that are not yet acknowledged "
                          "by their framework (all tasks)", value=pending),
        CounterMetricFamily("juggler_agent_status_update_retries_total",
                            "Times this agent sent an unacknowledged status update again (a "
                            "retry, or after reconnecting to a master)", value=resent),
        cpu, throttled, memory, peak, ooms]


class AgentCollector(Collector):
    """Scrape-time agent metrics. `updates()` returns (pending, resent) and
    `tasks()` the live tasks; both are called on the scraping thread."""

    def __init__(self, updates: Callable[[], tuple[int, int]] = lambda: (0, 0),
                 tasks: Callable[[], list[TaskCgroup]] = list,
                 root: Path = DEFAULT_ROOT, version: int | None = None) -> None:
        self.updates = updates
        self.tasks = tasks
        self.root = root
        self.version = version

    def describe(self) -> Iterator[Metric]:
        return iter(families(0, 0, []))

    def collect(self) -> Iterator[Metric]:
        pending, resent = self.updates()
        return iter(families(pending, resent, read_usage(self.tasks(), self.root,
                                                         self.version)))


COLLECTOR = AgentCollector()
REGISTRY.register(COLLECTOR)


def attach(updates: Callable[[], tuple[int, int]], tasks: Callable[[], list[TaskCgroup]]) -> None:
    """Point the process's collector at an agent (the last one wins)."""
    COLLECTOR.updates = updates
    COLLECTOR.tasks = tasks
