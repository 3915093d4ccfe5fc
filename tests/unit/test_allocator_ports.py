"""Ports in the allocator: offered with the scalars, held until recovered, subset filters,
never counted in DRF shares or quota."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from juggler.common.clock import FakeClock
from juggler.common.ranges import Ranges
from juggler.common.resources import ResourceError, Resources
from juggler.master.allocator import Allocator

AGENT = Resources.parse("cpus:4;mem:4096;ports:[31000-31002]")
TASK = Resources.parse("cpus:1;mem:128;ports:[31001]")


def make(agents: int = 1, total: Resources = AGENT) -> tuple[Allocator, FakeClock]:
    clock = FakeClock()
    a = Allocator(clock)
    for i in range(agents):
        a.add_agent(f"a{i:03d}", total)
    return a, clock


def test_an_offer_carries_every_free_port_of_the_agent():
    a, _ = make()
    a.add_framework("f1", ["r"])
    [offer] = a.allocate()
    assert offer.resources == AGENT
    assert offer.resources.ports == Ranges.parse("[31000-31002]")
    assert a.available("a000") == Resources()
    assert a.allocated("a000") == {("f1", "r"): AGENT}
    a.validate_state()


def test_a_port_in_use_is_not_offered_again_until_the_task_ends():
    a, _ = make()
    a.add_framework("f1", ["r"])
    [offer] = a.allocate()
    # The master launches TASK on the offer and gives back the rest.
    a.recover("f1", "a000", offer.resources - TASK, "r")
    [again] = a.allocate()
    assert again.resources.ports == Ranges.parse("[31000,31002]")
    assert 31001 not in again.resources.ports
    a.recover("f1", "a000", again.resources, "r")
    assert a.available("a000").ports == Ranges.parse("[31000,31002]")
    a.validate_state()
    # The task ends: its port comes back and is offered with the rest.
    a.recover("f1", "a000", TASK, "r")
    [last] = a.allocate()
    assert last.resources == AGENT
    a.validate_state()


def test_a_filter_covers_an_offer_only_when_its_ports_are_a_subset():
    a, _ = make()
    # Another framework holds port 31001 (an agent re-registering with a task).
    a.remove_agent("a000")
    a.add_agent("a000", AGENT, used={("fx", "r"): Resources(ports="[31001]")})
    a.add_framework("f1", ["r"])
    [offer] = a.allocate()
    assert offer.resources.ports == Ranges.parse("[31000,31002]")
    a.decline("f1", "a000", offer.resources, "r", refuse_seconds=60)
    assert a.allocate() == []  # the same resources again: filtered
    # Port 31001 comes back: the offer now has a port the filter did not refuse.
    a.recover("fx", "a000", Resources(ports="[31001]"), "r")
    [bigger] = a.allocate()
    assert bigger.framework_id == "f1" and bigger.resources == AGENT
    a.validate_state()


def test_a_filter_with_more_ports_still_covers_an_offer_with_fewer():
    a, _ = make()
    a.add_framework("f1", ["r"])
    [offer] = a.allocate()
    a.decline("f1", "a000", offer.resources, "r", refuse_seconds=60)
    a.add_framework("f2", ["r"])
    [other] = a.allocate()
    assert other.framework_id == "f2"
    a.recover("f2", "a000", other.resources - TASK, "r")  # f2 keeps port 31001
    a.add_framework("f3", ["r"])
    a.suppress("f3")
    a.suppress("f2")
    assert a.allocate() == []  # f1 refused a superset of what is left


def test_recovering_ports_not_held_is_an_error_and_changes_nothing():
    a, _ = make()
    a.add_framework("f1", ["r"])
    [offer] = a.allocate()
    a.recover("f1", "a000", offer.resources - TASK, "r")
    before = a.allocated("a000")
    with pytest.raises(ResourceError, match=r"cannot recover ports \[31002\], it holds ports "
                                            r"\[31001\]"):
        a.recover("f1", "a000", Resources.parse("cpus:1;ports:[31001-31002]"), "r")
    assert a.allocated("a000") == before
    a.validate_state()


def test_reregistration_with_used_ports_books_them():
    a, _ = make(0)
    a.add_agent("a000", AGENT, used={("f1", "r"): TASK})
    assert a.available("a000") == AGENT - TASK
    assert a.allocated("a000") == {("f1", "r"): TASK}
    a.validate_state()


@pytest.mark.parametrize("used", [
    {("f1", "r"): Resources(ports="[40000]")},
    {("f1", "r"): Resources(ports="[31001]"), ("f2", "r"): Resources(ports="[31001]")},
])
def test_reregistration_with_ports_not_there_or_used_twice_is_refused(used):
    a, _ = make(0)
    with pytest.raises(ResourceError, match="used ports"):
        a.add_agent("a000", AGENT, used=used)
    assert not a.has_agent("a000")


def test_ports_do_not_count_in_dominant_shares():
    # f1 holds every port of a000 and nothing else: its share is still 0, so the tie with f2
    # is broken by id and f1 gets the first agent with allocatable scalars.
    a, _ = make(0)
    a.add_agent("a000", AGENT, used={("f1", "r"): Resources(ports="[31000-31002]")})
    a.add_agent("a001", AGENT)
    a.add_framework("f1", ["r"])
    a.add_framework("f2", ["r"])
    out = a.allocate()
    assert [(x.framework_id, x.agent_id) for x in out] == [("f1", "a000"), ("f2", "a001")]
    assert not out[0].resources.ports and out[1].resources.ports
    a.validate_state()


def test_quota_limits_are_scalars_only():
    a, _ = make()
    with pytest.raises(ResourceError, match="scalars only"):
        a.set_quota_limit("r", Resources(ports="[31000]"))
    with pytest.raises(ResourceError, match="ports"):
        a.set_quota_limit("r", {"ports": 1})
    # A capped offer still carries the agent's ports.
    a.set_quota_limit("r", {"cpus": 1})
    a.add_framework("f1", ["r"])
    [offer] = a.allocate()
    assert offer.resources == Resources.parse("cpus:1;mem:4096;ports:[31000-31002]")


def test_validate_state_reports_ports_booked_twice():
    a, _ = make()
    a.add_framework("f1", ["r"])
    a.allocate()
    a._agents["a000"].ports_free = Ranges.single(31001)  # corrupt: held and free at once
    with pytest.raises(AssertionError, match="not a partition of its ports"):
        a.validate_state()


# -- property: ports are never lost or booked twice ------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["allocate", "launch", "end"]),
                          st.integers(0, 2**16)), max_size=30))
def test_ports_are_a_partition_whatever_happens(steps):
    a, _ = make(2, Resources.parse("cpus:8;mem:8192;ports:[31000-31009]"))
    for f in ("f0", "f1", "f2"):
        a.add_framework(f, ["r"])
    offers: list = []
    tasks: list = []
    for op, seed in steps:
        if op == "allocate":
            offers += a.allocate()
        elif op == "launch" and offers:
            o = offers.pop(seed % len(offers))
            n = seed % 3
            ports = o.resources.ports.pick(min(n, o.resources.ports.count()), random.Random(seed))
            task = Resources({"cpus": 0.5}, ports=Ranges.single(*ports))
            if not o.resources.contains(task):
                task = Resources(ports=Ranges.single(*ports))
            a.recover(o.framework_id, o.agent_id, o.resources - task, o.role)
            tasks.append((o.framework_id, o.agent_id, task))
        elif op == "end" and tasks:
            fid, agent_id, task = tasks.pop(seed % len(tasks))
            a.recover(fid, agent_id, task, "r")
        a.validate_state()
        # No port is in two live tasks or in a task and an offer of the same agent.
        for agent_id in ("a000", "a001"):
            seen = Ranges()
            for held in [t for _, ag, t in tasks if ag == agent_id] + [
                    o.resources for o in offers if o.agent_id == agent_id]:
                assert not (seen & held.ports)
                seen = seen | held.ports
            assert not (seen & a.available(agent_id).ports)
