"""The health-check decision (executor/health.py `Health`; `policy_for` from
common/health_policy.py): pure, a fake clock."""

from __future__ import annotations

import pytest

from juggler.common.task_check import TaskError
from juggler.executor.health import (
    DEFAULT_CONSECUTIVE_FAILURES,
    DEFAULT_DELAY,
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
                       kill_when_unhealthy=False)
    assert (DEFAULT_DELAY, DEFAULT_INTERVAL, DEFAULT_TIMEOUT,
            DEFAULT_CONSECUTIVE_FAILURES) == (15, 10, 20, 3)


def test_set_fields_win_over_defaults():
    p = policy_for(task(tcp=pb.HealthCheck.Tcp(port=80), delay_seconds=0.5,
                        interval_seconds=0.2, timeout_seconds=1, consecutive_failures=1,
                        kill_when_unhealthy=True))
    assert p == Policy(kind="tcp", delay=0.5, interval=0.2, timeout=1,
                       consecutive_failures=1, kill_when_unhealthy=True)


@pytest.mark.parametrize("check, words", [
    (dict(), "sets none of command, http, tcp"),
    (dict(command=pb.HealthCheck.Command(argv=[])), "command is empty"),
    (dict(command=pb.HealthCheck.Command(argv=["a", "b"], shell=True)), "one string"),
    (dict(tcp=pb.HealthCheck.Tcp(port=0)), "tcp.port must be 1 to 65535"),
    (dict(http=pb.HealthCheck.Http(port=70000)), "http.port must be 1 to 65535"),
    (dict(http=pb.HealthCheck.Http(port=80, scheme="ftp")), "scheme must be http or https"),
    (dict(http=pb.HealthCheck.Http(port=80, path="health")), "path must start with '/'"),
    (dict(command=command(), timeout_seconds=-1), "timeout_seconds is negative"),
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
