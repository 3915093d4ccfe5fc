"""The health-check decision (executor/health.py `Health`; `policy_for` from
common/health_policy.py): pure, a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from juggler.common.task_check import TaskError
from juggler.executor.health import (
    DEFAULT_CONSECUTIVE_FAILURES,
    DEFAULT_DELAY,
    DEFAULT_GRACE,
    DEFAULT_INTERVAL,
    DEFAULT_TIMEOUT,
    Health,
    HealthCheckError,
    Policy,
    policy_for,
)
from juggler.v1 import common_pb2 as pb


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def task(**check) -> pb.TaskInfo:
    return pb.TaskInfo(task_id="t1", health_check=pb.HealthCheck(**check))


def command(cmd: str = "true") -> pb.HealthCheck.Command:
    return pb.HealthCheck.Command(argv=[cmd], shell=True)


def policy(**kw) -> Policy:
    base = dict(kind="command", delay=0.0, interval=1.0, timeout=5.0, consecutive_failures=3)
    base.update(kw)
    return Policy(**base)


# -- the policy: Mesos's defaults, validation ---------------------------------


def test_no_health_check_no_policy():
    assert policy_for(pb.TaskInfo(task_id="t1")) is None


def test_defaults_apply_to_fields_left_zero():
    p = policy_for(task(command=command()))
    assert p == Policy(kind="command", delay=DEFAULT_DELAY, interval=DEFAULT_INTERVAL,
                       timeout=DEFAULT_TIMEOUT,
                       consecutive_failures=DEFAULT_CONSECUTIVE_FAILURES,
                       kill_when_unhealthy=False, grace=DEFAULT_GRACE)
    assert (DEFAULT_DELAY, DEFAULT_INTERVAL, DEFAULT_TIMEOUT,
            DEFAULT_CONSECUTIVE_FAILURES) == (15, 10, 20, 3)
    assert DEFAULT_GRACE == 0  # no grace period: 0 is the value, not "unset"


def test_set_fields_win_over_defaults():
    p = policy_for(task(tcp=pb.HealthCheck.Tcp(port=80), delay_seconds=0.5,
                        interval_seconds=0.2, timeout_seconds=1, consecutive_failures=1,
                        kill_when_unhealthy=True, grace_period_seconds=300))
    assert p == Policy(kind="tcp", delay=0.5, interval=0.2, timeout=1,
                       consecutive_failures=1, kill_when_unhealthy=True, grace=300)


@pytest.mark.parametrize("check, words", [
    (dict(), "sets none of command, http, tcp"),
    (dict(command=pb.HealthCheck.Command(argv=[])), "command is empty"),
    (dict(command=pb.HealthCheck.Command(argv=["a", "b"], shell=True)), "one string"),
    (dict(tcp=pb.HealthCheck.Tcp(port=0)), "tcp.port must be 1 to 65535"),
    (dict(http=pb.HealthCheck.Http(port=70000)), "http.port must be 1 to 65535"),
    (dict(http=pb.HealthCheck.Http(port=80, scheme="ftp")), "scheme must be http or https"),
    (dict(http=pb.HealthCheck.Http(port=80, path="health")), "path must start with '/'"),
    (dict(command=command(), timeout_seconds=-1), "timeout_seconds is negative"),
    (dict(command=command(), grace_period_seconds=-1),
     r"grace_period_seconds is negative \(-1\); give seconds, or 0 for no grace period"),
    (dict(command=command(), grace_period_seconds=float("inf")),
     "grace_period_seconds is not a finite number"),
])
def test_invalid_checks_are_refused_with_a_reason(check, words):
    with pytest.raises(HealthCheckError, match=words) as info:
        policy_for(task(**check))
    assert isinstance(info.value, TaskError)  # the executor fails the launch with it
    assert info.value.field.startswith("health_check")
    assert "task 't1'" in str(info.value)


# -- the decision --------------------------------------------------------------


def test_first_check_after_the_delay_then_every_interval_after_each_end():
    clock = Clock()
    h = Health(policy(delay=15, interval=10, timeout=20), clock)
    assert h.next_check_at == 1015
    clock.advance(15)
    assert h.begin_check() == 1035  # timeout counted from the check's start
    clock.advance(2)  # the check took 2 s
    d = h.result(True)
    assert d.next_check_at == 1027 == h.next_check_at  # interval from the check's end


def test_unknown_until_a_check_decides():
    h = Health(policy(), Clock())
    assert h.healthy is None and h.checks == 0


def test_healthy_after_the_first_success_with_one_update():
    clock = Clock()
    h = Health(policy(), clock)
    h.begin_check()
    d = h.result(True, "exit status 0")
    assert (d.healthy, d.update, d.kill) == (True, True, False)
    assert d.message == "Task is healthy: command health check passed (exit status 0)"
    clock.advance(1)
    h.begin_check()
    d = h.result(True)
    assert (d.healthy, d.update) == (True, False)  # no change, no update


def test_unhealthy_after_n_consecutive_failures_only():
    clock = Clock()
    h = Health(policy(consecutive_failures=3), clock)
    h.begin_check()
    h.result(True)
    for n in (1, 2):
        h.begin_check()
        d = h.result(False, "exit status 1")
        assert (d.healthy, d.update, d.kill) == (True, False, False), n
        assert d.message == (f"Health check failed: command health check failed {n} "
                             f"time{'s' if n > 1 else ''} in a row (last: exit status 1)")
    h.begin_check()
    d = h.result(False, "exit status 1")
    assert (d.healthy, d.update, d.kill) == (False, True, False)
    assert d.message == ("Task is unhealthy: command health check failed 3 times in a row "
                         "(last: exit status 1)")
    h.begin_check()
    d = h.result(False)
    assert (d.healthy, d.update) == (False, False)  # still unhealthy: no new update
    assert d.next_check_at is not None  # without kill_when_unhealthy checks go on


def test_a_task_never_healthy_turns_unhealthy_after_n_failures():
    h = Health(policy(consecutive_failures=2), Clock())
    h.begin_check()
    d = h.result(False)
    assert (d.healthy, d.update) == (None, False)
    h.begin_check()
    d = h.result(False)
    assert (d.healthy, d.update) == (False, True)


def test_a_success_resets_the_count_and_recovers():
    h = Health(policy(consecutive_failures=2), Clock())
    for ok in (True, False, True, False):  # never two failures in a row
        h.begin_check()
        d = h.result(ok)
        assert d.healthy is True
    h.begin_check()
    assert h.result(False).healthy is False
    h.begin_check()
    d = h.result(True)
    assert (d.healthy, d.update, d.kill) == (True, True, False)
    assert h.consecutive_failures == 0


def test_a_timeout_counts_as_a_failure():
    clock = Clock()
    h = Health(policy(consecutive_failures=1, timeout=2), clock)
    deadline = h.begin_check()
    clock.now = deadline
    d = h.timed_out()
    assert (d.healthy, d.update) == (False, True)
    assert d.message == ("Task is unhealthy: command health check failed 1 time in a row "
                         "(last: timed out after 2 s)")
    assert d.next_check_at == deadline + 1.0


def test_kill_when_unhealthy_kills_once_and_stops_checking():
    h = Health(policy(consecutive_failures=2, kill_when_unhealthy=True), Clock())
    h.begin_check()
    assert not h.result(False).kill
    h.begin_check()
    d = h.result(False)
    assert (d.healthy, d.update, d.kill, d.next_check_at) == (False, True, True, None)
    with pytest.raises(RuntimeError):
        h.begin_check()


def test_no_kill_without_kill_when_unhealthy():
    h = Health(policy(consecutive_failures=1), Clock())
    for _ in range(5):
        h.begin_check()
        assert not h.result(False).kill


def test_schedule_over_a_run():
    clock = Clock(0)
    h = Health(policy(delay=0.5, interval=0.2, timeout=1), clock)
    starts = []
    for ok in (True, True, False):
        clock.now = h.next_check_at
        starts.append(clock.now)
        h.begin_check()
        clock.advance(0.1)
        h.result(ok)
    assert starts == pytest.approx([0.5, 0.8, 1.1])


# -- the grace period (Mesos's grace_period_seconds, Marathon's gracePeriodSeconds) --


def check(h: Health, clock: Clock, ok: bool, took: float = 0.0, detail: str = ""):
    """Run one check at its scheduled time; it takes `took` seconds."""
    clock.now = h.next_check_at
    h.begin_check()
    clock.advance(took)
    return h.result(ok, detail)


def test_failures_inside_the_grace_period_are_ignored_and_kill_nothing():
    clock = Clock(0)
    h = Health(policy(delay=1, interval=1, consecutive_failures=1, kill_when_unhealthy=True,
                      grace=10), clock)
    for n in range(9):  # checks start at 1, 2, ..., 9: all before 0 + 10
        d = check(h, clock, False, detail="exit status 1")
        assert (d.healthy, d.update, d.kill, d.ignored) == (None, False, False, True), n
        assert d.next_check_at == clock.now + 1
        assert d.message == ("Health check failure ignored: command health check failed "
                             "(exit status 1) inside the grace period of 10 s, before any "
                             "success")
    assert (h.healthy, h.consecutive_failures, h.checks, h.killed) == (None, 0, 9, False)


def test_a_success_inside_the_grace_period_ends_it():
    clock = Clock(0)
    h = Health(policy(delay=1, interval=1, consecutive_failures=2, kill_when_unhealthy=True,
                      grace=300), clock)
    assert check(h, clock, False).ignored
    d = check(h, clock, True)
    assert (d.healthy, d.update) == (True, True)
    d = check(h, clock, False)  # at 3 s, far inside the 300 s: it counts now
    assert (d.healthy, d.update, d.kill, d.ignored) == (True, False, False, False)
    assert h.consecutive_failures == 1
    d = check(h, clock, False)
    assert (d.healthy, d.update, d.kill, d.ignored) == (False, True, True, False)
    assert clock.now < 300


def test_once_the_grace_period_is_over_failures_count_from_zero():
    clock = Clock(0)
    h = Health(policy(delay=1, interval=1, consecutive_failures=3, grace=5), clock)
    ignored = [check(h, clock, False).ignored for _ in range(4)]  # checks at 1, 2, 3, 4
    assert ignored == [True] * 4
    d = check(h, clock, False)  # starts at 5 = 0 + grace: the period is over
    assert (d.healthy, d.ignored, h.consecutive_failures) == (None, False, 1)
    assert d.message == "Health check failed: command health check failed 1 time in a row"
    check(h, clock, False)
    d = check(h, clock, False)
    assert (d.healthy, d.update, d.ignored) == (False, True, False)  # the 3rd counted one


def test_kill_when_unhealthy_kills_only_after_the_grace_period():
    clock = Clock(0)
    h = Health(policy(delay=0.5, interval=1, consecutive_failures=1, kill_when_unhealthy=True,
                      grace=3), clock)
    seen = []
    while not h.killed:
        d = check(h, clock, False)
        seen.append((clock.now, d.ignored, d.kill))
    assert seen == [(0.5, True, False), (1.5, True, False), (2.5, True, False),
                    (3.5, False, True)]


def test_a_check_started_inside_the_grace_period_is_ignored_even_if_it_ends_after():
    clock = Clock(0)
    h = Health(policy(delay=9, interval=1, timeout=20, consecutive_failures=1, grace=10),
               clock)
    clock.now = h.next_check_at
    deadline = h.begin_check()  # starts at 9, inside the period
    clock.now = deadline  # times out at 29, long after it
    d = h.timed_out()
    assert (d.healthy, d.update, d.ignored) == (None, False, True)
    assert d.message == ("Health check failure ignored: command health check failed (timed "
                         "out after 20 s) inside the grace period of 10 s, before any success")
    d = check(h, clock, False)  # starts at 30
    assert (d.healthy, d.update, d.ignored) == (False, True, False)


def test_the_grace_period_counts_from_the_start_not_from_the_delay():
    clock = Clock(1000)
    h = Health(policy(delay=15, interval=60, consecutive_failures=1, grace=10), clock)
    d = check(h, clock, False)  # first check at 1015: the 10 s are over
    assert (d.healthy, d.ignored) == (False, False)


def test_no_grace_period_counts_every_failure():
    clock = Clock(0)
    h = Health(policy(delay=0, interval=1, consecutive_failures=1, grace=0), clock)
    d = check(h, clock, False)  # starts at 0 = the start itself
    assert (d.healthy, d.update, d.ignored) == (False, True, False)


def test_marathons_defaults_give_five_minutes_yet_turn_healthy_at_once():
    """gracePeriodSeconds 300, intervalSeconds 60, delay 15, 3 failures."""
    marathon = dict(delay=15, interval=60, timeout=20, consecutive_failures=3, grace=300,
                    kill_when_unhealthy=True)
    clock = Clock(0)
    h = Health(policy(**marathon), clock)
    d = check(h, clock, True, took=0.5)  # up at the first check
    assert (clock.now, d.healthy, d.update) == (15.5, True, True)

    clock = Clock(0)
    h = Health(policy(**marathon), clock)  # never comes up
    seen = []
    while not h.killed:
        d = check(h, clock, False, took=0.5)
        seen.append((clock.now - 0.5, d.ignored, d.healthy, d.kill))
    assert seen == (  # every time a multiple of 0.5: exact in binary
        [(15 + 60.5 * i, True, None, False) for i in range(5)]  # 15 … 257: inside 300 s
        + [(317.5, False, None, False), (378, False, None, False)]  # counted: 1, 2
        + [(438.5, False, False, True)])  # the third: unhealthy, killed


@settings(max_examples=300, deadline=None)
@given(grace=st.sampled_from([0.0, 0.5, 2.0, 5.0, 50.0]),
       results=st.lists(st.tuples(st.booleans(), st.sampled_from([0.0, 0.3, 1.0, 4.0])),
                        max_size=30),
       n=st.integers(1, 4), kill=st.booleans())
def test_the_grace_period_only_drops_early_failures(grace, results, n, kill):
    """With a grace period, the decisions are those of no grace period fed the same
    results minus the failures of checks started inside it before any success; those
    change nothing."""
    clock = Clock(0)
    base = dict(delay=0.2, interval=0.5, consecutive_failures=n, kill_when_unhealthy=kill)
    graced, plain = Health(policy(grace=grace, **base), clock), Health(policy(**base), clock)
    passed = False
    for ok, took in results:
        if graced.killed:
            break
        clock.now = graced.next_check_at
        started = clock.now
        before = graced.healthy
        graced.begin_check()
        clock.advance(took)
        d = graced.result(ok)
        if not ok and not passed and started < grace:
            assert (d.ignored, d.update, d.kill, d.healthy) == (True, False, False, before)
            assert graced.consecutive_failures == 0 and graced.healthy is None
            continue
        passed = passed or ok
        plain.next_check_at = started  # plain never saw the ignored ones: same schedule
        clock.now = started
        plain.begin_check()
        clock.advance(took)
        want = plain.result(ok)
        assert d == want
        assert (graced.healthy, graced.consecutive_failures) == (
            plain.healthy, plain.consecutive_failures)
