"""Task life cycle: which state may follow which.

    STAGING     → STARTING, RUNNING, KILLING, UNREACHABLE, any terminal
    STARTING    → RUNNING, KILLING, UNREACHABLE, any terminal
    RUNNING     → RUNNING, KILLING, UNREACHABLE, any terminal
    KILLING     → KILLING, UNREACHABLE, any terminal
    UNREACHABLE → STAGING, STARTING, RUNNING, KILLING, UNREACHABLE, any terminal
    terminal: FINISHED, FAILED, KILLED, ERROR, LOST, DROPPED, GONE, GONE_BY_OPERATOR

    STAGING ─▶ STARTING ─▶ RUNNING ─▶ FINISHED | FAILED | KILLED
       │           │          │
       │           └──────────┴──▶ KILLING ─▶ KILLED | FINISHED | FAILED
       └──▶ (any terminal state: ERROR, DROPPED, LOST, GONE, ...)
    any non-terminal ─▶ UNREACHABLE ─▶ (back to what the agent reports)

Terminal states are read from the proto (`[(terminal) = true]`), so they are
defined exactly once; the table above is TASK.lines(), and the proto's comment
above TaskState carries the same lines (tests/unit/test_lifecycles.py checks
both). A transition not in the table raises InvalidTransition with the task's
history. TASK_UNKNOWN is not a state of a task: it only answers reconciliation
about a task nobody knows.
"""

from __future__ import annotations

from collections.abc import Sequence

from juggler.common import lifecycle
from juggler.common.enums import plain
from juggler.common.lifecycle import Lifecycle
from juggler.v1 import common_pb2 as pb

S = plain(pb.TaskState)


def _terminal() -> frozenset[int]:
    values = pb.TaskState.DESCRIPTOR.values
    return frozenset(v.number for v in values if v.GetOptions().Extensions[pb.terminal])


TERMINAL: frozenset[int] = _terminal()
ACTIVE: frozenset[int] = frozenset({S.TASK_STAGING, S.TASK_STARTING, S.TASK_RUNNING,
                                    S.TASK_KILLING, S.TASK_UNREACHABLE})

_ANY_TERMINAL = TERMINAL
_ROWS: dict[int, frozenset[int]] = {
    S.TASK_STAGING: frozenset({S.TASK_STARTING, S.TASK_RUNNING, S.TASK_KILLING,
                               S.TASK_UNREACHABLE}) | _ANY_TERMINAL,
    S.TASK_STARTING: frozenset({S.TASK_RUNNING, S.TASK_KILLING, S.TASK_UNREACHABLE})
    | _ANY_TERMINAL,
    S.TASK_RUNNING: frozenset({S.TASK_RUNNING, S.TASK_KILLING, S.TASK_UNREACHABLE})
    | _ANY_TERMINAL,
    S.TASK_KILLING: frozenset({S.TASK_KILLING, S.TASK_UNREACHABLE}) | _ANY_TERMINAL,
    # Back to whatever its agent reports when it returns, STAGING included (a
    # task whose executor had not started yet).
    S.TASK_UNREACHABLE: frozenset({S.TASK_STAGING, S.TASK_STARTING, S.TASK_RUNNING,
                                   S.TASK_KILLING, S.TASK_UNREACHABLE}) | _ANY_TERMINAL,
}
TRANSITIONS: dict[int, frozenset[int]] = {**_ROWS, **{s: frozenset() for s in TERMINAL}}


def name(state: int) -> str:
    return pb.TaskState.Name(state)


# The table as a Lifecycle (common/lifecycle.py), for its rendering and checks.
# A task's story is its status history (TaskStatus carries the stimulus: reason,
# message, source), so tasks keep that rather than Lifecycle steps.
TASK = Lifecycle("task", "state", TRANSITIONS, lambda s: name(s).removeprefix("TASK_"))


class InvalidTransition(lifecycle.InvalidTransition):
    def __init__(self, task_id: str, current: int, new: int, history: Sequence[int]) -> None:
        story = " → ".join(name(s) for s in history)
        super().__init__("task", task_id, current, new,
                         f"task {task_id!r}: {name(current)} → {name(new)} is not allowed "
                         f"(history: {story})")
        self.task_id = task_id


def is_terminal(state: int) -> bool:
    return state in TERMINAL


def check(task_id: str, current: int, new: int, history: Sequence[int] = ()) -> None:
    """Raise InvalidTransition unless `current → new` is allowed."""
    if not TASK.allows(current, new):
        raise InvalidTransition(task_id, current, new, history or (current,))


# -- how a task's end reads to Docker's users -------------------------------------------------
# Failures of juggler's own, not of the task's command: exit 125, as `docker run`
# does when the daemon cannot start the container (an image that cannot be pulled,
# an executor that could not start or died, a task refused).
_PLATFORM_FAILURES = frozenset({pb.REASON_CONTAINER_LAUNCH_FAILED,
                                pb.REASON_EXECUTOR_TERMINATED, pb.REASON_TASK_INVALID})
EXIT_PLATFORM = 125


def never_ran(status: pb.TaskStatus) -> bool:
    """The task ended before its command started (Docker's State.Error)."""
    return status.state in (pb.TASK_ERROR, pb.TASK_DROPPED) or \
        status.reason in _PLATFORM_FAILURES


def exit_code(status: pb.TaskStatus) -> int:
    """A terminal status as an exit code, as `docker run` reports one: the
    command's own (128+N for signal N), 0 for FINISHED without one, 137 for a
    kill without one, 1 for another failure of the command, 125 when juggler
    could not run it (never_ran, or the task was lost with its agent)."""
    if status.HasField("exit_code"):
        return status.exit_code
    if status.state == pb.TASK_FINISHED:
        return 0
    if status.state == pb.TASK_KILLED:
        return 137
    if status.state == pb.TASK_FAILED and status.reason not in _PLATFORM_FAILURES:
        return 1
    return EXIT_PLATFORM
