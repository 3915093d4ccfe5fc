"""Roles' weights and quota limits (RoleBook) through MasterState, with the real
allocator and a fake clock: what an operator sets changes who is offered what,
a refused call changes nothing, and a new leader gets the roles back from the
registry.

Semantics are Mesos's: https://mesos.apache.org/documentation/latest/weights/
(a role's dominant share is divided by its weight) and
https://mesos.apache.org/documentation/latest/quota/ (a limit caps what the
role is offered plus what it uses; it takes nothing back).
"""

from __future__ import annotations

import math

import pytest

from juggler.common.resources import Resources
from juggler.master import views
from juggler.master.commands import Allocate, CallError, Code, Persist, ToFramework
from juggler.master.state import RegistrySnapshot
from juggler.v1 import common_pb2, registry_pb2
from tests.unit.test_master_state import World, offered, task

SMALL = Resources({"cpus": 1, "mem": 1024})


def limit(**amounts: float) -> list[common_pb2.Resource]:
    return [common_pb2.Resource(name=n, scalar=v) for n, v in amounts.items()]


def offers_per_framework(w: World) -> dict[str, int]:
    return {fid: len(offers) for fid, offers in w.offers().items()}


def two_roles(w: World, agents: int = 8) -> tuple[str, str]:
    """`agents` agents of 1 cpu and 1 GiB, then a framework in role a and one in b."""
    for i in range(agents):
        w.agent(f"h{i}", SMALL)
    fa, _ = w.framework("fa", roles=("a",))
    fb, _ = w.framework("fb", roles=("b",))
    return fa, fb


def roles_state(w: World) -> tuple:
    """What a refused roles call must leave as it was: the configs, what
    GetRoles shows, and the rest of the master's state."""
    book = w.state.roles
    return (sorted((r, c.SerializeToString()) for r, c in book.configs.items()),
            views.roles_view(w.state).SerializeToString(), w.snapshot())


def persisted(commands: list, registry: dict[str, bytes]) -> dict[str, bytes]:
    """The registry after the commands' writes (a None value deletes the key)."""
    for c in commands:
        if isinstance(c, Persist):
            if c.value is None:
                registry.pop(c.key, None)
            else:
                registry[c.key] = c.value
    return registry


# -- weights ---------------------------------------------------------------------------


@pytest.mark.parametrize(("weights", "expected"), [
    ({}, (4, 4)),                  # equal weights: the agents alternate
    ({"a": 3}, (6, 2)),            # a's share counts a third: a gets 3 agents for b's 1
    ({"b": 3}, (2, 6)),
    ({"a": 2, "b": 2}, (4, 4)),    # only the ratio matters
])
def test_weights_divide_a_roles_share(weights: dict[str, float], expected: tuple[int, int]):
    w = World()
    fa, fb = two_roles(w)
    if weights:
        commands = w.state.roles.update_weights(weights)
        assert isinstance(commands[-1], Allocate)
    got = offers_per_framework(w)
    assert (got.get(fa, 0), got.get(fb, 0)) == expected


def test_weights_are_persisted_and_shown():
    w = World()
    fa, _ = two_roles(w, agents=1)
    commands = w.state.roles.update_weights({"a": 3, "c": 0.5})
    assert [c.key for c in commands if isinstance(c, Persist)] == ["roles/a", "roles/c"]
    saved = registry_pb2.RoleConfig.FromString(commands[0].value)
    assert saved.role == "a" and saved.weight == 3
    shown = {r.role: r for r in views.roles_view(w.state).roles}
    assert shown["a"].weight == 3 and list(shown["a"].frameworks) == [fa]
    assert shown["b"].weight == 1  # the default
    assert shown["c"].weight == 0.5 and not shown["c"].frameworks  # a weight alone shows it


def test_weight_one_restores_the_default():
    w = World()
    fa, fb = two_roles(w)
    w.state.roles.update_weights({"a": 3})
    commands = w.state.roles.update_weights({"a": 1})
    assert w.state.roles.weight("a") == 1
    # Set explicitly, so the registry keeps it (as Mesos keeps a weight of 1).
    assert next(c for c in commands if isinstance(c, Persist)).value is not None
    got = offers_per_framework(w)
    assert (got[fa], got[fb]) == (4, 4)


# -- quota limits --------------------------------------------------------------------


def test_a_quota_limit_caps_the_offer_and_removing_it_lifts_the_cap():
    w = World()
    w.agent()  # cpus 4, mem 4096
    fid, _ = w.framework(roles=("dev",))
    commands = w.state.roles.update_quota("dev", limit(cpus=1, mem=512))
    assert isinstance(commands[-1], Allocate)
    first = w.one_offer(fid)
    assert offered([first]) == Resources({"cpus": 1, "mem": 512})
    assert first.role == "dev"
    assert w.offers() == {}  # the role holds its limit in offers: nothing more
    shown = {r.role: r for r in views.roles_view(w.state).roles}["dev"]
    assert Resources.from_proto(shown.quota) == Resources({"cpus": 1, "mem": 512})
    assert Resources.from_proto(shown.offered) == Resources({"cpus": 1, "mem": 512})

    w.state.roles.update_quota("dev", [], remove=True)
    assert offered(w.offers()[fid]) == Resources({"cpus": 3, "mem": 3584})
    assert not w.state.roles.quota("dev")


def test_a_quota_limit_counts_what_tasks_use():
    w = World()
    agent = w.agent()
    fid, sid = w.framework(roles=("dev",))
    w.state.roles.update_quota("dev", limit(cpus=2))  # mem unlimited
    offer = w.one_offer(fid)
    assert offered([offer]) == Resources({"cpus": 2, "mem": 4096})
    w.launch(fid, sid, offer, task("t1", cpus=1.5, mem=128))
    assert w.state.tasks[(fid, "t1")].agent_id == agent
    # 1.5 cpus in use: 0.5 more at most; the rest of the memory comes back.
    assert offered(w.offers()[fid]) == Resources({"cpus": 0.5, "mem": 3968})


def test_a_zero_limit_is_a_limit():
    w = World()
    w.agent()
    fid, _ = w.framework(roles=("dev",))
    commands = w.state.roles.update_quota("dev", limit(cpus=0))
    saved = registry_pb2.RoleConfig.FromString(
        next(c for c in commands if isinstance(c, Persist)).value)
    assert [(r.name, r.scalar) for r in saved.quota] == [("cpus", 0.0)]
    # Memory is unlimited and allocatable alone; cpus are never offered.
    assert offered([w.one_offer(fid)]) == Resources({"mem": 4096})
    shown = {r.role: r for r in views.roles_view(w.state).roles}["dev"]
    assert [(r.name, r.scalar) for r in shown.quota] == [("cpus", 0.0)]


def test_a_lower_limit_takes_back_nothing_already_offered():
    w = World()
    w.agent()
    fid, _ = w.framework(roles=("dev",))
    offer = w.one_offer(fid)
    commands = w.state.roles.update_quota("dev", limit(cpus=1))
    assert not [c for c in commands if isinstance(c, ToFramework)]  # no rescind
    assert offer.id in w.state.offers
    assert w.offers() == {}


def test_a_capped_role_leaves_the_rest_of_the_agent_to_others():
    w = World()
    w.agent()
    dev, _ = w.framework("dev", roles=("dev",))
    other, _ = w.framework("other", roles=("web",))
    w.state.roles.update_quota("dev", limit(cpus=1, mem=1024))
    got = w.offers()
    assert offered(got[dev]) == Resources({"cpus": 1, "mem": 1024})
    assert offered(got[other]) == Resources({"cpus": 3, "mem": 3072})


# -- refused calls --------------------------------------------------------------------


def refused(w: World, call, *args, match: str = "") -> None:  # type: ignore[no-untyped-def]
    before = roles_state(w)
    with pytest.raises(CallError) as info:
        call(*args)
    assert info.value.code == Code.INVALID_ARGUMENT, info.value.message
    assert match in info.value.message, info.value.message
    assert roles_state(w) == before
    w.state.validate_state()


@pytest.mark.parametrize(("weights", "match"), [
    ({}, "no weights"),
    ({"a": math.nan}, "positive"),
    ({"a": math.inf}, "positive"),
    ({"a": 0.0}, "positive"),
    ({"a": -1.0}, "positive"),
    ({"a": 2.0, "b": 0.0}, "role b"),  # one bad weight: none is applied
    ({"bad role!": 2.0}, "is not valid"),
    ({"../etc": 2.0}, "is not valid"),
])
def test_bad_weights_are_refused_and_change_nothing(weights, match):
    w = World()
    w.state.roles.update_weights({"c": 2})
    refused(w, w.state.roles.update_weights, weights, match=match)
    assert w.state.roles.weight("a") == 1 and w.state.roles.weight("c") == 2


def test_a_refused_weights_call_leaves_the_allocation_as_it_was():
    w = World()
    fa, fb = two_roles(w)
    refused(w, w.state.roles.update_weights, {"a": 3.0, "b": -1.0})
    got = offers_per_framework(w)
    assert (got[fa], got[fb]) == (4, 4)


@pytest.mark.parametrize(("role", "amounts", "remove", "match"), [
    ("dev", limit(gpus=1), False, "unknown resource"),
    ("dev", limit(cpus=-1), False, "negative"),
    ("dev", limit(cpus=math.nan), False, "finite"),
    ("dev", limit(mem=math.inf), False, "finite"),
    ("dev", limit(cpus=1) + limit(cpus=2), False, "given twice"),
    ("dev", [common_pb2.Resource(scalar=1)], False, "unknown resource"),
    ("bad role!", limit(cpus=1), False, "is not valid"),
    ("", limit(cpus=1), False, "is not valid"),
    ("dev", limit(cpus=1), True, "not both"),  # a limit and remove
    ("dev", [], False, "not both"),            # neither
])
def test_bad_quota_is_refused_and_changes_nothing(role, amounts, remove, match):
    w = World()
    w.agent()
    fid, _ = w.framework(roles=("dev",))
    w.state.roles.update_quota("dev", limit(cpus=2))
    refused(w, w.state.roles.update_quota, role, amounts, remove, match=match)
    # The limit set before still holds.
    assert offered([w.one_offer(fid)]) == Resources({"cpus": 2, "mem": 4096})


# -- a new leader -------------------------------------------------------------------


def test_a_new_leader_gets_weights_and_quotas_back_from_the_registry():
    old = World()
    registry: dict[str, bytes] = {}
    persisted(old.state.roles.update_weights({"a": 3}), registry)
    persisted(old.state.roles.update_quota("q", limit(cpus=0.5)), registry)
    persisted(old.state.roles.update_quota("c", limit(cpus=1)), registry)
    persisted(old.state.roles.update_quota("c", [], remove=True), registry)
    assert sorted(registry) == ["roles/a", "roles/q"]  # c has nothing left to keep

    new = World()
    new.state.recover_registry(RegistrySnapshot(
        roles=[registry_pb2.RoleConfig.FromString(v) for v in registry.values()]),
        reregister_timeout=10)
    shown = {r.role: r for r in views.roles_view(new.state).roles}
    assert shown["a"].weight == 3 and not shown["a"].quota
    assert shown["q"].weight == 1
    assert [(r.name, r.scalar) for r in shown["q"].quota] == [("cpus", 0.5)]
    assert "c" not in shown

    # The allocator has them too: a's weight shapes the offers...
    fa, fb = two_roles(new)
    got = offers_per_framework(new)
    assert (got[fa], got[fb]) == (6, 2)
    # ... and q's limit caps them.
    new.agent("h9", SMALL)
    fq, _ = new.framework("fq", roles=("q",))
    assert offered(new.offers()[fq]) == Resources({"cpus": 0.5, "mem": 1024})
