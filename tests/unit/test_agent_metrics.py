"""The agent's operator metrics (agent/metrics.py): per-task cgroup usage in
base units as a scrape shows it, read from a faithful fake cgroup v2 tree
(this host is v1: tests/integration/test_task_cgroup_metrics.py reads a real
v1 cgroup), and the status-update manager's pending and re-sent counts."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from juggler.agent import metrics
from juggler.agent.status_updates import StatusUpdateManager
from juggler.v1 import common_pb2

MiB = 2**20

# The interface files of a v2 cgroup whose task has run (Linux 5.19+ for
# memory.peak), with what the kernel writes in them.
V2_TASK = {
    "cgroup.controllers": "cpu memory pids\n", "cgroup.procs": "4242\n",
    "cpu.stat": ("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n"
                 "nr_periods 40\nnr_throttled 7\nthrottled_usec 750000\n"),
    "memory.current": f"{48 * MiB}\n", "memory.peak": f"{60 * MiB}\n",
    "memory.max": f"{64 * MiB}\n",
    "memory.events": "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n",
    "pids.current": "3\n",
}


def v2_tree(tmp_path: Path) -> Path:
    root = tmp_path / "cgroup"
    task = root / "juggler" / "fw1.web"
    task.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("cpu memory pids\n")
    for name, text in V2_TASK.items():
        (task / name).write_text(text)
    return root


def scrape(collector: metrics.AgentCollector) -> dict[tuple, float]:
    registry = CollectorRegistry()
    registry.register(collector)
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            out[(s.name, *sorted(s.labels.items()))] = s.value
    return out


def test_task_usage_from_a_v2_cgroup_in_seconds_and_bytes(tmp_path: Path) -> None:
    root = v2_tree(tmp_path)
    tasks = [metrics.TaskCgroup("web", "fw1", "juggler/fw1.web"),
             metrics.TaskCgroup("gone", "fw1", "juggler/fw1.gone"),  # its cgroup went
             metrics.TaskCgroup("new", "fw1", "")]                    # not started yet
    got = scrape(metrics.AgentCollector(lambda: (3, 5), lambda: tasks, root, version=2))
    key = (("framework", "fw1"), ("task", "web"))
    assert got[("juggler_agent_task_cpu_seconds_total", *key)] == 2.5
    assert got[("juggler_agent_task_cpu_throttled_seconds_total", *key)] == 0.75
    assert got[("juggler_agent_task_memory_bytes", *key)] == 48 * MiB
    assert got[("juggler_agent_task_memory_peak_bytes", *key)] == 60 * MiB
    assert got[("juggler_agent_task_oom_kills_total", *key)] == 2
    assert not any(("task", "gone") in k or ("task", "new") in k for k in got)
    assert got[("juggler_agent_status_updates_pending",)] == 3
    assert got[("juggler_agent_status_update_retries_total",)] == 5


def status(task_id: str, uuid: bytes) -> common_pb2.TaskStatus:
    return common_pb2.TaskStatus(task_id=task_id, framework_id="fw", uuid=uuid,
                                 state=common_pb2.TASK_RUNNING)


def test_pending_and_resent_counts_of_the_status_update_manager() -> None:
    m = StatusUpdateManager(first_retry=10.0)
    m.add(status("a", b"1"), 0.0)
    m.add(status("a", b"2"), 0.0)
    m.add(status("b", b"3"), 0.0)
    assert m.pending_total == 3
    assert len(m.due(0.0)) == 2 and m.resent == 0     # first sends
    assert len(m.due(10.0)) == 2 and m.resent == 2    # both heads again
    m.acknowledge("fw", "a", b"1", 10.0)
    assert m.pending_total == 2
    assert len(m.due(10.0)) == 1 and m.resent == 2    # a's next update: a first send
    m.resend_all(11.0)
    assert len(m.due(11.0)) == 2 and m.resent == 4    # after a reconnection: re-sends
    m.forget("fw", "b")
    assert m.pending_total == 1
