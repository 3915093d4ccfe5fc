"""A task's health check as the executor runs it: its kind and timings, with
Mesos's defaults for fields left 0 (common/task_defaults.py), except the grace
period, where 0 means none. Pure, no I/O.

The fields are checked by common/task_check.py (the master refuses a bad check
in Accept); `policy_for` checks them again, so the executor never runs one the
master would have refused. The decision over time (`Health`) and the probes
live in executor/health.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from juggler.common import task_defaults as d
from juggler.common.task_check import HealthCheckError, check_health_check
from juggler.v1 import common_pb2 as pb

DEFAULT_DELAY = d.HEALTH_DELAY_SECONDS
DEFAULT_INTERVAL = d.HEALTH_INTERVAL_SECONDS
DEFAULT_TIMEOUT = d.HEALTH_TIMEOUT_SECONDS
DEFAULT_CONSECUTIVE_FAILURES = d.HEALTH_CONSECUTIVE_FAILURES
DEFAULT_GRACE = d.HEALTH_GRACE_PERIOD_SECONDS

__all__ = ["DEFAULT_CONSECUTIVE_FAILURES", "DEFAULT_DELAY", "DEFAULT_GRACE",
           "DEFAULT_INTERVAL", "DEFAULT_TIMEOUT", "HealthCheckError", "Policy", "policy_for"]


@dataclass(frozen=True)
class Policy:
    kind: str  # "command" | "http" | "tcp"
    delay: float = DEFAULT_DELAY
    interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    consecutive_failures: int = DEFAULT_CONSECUTIVE_FAILURES
    kill_when_unhealthy: bool = False
    # Failures of checks started within `grace` seconds of TASK_RUNNING are
    # ignored until the first success; 0: none (executor/health.py).
    grace: float = DEFAULT_GRACE


def policy_for(task: pb.TaskInfo) -> Policy | None:
    """The task's check with Mesos's defaults applied; None when it has none.

    Raises HealthCheckError (a TaskError naming the field) for a check that
    task_check.check would refuse."""
    if not task.HasField("health_check"):
        return None
    check_health_check(task)
    check = task.health_check
    kind = check.WhichOneof("check")
    assert kind is not None  # checked above
    return Policy(
        kind=kind,
        delay=check.delay_seconds or DEFAULT_DELAY,
        interval=check.interval_seconds or DEFAULT_INTERVAL,
        timeout=check.timeout_seconds or DEFAULT_TIMEOUT,
        consecutive_failures=check.consecutive_failures or DEFAULT_CONSECUTIVE_FAILURES,
        kill_when_unhealthy=check.kill_when_unhealthy,
        grace=check.grace_period_seconds,  # 0 is no grace period, not "the default"
    )
