"""Offers, timeouts, drains, disconnections, failovers and kills on the
in-process cluster (juggler/testing/cluster.py): the master's and the agents'
real decision code, fake executors, a fake clock — no root, no wall clock.

The four scenarios of issue 12 are here in their fast form; tests/integration/
test_desired_state.py plays them with real processes, the CLI and the SDK.
"""

from __future__ import annotations

import pytest

from juggler.common.resources import Resources
from juggler.master import views
from juggler.master.commands import CallError, Code
from juggler.testing.cluster import Cluster
from juggler.v1 import common_pb2, operator_pb2

S = common_pb2.TaskState
A = operator_pb2.AgentState
M = operator_pb2.MaintenanceState
F = operator_pb2.FrameworkState


def task(task_id: str, cpus: float = 1, mem: float = 128,
         grace: float | None = None) -> common_pb2.TaskInfo:
    info = common_pb2.TaskInfo(task_id=task_id, name=task_id,
                               command=common_pb2.CommandInfo(argv=["sleep", "600"]),
                               resources=Resources({"cpus": cpus, "mem": mem}).to_proto())
    if grace is not None:
        info.kill_policy.grace_period_seconds = grace
    return info


def test_a_task_runs_and_its_framework_hears_of_it() -> None:
    cluster = Cluster(["a1"])
    fw = cluster.framework()
    assert fw.launch(task("t1")) == "a1"
    assert cluster.task("t1") == S.TASK_RUNNING and fw.latest("t1") == S.TASK_RUNNING
    cluster.agent("a1").finish("t1")
    cluster.settle()
    assert fw.latest("t1") == S.TASK_FINISHED
    assert cluster.task("t1") == S.TASK_FINISHED and not cluster.master.tasks
    assert not cluster.executor_alive("t1")  # released once acknowledged
    cluster.validate()


def test_a_kill_sent_while_the_agent_is_stopped_lands_when_it_is_back() -> None:
    """Issue 12, scenario 1: the kill is desired state, not a lost message."""
    cluster = Cluster(["a1"])
    fw = cluster.framework()
    fw.launch(task("t1", grace=0))
    agent = cluster.agent("a1")
    agent.stop()  # SIGTERM: its executor and task keep running
    fw.kill("t1")  # accepted at once
    assert cluster.executor_alive("t1") and cluster.task("t1") == S.TASK_RUNNING
    assert views.task_view(cluster.master, cluster.master.tasks[(fw.framework_id, "t1")]
                           ).kill_requested
    agent.start()
    agent.reconnect()
    cluster.settle()
    assert fw.latest("t1") == S.TASK_KILLED and cluster.task("t1") == S.TASK_KILLED
    assert not cluster.executor_alive("t1")
    assert not any(k.startswith("kills/") for k in cluster.registry)  # fulfilled
    (ended,) = [v for v in views.tasks_view(cluster.master, True).completed_tasks
                if v.info.task_id == "t1"]
    assert not ended.kill_requested, "done: `ps -a` must not say (kill requested)"
    cluster.validate()


def test_a_kill_on_an_unreachable_agent_is_accepted_and_delivered_when_it_returns() -> None:
    cluster = Cluster(["a1"], agent_ping_timeout=1, max_agent_ping_timeouts=3)
    fw = cluster.framework(partition_aware=True)
    fw.launch(task("t1", grace=2))
    cluster.agent("a1").cut()
    cluster.advance(5)
    assert cluster.task("t1") == S.TASK_UNREACHABLE and fw.latest("t1") == S.TASK_UNREACHABLE
    fw.kill("t1")
    cluster.advance(30)
    assert cluster.executor_alive("t1")  # still cut off: nothing could reach it
    cluster.agent("a1").reconnect()
    cluster.advance(3)  # its grace period
    assert fw.latest("t1") == S.TASK_KILLED and not cluster.executor_alive("t1")
    cluster.validate()


def test_a_kill_survives_a_master_failover_even_before_the_agent_is_back() -> None:
    cluster = Cluster(["a1", "a2"])
    fw = cluster.framework()
    fw.launch(task("t1", grace=0), agent="a1")
    cluster.agent("a1").cut()
    fw.kill("t1")
    cluster.failover()  # the kill is in the registry, not only in the old leader
    fw.subscribe()
    cluster.agent("a1").reconnect()
    cluster.settle()
    assert cluster.task("t1") == S.TASK_KILLED and not cluster.executor_alive("t1")
    # A Kill for a task no agent has brought back yet, after a failover.
    fw.launch(task("t2", grace=0), agent="a2")
    cluster.agent("a2").cut()
    cluster.failover()
    fw.subscribe()
    with pytest.raises(CallError) as refused:
        fw.kill("nope", agent_id="not-an-agent")
    assert refused.value.code == Code.NOT_FOUND
    fw.kill("t2", agent_id=cluster.agent_id("a2"))  # a2 may still bring it back
    cluster.agent("a2").reconnect()
    cluster.settle()
    assert cluster.task("t2") == S.TASK_KILLED and not cluster.executor_alive("t2")
    assert not any(k.startswith("kills/") for k in cluster.registry)
    cluster.validate()


def test_a_drain_outlives_the_agent_being_away_and_a_master_failover() -> None:
    """Issue 12, scenario 2: maintenance is kept whatever the agent's connectivity."""
    cluster = Cluster(["a1", "a2"])
    fw = cluster.framework()
    fw.launch(task("t1", grace=0), agent="a1")
    a1 = cluster.agent("a1")
    a1.stop()
    cluster.settle()
    cluster.operator("drain_agent", a1.agent_id)
    assert cluster.agent_view("a1") == (A.AGENT_DISCONNECTED, M.MAINTENANCE_DRAINING)
    cluster.failover()
    fw.subscribe()
    a1.start()
    a1.reconnect()
    cluster.settle()
    assert cluster.agent_view("a1") == (A.AGENT_ACTIVE, M.MAINTENANCE_DOWN)
    assert cluster.task("t1") == S.TASK_KILLED and not cluster.executor_alive("t1")
    cluster.settle(allocate=True)
    assert {o.hostname for o in fw.offers.values()} == {"a2"}  # never a1 while down
    cluster.operator("up_agent", a1.agent_id)
    cluster.settle(allocate=True)
    assert "a1" in {o.hostname for o in fw.offers.values()}
    cluster.validate()


def test_a_down_agent_that_reports_a_task_drains_again() -> None:
    cluster = Cluster(["a1"])
    fw = cluster.framework()
    fw.launch(task("t1", grace=0))
    a1 = cluster.agent("a1")
    a1.cut()
    cluster.failover()  # the new leader does not know t1
    fw.subscribe()
    cluster.operator("drain_agent", a1.agent_id)
    assert cluster.agent_view("a1")[1] == M.MAINTENANCE_DOWN  # it knows of no task there
    a1.reconnect()
    cluster.settle()
    assert cluster.task("t1") == S.TASK_KILLED
    assert cluster.agent_view("a1")[1] == M.MAINTENANCE_DOWN
    story = [s.stimulus for s in cluster.master.agents[a1.agent_id].story]
    assert "it reported tasks while DOWN" in story
    cluster.validate()


def test_a_torn_down_framework_s_tasks_end_in_the_master_s_records() -> None:
    """Issue 12, scenario 3: the failover timeout tears the framework down; its
    tasks are killed, and the master records them KILLED when the agent says so."""
    cluster = Cluster(["a1"])
    fw = cluster.framework(failover_timeout=30)
    fw.launch(task("t1", grace=1))
    fw.launch(task("t2", grace=1))
    cluster.agent("a1").finish("t2", S.TASK_FAILED)
    fw.disconnect()  # the client was killed -9 before acknowledging t2's end
    cluster.settle()
    # A disconnected framework's ended task is not among the live ones.
    live = views.tasks_view(cluster.master, include_completed=False).tasks
    assert [t.info.task_id for t in live] == ["t1"]
    cluster.advance(31)
    assert fw.framework_id in cluster.master.torn_down
    assert cluster.task("t1") == S.TASK_KILLED and cluster.task("t2") == S.TASK_FAILED
    assert not cluster.master.tasks and not cluster.executor_alive("t1")
    assert cluster.master.allocator.available(cluster.agent_id("a1")) == Resources(
        {"cpus": 4, "mem": 4096})
    with pytest.raises(CallError) as refused:
        fw.subscribe()
    assert refused.value.code == Code.FAILED_PRECONDITION
    cluster.validate()


def test_a_teardown_reaches_tasks_an_agent_brings_back_after_a_failover() -> None:
    cluster = Cluster(["a1", "a2"])
    fw = cluster.framework()
    fw.launch(task("t1", grace=0), agent="a1")
    fw.launch(task("t2", grace=0), agent="a2")
    cluster.agent("a1").cut()
    fw.call("teardown")
    assert cluster.task("t2") == S.TASK_KILLED
    cluster.failover()  # t1's kill lives on as the framework's torn_down record
    cluster.agent("a1").reconnect()
    cluster.settle()
    assert cluster.task("t1") == S.TASK_KILLED and not cluster.executor_alive("t1")
    assert fw.framework_id in cluster.master.torn_down
    cluster.validate()


def test_a_gone_agent_that_returns_is_shut_down_and_registers_afresh() -> None:
    cluster = Cluster(["a1"], agent_ping_timeout=1, max_agent_ping_timeouts=1,
                      agent_gone_timeout=10)
    fw = cluster.framework(partition_aware=True)
    fw.launch(task("t1"))
    a1 = cluster.agent("a1")
    old_id = a1.agent_id
    a1.cut()
    cluster.advance(15)
    assert fw.latest("t1") == S.TASK_GONE and old_id in cluster.master.agents.gone
    a1.reconnect()
    cluster.settle()
    assert not cluster.executor_alive("t1")
    assert a1.agent_id and a1.agent_id != old_id
    assert cluster.agent_view("a1") == (A.AGENT_ACTIVE, M.MAINTENANCE_NONE)
    cluster.validate()


def test_an_agent_restart_finds_its_tasks_and_a_dead_executor_fails_its_task() -> None:
    cluster = Cluster(["a1"])
    fw = cluster.framework()
    fw.launch(task("t1"))
    fw.launch(task("t2"))
    a1 = cluster.agent("a1")
    a1.stop()
    dead = next(e for k, e in a1.executors.items() if k[1] == "t2")
    dead.alive = False  # its executor died while the agent was down
    a1.start()
    a1.reconnect()
    cluster.settle()
    assert cluster.task("t1") == S.TASK_RUNNING
    assert fw.latest("t2") == S.TASK_FAILED
    cluster.validate()


def test_offers_carry_the_agent_s_attributes() -> None:
    cluster = Cluster()
    cluster.add_agent("r1-a", attributes={"rack": "r1", "zone": "a"})
    fw = cluster.framework()
    cluster.settle(allocate=True)
    [offer] = fw.offers.values()
    assert dict(offer.attributes) == {"rack": "r1", "zone": "a"}


def test_every_transition_has_a_story_an_operator_can_read() -> None:
    cluster = Cluster(["a1"])
    a1 = cluster.agent("a1")
    a1.disconnect()
    cluster.advance(1)
    view = views.agent_view(cluster.master, cluster.master.agents[a1.agent_id], stories=True)
    assert not views.agent_view(cluster.master, cluster.master.agents[a1.agent_id]).story
    told = [(t.source, t.target, t.stimulus) for t in view.story]
    assert told[:3] == [("", "ACTIVE", "registered"),
                        ("ACTIVE", "DISCONNECTED", "its stream ended"),
                        ("DISCONNECTED", "ACTIVE", "re-registered")]


def test_a_drained_agent_is_down_as_soon_as_its_tasks_end_though_nobody_acknowledges() -> None:
    """The agent sends a task's updates one at a time, each after the last one's
    acknowledgement; with the framework away, KILLED waits behind KILLING. The
    update carries the task's latest state, so the master knows it ended."""
    cluster = Cluster(["a1", "a2"])
    fw = cluster.framework(failover_timeout=300)
    fw.launch(task("t1", grace=1), agent="a1")
    fw.disconnect()
    cluster.operator("drain_agent", cluster.agent_id("a1"))
    cluster.advance(2)  # the grace period: KILLING, then KILLED, neither acknowledged
    assert cluster.task("t1") == S.TASK_KILLED
    assert cluster.agent_view("a1") == (A.AGENT_ACTIVE, M.MAINTENANCE_DOWN)
    assert cluster.master.allocator.available(cluster.agent_id("a1")) == Resources(
        {"cpus": 4, "mem": 4096})
    # The framework, back, hears the whole story in order.
    fw.subscribe()
    cluster.advance(30)  # the agent's retries
    told = [u.state for u in fw.updates if u.task_id == "t1" and u.uuid]
    assert told[-2:] == [S.TASK_KILLING, S.TASK_KILLED]
    assert not cluster.master.tasks  # acknowledged: complete
    cluster.validate()


# -- found by a review: each a kind of fault, its right value a test ------------------


def test_an_agent_back_from_unreachable_with_a_staging_task_is_taken_back() -> None:
    """UNREACHABLE → STAGING is allowed (the executor had not started): the
    re-registration must not fail half-way, and the LOST task is killed."""
    cluster = Cluster(["a1"], agent_ping_timeout=1, max_agent_ping_timeouts=3)
    fw = cluster.framework()  # not partition-aware
    a1 = cluster.agent("a1")
    a1.slow_executors = True
    fw.launch(task("t1", grace=0))
    assert cluster.task("t1") == S.TASK_STAGING
    a1.cut()
    cluster.advance(5)
    assert fw.latest("t1") == S.TASK_LOST
    a1.slow_executors = False
    a1.reconnect()
    cluster.advance(3)
    assert cluster.agent_view("a1")[0] == A.AGENT_ACTIVE
    assert not cluster.executor_alive("t1")
    # The framework was told the task was lost: it hears nothing more of it.
    assert [u.state for u in fw.updates if u.task_id == "t1"][-1] == S.TASK_LOST
    assert cluster.task("t1") == S.TASK_KILLED
    cluster.validate()


def test_an_agent_restarted_with_less_than_its_tasks_use_is_refused_and_nothing_changes() -> None:
    cluster = Cluster(["a1"])
    fw = cluster.framework()
    fw.launch(task("t1", cpus=2))
    a1 = cluster.agent("a1")
    a1.stop()
    cluster.settle()
    a1.resources = Resources({"cpus": 1, "mem": 4096})
    a1.start()
    before = (cluster.agent_view("a1"), dict(cluster.master.allocator.allocated(a1.agent_id)))
    with pytest.raises(CallError) as refused:
        a1.reconnect()
    assert refused.value.code == Code.FAILED_PRECONDITION
    assert "cpus 2" in refused.value.message and "--resources" in refused.value.message
    assert (cluster.agent_view("a1"), dict(cluster.master.allocator.allocated(a1.agent_id))) \
        == before
    cluster.validate()


def test_a_teardown_outlives_a_failover_however_many_frameworks_came_and_went_since() -> None:
    cluster = Cluster(["a1", "a2"], torn_down_kept=1)
    fw = cluster.framework("old")
    fw.launch(task("t1", grace=0), agent="a1")
    cluster.agent("a1").cut()
    fw.call("teardown")
    cluster.failover()  # the new leader reads old's torn_down record, knows no task of it
    for n in range(3):  # more torn-down frameworks than it keeps
        cluster.framework(f"brief{n}").call("teardown")
    assert fw.framework_id in cluster.master.torn_down  # a1 may still hold old's tasks
    cluster.agent("a1").reconnect()
    cluster.settle()
    assert not cluster.executor_alive("t1") and cluster.task("t1") == S.TASK_KILLED
    assert fw.framework_id not in cluster.master.frameworks
    cluster.framework("later").call("teardown")  # every agent back: old may go now
    assert fw.framework_id not in cluster.master.torn_down
    cluster.validate()


def test_a_task_id_reused_while_its_agent_was_away_does_not_cross_the_two_tasks() -> None:
    cluster = Cluster(["a1", "a2"])
    fw = cluster.framework()
    fw.launch(task("web", grace=0), agent="a1")
    cluster.agent("a1").cut()
    cluster.failover()
    fw.subscribe()
    cluster.advance(6)  # the new leader's hold on offers while it waits for a1
    assert fw.launch(task("web"), agent="a2") == "a2"  # the framework gave the old one up
    cluster.agent("a1").reconnect()
    cluster.settle()
    # The stale copy on a1 is killed; the master still tracks the one on a2.
    entry = cluster.master.tasks[(fw.framework_id, "web")]
    assert entry.agent_id == cluster.agent_id("a2") and entry.state == S.TASK_RUNNING
    assert [k for k, e in cluster.agent("a1").executors.items() if e.alive] == []
    assert cluster.master.stale == {}
    # What a1 holds is what is offered of it: the stale copy's resources are free.
    a1 = cluster.master.agents[cluster.agent_id("a1")]
    held = Resources()
    for r in cluster.master.allocator.allocated(a1.info.id).values():
        held = held + r
    assert held == cluster.master.offered_on(a1)
    assert fw.errors == [] and fw.latest("web") == S.TASK_RUNNING
    cluster.validate()


def test_a_retried_kill_writes_its_record_again() -> None:
    """A registry write that failed must be repaired by the framework's retry."""
    cluster = Cluster(["a1"])
    fw = cluster.framework()
    fw.launch(task("t1"))
    cluster.agent("a1").cut()
    fw.kill("t1")
    key = next(k for k in cluster.registry if k.startswith("kills/"))
    del cluster.registry[key]  # as if the write had failed
    fw.kill("t1")
    assert key in cluster.registry
