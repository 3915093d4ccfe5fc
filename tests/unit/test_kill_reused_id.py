"""A Kill of a task whose id its framework reused across a failover lands on
every copy: the tracked one, and the older copy an agent away still runs, even
when that agent comes back after the tracked copy ended (the master then knows
the id no more and would adopt the old copy as a running task: the framework,
told KILLED, would see its task run again).

The first test is the sequence Hypothesis found (tests/unit/
test_cluster_properties.py), step by step, on the in-process cluster.
"""

from __future__ import annotations

from juggler.common import task_states
from juggler.testing.cluster import Cluster, SimFramework, sleep_task
from juggler.v1 import common_pb2

S = common_pb2.TaskState
AGENTS = ["a1", "a2", "a3"]


def cluster_and_framework() -> tuple[Cluster, SimFramework]:
    """The property test's cluster and its second framework (partition-aware),
    after its first step (heal_and_check: time passes). The first framework,
    offered every agent first, has nothing to run: it declines them for a
    while, and they go to the second."""
    cluster = Cluster(AGENTS, agent_ping_timeout=2, max_agent_ping_timeouts=3,
                      agent_reregister_timeout=20, torn_down_kept=1)
    f1 = cluster.framework("f1", failover_timeout=30)
    fw = cluster.framework("f2", failover_timeout=30, partition_aware=True)
    heal(cluster)
    assert fw.offers == {} and len(f1.offers) == len(AGENTS)
    f1.decline_all(refuse_seconds=3600)
    assert {o.hostname for o in fw.offers.values()} == set(AGENTS)
    return cluster, fw


def heal(cluster: Cluster) -> None:
    """As the property test's heal_and_check: every fault repaired, time passes."""
    cluster.heal()
    cluster.advance(12)
    cluster.heal()
    cluster.settle()


def reuse_while_away(cluster: Cluster, fw: SimFramework, task_id: str) -> tuple[str, str]:
    """t0 runs; its agent is cut off, the master fails over, and the framework
    runs a new t0 elsewhere (the new leader does not know the old one).
    Returns (the old copy's agent, the new copy's agent)."""
    old = fw.launch(sleep_task(task_id))
    cluster.agent(old).cut()
    cluster.settle()
    cluster.failover()
    fw.subscribe()
    cluster.advance(6)  # the new leader's hold on offers
    new = fw.launch(sleep_task(task_id), next(a for a in AGENTS if a != old))
    assert cluster.executor_alive(task_id) and cluster.task(task_id, fw) == S.TASK_RUNNING
    return old, new


def assert_killed_everywhere(cluster: Cluster, fw: SimFramework, task_id: str) -> None:
    state = cluster.task(task_id, fw)
    assert state is None or task_states.is_terminal(state), (task_id, state)
    assert not cluster.executor_alive(task_id), f"{task_id} was killed, still runs"
    assert [k for k in cluster.registry if k.startswith("kills/")] == []
    assert cluster.master.pending_kills == {}
    cluster.validate()
    assert fw.errors == []


def test_a_kill_lands_on_the_old_copy_of_a_reused_id_after_the_new_one_ended() -> None:
    """launch; reuse_an_id_while_its_agent_is_away(failover=True);
    kill_while_its_agent_is_away(failover=True, how='disconnect'); heal_and_check."""
    cluster, fw = cluster_and_framework()
    old, new = reuse_while_away(cluster, fw, "t0")
    cluster.agent(new).disconnect()
    cluster.settle()
    cluster.failover()  # the new copy's agent re-registers; the old one's is still cut off
    fw.subscribe()
    tracked = cluster.master.tasks[(fw.framework_id, "t0")]
    assert tracked.agent_id == cluster.agent_id(new)
    fw.kill("t0", agent_id=tracked.agent_id)
    assert fw.latest("t0") == S.TASK_KILLED  # the new copy: ended and forgotten
    assert (fw.framework_id, "t0") not in cluster.master.tasks
    heal(cluster)  # the old copy comes back to a master that knows no t0
    assert_killed_everywhere(cluster, fw, "t0")
    assert not cluster.agent(old).executors[(fw.framework_id, "t0")].alive


def test_the_kill_waits_for_the_old_copy_across_another_failover() -> None:
    cluster, fw = cluster_and_framework()
    old, _ = reuse_while_away(cluster, fw, "t0")
    fw.kill("t0")  # lands on the new copy at once; the old one is away
    assert fw.latest("t0") == S.TASK_KILLED
    cluster.failover()  # a leader that never saw t0: the registry keeps the kill
    assert cluster.executor_alive("t0")
    heal(cluster)
    assert_killed_everywhere(cluster, fw, "t0")
    assert not cluster.agent(old).executors[(fw.framework_id, "t0")].alive


def test_the_id_launched_after_the_kill_is_a_new_task_and_is_not_killed() -> None:
    """The framework runs t0 a third time while the old copy is still away:
    the kill holds for the old copy only, across a failover too."""
    cluster, fw = cluster_and_framework()
    old, new = reuse_while_away(cluster, fw, "t0")
    fw.kill("t0")
    assert fw.latest("t0") == S.TASK_KILLED
    third = fw.launch(sleep_task("t0"), next(a for a in AGENTS if a not in (old, new)))
    cluster.failover()
    fw.subscribe()
    heal(cluster)
    assert cluster.task("t0", fw) == S.TASK_RUNNING
    runs = [a.name for a in cluster.agents.values()
            for key, e in a.executors.items() if key[1] == "t0" and e.alive]
    assert runs == [third]
    assert cluster.master.tasks[(fw.framework_id, "t0")].agent_id == cluster.agent_id(third)
    assert [k for k in cluster.registry if k.startswith("kills/")] == []
    assert cluster.master.pending_kills == {}
    cluster.validate()
