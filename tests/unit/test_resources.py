"""Resources (flag syntax, exact arithmetic, sizes) and the task life-cycle table."""

from __future__ import annotations

import itertools

import pytest

from juggler.common import task_states
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
