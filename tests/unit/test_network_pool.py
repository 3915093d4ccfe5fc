"""The bridge pool's decisions (agent/network_pool.py): which entry a launch
takes, how many refills start, what is torn down, and how a taken entry's
chain continues."""

from __future__ import annotations

import pytest

from juggler.agent.network_pool import (
    BACKOFF,
    PoolBook,
    backoff,
    moved_result,
    remaining_plugins,
)
from juggler.container.cni_config import add_order, builtin_bridge, port_mapping


def test_an_empty_pool_fills_to_its_size_and_launches_take_oldest_first() -> None:
    book = PoolBook(2)
    assert book.take() is None  # nothing ready: the launch attaches afresh
    assert book.to_start() == 2
    book.started()
    book.started()
    assert book.to_start() == 0  # both under way: no third ADD
    assert book.added("a") and book.added("b")
    assert book.to_start() == 0
    assert book.take() == "a"
    assert book.to_start() == 1  # one refill after one take
    assert book.take() == "b"
    assert book.take() is None
    assert book.to_start() == 2


def test_two_takes_never_get_the_same_entry() -> None:
    book = PoolBook(3)
    for name in "abc":
        book.started()
        book.added(name)
    taken = [book.take() for _ in range(4)]
    assert taken == ["a", "b", "c", None]


def test_size_zero_never_refills() -> None:
    book = PoolBook(0)
    assert book.to_start() == 0 and book.take() is None


def test_close_hands_back_every_ready_entry_oldest_first_and_stops_refills() -> None:
    book = PoolBook(3)
    for name in "abc":
        book.started()
        book.added(name)
    assert book.take() == "a"
    book.started()  # the refill after that take is under way
    assert book.close() == ["b", "c"]
    assert book.take() is None and book.to_start() == 0
    # The refill that finishes after close is not kept: its maker tears it down.
    assert book.added("d") is False
    assert book.close() == []


def test_failed_refills_back_off_and_a_success_resets() -> None:
    book = PoolBook(1)
    book.started()
    assert book.failed() == BACKOFF[0]
    assert book.to_start() == 1
    book.started()
    assert book.failed() == BACKOFF[1]
    book.started()
    book.added("a")
    assert book.failures == 0
    assert backoff(1) == BACKOFF[0] and backoff(100) == BACKOFF[-1]


def test_a_taken_entry_runs_only_portmap_and_only_with_ports() -> None:
    net = builtin_bridge("10.88.0.0/24")
    ran = add_order(net, [])  # the pool entry's ADD: bridge only
    assert ran == [0]
    assert remaining_plugins(add_order(net, []), ran) == []
    assert remaining_plugins(add_order(net, [port_mapping(31000, 80)]), ran) == [1]


def test_an_entry_that_cannot_continue_into_the_chain_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot continue"):
        remaining_plugins([0], [0, 1])
    with pytest.raises(ValueError, match="cannot continue"):
        remaining_plugins([1, 2], [0])


def test_a_moved_entry_s_result_names_the_namespace_where_it_is_now() -> None:
    result = {"cniVersion": "1.0.0", "interfaces": [
        {"name": "h7jbr0", "mac": "aa"}, {"name": "veth1", "mac": "bb"},
        {"name": "eth0", "mac": "cc", "sandbox": "/w/network-pool/x/ns"}],
        "ips": [{"address": "10.88.0.5/24", "interface": 2}]}
    moved = moved_result(result, "/w/network-pool/x/ns", "/w/networks/x/ns")
    assert moved["interfaces"][2]["sandbox"] == "/w/networks/x/ns"
    assert moved["interfaces"][:2] == result["interfaces"][:2]
    assert moved["ips"] == result["ips"]
    assert result["interfaces"][2]["sandbox"] == "/w/network-pool/x/ns"  # not changed
