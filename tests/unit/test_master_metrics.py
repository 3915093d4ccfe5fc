"""The master's operator metrics (master/metrics.py) on a MasterState driven
as in test_master_state.py: what an operator reads off /metrics — each agent's
and role's cpus, memory and disk in bytes, ports, DRF shares and weights,
offers outstanding, updates pending — in Prometheus's text format, on the
leader only; the Accept→RUNNING timer; and the agent's metrics address kept
through re-registration and a failover (the registry)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from juggler.common.resources import Resources
from juggler.master import metrics
from juggler.master.commands import Persist
from juggler.master.state import MasterState, RegistrySnapshot
from juggler.v1 import common_pb2, operator_pb2
from tests.unit.test_master_state import World, task

S = common_pb2.TaskState
MiB = 2**20
AGENT = Resources({"cpus": 4, "mem": 4096, "disk": 1000}, ports="[31000-31009]")


def scrape(state: MasterState | None, leading: bool = True) -> dict[tuple, float]:
    """The collector's output as a scrape would parse it: (name, labels…) → value."""
    registry = CollectorRegistry()
    registry.register(metrics.MasterCollector(
        lambda: leading, lambda: None if state is None else metrics.snapshot(state)))
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            out[(s.name, *sorted(s.labels.items()))] = s.value
    return out


def agent_value(got: dict, name: str, agent: str, kind: str) -> float:
    return next(v for k, v in got.items()
                if k[0] == name and ("agent", agent) in k and ("kind", kind) in k)


def test_agent_and_role_resources_in_base_units_with_shares_and_quota() -> None:
    w = World()
    aid = w.agent("host1", AGENT)
    fid, sid = w.framework("web", roles=("web",))
    w.state.roles.update_weights({"web": 2.0})
    w.state.roles.update_quota("web", [common_pb2.Resource(name="cpus", scalar=3)])
    offer = w.one_offer(fid)
    w.launch(fid, sid, offer, task("t1", cpus=1, mem=128))
    w.offers()  # the rest goes out again, within the quota: cpus 2

    got = scrape(w.state)
    assert got[("juggler_master_is_leader",)] == 1
    cpus = "juggler_master_agent_cpus"
    assert agent_value(got, cpus, aid, "total") == 4
    assert agent_value(got, cpus, aid, "used") == 1
    assert agent_value(got, cpus, aid, "offered") == 2
    mem = "juggler_master_agent_memory_bytes"
    assert agent_value(got, mem, aid, "total") == 4096 * MiB
    assert agent_value(got, mem, aid, "used") == 128 * MiB
    assert agent_value(got, mem, aid, "offered") == (4096 - 128) * MiB
    assert agent_value(got, "juggler_master_agent_disk_bytes", aid, "total") == 1000 * MiB
    assert agent_value(got, "juggler_master_agent_ports", aid, "total") == 10
    assert ("juggler_master_agent_cpus", ("agent", aid), ("hostname", "host1"),
            ("kind", "total")) in got

    def role(name: str, kind: str) -> float:
        return got[(name, ("kind", kind), ("role", "web"))]

    assert role("juggler_master_role_cpus", "used") == 1
    assert role("juggler_master_role_cpus", "offered") == 2
    assert role("juggler_master_role_cpus", "quota") == 3
    assert role("juggler_master_role_memory_bytes", "used") == 128 * MiB
    # No memory limit in the quota: no quota sample for it (unlimited).
    assert ("juggler_master_role_memory_bytes", ("kind", "quota"), ("role", "web")) not in got
    assert got[("juggler_master_role_weight", ("role", "web"))] == 2
    # The role holds all memory and disk (offered + used): share 1, over weight 2.
    assert got[("juggler_master_role_dominant_share", ("role", "web"))] == 0.5
    assert got[("juggler_master_offers_outstanding",)] == 1


def test_a_standby_exports_only_that_it_is_not_the_leader() -> None:
    w = World()
    w.agent("host1", AGENT)
    got = scrape(w.state, leading=False)
    assert got == {("juggler_master_is_leader",): 0}
    # Before any snapshot (a leader just elected), the derived gauges are absent too.
    assert scrape(None) == {("juggler_master_is_leader",): 1}


def test_status_updates_pending_until_the_framework_acknowledges() -> None:
    w = World()
    aid = w.agent("host1", AGENT)
    fid, sid = w.framework()
    w.launch(fid, sid, w.one_offer(fid), task("t1"))
    assert metrics.snapshot(w.state).status_updates_pending == 0
    w.update(aid, fid, "t1", S.TASK_RUNNING, b"u1")
    assert metrics.snapshot(w.state).status_updates_pending == 1
    w.state.acknowledge(fid, sid, aid, "t1", b"u1")
    assert metrics.snapshot(w.state).status_updates_pending == 0
    # A torn-down framework's updates are acknowledged by the master: none pending.
    w.update(aid, fid, "t1", S.TASK_FAILED, b"u2")
    assert metrics.snapshot(w.state).status_updates_pending == 1
    w.state.teardown(fid, sid)
    assert metrics.snapshot(w.state).status_updates_pending == 0


def test_launch_timer_measures_accept_to_first_running_and_stays_bounded() -> None:
    timer = metrics.LaunchTimer(kept=3)
    timer.sent(("f", "a"), 10.0)
    assert timer.update(("f", "a"), (S.TASK_STARTING, S.TASK_STARTING), 11.0) is None
    assert timer.update(("f", "a"), (S.TASK_STARTING, S.TASK_RUNNING), 12.5) == 2.5
    assert timer.update(("f", "a"), (S.TASK_RUNNING, S.TASK_RUNNING), 13.0) is None  # first only
    timer.sent(("f", "b"), 10.0)
    assert timer.update(("f", "b"), (S.TASK_FAILED, S.TASK_FAILED), 11.0) is None
    assert len(timer) == 0  # ended without running: forgotten
    for i in range(5):
        timer.sent(("f", str(i)), float(i))
    assert len(timer) == 3
    assert timer.update(("f", "0"), (S.TASK_RUNNING,), 9.0) is None  # the oldest went
    timer.keep_only({("f", "4")})
    assert len(timer) == 1 and timer.update(("f", "4"), (S.TASK_RUNNING,), 9.0) == 5.0


def test_agent_metrics_address_kept_through_reregistration_and_failover() -> None:
    w = World()
    info = common_pb2.AgentInfo(hostname="host1", resources=AGENT.to_proto(),
                                address="10.0.0.1:5051", metrics_address="10.0.0.1:5056")
    aid, commands = w.state.register_agent(info)
    assert w.state.agents[aid].info.metrics_address == "10.0.0.1:5056"
    info.id = aid
    info.metrics_address = "10.0.0.1:40001"  # restarted with another port
    _, commands = w.state.reregister_agent(info, [], [])
    record = next(c.value for c in commands if isinstance(c, Persist)
                  and c.key == f"agents/{aid}")
    view = operator_pb2.AgentView.FromString(record)
    assert view.info.metrics_address == "10.0.0.1:40001"
    # A new leader reads it back from the registry.
    new = World()
    new.state.recover_registry(RegistrySnapshot(agents=[view]), 600.0)
    assert new.state.agents[aid].info.metrics_address == "10.0.0.1:40001"


def test_carried_terms_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(metrics.TERMS_LOST_ENV, "3")
    assert metrics.carried_terms() == 3
    monkeypatch.setenv(metrics.TERMS_LOST_ENV, "bogus")
    assert metrics.carried_terms() == 0
