"""The fault campaign's pure parts (testing/faults/): the checker finds each
kind of anomaly in a history that has it and none in one that does not; the
nemesis' schedule is a function of the seed."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from juggler.testing.faults import checker, history, nemesis
from juggler.testing.faults.nemesis import Fault

A1, A2 = "agent-a", "agent-b"
M1, M2 = "10.0.0.1:5050", "10.0.0.1:5051"


def launch(task_id: str, t: float = 0.0, agent: str = A1) -> dict[str, Any]:
    return {"type": "launch", "task_id": task_id, "agent_id": agent, "t": t}


def update(task_id: str, state: str, t: float, agent: str = A1,
           source: str = "event") -> dict[str, Any]:
    return {"type": "update", "task_id": task_id, "state": f"TASK_{state}", "agent_id": agent,
            "t": t, "source": source}


def op(kind: str, target: str, t: float, ok: bool = True) -> dict[str, Any]:
    return {"type": "op", "kind": kind, "target": target, "t": t, "ok": ok, "detail": ""}


def leader(master: str, t: float, is_leader: bool) -> dict[str, Any]:
    return {"type": "leader", "master": master, "t0": t, "t1": t + 0.01,
            "is_leader": is_leader, "answered": True}


def etcd(address: str, revision: int, t: float) -> dict[str, Any]:
    return {"type": "etcd_leader", "address": address, "revision": revision, "t0": t,
            "t1": t + 0.01}


def kinds(records: list[dict[str, Any]], final: dict[str, Any] | None = None) -> list[str]:
    return [a.kind for a in checker.check(records, final or {})]


# -- a clean history -----------------------------------------------------------------------------
def clean() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    records = [
        launch("t1"), update("t1", "RUNNING", 1), op("kill", "t1", 2),
        update("t1", "KILLING", 2.1), update("t1", "KILLED", 2.5),
        launch("t2", agent=A2), update("t2", "RUNNING", 1, A2), update("t2", "FINISHED", 3, A2),
        leader(M1, 0, True), leader(M2, 0, False), etcd(M1, 5, 0),
        leader(M1, 1, False), etcd(M2, 9, 1.5), leader(M2, 2, True), leader(M2, 3, True),
        {"type": "fault", "kind": "kill-leader-master", "target": "master-1", "start": 0.9,
         "heal": 1.2},
    ]
    final = {"tasks": {"t1": {"state": "TASK_KILLED", "agent_id": A1},
                       "t2": {"state": "TASK_FINISHED", "agent_id": A2}},
             "apps": {"/a": {"desired": 2, "instances": 2, "running": 2}},
             "containers": {"c1": {"desired": "exited", "state": "exited"}},
             "executors": {}, "leaks": []}
    return records, final


def test_a_clean_history_has_no_anomaly() -> None:
    records, final = clean()
    assert checker.check(records, final) == []


def test_a_task_the_masters_forgot_counts_by_what_the_framework_heard() -> None:
    # After a failover the new leader answers TASK_UNKNOWN for a completed task
    # whose agent it does not know (master/reconciliation.py).
    records, final = clean()
    del final["tasks"]["t1"]
    records.append(update("t1", "UNKNOWN", 9, source="reconcile"))
    assert checker.check(records, final) == []


# -- each anomaly --------------------------------------------------------------------------------
def test_a_terminal_update_that_never_reached_the_framework_is_lost() -> None:
    records, final = clean()
    records = [r for r in records if not (r.get("task_id") == "t2"
                                          and r.get("state") == "TASK_FINISHED")]
    assert kinds(records, final) == ["lost-update"]


def test_the_framework_heard_another_terminal_state_than_the_masters_have() -> None:
    records, final = clean()
    final["tasks"]["t2"]["state"] = "TASK_FAILED"
    assert kinds(records, final) == ["lost-update"]


def test_a_reconciled_terminal_state_is_heard() -> None:
    records, final = clean()
    records = [r for r in records if not (r.get("task_id") == "t2"
                                          and r.get("state") == "TASK_FINISHED")]
    records.append(update("t2", "FINISHED", 9, A2, source="reconcile"))
    assert kinds(records, final) == []


def test_a_launch_lost_with_its_master_before_any_agent_started_it_is_no_anomaly() -> None:
    records, final = clean()
    records += [launch("t3", 5), update("t3", "UNKNOWN", 9, source="reconcile")]
    assert kinds(records, final) == []
    final["started"] = ["t3"]   # …but if an executor started for it, its end was lost
    assert kinds(records, final) == ["lost-update"]


def test_running_on_two_agents_is_a_task_run_twice() -> None:
    records, final = clean()
    records.append(update("t2", "RUNNING", 2, A1))
    assert kinds(records, final) == ["ran-twice"]


def test_two_executors_left_for_one_task_is_a_task_run_twice() -> None:
    records, final = clean()
    final["executors"] = {"t2": 2}
    assert kinds(records, final) == ["ran-twice"]


def test_an_accepted_kill_of_a_task_still_running_was_not_applied() -> None:
    records, final = clean()
    records.append(launch("t3"))
    records.append(update("t3", "RUNNING", 4))
    records.append(op("kill", "t3", 5))
    final["tasks"]["t3"] = {"state": "TASK_RUNNING", "agent_id": A1}
    assert kinds(records, final) == ["kill-not-applied"]


def test_a_refused_kill_is_not_the_clusters_promise() -> None:
    records, final = clean()
    records += [launch("t3"), update("t3", "RUNNING", 4), op("kill", "t3", 5, ok=False)]
    final["tasks"]["t3"] = {"state": "TASK_RUNNING", "agent_id": A1}
    assert kinds(records, final) == []


def test_a_drained_agent_that_keeps_a_task_did_not_apply_the_drain() -> None:
    records, final = clean()
    records += [launch("t3", 1, A2), update("t3", "RUNNING", 2, A2), op("drain", A2, 3),
                update("t3", "KILLED", 4, A2),
                {"type": "drained", "agent_id": A2, "t": 48.0, "left": []}]
    final["tasks"]["t3"] = {"state": "TASK_KILLED", "agent_id": A2}
    assert kinds(records, final) == []
    records.append({"type": "drained", "agent_id": A2, "t": 90.0, "left": ["t3"]})
    assert kinds(records, final) == ["kill-not-applied"]


def test_a_leader_inside_another_masters_term_is_two_leaders() -> None:
    records, final = clean()
    records += [leader(M1, 10, True), leader(M2, 10.5, True), leader(M1, 11, True)]
    assert "two-leaders" in kinds(records, final)


def test_a_reelection_seen_in_etcd_splits_the_term() -> None:
    records, final = clean()
    records += [leader(M1, 10, True), etcd(M1, 20, 10.05), etcd(M2, 22, 10.4),
                leader(M2, 10.5, True), etcd(M1, 25, 10.9), leader(M1, 11, True)]
    assert kinds([r for r in records if r["type"] != "leader" or r["t0"] >= 10], final) == []


def test_a_master_leading_long_after_etcd_elected_another_is_stale() -> None:
    records, final = clean()
    records += [leader(M1, 8, True)]   # etcd showed M2 (revision 9) at 1.5 s
    assert kinds(records, final) == ["two-leaders"]


def test_an_app_or_container_off_its_desired_state_has_not_converged() -> None:
    records, final = clean()
    final["apps"]["/a"]["running"] = 1
    final["containers"]["c1"]["state"] = "running"
    assert kinds(records, final) == ["not-converged", "not-converged"]


def test_a_dead_container_is_as_stopped_as_an_exited_one() -> None:
    records, final = clean()
    final["containers"]["c1"]["state"] = "dead"
    assert kinds(records, final) == []
    final["containers"]["c1"]["desired"] = "running"
    assert kinds(records, final) == ["not-converged"]


def test_a_fault_never_healed() -> None:
    records, final = clean()
    records.append({"type": "fault", "kind": "partition-host", "target": "host1",
                    "start": 5.0, "heal": None})
    assert kinds(records, final) == ["not-healed"]


def test_what_outlived_the_tasks_is_a_leak() -> None:
    records, final = clean()
    final["leaks"] = [{"kind": "cgroup", "what": "/sys/fs/cgroup/juggler/x"}]
    assert kinds(records, final) == ["leak"]


def test_a_cluster_not_whole_again_after_the_faults_is_unavailable() -> None:
    records, final = clean()
    records.append(op("whole", "cluster", 99, ok=False))
    assert kinds(records, final) == ["unavailable"]


# -- the nemesis ---------------------------------------------------------------------------------
def test_the_same_seed_gives_the_same_schedule() -> None:
    assert nemesis.schedule(7, 600) == nemesis.schedule(7, 600)
    assert nemesis.schedule(7, 600) != nemesis.schedule(8, 600)


def test_the_schedule_is_one_fault_at_a_time_within_the_campaign() -> None:
    plan = nemesis.schedule(3, 300)
    assert plan and plan[0].at >= nemesis.START
    for p, q in itertools.pairwise(plan):
        assert q.at >= p.at + p.hold + nemesis.GAP[0] - 0.01
    assert plan[-1].at + plan[-1].hold <= 300


def test_with_overlap_faults_come_in_pairs_and_each_pair_heals_before_the_next() -> None:
    plan = nemesis.schedule(3, 600, overlap=0.5)
    joined = [q for q in plan if q.joins]
    assert joined and len(joined) < len(plan) - len(joined)   # about half are joined
    for p, q in itertools.pairwise(plan):
        if q.joins:   # it starts while p lasts
            assert p.at < q.at < p.at + p.hold and not p.joins
    # A fault that joins none starts after the pair before it has healed.
    starts = [i for i, q in enumerate(plan) if not q.joins]
    for i, k in itertools.pairwise(starts):
        end = max(q.at + q.hold for q in plan[i:k])
        assert plan[k].at >= end + nemesis.GAP[0] - 0.01
    assert all(q.at + q.hold <= 600 for q in plan)
    # Without overlap, the same seed plans what it always did: CI's seed 1,
    # as planned before overlaps existed.
    assert [(q.at, q.kind.value, q.hold, q.pick) for q in nemesis.schedule(1, 120)] == [
        (5.0, "kill-standby-master", 4.85, 821), (14.91, "kill-agent", 2.59, 779),
        (21.29, "partition-host", 3.9, 214), (27.57, "kill-leader-master", 6.47, 399),
        (37.77, "one-way-in-host", 5.84, 712), (47.39, "one-way-host", 6.01, 605),
        (59.18, "stop-agent", 2.15, 26), (65.93, "kill-leader-master", 6.7, 390),
        (77.38, "kill-apps-leader", 5.63, 540), (85.89, "stop-apps-leader", 6.7, 566),
        (95.53, "stop-standby-master", 5.38, 779), (104.74, "kill-agent", 6.63, 426)]
    assert not any(q.joins for q in nemesis.schedule(3, 600))
    with pytest.raises(ValueError):
        nemesis.schedule(3, 600, overlap=1.5)


def test_faults_at_once_are_counted() -> None:
    def fault(start: float, heal: float | None) -> dict:
        return {"type": "fault", "kind": "kill-agent", "target": "agent-1", "start": start,
                "heal": heal}
    assert checker.overlapping_faults([fault(0, 5), fault(6, 8)]) == 0
    assert checker.overlapping_faults([fault(0, 5), fault(3, 8), fault(9, 10)]) == 2
    assert checker.overlapping_faults([fault(0, None), fault(30, 31)]) == 2


def test_the_schedule_keeps_to_the_kinds_given() -> None:
    plan = nemesis.schedule(1, 600, (Fault.PARTITION_HOST,))
    assert {p.kind for p in plan} == {Fault.PARTITION_HOST}
    with pytest.raises(ValueError):
        nemesis.schedule(1, 60, ())


def test_a_third_kill_of_a_daemon_within_up_s_restart_window_becomes_a_stop() -> None:
    kills = [(0.0, "agent-1"), (20.0, "agent-1")]
    assert nemesis.admissible(Fault.KILL_AGENT, "agent-1", kills, 30.0) is Fault.STOP_AGENT
    assert nemesis.admissible(Fault.KILL_AGENT, "agent-2", kills, 30.0) is Fault.KILL_AGENT
    assert nemesis.admissible(Fault.KILL_AGENT, "agent-1", kills, 61.0) is Fault.KILL_AGENT
    assert nemesis.admissible(Fault.KILL_ETCD, "m1", [(0, "m1")] * 5, 1.0) is Fault.KILL_ETCD


# -- the history file ----------------------------------------------------------------------------
def test_a_history_written_to_a_file_loads_back_with_its_heals(tmp_path: Path) -> None:
    clock = iter([0.0, 1.0, 2.0, 3.0, 4.0]).__next__
    h = history.History(tmp_path / "h.jsonl", clock=clock)
    fault = h.fault_started("partition-host", "host1")
    h.op("kill", "t1", True)
    h.fault_healed(fault)
    h.close()
    loaded = history.load(tmp_path / "h.jsonl")
    assert loaded == h.records
    assert [r["heal"] for r in loaded if r["type"] == "fault"] == [3.0]


def test_a_container_whose_agent_was_drained_after_its_start_may_be_stopped() -> None:
    # The run a drain killed ends as a Docker container's does when its host
    # goes down for maintenance: restart policy "no" leaves it stopped.
    records, final = clean()
    final["containers"]["c1"] = {"desired": "running", "state": "exited"}
    placed = {"type": "container-placed", "name": "c1", "agent_id": A1, "t": 5.0}
    assert kinds([*records, placed, op("drain", A1, 9.0)], final) == []
    assert kinds([*records, placed, op("drain", A2, 9.0)], final) == ["not-converged"]
    assert kinds([*records, op("drain", A1, 4.0), placed], final) == ["not-converged"]
    assert kinds([*records, placed, op("drain", A1, 9.0, ok=False)], final) == \
        ["not-converged"]
    unknown = {"type": "container-placed", "name": "c1", "agent_id": None, "t": 10.0}
    assert kinds([*records, placed, op("drain", A1, 9.0), unknown], final) == ["not-converged"]


def test_an_operation_still_refused_once_every_fault_is_healed_is_refused_for_good() -> None:
    # Campaign seed 20261202: a container marked "dead" refused its 160 later
    # starts; its desired state stayed "exited" (nothing was accepted), so the
    # final state alone showed nothing.
    records = [op("container-start", "fz-c1", 10.0, ok=False),
               op("healed-container-start", "fz-c1", 100.0, ok=False),
               op("healed-container-start", "fz-c1", 102.0, ok=False),
               op("healed-container-restart", "fz-c2", 100.0, ok=False),
               op("healed-container-restart", "fz-c2", 102.0),
               op("healed-app-redeploy", "/faults/a", 104.0)]
    found = checker.refused_after_healing(records, {})
    assert [(a.kind, a.subject) for a in found] == [
        ("refused-after-healing", "healed-container-start fz-c1")]
    assert [a.kind for a in checker.check(records, {})] == ["refused-after-healing"]


def test_a_healed_phase_operation_accepted_but_not_carried_out_is_refused() -> None:
    final = {"after_healing": {
        "apps": {"/faults/a": {"desired": 2, "instances": 2, "running": 2}},
        "containers": {"fz-c1": {"desired": "running", "state": "dead"},
                       "fz-c2": {"desired": "running", "state": "running"}}}}
    found = checker.refused_after_healing([], final)
    assert [(a.kind, a.subject) for a in found] == [("refused-after-healing", "fz-c1")]
    assert "dead" in found[0].explanation


def test_an_app_mid_deployment_has_not_converged() -> None:
    final = {"apps": {"/faults/a": {"desired": 3, "instances": 3, "running": 3,
                                    "deploying": 1}}}
    [found] = checker.not_converged(final)
    assert found.subject == "/faults/a" and "1 deployment(s) still in progress" in found.explanation


def test_a_workload_thread_that_outlived_the_campaign_makes_it_unavailable() -> None:
    records = [op("workload", "ContainersWorkload", 130.0, ok=False)]
    assert [(a.kind, a.subject) for a in checker.check(records, {})] == [
        ("unavailable", "ContainersWorkload")]
