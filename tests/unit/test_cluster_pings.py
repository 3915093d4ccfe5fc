"""The in-process cluster's master pings its agents, as the real one's ping loop
does (master/server.py `_ping_loop`): a healthy agent with nothing to say stays
ACTIVE however long time passes, and one cut off or stopped still falls silent
and becomes UNREACHABLE.

Without the pings, every quiet agent went UNREACHABLE after ping timeout ×
max ping timeouts, and the tasks of a framework that is not partition-aware
were killed when it came back. Hypothesis found it in tests/unit/
test_cluster_properties.py: drain a1; launch t0 and t1 (both on a2); kill t0;
heal_and_check left a kill record of t1 in the registry.
"""

from __future__ import annotations

import pytest

from juggler.testing.cluster import Cluster, sleep_task
from juggler.v1 import common_pb2, operator_pb2

S = common_pb2.TaskState
A = operator_pb2.AgentState
AGENTS = ["a1", "a2", "a3"]


def property_test_cluster() -> Cluster:
    """The cluster of test_cluster_properties: pings every 2 s, silent for 6 s
    is UNREACHABLE."""
    return Cluster(AGENTS, agent_ping_timeout=2, max_agent_ping_timeouts=3,
                   agent_reregister_timeout=20, torn_down_kept=1)


@pytest.mark.parametrize("grace", [5.0, 0.0])
def test_a_quiet_task_of_a_framework_that_is_not_partition_aware_outlives_a_heal(
        grace: float) -> None:
    """The falsifying example: drain a1; launch t0 and t1 on a2; kill t0;
    heal_and_check (heal, 12 s pass, heal). With grace periods of 5 s, t1 was
    left KILLING with its kill record; with none, it was KILLED."""
    cluster = property_test_cluster()
    f1 = cluster.framework("f1", failover_timeout=30)
    cluster.framework("f2", failover_timeout=30, partition_aware=True)
    cluster.operator("drain_agent", cluster.agent_id("a1"))
    assert f1.launch(sleep_task("t0", grace), "a2") == "a2"
    assert f1.launch(sleep_task("t1", grace), "a2") == "a2"
    f1.kill("t0")
    cluster.heal()
    cluster.advance(12)
    cluster.heal()
    cluster.settle()
    assert [k for k in cluster.registry if k.startswith("kills/")] == []
    assert cluster.master.pending_kills == {}
    assert cluster.agent_view("a2")[0] == A.AGENT_ACTIVE
    assert f1.latest("t0") == S.TASK_KILLED and not cluster.executor_alive("t0")
    assert cluster.task("t1", f1) == S.TASK_RUNNING and f1.latest("t1") == S.TASK_RUNNING
    assert cluster.executor_alive("t1")
    cluster.validate()
    assert f1.errors == []


def test_a_healthy_agent_stays_active_for_an_hour_of_silence() -> None:
    cluster = property_test_cluster()
    fw = cluster.framework("f1")
    fw.launch(sleep_task("t0"), "a3")
    cluster.advance(3600, step=1.5)
    assert [cluster.agent_view(a)[0] for a in AGENTS] == [A.AGENT_ACTIVE] * 3
    assert cluster.task("t0", fw) == S.TASK_RUNNING
    assert fw.updates[-1].state == S.TASK_RUNNING  # nothing else was said of it
    cluster.validate()


def test_pings_go_on_after_a_master_failover() -> None:
    cluster = Cluster(["a1"], agent_ping_timeout=15, max_agent_ping_timeouts=5)
    cluster.advance(50)
    cluster.failover()
    cluster.advance(600, step=7)
    assert cluster.agent_view("a1")[0] == A.AGENT_ACTIVE


def test_an_agent_cut_off_or_stopped_is_not_pinged_and_becomes_unreachable() -> None:
    cluster = property_test_cluster()
    cluster.agent("a1").cut()
    cluster.agent("a2").stop()
    cluster.advance(5)
    assert cluster.agent_view("a1")[0] == A.AGENT_DISCONNECTED
    cluster.advance(2)  # silent for more than 2 × 3 s
    assert [cluster.agent_view(a)[0] for a in AGENTS] == [
        A.AGENT_UNREACHABLE, A.AGENT_UNREACHABLE, A.AGENT_ACTIVE]
    cluster.heal()
    assert [cluster.agent_view(a)[0] for a in AGENTS] == [A.AGENT_ACTIVE] * 3
