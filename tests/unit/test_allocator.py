"""The allocator, driven by events with a fake clock: DRF fairness, filters, quota, properties."""

from __future__ import annotations

import copy
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from juggler.common.clock import FakeClock
from juggler.common.resources import ResourceError, Resources
from juggler.master.allocator import Allocation, Allocator, AllocatorError

AGENT = Resources({"cpus": 4, "mem": 4096})


def R(**amounts: float) -> Resources:
    return Resources(amounts)


def make(agents: int = 0, total: Resources = AGENT, **kwargs) -> tuple[Allocator, FakeClock]:
    clock = FakeClock()
    a = Allocator(clock, **kwargs)
    for i in range(agents):
        a.add_agent(f"a{i:03d}", total)
    return a, clock


def per_framework(allocations: list[Allocation]) -> Counter:
    return Counter(x.framework_id for x in allocations)


def test_fairness_two_frameworks_split_identical_agents_equally():
    a, _ = make(10)
    a.add_framework("f1", ["web"])
    a.add_framework("f2", ["web"])
    out = a.allocate()
    assert per_framework(out) == {"f1": 5, "f2": 5}
    assert all(x.resources == AGENT and x.role == "web" for x in out)
    assert len({x.agent_id for x in out}) == 10
    assert a.allocate() == []  # everything is offered already
    a.validate_state()


def test_lowest_share_goes_first_and_is_deterministic():
    def run() -> list[Allocation]:
        a, _ = make(3)
        a.add_framework("f2", ["r"])
        a.add_framework("f1", ["r"])
        return a.allocate()

    out = run()
    assert [x.framework_id for x in out] == ["f1", "f2", "f1"]  # tie broken by id
    assert run() == out


def test_dominant_share_uses_the_scarcest_resource():
    a, _ = make()
    a.add_agent("big", R(cpus=10, mem=100))
    a.add_agent("cpu-heavy", R(cpus=8, mem=10))
    a.add_agent("mem-heavy", R(cpus=1, mem=80))
    a.add_framework("f1", ["r"])
    a.add_framework("f2", ["r"])
    a.allocate()
    a.validate_state()
    # big -> f1 (tie by id); cpu-heavy -> f2; f1's share 10/19 cpus vs f2's 8/19: mem-heavy -> f2
    held = {
        k: v for agent in ("big", "cpu-heavy", "mem-heavy") for k, v in a.allocated(agent).items()
    }
    assert a.allocated("big") == {("f1", "r"): R(cpus=10, mem=100)}
    assert a.allocated("mem-heavy") == {("f2", "r"): R(cpus=1, mem=80)}
    assert set(held) == {("f1", "r"), ("f2", "r")}


def test_weights_role_with_weight_two_gets_twice():
    a, _ = make(30)
    a.set_weight("gold", 2)
    a.add_framework("g", ["gold"])
    a.add_framework("s", ["silver"])
    assert per_framework(a.allocate()) == {"g": 20, "s": 10}


def test_weight_must_be_positive():
    a, _ = make()
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(AllocatorError):
            a.set_weight("r", bad)


def test_roles_are_fair_before_frameworks():
    a, _ = make(8)
    a.add_framework("f1", ["r1"])
    a.add_framework("f2", ["r1"])
    a.add_framework("f3", ["r1"])
    a.add_framework("g", ["r2"])
    out = a.allocate()
    roles = Counter(x.role for x in out)
    assert roles == {"r1": 4, "r2": 4}
    assert per_framework(out)["g"] == 4


def test_multi_role_framework_is_a_client_in_each_role():
    a, _ = make(6)
    a.add_framework("multi", ["r1", "r2"])
    a.add_framework("solo", ["r1"])
    out = a.allocate()
    roles = Counter((x.framework_id, x.role) for x in out)
    # r1 and r2 take turns (3 each); inside r1 multi and solo alternate; r2 is multi alone.
    assert roles[("multi", "r2")] == 3
    assert roles[("multi", "r1")] + roles[("solo", "r1")] == 3
    assert roles[("solo", "r1")] >= 1
    a.validate_state()


def test_suppress_and_revive():
    a, _ = make(4)
    a.add_framework("f1", ["r"])
    a.add_framework("f2", ["r"])
    a.suppress("f1")
    assert per_framework(a.allocate()) == {"f2": 4}
    for x in a.allocated("a000"), a.allocated("a001"):
        assert list(x) == [("f2", "r")]
    for i in range(4):
        a.recover("f2", f"a{i:03d}", AGENT, "r")
    a.suppress("f2")
    assert a.allocate() == []
    a.revive("f1")
    assert per_framework(a.allocate()) == {"f1": 4}


def test_suppressed_at_add_and_per_role():
    a, _ = make(2)
    a.add_framework("f", ["r1", "r2"], suppressed_roles=["r2"])
    assert {x.role for x in a.allocate()} == {"r1"}
    a.recover("f", "a000", AGENT, "r1")
    a.recover("f", "a001", AGENT, "r1")
    a.suppress("f", ["r1"])
    a.revive("f", ["r2"])
    assert {x.role for x in a.allocate()} == {"r2"}


def test_recover_returns_resources_and_they_are_offered_again():
    a, _ = make(1)
    a.add_framework("f", ["r"])
    a.allocate()
    assert a.available("a000").is_empty()
    a.recover("f", "a000", R(cpus=1, mem=1024), "r")
    assert a.available("a000") == R(cpus=1, mem=1024)
    assert a.allocated("a000") == {("f", "r"): R(cpus=3, mem=3072)}
    [y] = a.allocate()
    assert y == Allocation("f", "r", "a000", R(cpus=1, mem=1024))
    a.validate_state()


def test_recover_more_than_held_is_an_error_and_changes_nothing():
    a, _ = make(1)
    a.add_framework("f", ["r"])
    a.allocate()
    a.recover("f", "a000", R(cpus=1), "r")
    with pytest.raises(ResourceError):
        a.recover("f", "a000", AGENT, "r")
    with pytest.raises(ResourceError):
        a.recover("f", "a000", R(cpus=1), "other-role")
    assert a.available("a000") == R(cpus=1)
    a.validate_state()


def test_recover_on_removed_agent_is_ignored():
    a, _ = make(1)
    a.add_framework("f", ["r"])
    a.allocate()
    a.remove_agent("a000")
    a.recover("f", "a000", AGENT, "r")
    a.validate_state()


def test_refusal_filter_blocks_subsets_until_it_expires():
    a, clock = make(1)
    a.add_framework("f", ["r"])
    a.allocate()
    a.recover("f", "a000", AGENT, "r", refuse_seconds=10)
    assert a.allocate() == []
    clock.advance(9.9)
    assert a.allocate() == []
    clock.advance(0.1)  # now == expiry: the filter is over
    [x] = a.allocate()
    assert x.resources == AGENT


def test_refusal_filter_does_not_block_a_larger_offer():
    a, _ = make()
    a.add_agent("a", R(cpus=4, mem=4096))
    a.add_framework("f", ["r"])
    a.allocate()
    a.recover("f", "a", R(cpus=1, mem=1024), "r", refuse_seconds=60)
    assert a.allocate() == []  # same as refused: filtered
    a.recover("f", "a", R(cpus=1), "r")  # more is free now: not a subset any more
    [x] = a.allocate()
    assert x.resources == R(cpus=2, mem=1024)


def test_filter_is_per_framework_and_agent():
    a, _ = make(2)
    a.add_framework("f1", ["r"])
    a.add_framework("f2", ["r"])
    out = {x.agent_id: x.framework_id for x in a.allocate()}
    assert out == {"a000": "f1", "a001": "f2"}
    a.recover("f1", "a000", AGENT, "r", refuse_seconds=60)
    # f1 is lowest now but refused a000: it goes to f2.
    assert [(x.framework_id, x.agent_id) for x in a.allocate()] == [("f2", "a000")]
    a.recover("f2", "a000", AGENT, "r")
    a.recover("f2", "a001", AGENT, "r")
    out = {x.agent_id: x.framework_id for x in a.allocate()}
    assert out == {"a000": "f2", "a001": "f1"}


def test_revive_clears_filters():
    a, _ = make(1)
    a.add_framework("f", ["r"])
    a.allocate()
    a.recover("f", "a000", AGENT, "r", refuse_seconds=3600)
    assert a.allocate() == []
    a.revive("f")
    assert len(a.allocate()) == 1


def test_decline_uses_the_default_refuse_seconds():
    a, clock = make(1, default_refuse_seconds=5)
    a.add_framework("f", ["r"])
    a.allocate()
    a.decline("f", "a000", AGENT, "r")
    clock.advance(4)
    assert a.allocate() == []
    clock.advance(1)
    assert len(a.allocate()) == 1
    # recover without refuse_seconds installs nothing; a negative value means the default
    a.recover("f", "a000", AGENT, "r")
    assert len(a.allocate()) == 1
    a.recover("f", "a000", AGENT, "r", refuse_seconds=-1)
    assert a.allocate() == []


def test_quota_limit_caps_a_role():
    a, _ = make(4)
    a.set_quota_limit("capped", R(cpus=6, mem=6144))
    a.add_framework("c", ["capped"])
    out = a.allocate()
    # a whole agent, then the part that fits; then nothing while at the limit.
    assert [x.resources for x in out] == [AGENT, R(cpus=2, mem=2048)]
    assert a.available("a001") == R(cpus=2, mem=2048)
    assert a.allocate() == []
    a.set_quota_limit("capped", None)
    assert len(a.allocate()) == 3


def test_room_under_a_quota_limit_reopens_every_agent_not_only_the_one_recovered():
    # Cycles visit only agents changed since the last one, unless a change may
    # let any agent be taken: resources recovered in a capped role are one.
    a, _ = make(2)
    a.set_quota_limit("capped", R(cpus=4, mem=4096))
    a.add_framework("c", ["capped"])
    assert [x.agent_id for x in a.allocate()] == ["a000"]   # at its limit: a001 skipped
    assert a.allocate() == []
    a.decline("c", "a000", AGENT, "capped", refuse_seconds=60)
    assert [(x.agent_id, x.resources) for x in a.allocate()] == [("a001", AGENT)]


def test_an_agent_activated_again_is_offered_at_the_next_cycle():
    a, _ = make(2)
    a.deactivate_agent("a001")
    a.add_framework("f", ["r"])
    assert [x.agent_id for x in a.allocate()] == ["a000"]
    a.activate_agent("a001")
    assert [x.agent_id for x in a.allocate()] == ["a001"]


def test_an_idle_agent_is_offered_once_a_filter_on_it_expires_with_nothing_else_changed():
    a, clock = make(2)
    a.add_framework("f", ["r"])
    a.allocate()
    a.decline("f", "a001", AGENT, "r", refuse_seconds=5)
    assert a.allocate() == []
    a.recover("f", "a000", R(cpus=1, mem=1024), "r")
    assert [x.agent_id for x in a.allocate()] == ["a000"]
    clock.advance(5)
    assert [x.agent_id for x in a.allocate()] == ["a001"]


def test_quota_limit_leaves_unnamed_resources_unlimited():
    a, _ = make(3)
    a.set_quota_limit("capped", R(cpus=6))
    a.add_framework("c", ["capped"])
    out = a.allocate()
    assert [x.resources for x in out] == [AGENT, R(cpus=2, mem=4096), R(mem=4096)]


def test_quota_leftover_goes_to_other_roles():
    a, _ = make(2)
    a.set_quota_limit("capped", R(cpus=1))
    a.add_framework("c", ["capped"])
    a.add_framework("o", ["other"])
    out = a.allocate()
    assert Allocation("c", "capped", "a000", R(cpus=1, mem=4096)) in out
    assert Allocation("o", "other", "a000", R(cpus=3)) in out
    assert Allocation("o", "other", "a001", AGENT) in out
    a.validate_state()


def test_quota_skip_when_the_fitting_part_is_below_min_allocatable():
    a, _ = make(1)
    a.set_quota_limit("capped", {"cpus": 0.005, "mem": 0})
    a.add_framework("c", ["capped"])
    assert a.allocate() == []


def test_min_allocatable_cpus_or_mem():
    a, _ = make()
    a.add_agent("tiny", R(cpus=0.005, mem=16, disk=100))
    a.add_agent("cpu-only", R(cpus=0.01))
    a.add_agent("mem-only", R(mem=32))
    a.add_framework("f", ["r"])
    assert sorted(x.agent_id for x in a.allocate()) == ["cpu-only", "mem-only"]
    b, _ = make(min_allocatable=R(cpus=1))
    b.add_agent("small", R(cpus=0.5, mem=100000))
    b.add_framework("f", ["r"])
    assert b.allocate() == []


def test_deactivated_agents_and_frameworks_get_nothing():
    a, _ = make(2)
    a.add_framework("f1", ["r"])
    a.add_framework("f2", ["r"])
    a.deactivate_agent("a001")
    a.deactivate_framework("f1")
    assert [(x.framework_id, x.agent_id) for x in a.allocate()] == [("f2", "a000")]
    a.activate_agent("a001")
    a.activate_framework("f1")
    assert [(x.framework_id, x.agent_id) for x in a.allocate()] == [("f1", "a001")]


def test_deactivating_a_framework_clears_its_filters():
    a, _ = make(1)
    a.add_framework("f", ["r"])
    a.allocate()
    a.recover("f", "a000", AGENT, "r", refuse_seconds=3600)
    a.deactivate_framework("f")
    a.activate_framework("f")
    assert len(a.allocate()) == 1


def test_reregistration_with_used():
    a, _ = make(1)
    a.add_framework("f1", ["r"])
    a.add_framework("f2", ["r"])
    a.add_agent("old", AGENT, used={("f1", "r"): R(cpus=3, mem=3072)})
    assert a.available("old") == R(cpus=1, mem=1024)
    # f1 already holds 3/8 cpus: a000 goes to f2 (now 4/8), the rest of "old" to f1 (3/8).
    out = a.allocate()
    assert [(x.framework_id, x.agent_id) for x in out] == [("f2", "a000"), ("f1", "old")]
    a.validate_state()
    with pytest.raises(ResourceError):
        a.add_agent("bad", AGENT, used={("f1", "r"): R(cpus=5)})
    with pytest.raises(AllocatorError):
        a.add_agent("old", AGENT)
    a.validate_state()


def test_used_for_a_framework_not_yet_added_counts_when_it_comes():
    a, _ = make()
    a.add_agent("x", AGENT, used={("late", "r"): AGENT})
    a.add_agent("y", AGENT)
    a.add_framework("early", ["r"])
    a.validate_state()
    a.add_framework("late", ["r"])
    a.validate_state()
    out = a.allocate()
    assert [(x.framework_id, x.agent_id) for x in out] == [("early", "y")]


def test_remove_agent_forgets_its_allocations_and_shrinks_the_cluster():
    a, _ = make(3)
    a.add_framework("f1", ["r"])
    a.add_framework("f2", ["r"])
    a.allocate()  # f1: a000, a002; f2: a001
    a.remove_agent("a000")
    a.remove_agent("a002")
    a.validate_state()
    a.add_agent("new", AGENT)
    # f1 holds nothing now, f2 holds a001: f1 is lowest.
    assert [x.framework_id for x in a.allocate()] == ["f1"]
    with pytest.raises(AllocatorError):
        a.remove_agent("a000")


def test_remove_framework_then_master_recovers():
    a, _ = make(2)
    a.add_framework("f1", ["r"])
    a.add_framework("f2", ["r"])
    a.allocate()
    a.remove_framework("f1")
    a.validate_state()
    assert a.available("a000").is_empty()  # until the master recovers it
    a.recover("f1", "a000", AGENT, "r", refuse_seconds=60)  # no filter for an unknown framework
    a.validate_state()
    assert [(x.framework_id, x.agent_id) for x in a.allocate()] == [("f2", "a000")]
    with pytest.raises(AllocatorError):
        a.suppress("f1")


def test_unknown_ids_are_errors():
    a, _ = make()
    for call in (a.activate_agent, a.deactivate_agent, a.available, a.remove_agent):
        with pytest.raises(AllocatorError):
            call("nope")
    for call in (a.activate_framework, a.deactivate_framework, a.remove_framework):
        with pytest.raises(AllocatorError):
            call("nope")
    a.add_framework("f", ["r"])
    with pytest.raises(AllocatorError):
        a.add_framework("f", ["r"])


def test_validate_state_reports_corruption():
    a, _ = make(1)
    a.add_framework("f", ["r"])
    a.allocate()
    a._agents["a000"].free = (1, 0, 0)
    with pytest.raises(AssertionError, match="a000"):
        a.validate_state()


def test_update_framework_roles():
    a, _ = make(2)
    a.add_framework("f", ["r1"])
    a.allocate()
    a.recover("f", "a000", AGENT, "r1")
    a.update_framework("f", ["r2"])
    out = a.allocate()
    assert [(x.role, x.agent_id) for x in out] == [("r2", "a000")]
    a.validate_state()


# -- properties ----------------------------------------------------------------------------

IDS_A = [f"a{i}" for i in range(5)]
IDS_F = [f"f{i}" for i in range(4)]
ROLES = ["r1", "r2", "r3"]
amount = st.sampled_from([0, 0.005, 0.5, 1, 2, 4, 16])
mem = st.sampled_from([0, 16, 32, 512, 4096])
resources = st.builds(
    lambda c, m, d: Resources({"cpus": c, "mem": m, "disk": d}), amount, mem, amount
)


class AllocatorMachine(RuleBasedStateMachine):
    """Random events; a model of outstanding allocations checks the allocator's book."""

    @initialize()
    def setup(self) -> None:
        self.clock = FakeClock()
        self.a = Allocator(self.clock)
        self.totals: dict[str, Resources] = {}
        self.frameworks: set[str] = set()
        # (framework, role, agent) -> what the master believes is out there
        self.held: dict[tuple[str, str, str], Resources] = {}
        self.limits: dict[str, Resources] = {}

    @rule(agent=st.sampled_from(IDS_A), total=resources)
    def add_agent(self, agent, total):
        if agent in self.totals:
            return
        self.a.add_agent(agent, total)
        self.totals[agent] = total

    @rule(agent=st.sampled_from(IDS_A))
    def remove_agent(self, agent):
        if agent not in self.totals:
            return
        self.a.remove_agent(agent)
        del self.totals[agent]
        self.held = {k: v for k, v in self.held.items() if k[2] != agent}

    @rule(agent=st.sampled_from(IDS_A))
    def reregister_agent(self, agent):
        if agent not in self.totals:
            return
        used: dict[tuple[str, str], Resources] = {}
        for (f, r, ag), v in self.held.items():
            if ag == agent:
                used[(f, r)] = used.get((f, r), Resources()) + v
        self.a.remove_agent(agent)
        self.a.add_agent(agent, self.totals[agent], used=used)

    @rule(agent=st.sampled_from(IDS_A), active=st.booleans())
    def toggle_agent(self, agent, active):
        if agent in self.totals:
            (self.a.activate_agent if active else self.a.deactivate_agent)(agent)

    @rule(
        fw=st.sampled_from(IDS_F),
        roles=st.lists(st.sampled_from(ROLES), min_size=1, max_size=3),
        suppressed=st.lists(st.sampled_from(ROLES), max_size=1),
    )
    def add_framework(self, fw, roles, suppressed):
        if fw in self.frameworks:
            return
        self.a.add_framework(fw, roles, suppressed)
        self.frameworks.add(fw)

    @rule(fw=st.sampled_from(IDS_F), roles=st.lists(st.sampled_from(ROLES), max_size=3),
          suppressed=st.lists(st.sampled_from(ROLES), max_size=1))
    def update_framework(self, fw, roles, suppressed):
        """Re-subscribed with other roles (or none): what it holds stays held."""
        if fw in self.frameworks:
            self.a.update_framework(fw, roles, suppressed)

    @rule(fw=st.sampled_from(IDS_F))
    def remove_framework(self, fw):
        if fw not in self.frameworks:
            return
        self.a.remove_framework(fw)
        self.frameworks.discard(fw)
        self.a.validate_state()
        for key in [k for k in self.held if k[0] == fw]:  # the master recovers separately
            self.a.recover(key[0], key[2], self.held.pop(key), key[1])

    @rule(fw=st.sampled_from(IDS_F), active=st.booleans())
    def toggle_framework(self, fw, active):
        if fw in self.frameworks:
            (self.a.activate_framework if active else self.a.deactivate_framework)(fw)

    @rule(fw=st.sampled_from(IDS_F), roles=st.lists(st.sampled_from(ROLES), max_size=2))
    def suppress(self, fw, roles):
        if fw in self.frameworks:
            self.a.suppress(fw, roles)

    @rule(fw=st.sampled_from(IDS_F), roles=st.lists(st.sampled_from(ROLES), max_size=2))
    def revive(self, fw, roles):
        if fw in self.frameworks:
            self.a.revive(fw, roles)

    @rule(role=st.sampled_from(ROLES), weight=st.sampled_from([0.5, 1, 2, 3]))
    def set_weight(self, role, weight):
        self.a.set_weight(role, weight)

    @rule(role=st.sampled_from(ROLES), limit=st.none() | resources)
    def set_quota_limit(self, role, limit):
        self.a.set_quota_limit(role, limit)
        if limit is None:
            self.limits.pop(role, None)
        else:
            self.limits[role] = limit

    @rule(seconds=st.sampled_from([0.5, 1, 5, 30]))
    def advance(self, seconds):
        self.clock.advance(seconds)

    @rule()
    def allocate(self):
        before = {r: self._role_holds(r) for r in self.limits}
        # A cycle that visits only the agents changed since the last one gives
        # exactly what visiting every agent would (allocator's docstring).
        every = copy.deepcopy(self.a)
        every._visit_all = True
        allocations = self.a.allocate()
        assert allocations == every.allocate()
        for x in allocations:
            assert x.framework_id in self.frameworks
            assert x.agent_id in self.totals
            assert not x.resources.is_empty()
            key = (x.framework_id, x.role, x.agent_id)
            self.held[key] = self.held.get(key, Resources()) + x.resources
        for role, limit in self.limits.items():
            after = self._role_holds(role)
            for name in limit.names():  # never pushed above the limit by this cycle
                assert after.get(name) <= max(limit.get(name), before[role].get(name))

    @precondition(lambda self: self.held)
    @rule(
        data=st.data(),
        fraction=st.sampled_from([0.25, 0.5, 1]),
        refuse=st.none() | st.sampled_from([0, 1, 10]),
    )
    def recover(self, data, fraction, refuse):
        key = data.draw(st.sampled_from(sorted(self.held)))
        fw, role, agent = key
        have = self.held[key]
        part = Resources({n: have.get(n) * fraction for n in have.names()})
        if not have.contains(part):  # rounding
            part = have
        self.a.recover(fw, agent, part, role, refuse_seconds=refuse)
        left = have - part
        if left.is_empty():
            del self.held[key]
        else:
            self.held[key] = left

    def _role_holds(self, role: str) -> Resources:
        total = Resources()
        for (f, r, _), v in self.held.items():
            if r == role and f in self.frameworks:
                total = total + v
        return total

    @invariant()
    def consistent(self):
        if not hasattr(self, "a"):
            return
        self.a.validate_state()
        for agent, total in self.totals.items():
            mine = {}
            for (f, r, ag), v in self.held.items():
                if ag == agent:
                    mine[(f, r)] = v
            assert self.a.allocated(agent) == mine
            held = sum(mine.values(), Resources())
            assert total.contains(held), f"{agent} over-allocated: {held} > {total}"
            assert held + self.a.available(agent) == total


AllocatorMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestAllocatorProperties = AllocatorMachine.TestCase


@settings(max_examples=50, deadline=None)
@given(agents=st.integers(0, 60), frameworks=st.integers(1, 7))
def test_identical_agents_split_within_one(agents, frameworks):
    a, _ = make(agents)
    for i in range(frameworks):
        a.add_framework(f"f{i}", ["r"])
    counts = per_framework(a.allocate())
    assert sum(counts.values()) == agents
    got = [counts.get(f"f{i}", 0) for i in range(frameworks)]
    assert max(got) - min(got) <= 1
    a.validate_state()
