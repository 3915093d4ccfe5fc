"""Resources (flag syntax, exact arithmetic, sizes) and the task life-cycle table."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from juggler.common import task_states
from juggler.common.ranges import Ranges
from juggler.common.resources import ResourceError, Resources, parse_size_mib
from juggler.v1 import common_pb2

S = common_pb2.TaskState


# -- Resources.parse: Mesos's "--resources" flag syntax --------------------------------


def test_parse_mesos_flag_syntax():
    r = Resources.parse("cpus:2;mem:1024;disk:4096")
    assert r.as_dict() == {"cpus": 2.0, "mem": 1024.0, "disk": 4096.0}
    assert str(r) == "cpus:2;disk:4096;mem:1024"


def test_parse_tolerates_spaces_and_empty_parts_and_sums_repeated_names():
    r = Resources.parse(" cpus : 0.5 ;; mem:64; cpus:1.5 ;")
    assert r == Resources({"cpus": 2, "mem": 64})


def test_parse_empty_is_no_resources():
    assert Resources.parse("").is_empty()
    assert not Resources.parse("cpus:0")  # zero amounts are dropped


def test_parse_round_trips_through_str():
    r = Resources.parse("cpus:0.25;mem:100.5")
    assert Resources.parse(str(r)) == r


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("cpus:nan", "not a finite number"),
        ("cpus:inf", "not a finite number"),
        ("mem:-1", "negative"),
        ("gpus:1", "unknown resource 'gpus'"),
        ("cpus:two", "not a number"),
        ("cpus:", "not a number"),
        ("cpus", "not NAME:AMOUNT"),
        ("cpus:1;mem", "not NAME:AMOUNT"),
    ],
)
def test_parse_rejects_malformed_input_with_a_reason(text, fragment):
    with pytest.raises(ResourceError, match=fragment):
        Resources.parse(text)


@pytest.mark.parametrize(
    "amounts",
    [{"cpus": float("nan")}, {"mem": -0.5}, {"disk": float("-inf")}, {"gpus": 1},
     {"cpus": "1"}, {"cpus": True}],
)
def test_constructor_rejects_what_parse_rejects(amounts):
    with pytest.raises(ResourceError):
        Resources(amounts)


def test_from_proto_rejects_nameless_unknown_nan_and_negative():
    for bad in ([common_pb2.Resource(scalar=1)],
                [common_pb2.Resource(name="gpus", scalar=1)],
                [common_pb2.Resource(name="cpus", scalar=float("nan"))],
                [common_pb2.Resource(name="mem", scalar=-1)]):
        with pytest.raises(ResourceError):
            Resources.from_proto(bad)


def test_proto_round_trip_carries_the_role():
    r = Resources({"cpus": 1.5, "mem": 256})
    protos = r.to_proto("web")
    assert {p.role for p in protos} == {"web"}
    assert Resources.from_proto(protos) == r


# -- exact arithmetic ----------------------------------------------------------------


def test_a_tenth_added_ten_times_is_exactly_one():
    total = Resources()
    for _ in range(10):
        total = total + Resources({"cpus": 0.1})
    assert total == Resources({"cpus": 1})
    assert total.get("cpus") == 1.0
    # and back down to nothing, with no crumbs left
    for _ in range(10):
        total = total - Resources({"cpus": 0.1})
    assert total.is_empty()


def test_amounts_are_kept_to_thousandths():
    assert Resources({"cpus": 0.0004}).is_empty()
    assert Resources({"cpus": 0.0006}).get("cpus") == 0.001


def test_subtracting_more_than_is_there_raises_and_names_the_resource():
    have = Resources({"cpus": 1, "mem": 128})
    with pytest.raises(ResourceError, match="mem"):
        have - Resources({"mem": 128.001})
    with pytest.raises(ResourceError, match="disk"):
        have - Resources({"disk": 1})
    assert have == Resources({"cpus": 1, "mem": 128})  # immutable: untouched


def test_contains_compares_every_name():
    big = Resources({"cpus": 2, "mem": 512})
    assert big.contains(Resources({"cpus": 2}))
    assert big.contains(Resources())
    assert not big.contains(Resources({"cpus": 1, "disk": 1}))
    assert not big.contains(Resources({"cpus": 2.001}))


# -- ports: a range resource ---------------------------------------------------------


def test_parse_carries_ports_in_mesos_syntax():
    r = Resources.parse("cpus:1;mem:128;ports:[31000-32000,40000-40100]")
    assert r.ports == Ranges.parse("[31000-32000,40000-40100]")
    assert r.as_dict() == {"cpus": 1.0, "mem": 128.0}  # scalars only
    assert r.names() == ["cpus", "mem", "ports"]
    assert str(r) == "cpus:1;mem:128;ports:[31000-32000,40000-40100]"
    assert r.describe() == "cpus 1, mem 128 MiB, ports [31000-32000,40000-40100]"
    assert Resources.parse(str(r)) == r
    # given twice: united
    assert Resources.parse("ports:[1-3];ports:[3-5]").ports == Ranges.of([(1, 5)])
    assert Resources().ports == Ranges() and not Resources().ports


def test_ports_alone_are_not_empty_and_compare():
    r = Resources(ports=Ranges.single(8080))
    assert r and not r.is_empty()
    assert r != Resources() and r == Resources(ports="[8080]")
    assert hash(r) == hash(Resources(ports="[8080]"))
    assert r != Resources(ports="[8081]")
    assert r.milli_vector() == (0, 0, 0)  # DRF vectors are scalars only


@pytest.mark.parametrize(("text", "fragment"), [
    ("ports:31000-32000", "ports: .*not ranges like"),
    ("ports:[0-10]", r"ports: \[0-10\] is not within 1-65535"),
    ("ports:[65535-65536]", "not within 1-65535"),
    ("ports:[5-1]", "begin is after end"),
    ("gpus:1", r"known: cpus, mem, disk, ports"),
])
def test_parse_rejects_bad_ports(text, fragment):
    with pytest.raises(ResourceError, match=fragment):
        Resources.parse(text)


def test_ports_are_not_an_amount():
    with pytest.raises(ResourceError, match="ports is a range resource"):
        Resources({"ports": 3})


def test_proto_round_trip_carries_ports_and_the_role():
    r = Resources({"cpus": 0.5}, ports=Ranges.parse("[31000-31002,31005]"))
    protos = r.to_proto("web")
    assert [p.name for p in protos] == ["cpus", "ports"]
    port = protos[1]
    assert port.scalar == 0 and port.role == "web"
    assert [(x.begin, x.end) for x in port.ranges.range] == [(31000, 31002), (31005, 31005)]
    assert Resources.from_proto(protos) == r


def test_from_proto_memo_tells_ports_apart():
    def msg(b: int, e: int) -> list[common_pb2.Resource]:
        rng = common_pb2.Ranges(range=[common_pb2.Range(begin=b, end=e)])
        return [common_pb2.Resource(name="cpus", scalar=1),
                common_pb2.Resource(name="ports", ranges=rng)]
    assert Resources.from_proto(msg(1, 2)).ports == Ranges.of([(1, 2)])
    assert Resources.from_proto(msg(3, 4)).ports == Ranges.of([(3, 4)])


def test_from_proto_rejects_mixed_up_ports():
    rng = common_pb2.Ranges(range=[common_pb2.Range(begin=1, end=2)])
    for bad, fragment in (
            ([common_pb2.Resource(name="ports", scalar=3)], "scalar"),
            ([common_pb2.Resource(name="cpus", scalar=1, ranges=rng)], "cpus is a scalar"),
            ([common_pb2.Resource(name="ports", ranges=common_pb2.Ranges(
                range=[common_pb2.Range(begin=0, end=2)]))], "within 1-65535"),
            ([common_pb2.Resource(name="ports", ranges=common_pb2.Ranges(
                range=[common_pb2.Range(begin=9, end=2)]))], "begin is after end")):
        with pytest.raises(ResourceError, match=fragment):
            Resources.from_proto(bad)


def test_ports_add_as_union_subtract_as_sets_and_fit_as_subsets():
    agent = Resources.parse("cpus:2;ports:[31000-31002]")
    task = Resources.parse("cpus:1;ports:[31001]")
    left = agent - task
    assert left == Resources.parse("cpus:1;ports:[31000,31002]")
    assert left + task == agent
    assert agent.contains(task) and not left.contains(task)
    assert not agent.contains(Resources(ports="[31003]"))


def test_subtracting_ports_not_there_names_them():
    have = Resources.parse("cpus:1;ports:[31000-31002]")
    with pytest.raises(ResourceError, match=r"ports: \[31003-31004\] not available "
                                            r"\(available: \[31000-31002\]\)"):
        have - Resources.parse("ports:[31002-31004]")


scalars = st.dictionaries(st.sampled_from(["cpus", "mem", "disk"]),
                          st.integers(0, 5000).map(lambda v: v / 1000), max_size=3)
port_sets = st.lists(st.tuples(st.integers(1, 40), st.integers(0, 5)), max_size=4).map(
    lambda ps: Ranges.of([(b, b + n) for b, n in ps]))
resources = st.builds(lambda a, p: Resources(a, ports=p), scalars, port_sets)


@given(resources, resources)
def test_sum_minus_a_part_gives_the_other_part_back(a, b):
    if a.ports & b.ports:
        return  # a union is not a disjoint sum; accounting never adds a port twice
    total = a + b
    assert total.contains(a) and total.contains(b)
    assert total - b == a and total - a == b
    assert Resources.from_proto(total.to_proto()) == total
    if total:
        assert Resources.parse(str(total)) == total


@given(resources, resources)
def test_subtraction_fits_exactly_when_contained(a, b):
    if a.contains(b):
        assert (a - b) + b == a
    else:
        with pytest.raises(ResourceError):
            a - b


# -- parse_size_mib ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "mib"),
    [("512M", 512), ("2G", 2048), ("1.5GiB", 1536), ("100", 100), ("1.5g", 1536),
     ("256mib", 256), ("1T", 1024 * 1024), ("2048K", 2), ("268435456b", 256), (" 64 ", 64)],
)
def test_parse_size_mib(text, mib):
    assert parse_size_mib(text) == mib


@pytest.mark.parametrize("text", ["", "   ", "M", "abc", "12X", "-5M", "nanG", "inf", "1.2.3M"])
def test_parse_size_mib_rejects_bad_input(text):
    with pytest.raises(ResourceError):
        parse_size_mib(text)


# -- task states ---------------------------------------------------------------------

TERMINAL = {S.TASK_FINISHED, S.TASK_FAILED, S.TASK_KILLED, S.TASK_ERROR, S.TASK_LOST,
            S.TASK_DROPPED, S.TASK_GONE, S.TASK_GONE_BY_OPERATOR}
ALL = [v.number for v in S.DESCRIPTOR.values]

# The life cycle as the proto and task_states.py draw it, written out independently.
LEGAL = {
    S.TASK_STAGING: {S.TASK_STARTING, S.TASK_RUNNING, S.TASK_KILLING, S.TASK_UNREACHABLE},
    S.TASK_STARTING: {S.TASK_RUNNING, S.TASK_KILLING, S.TASK_UNREACHABLE},
    S.TASK_RUNNING: {S.TASK_RUNNING, S.TASK_KILLING, S.TASK_UNREACHABLE},
    S.TASK_KILLING: {S.TASK_KILLING, S.TASK_UNREACHABLE},
    S.TASK_UNREACHABLE: {S.TASK_STAGING, S.TASK_STARTING, S.TASK_RUNNING, S.TASK_KILLING,
                         S.TASK_UNREACHABLE},
}


def test_terminal_states_are_read_from_the_proto():
    assert task_states.TERMINAL == TERMINAL
    assert all(task_states.is_terminal(s) for s in TERMINAL)
    assert not any(task_states.is_terminal(s) for s in set(ALL) - TERMINAL)
    assert not task_states.is_terminal(S.TASK_UNREACHABLE)  # the task may still run


def legal(current: int, new: int) -> bool:
    return current in LEGAL and (new in LEGAL[current] or new in TERMINAL)


@pytest.mark.parametrize(("current", "new"), list(itertools.product(ALL, ALL)))
def test_every_pair_is_allowed_exactly_when_the_life_cycle_says(current, new):
    history = [S.TASK_STAGING, current] if current != S.TASK_STAGING else [current]
    if legal(current, new):
        task_states.check("t1", current, new, history)
        return
    with pytest.raises(task_states.InvalidTransition) as info:
        task_states.check("t1", current, new, history)
    err = info.value
    assert (err.task_id, err.current, err.new) == ("t1", current, new)
    story = " → ".join(S.Name(s) for s in history)
    assert f"history: {story}" in str(err)
    assert f"{S.Name(current)} → {S.Name(new)} is not allowed" in str(err)


@pytest.mark.parametrize("state", sorted(TERMINAL))
def test_terminal_states_have_no_way_out(state):
    for new in ALL:
        with pytest.raises(task_states.InvalidTransition):
            task_states.check("t", state, new)


def test_the_message_shows_the_whole_story():
    with pytest.raises(task_states.InvalidTransition,
                       match=r"TASK_FINISHED → TASK_RUNNING is not allowed \(history: "
                             r"TASK_STAGING → TASK_RUNNING → TASK_FINISHED\)"):
        task_states.check("web-1", S.TASK_FINISHED, S.TASK_RUNNING,
                          [S.TASK_STAGING, S.TASK_RUNNING, S.TASK_FINISHED])
    # without a history the current state is the story
    with pytest.raises(task_states.InvalidTransition, match=r"history: TASK_KILLED\)"):
        task_states.check("web-1", S.TASK_KILLED, S.TASK_RUNNING)
