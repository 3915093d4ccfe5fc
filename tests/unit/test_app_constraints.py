"""Marathon's placement constraints (apps/constraints.py): parsing with
Marathon's 422 details, every operator against offers with and without the
attribute, the reasons given, and placement properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from juggler.apps.constraints import (
    OPERATORS,
    Constraint,
    Placement,
    Tally,
    allows,
    describe,
    parse_constraints,
    unmatched,
)


def at(hostname: str, **attributes: str) -> Placement:
    return Placement(hostname, attributes)


def parsed(*raw: object) -> Constraint:
    constraints, errors = parse_constraints([list(raw)])
    assert errors == []
    return constraints[0]


def ok(constraint: Constraint, offer: Placement, placed: list[Placement] | None = None) -> bool:
    placed = placed or []
    via_list = unmatched([constraint], offer, placed) is None
    assert via_list == allows(constraint, offer, Tally(placed))
    return via_list


def errors_of(*raw: object) -> list[str]:
    """The errors for one constraint given as an array of its parts."""
    return item_errors(list(raw))


def item_errors(item: object) -> list[str]:
    """The errors for one item of `constraints`, whatever its shape."""
    constraints, errors = parse_constraints([item])
    assert constraints == ()
    assert [e["path"] for e in errors] == ["/constraints(0)"]
    return errors[0]["errors"]


# ---------------------------------------------------------------- parsing


def test_parses_both_json_forms_and_renders_back():
    raw = [["hostname", "UNIQUE"], ["rack", "GROUP_BY", "3"],
           {"fieldName": "zone", "operator": "CLUSTER", "value": "a"},
           {"fieldName": "hostname", "operator": "MAX_PER", "value": "2"},
           {"fieldName": "ssd", "operator": "CLUSTER", "value": None}]
    constraints, errors = parse_constraints(raw)
    assert errors == []
    assert constraints == (
        Constraint("hostname", "UNIQUE"), Constraint("rack", "GROUP_BY", "3"),
        Constraint("zone", "CLUSTER", "a"), Constraint("hostname", "MAX_PER", "2"),
        Constraint("ssd", "CLUSTER"))
    assert [c.render() for c in constraints[:2]] == raw[:2]
    assert str(constraints[2]) == "zone:CLUSTER:a"


def test_no_constraints():
    assert parse_constraints(None) == ((), [])
    assert parse_constraints([]) == ((), [])


@pytest.mark.parametrize("raw", [
    ["hostname", "UNIQUE"], ["rack", "CLUSTER"], ["rack", "CLUSTER", "r1"],
    ["rack", "CLUSTER", ""], ["rack", "GROUP_BY"], ["rack", "GROUP_BY", "0"],
    ["rack", "GROUP_BY", "3"], ["rack", "LIKE", "r[12]"], ["rack", "UNLIKE", ".*"],
    ["rack", "MAX_PER", "1"], ["rack", "MAX_PER", "+2"], ["rack", "IS", "rack-1"],
    ["level", "IS", "0.8"], ["@hostname", "UNIQUE"], ["path", "IS", "a/b_c.d"],
])
def test_valid_constraints(raw):
    assert parse_constraints([raw]) == ((Constraint(*raw),), [])


@pytest.mark.parametrize(("raw", "message"), [
    (["rack", "FOO"], "unknown operator 'FOO': use one of UNIQUE, CLUSTER, GROUP_BY, LIKE, "
                      "UNLIKE, MAX_PER, IS"),
    (["rack", "unique"], "unknown operator 'unique': operators are upper case, use UNIQUE"),
    (["", "UNIQUE"], "missing field: name hostname or an agent attribute"),
    (["hostname", "UNIQUE", "x"], "UNIQUE does not accept a value (got 'x')"),
    (["hostname", "UNIQUE", ""], "UNIQUE does not accept a value (got '')"),
    (["rack", "MAX_PER"], "MAX_PER requires a positive integer value"),
    (["rack", "MAX_PER", "0"], "MAX_PER requires a positive integer value, not '0'"),
    (["rack", "MAX_PER", "-1"], "MAX_PER requires a positive integer value, not '-1'"),
    (["rack", "MAX_PER", "2.5"], "MAX_PER requires a positive integer value, not '2.5'"),
    (["rack", "MAX_PER", " 2"], "MAX_PER requires a positive integer value, not ' 2'"),
    (["rack", "MAX_PER", "2147483648"],
     "MAX_PER requires a positive integer value, not '2147483648'"),
    (["rack", "GROUP_BY", "x"], "GROUP_BY takes no value or a non-negative integer "
                                "(how many values of rack to expect), not 'x'"),
    (["rack", "GROUP_BY", "-1"], "GROUP_BY takes no value or a non-negative integer "
                                 "(how many values of rack to expect), not '-1'"),
    (["rack", "LIKE"], "LIKE requires a regular expression value (to match any value: '.*')"),
    (["rack", "UNLIKE", ""],
     "UNLIKE requires a regular expression value (to match any value: '.*')"),
    (["rack", "IS"], "IS requires a value"),
    (["rack", "IS", "a b"],
     "IS only supports text and scalar values (letters, digits, _ / . -), not 'a b'"),
    (["rack", "IS", "{a,b}"],
     "IS only supports text and scalar values (letters, digits, _ / . -), not '{a,b}'"),
])
def test_invalid_constraints(raw, message):
    assert errors_of(*raw) == [message]


def test_a_regex_that_does_not_compile_is_named():
    [message] = errors_of("rack", "LIKE", "a[")
    assert message.startswith("LIKE: 'a[' is not a valid regular expression (")
    [message] = errors_of("rack", "UNLIKE", "(?<name>x)")
    assert message.startswith("UNLIKE: '(?<name>x)' is not a valid regular expression")


def test_shapes_and_types():
    assert item_errors(["rack"]) == [
        "each constraint must have either 2 or 3 fields "
        "([field, operator] or [field, operator, value]), not 1"]
    assert item_errors(["rack", "CLUSTER", "a", "b"])[0].endswith("not 4")
    assert item_errors(["rack", "MAX_PER", 2]) == [
        'the value must be a string, not the number 2 (write it as a string: "2")']
    assert item_errors([None, "UNIQUE"]) == ["the field must be a string, not null"]
    assert item_errors({"operator": "UNIQUE"}) == ["fieldName must be a string, not null"]
    assert item_errors({"fieldName": "rack", "operator": "MAX_PER", "value": 2}) == [
        'value must be a string, not the number 2 (write it as a string: "2")']
    assert item_errors("hostname:UNIQUE") == [
        "a constraint is [field, operator, value?] or "
        "{\"fieldName\", \"operator\", \"value\"?}, not 'hostname:UNIQUE'"]
    assert parse_constraints({"hostname": "UNIQUE"}) == ((), [{
        "path": "/constraints",
        "errors": ["constraints must be a list of [field, operator] "
                   "or [field, operator, value]"]}])


def test_object_form_is_checked_like_the_array_form():
    assert item_errors({"fieldName": "rack", "operator": "MAX_PER"}) == [
        "MAX_PER requires a positive integer value"]


def test_every_error_at_once_with_its_index():
    constraints, errors = parse_constraints([
        ["hostname", "UNIQUE"], ["rack", "MAX_PER", "two"], ["zone", "CLUSTER"],
        ["rack", "LIKE", "a["], ["x", "FOO"], ["", "nope"]])
    assert constraints == (Constraint("hostname", "UNIQUE"), Constraint("zone", "CLUSTER"))
    assert [e["path"] for e in errors] == [
        "/constraints(1)", "/constraints(3)", "/constraints(4)", "/constraints(5)"]
    assert errors[3]["errors"] == [
        "missing field: name hostname or an agent attribute",
        f"unknown operator 'nope': use one of {', '.join(OPERATORS)}"]


# ---------------------------------------------------------------- matching


A, B, C = at("host-a", rack="r1"), at("host-b", rack="r1"), at("host-c", rack="r2")
BARE = at("host-d")  # no attributes


def test_unique_on_hostname():
    unique = parsed("hostname", "UNIQUE")
    assert ok(unique, A)
    assert not ok(unique, A, [A])
    assert ok(unique, B, [A, C])
    assert not ok(parsed("@hostname", "UNIQUE"), A, [C, A])


def test_unique_on_an_attribute():
    unique = parsed("rack", "UNIQUE")
    assert not ok(unique, B, [A])  # same rack, other host
    assert ok(unique, C, [A])
    assert ok(unique, A, [BARE, BARE])  # instances without the attribute never conflict


def test_cluster_with_a_value_looks_at_the_offer_only():
    assert ok(parsed("rack", "CLUSTER", "r1"), A)
    assert ok(parsed("rack", "CLUSTER", "r1"), B, [C])  # Marathon ignores where others are
    assert not ok(parsed("rack", "CLUSTER", "r1"), C)
    assert ok(parsed("hostname", "CLUSTER", "host-a"), A)
    assert not ok(parsed("hostname", "CLUSTER", "host-a"), B)


@pytest.mark.parametrize("value", [None, ""])
def test_cluster_without_a_value_follows_the_first_instance(value):
    cluster = Constraint("rack", "CLUSTER", value)
    assert ok(cluster, C)  # nothing placed: anywhere with the attribute
    assert ok(cluster, B, [A])
    assert not ok(cluster, C, [A])
    assert ok(cluster, C, [C, A])  # the first one decides
    assert not ok(cluster, A, [BARE])  # first on an agent without rack: nothing matches
    on_host = Constraint("hostname", "CLUSTER", value)
    assert ok(on_host, A, [A])
    assert not ok(on_host, B, [A])


def test_is_compares_strings():
    assert ok(parsed("rack", "IS", "r1"), A)
    assert not ok(parsed("rack", "IS", "r1"), C)
    assert ok(parsed("hostname", "IS", "host-a"), A)
    # Plain strings: juggler does not format scalars as Marathon does.
    assert not ok(parsed("level", "IS", "0.80"), at("h", level="0.8"))


def test_like_and_unlike_match_the_whole_value():
    assert ok(parsed("rack", "LIKE", "r[12]"), A)
    assert not ok(parsed("rack", "LIKE", "r[34]"), A)
    assert not ok(parsed("rack", "LIKE", "r"), A)  # a prefix is not a match
    assert not ok(parsed("rack", "LIKE", "1"), A)
    assert ok(parsed("hostname", "LIKE", "host-[ab]"), B)
    assert not ok(parsed("rack", "UNLIKE", "r[12]"), A)
    assert ok(parsed("rack", "UNLIKE", "r"), A)
    assert ok(parsed("hostname", "UNLIKE", "host-[ab]"), C)


def test_max_per():
    two = parsed("rack", "MAX_PER", "2")
    assert ok(two, A, [])
    assert ok(two, A, [B, C, C])
    assert not ok(two, A, [A, B])
    assert not ok(parsed("hostname", "MAX_PER", "1"), A, [A])
    assert ok(parsed("hostname", "MAX_PER", "1"), B, [A])


def test_group_by_without_a_value():
    group = parsed("rack", "GROUP_BY")
    assert ok(group, A)
    assert ok(group, C, [A])  # a value with no instance yet
    assert ok(group, A, [A, C])  # r1 and r2 tie
    assert not ok(group, A, [A, B, C])  # r1 has 2, r2 has 1
    assert ok(group, C, [A, B, C])
    # Only values seen count: with r1 alone, r1 has the fewest.
    assert ok(group, A, [A, B])


def test_group_by_with_a_value_counts_values_not_seen_yet():
    group = parsed("rack", "GROUP_BY", "3")
    assert ok(group, A)
    assert not ok(group, A, [A])  # r2 and r3 have none
    assert ok(group, C, [A])
    assert not ok(group, A, [A, C])  # r3 still has none
    r3 = at("host-e", rack="r3")
    assert ok(group, r3, [A, C])
    assert ok(group, A, [A, C, r3])
    assert not ok(group, A, [A, C, r3, B])


def test_group_by_counts_instances_without_the_attribute_as_a_group():
    group = parsed("rack", "GROUP_BY")
    assert ok(group, A, [A, BARE])
    assert not ok(group, A, [A, A, BARE])  # the agents without rack have the fewest


def test_group_by_on_hostname():
    group = parsed("hostname", "GROUP_BY", "2")
    assert not ok(group, A, [A])
    assert ok(group, B, [A])
    assert ok(group, A, [A, B])


@pytest.mark.parametrize("raw", [
    ["zone", "UNIQUE"], ["zone", "CLUSTER"], ["zone", "CLUSTER", "a"], ["zone", "GROUP_BY"],
    ["zone", "GROUP_BY", "2"], ["zone", "LIKE", ".*"], ["zone", "MAX_PER", "5"],
    ["zone", "IS", "a"],
])
def test_a_missing_attribute_matches_nothing_but_unlike(raw):
    assert not ok(parsed(*raw), A)


def test_a_missing_attribute_always_matches_unlike():
    assert ok(parsed("zone", "UNLIKE", ".*"), A)
    assert ok(parsed("zone", "UNLIKE", "a"), A, [A])


def test_unmatched_gives_the_first_constraint_that_forbids():
    unique, rack = parsed("hostname", "UNIQUE"), parsed("rack", "LIKE", "r2")
    assert unmatched([unique, rack], A, [A]) == unique
    assert unmatched([rack, unique], A, [A]) == rack
    assert unmatched([unique, rack], C, [A]) is None
    assert unmatched([], A, [A, A]) is None


def test_a_malformed_constraint_allows_nothing_and_never_raises():
    for bad in (Constraint("rack", "MAX_PER", "x"), Constraint("rack", "LIKE", "a["),
                Constraint("rack", "LIKE"), Constraint("rack", "UNLIKE", "a["),
                Constraint("rack", "NOPE", "1")):
        assert not ok(bad, A, [B])


def test_a_tally_counts_what_is_added():
    unique, group = parsed("hostname", "UNIQUE"), parsed("rack", "GROUP_BY")
    tally = Tally([A])
    assert unmatched([unique, group], A, tally) == unique
    assert unmatched([unique, group], B, tally) is None
    tally.add(B)
    assert len(tally) == 2
    assert tally.first == A
    assert unmatched([unique, group], B, tally) == unique
    assert unmatched([group], at("host-x", rack="r1"), tally) is None  # r1 is all there is
    tally.add(C)
    assert unmatched([group], at("host-x", rack="r1"), tally) == group
    assert tally.per_value("rack") == {"r1": 2, "r2": 1}
    assert tally.count("@hostname", "host-b") == tally.count("hostname", "host-b") == 1
    assert (tally.groups("rack"), tally.fewest("rack")) == (2, 1)
    assert Tally().fewest("rack") == 0


# ---------------------------------------------------------------- reasons


def test_describe():
    assert describe(parsed("hostname", "UNIQUE"), A) == (
        "hostname:UNIQUE: an instance already runs on host-a")
    assert describe(parsed("rack", "UNIQUE"), A) == (
        "rack:UNIQUE: an instance already runs on rack r1")
    assert describe(parsed("rack", "LIKE", "r[12]"), at("h", rack="r3")) == (
        "rack:LIKE:r[12]: agent's rack is r3")
    assert describe(parsed("hostname", "UNLIKE", "host-.*"), A) == (
        "hostname:UNLIKE:host-.*: agent's hostname is host-a")
    assert describe(parsed("zone", "CLUSTER", "a"), A) == (
        "zone:CLUSTER:a: agent has no attribute zone")
    assert describe(parsed("rack", "IS", "r2"), A) == "rack:IS:r2: agent's rack is r1"
    assert describe(parsed("rack", "MAX_PER", "2"), A) == (
        "rack:MAX_PER:2: rack r1 already has 2 instances, the most allowed")
    assert describe(parsed("rack", "MAX_PER", "1"), A, [B]) == (
        "rack:MAX_PER:1: rack r1 already has 1 instance")
    assert describe(parsed("rack", "CLUSTER"), C, [A]) == (
        "rack:CLUSTER: the app's first instance is on rack r1, agent's rack is r2")
    assert describe(parsed("rack", "CLUSTER"), C, [BARE]) == (
        "rack:CLUSTER: the app's first instance is on an agent without attribute rack, "
        "agent's rack is r2")
    assert describe(parsed("hostname", "CLUSTER"), C) == (
        "hostname:CLUSTER: the app's instances are on another hostname than host-c")
    assert describe(parsed("rack", "GROUP_BY"), A, [A, C, B]) == (
        "rack:GROUP_BY: rack r1 has 2 instances, more than the fewest (1) on another rack")
    assert describe(parsed("rack", "GROUP_BY", "3"), A, [A, C]) == (
        "rack:GROUP_BY:3: rack r1 already has 1 instance and only 2 of the 3 expected rack "
        "values have any; waiting for an offer from another rack")
    assert describe(parsed("rack", "GROUP_BY"), A) == (
        "rack:GROUP_BY: rack r1 already has more instances than another rack")


def test_describe_says_when_the_constraint_allows():
    assert describe(parsed("rack", "LIKE", "r.*"), A, []) == "rack:LIKE:r.*: allows agent host-a"
    assert describe(parsed("zone", "UNLIKE", "a"), A) == "zone:UNLIKE:a: allows agent host-a"


def test_describe_explains_every_refusal():
    # Whatever unmatched refuses, describe gives a reason that names the rule.
    constraints = [parsed(*raw) for raw in (
        ["hostname", "UNIQUE"], ["rack", "CLUSTER"], ["rack", "CLUSTER", "r9"],
        ["rack", "GROUP_BY"], ["rack", "GROUP_BY", "4"], ["rack", "LIKE", "x"],
        ["rack", "UNLIKE", "r."], ["rack", "MAX_PER", "1"], ["rack", "IS", "r9"],
        ["zone", "UNIQUE"])]
    placed = [C, A, B]
    for constraint in constraints:
        assert unmatched([constraint], A, placed) == constraint
        reason = describe(constraint, A, placed)
        assert reason.startswith(f"{constraint}: ")
        assert "allows" not in reason


# ---------------------------------------------------------------- properties

HOSTS = [f"host-{i}" for i in range(6)]
RACKS = ["r1", "r2", "r3"]
agents = st.builds(lambda host, rack: at(host, rack=rack),
                   st.sampled_from(HOSTS), st.sampled_from(RACKS))


def place(constraints: list[Constraint], offers: list[Placement]) -> list[Placement]:
    """Greedy placement: each offer takes one instance when the constraints allow."""
    tally, placed = Tally(), []
    for offer in offers:
        if unmatched(constraints, offer, tally) is None:
            tally.add(offer)
            placed.append(offer)
    return placed


def per(field: str, placed: list[Placement]) -> dict[str | None, int]:
    counts: dict[str | None, int] = {}
    for p in placed:
        counts[p.value(field)] = counts.get(p.value(field), 0) + 1
    return counts


@given(st.lists(agents, max_size=40))
def test_unique_never_puts_two_instances_on_one_host(offers):
    placed = place([Constraint("hostname", "UNIQUE")], offers)
    assert max(per("hostname", placed).values(), default=0) <= 1
    assert {p.hostname for p in placed} == {o.hostname for o in offers}


@given(st.lists(agents, max_size=60), st.integers(1, 4), st.sampled_from(["hostname", "rack"]))
def test_max_per_never_exceeds_n(offers, n, field):
    placed = place([Constraint(field, "MAX_PER", str(n))], offers)
    assert max(per(field, placed).values(), default=0) <= n


@given(st.lists(st.sampled_from(RACKS), max_size=60))
def test_group_by_n_keeps_every_value_within_one_whatever_the_offers(racks):
    placed = place([Constraint("rack", "GROUP_BY", str(len(RACKS)))],
                   [at("h", rack=r) for r in racks])
    counts = [per("rack", placed).get(r, 0) for r in RACKS]
    assert max(counts) - min(counts) <= 1


@given(st.lists(st.permutations(RACKS), max_size=15), st.lists(st.sampled_from(RACKS)))
def test_group_by_keeps_counts_within_one_when_every_value_is_offered_in_turn(rounds, extra):
    # Offers may repeat a value within a round (`extra` at the front); once
    # every value is offered in turn, counts stay within one.
    offers = [at("h", rack=r) for r in extra[:1]]
    offers += [at("h", rack=r) for one_round in rounds for r in one_round]
    placed = place([Constraint("rack", "GROUP_BY")], offers)
    counts = list(per("rack", placed).values())
    assert not counts or max(counts) - min(counts) <= 1


@given(st.lists(st.sampled_from([*RACKS, None]), max_size=50))
def test_a_tally_keeps_the_fewest_as_instances_are_added(racks):
    tally, placed = Tally(), []
    for rack in racks:
        placed.append(at("h") if rack is None else at("h", rack=rack))
        tally.add(placed[-1])
        counts = per("rack", placed)
        assert tally.fewest("rack") == min(counts.values())
        assert tally.groups("rack") == len(counts)


def reference(constraint: Constraint, offer: Placement, placed: list[Placement]) -> bool:
    """Marathon's matcher, written as plainly as possible."""
    field, op, want = constraint.field, constraint.operator, constraint.value
    have = offer.value(field)
    if have is None:
        return op == "UNLIKE"
    values = [p.value(field) for p in placed]
    counts = per(field, placed)
    if op == "UNIQUE":
        return have not in values
    if op == "CLUSTER":
        return have == want if want else not values or values[0] == have
    if op == "MAX_PER":
        return values.count(have) < int(want)
    if op == "GROUP_BY":
        if have not in counts:
            return True
        return len(counts) >= int(want or 0) and counts[have] == min(counts.values())
    raise AssertionError(op)


counted = st.one_of(
    st.builds(Constraint, st.sampled_from(["hostname", "rack", "zone"]),
              st.sampled_from(["UNIQUE", "CLUSTER"])),
    st.builds(Constraint, st.sampled_from(["hostname", "rack"]), st.just("CLUSTER"),
              st.sampled_from([*RACKS, "host-1"])),
    st.builds(Constraint, st.sampled_from(["hostname", "rack", "zone"]),
              st.sampled_from(["GROUP_BY", "MAX_PER"]), st.sampled_from(["1", "2", "3"])),
    st.builds(Constraint, st.sampled_from(["hostname", "rack"]), st.just("GROUP_BY")),
)
maybe_bare = st.one_of(agents, st.builds(lambda h: at(h), st.sampled_from(HOSTS)))


@given(counted, maybe_bare, st.lists(maybe_bare, max_size=20))
def test_the_counting_operators_agree_with_a_plain_reading_of_marathon(constraint, offer, placed):
    expected = reference(constraint, offer, placed)
    assert allows(constraint, offer, Tally(placed)) == expected
    incremental = Tally()
    for p in placed:
        incremental.fewest(constraint.field)  # count first, then keep current
        incremental.add(p)
    assert allows(constraint, offer, incremental) == expected
    assert (unmatched([constraint], offer, placed) is None) == expected
