"""`juggler up`'s agents' ports: agents sharing this host's network never offer
the same port; a lab host's agent offers the whole default range."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from juggler.cli.up import _with_ports, agent_ports
from juggler.common.resources import Resources


@given(st.integers(min_value=1, max_value=50))
def test_agents_on_one_host_split_the_default_range(n: int) -> None:
    slices = [Resources.parse(agent_ports(i, n, shared_host=True)).ports for i in range(n)]
    seen = set()
    for ports in slices:
        assert ports, "every agent offers some ports"
        assert seen.isdisjoint(ports.ports())
        seen |= set(ports.ports())
    assert seen == set(range(31000, 32001))


def test_a_lab_host_offers_the_whole_range() -> None:
    assert agent_ports(2, 3, shared_host=False) == "ports:[31000-32000]"


def test_ports_given_by_the_user_are_kept() -> None:
    assert _with_ports("cpus:1;ports:[5000-5010]", 1, 2, True) == "cpus:1;ports:[5000-5010]"
    assert _with_ports("cpus:1", 1, 2, True).endswith(agent_ports(1, 2, True))
