"""master/access.py: which calls the rules let through, read from a real MasterState."""

from __future__ import annotations

import itertools

import pytest

from juggler.common.access import AccessControl, Denied
from juggler.common.access_rules import parse
from juggler.common.clock import FakeClock
from juggler.common.resources import Resources
from juggler.master import access
from juggler.master.allocator import Allocator
from juggler.master.state import MasterState
from juggler.v1 import common_pb2, scheduler_pb2

ALL = {"principals": {"type": "ANY"}}


def rules(**actions: list[dict]) -> AccessControl:
    return AccessControl(parse(actions))


@pytest.fixture
def state() -> MasterState:
    clock = FakeClock()
    counter = itertools.count(1)
    st = MasterState(clock, Allocator(clock), new_id=lambda: f"id{next(counter):04d}")
    st.register_agent(common_pb2.AgentInfo(
        hostname="h1", address="h1:5051",
        resources=Resources({"cpus": 4, "mem": 4096}).to_proto()))
    return st


def subscribe(state: MasterState, principal: str, roles: tuple[str, ...] = ("web",)) -> str:
    info = common_pb2.FrameworkInfo(name="fw", roles=roles, user="alice")
    access.subscribe(AccessControl(), state, principal, info)
    fid, _, _ = state.subscribe(info)
    return fid


def test_subscribe_sets_the_callers_principal_and_refuses_another(state: MasterState) -> None:
    info = common_pb2.FrameworkInfo(name="fw")
    access.subscribe(AccessControl(), state, "alice", info)
    assert info.principal == "alice"
    claimed = common_pb2.FrameworkInfo(name="fw", principal="admin")
    with pytest.raises(Denied, match="names principal 'admin' but the caller has principal "
                                     "'alice'"):
        access.subscribe(AccessControl(), state, "alice", claimed)
    plain = common_pb2.FrameworkInfo(name="fw")
    access.subscribe(AccessControl(), state, None, plain)
    assert plain.principal == ""


def test_register_frameworks_is_checked_per_role(state: MasterState) -> None:
    control = rules(register_frameworks=[
        {"principals": {"values": ["alice"]}, "roles": {"values": ["web", "batch"]}}])
    access.subscribe(control, state, "alice", common_pb2.FrameworkInfo(roles=["web", "batch"]))
    with pytest.raises(Denied, match=r"no register_frameworks rule allows principal 'alice' "
                                     r"for role 'db'"):
        access.subscribe(control, state, "alice", common_pb2.FrameworkInfo(roles=["web", "db"]))
    with pytest.raises(Denied, match="for role '\\*'"):  # no roles: the default role
        access.subscribe(control, state, "alice", common_pb2.FrameworkInfo())


def test_resubscribing_as_another_principals_framework_is_refused(state: MasterState) -> None:
    fid = subscribe(state, "alice")
    control = rules(register_frameworks=[{**ALL, "roles": {"type": "ANY"}}])
    with pytest.raises(Denied, match=f"framework {fid} is principal 'alice'"):
        access.subscribe(control, state, "bob", common_pb2.FrameworkInfo(id=fid, roles=["web"]))
    access.subscribe(control, state, "alice", common_pb2.FrameworkInfo(id=fid, roles=["web"]))
    # One subscribed without a principal (before TLS): register_frameworks is
    # not enough to take it over with its id ...
    plain = subscribe(state, "")
    with pytest.raises(Denied, match="no teardown_frameworks rule allows principal 'bob' "
                                     "for framework principal ''"):
        access.subscribe(control, state, "bob", common_pb2.FrameworkInfo(id=plain, roles=["web"]))
    only_alice = rules(register_frameworks=[{**ALL, "roles": {"type": "ANY"}}],
                       teardown_frameworks=[{"principals": {"values": ["alice"]},
                                             "framework_principals": {"values": ["alice"]}}])
    with pytest.raises(Denied, match="teardown_frameworks"):
        access.subscribe(only_alice, state, "alice",
                         common_pb2.FrameworkInfo(id=plain, roles=["web"]))
    # ... it is adopted by who teardown_frameworks allows on the empty principal.
    adopting = rules(register_frameworks=[{**ALL, "roles": {"type": "ANY"}}],
                     teardown_frameworks=[{"principals": {"values": ["bob"]},
                                           "framework_principals": {"type": "ANY"}}])
    adopted = common_pb2.FrameworkInfo(id=plain, roles=["web"])
    access.subscribe(adopting, state, "bob", adopted)
    assert adopted.principal == "bob"
    # A caller without a principal is its owner as before.
    access.subscribe(control, state, None, common_pb2.FrameworkInfo(id=plain, roles=["web"]))


def test_calls_on_another_principals_framework(state: MasterState) -> None:
    fid = subscribe(state, "alice")
    control = rules(kill_tasks=[{"principals": {"values": ["ops"]},
                                 "framework_principals": {"values": ["alice"]}}])
    access.framework_call(control, state, "alice", fid)  # its own
    with pytest.raises(Denied, match="rule framework principal"):
        access.framework_call(control, state, "bob", fid)
    access.framework_call(control, state, "ops", fid, "kill_tasks")
    with pytest.raises(Denied, match="no kill_tasks rule allows principal 'bob' for framework "
                                     "principal 'alice'"):
        access.framework_call(control, state, "bob", fid, "kill_tasks")
    with pytest.raises(Denied, match="no teardown_frameworks rule"):
        access.framework_call(control, state, "ops", fid, "teardown_frameworks")
    access.framework_call(control, state, "bob", "unknown")  # left to MasterState: NOT_FOUND
    access.framework_call(AccessControl(), state, "bob", fid)  # no rules: allowed


def launch(*tasks: common_pb2.TaskInfo) -> list[scheduler_pb2.Operation]:
    return [scheduler_pb2.Operation(launch=scheduler_pb2.Operation.Launch(tasks=list(tasks)))]


def task(user: str = "", **container: object) -> common_pb2.TaskInfo:
    return common_pb2.TaskInfo(task_id="t", command=common_pb2.CommandInfo(argv=["true"],
                                                                           user=user),
                               container=common_pb2.ContainerInfo(**container))


def test_accept_checks_every_rule_of_every_launch(state: MasterState) -> None:
    fid = subscribe(state, "alice")
    offer = next(o for c in state.allocate() for o in c.event.offers.offers)
    control = rules(
        run_tasks=[{"principals": {"values": ["alice"]}, "users": {"values": ["alice"]}}],
        run_host_filesystem=[{**ALL, "roles": {"values": ["web"]}}],
        run_host_network=[{**ALL, "roles": {"type": "NONE"}}])
    ok = [offer.id]
    access.accept(control, state, "alice", fid, ok, launch(task()))  # framework.user alice
    access.accept(control, state, "alice", fid, ok, launch(task(rootfs="/srv/r")))
    with pytest.raises(Denied, match="for user 'root'"):
        access.accept(control, state, "alice", fid, ok, launch(task(), task(user="root")))
    with pytest.raises(Denied, match=r"run_host_network refused .* \(rule run_host_network\[0\]\)"):
        access.accept(control, state, "alice", fid, ok,
                      launch(task(rootfs="/r", network=common_pb2.NETWORK_HOST)))
    with pytest.raises(Denied, match="no write_host_filesystem rule"):
        access.accept(control, state, "alice", fid, ok,
                      launch(task(writable_host_filesystem=True)))
    with pytest.raises(Denied, match="rule framework principal"):
        access.accept(control, state, "bob", fid, ok, launch(task()))
    # Nothing was applied: the offer is still there.
    assert offer.id in state.offers


def test_task_user() -> None:
    fw = common_pb2.FrameworkInfo(user="alice")
    assert access.task_user(task(), fw) == "alice"
    assert access.task_user(task(user="bob:staff"), fw) == "bob:staff"
    assert access.task_user(task(), common_pb2.FrameworkInfo()) == "root"


def test_agent_hostname(state: MasterState) -> None:
    agent_id = next(iter(state.agents.values())).info.id
    assert access.agent_hostname(state, agent_id) == "h1"
    assert access.agent_hostname(state, "nope") is None


def test_an_agent_id_is_re_registered_only_by_the_principal_that_registered_it() -> None:
    clock = FakeClock()
    st = MasterState(clock, Allocator(clock), new_id=lambda: "agent-1")
    control = rules(register_agents=[
        {"principals": {"values": ["agent-h1", "agent-h2"]}, "agents": {"type": "ANY"}}])
    first = common_pb2.AgentInfo(hostname="h1", address="h1:5051",
                                 resources=Resources({"cpus": 4, "mem": 4096}).to_proto())
    access.agent_connect(control, st, "agent-h1", first)
    assert first.principal == "agent-h1"
    agent_id, _ = st.register_agent(first)
    assert st.agents[agent_id].info.principal == "agent-h1"
    # Another agent claims its id (and even its hostname): refused, nothing changes.
    takeover = common_pb2.AgentInfo(id=agent_id, hostname="h1", address="h2:5051",
                                    principal="agent-h1")
    with pytest.raises(Denied, match=r"agent agent-1 was registered by principal 'agent-h1', "
                                     r"not by principal 'agent-h2' \(rule agent principal\)"):
        access.agent_connect(control, st, "agent-h2", takeover)
    assert st.agents[agent_id].info.address == "h1:5051"
    # The agent itself comes back: allowed; without rules nothing binds the id.
    again = common_pb2.AgentInfo(id=agent_id, hostname="h1", address="h1:5051")
    access.agent_connect(control, st, "agent-h1", again)
    assert again.principal == "agent-h1"
    access.agent_connect(AccessControl(), st, None, common_pb2.AgentInfo(id=agent_id,
                                                                        hostname="h1"))
