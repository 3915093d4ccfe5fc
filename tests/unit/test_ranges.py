"""Ranges: Mesos's range syntax, set arithmetic checked against Python sets, random picks."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from juggler.common.ranges import Ranges
from juggler.v1 import common_pb2

# Small universes so that overlaps and adjacencies are common.
pairs = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 12)).map(
    lambda t: (t[0], t[0] + t[1])), max_size=6)
ranges = pairs.map(Ranges.of)


def as_set(r: Ranges) -> set[int]:
    return set(r.ports())


def test_parse_mesos_syntax_and_print_it_back():
    r = Ranges.parse("[31000-32000,40000-40100]")
    assert r.ranges == ((31000, 32000), (40000, 40100))
    assert str(r) == "[31000-32000,40000-40100]"
    assert r.count() == 1001 + 101


def test_one_number_is_one_port_and_blanks_are_ignored():
    assert Ranges.parse("[8080]") == Ranges.single(8080)
    assert Ranges.parse(" [ 1 - 3 , 8080 ] ") == Ranges.of([(1, 3), (8080, 8080)])
    assert str(Ranges.single(8080)) == "[8080]"
    assert not Ranges.parse("[]") and str(Ranges.parse("[]")) == "[]"


def test_overlapping_and_adjacent_ranges_are_merged():
    assert Ranges.of([(5, 9), (1, 2), (3, 4), (8, 12)]).ranges == ((1, 12),)
    assert Ranges.single(3, 1, 2, 2) == Ranges.of([(1, 3)])


@pytest.mark.parametrize("text, fragment", [
    ("31000-32000", "not ranges like"),
    ("[31000-32000", "not ranges like"),
    ("[a-b]", "'a-b' is not N or N-M"),
    ("[1-2-3]", "is not N or N-M"),
    ("[5-1]", "begin is after end"),
    ("[-1]", "is not N or N-M"),
    ("[1,,2]", "empty item"),
    ("[0x10]", "is not N or N-M"),
])
def test_parse_rejects_malformed_text_and_quotes_it(text, fragment):
    with pytest.raises(ValueError, match=fragment):
        Ranges.parse(text)


@pytest.mark.parametrize("pair", [(-1, 2), (3, 1), (1.5, 2), (True, 2), (0, 2**64)])
def test_of_rejects_bad_bounds(pair):
    with pytest.raises(ValueError):
        Ranges.of([pair])


def test_proto_round_trip():
    r = Ranges.parse("[1-3,7,10-20]")
    msg = r.to_proto()
    assert [(x.begin, x.end) for x in msg.range] == [(1, 3), (7, 7), (10, 20)]
    assert Ranges.from_proto(msg) == r
    with pytest.raises(ValueError, match="begin is after end"):
        Ranges.from_proto(common_pb2.Ranges(range=[common_pb2.Range(begin=5, end=4)]))


def test_membership_and_subset():
    r = Ranges.parse("[31000-32000,40000-40100]")
    assert 31000 in r and 32000 in r and 40050 in r
    assert 32001 not in r and 30999 not in r and "31000" not in r
    assert r.contains(Ranges.parse("[31500-31600,40100]"))
    assert not r.contains(Ranges.parse("[31999-32001]"))
    assert r.contains(Ranges()) and not Ranges().contains(r)


def test_pick_draws_distinct_held_numbers_and_refuses_too_many():
    r = Ranges.parse("[31000-31002,40000]")
    picked = r.pick(4, random.Random(1))
    assert sorted(picked) == [31000, 31001, 31002, 40000]
    assert r.pick(0, random.Random(1)) == []
    with pytest.raises(ValueError, match="cannot pick 5 of the 4"):
        r.pick(5, random.Random(1))


def test_pick_is_random_but_repeatable_with_a_seed():
    r = Ranges.parse("[31000-32000]")
    assert r.pick(3, random.Random(7)) == r.pick(3, random.Random(7))
    draws = {tuple(r.pick(1, random.Random(seed))) for seed in range(20)}
    assert len(draws) > 10


# -- properties: Ranges behaves as the set of its numbers ----------------------------


@given(pairs)
def test_of_holds_exactly_the_numbers_of_its_pairs_normalized(ps):
    r = Ranges.of(ps)
    assert as_set(r) == {n for b, e in ps for n in range(b, e + 1)}
    assert r.count() == len(as_set(r))
    for (_, e1), (b2, _) in zip(r.ranges, r.ranges[1:], strict=False):
        assert b2 > e1 + 1  # sorted, neither overlapping nor adjacent


@given(ranges, ranges)
def test_set_operations_match_python_sets(a, b):
    assert as_set(a | b) == as_set(a) | as_set(b)
    assert as_set(a - b) == as_set(a) - as_set(b)
    assert as_set(a & b) == as_set(a) & as_set(b)
    assert a.contains(b) == (as_set(b) <= as_set(a))
    assert (a == b) == (as_set(a) == as_set(b))
    if a == b:
        assert hash(a) == hash(b)


@given(ranges)
def test_text_and_proto_round_trip(r):
    assert Ranges.parse(str(r)) == r
    assert Ranges.from_proto(r.to_proto()) == r


@given(ranges, st.integers(0, 80))
def test_membership_matches_the_set(r, n):
    assert (n in r) == (n in as_set(r))


@given(ranges, st.integers(0, 100), st.integers(0, 2**32))
def test_pick_returns_distinct_members(r, n, seed):
    if n > r.count():
        with pytest.raises(ValueError):
            r.pick(n, random.Random(seed))
        return
    picked = r.pick(n, random.Random(seed))
    assert len(picked) == len(set(picked)) == n
    assert set(picked) <= as_set(r)
