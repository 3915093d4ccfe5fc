"""Task life cycle: which state may follow which.

    STAGING ─▶ STARTING ─▶ RUNNING ─▶ FINISHED | FAILED | KILLED
       │           │          │
       │           └──────────┴──▶ KILLING ─▶ KILLED | FINISHED | FAILED
       └──▶ (any terminal state: ERROR, DROPPED, LOST, GONE, ...)
    any non-terminal ─▶ UNREACHABLE ─▶ (back to what the agent reports)

Terminal states are read from the proto (`[(terminal) = true]`), so they are
defined exactly once. A transition not in the table raises InvalidTransition
with the task's history.
"""

from __future__ import annotations

from collections.abc import Sequence

from juggler.v1 import common_pb2 as pb

S = pb.TaskState


def _terminal() -> frozenset[int]:
    values = pb.TaskState.DESCRIPTOR.values
    return frozenset(v.number for v in values if v.GetOptions().Extensions[pb.terminal])


TERMINAL: frozenset[int] = _terminal()
ACTIVE: frozenset[int] = frozenset({S.TASK_STAGING, S.TASK_STARTING, S.TASK_RUNNING,
                                    S.TASK_KILLING, S.TASK_UNREACHABLE})

_ANY_TERMINAL = TERMINAL
TRANSITIONS: dict[int, frozenset[int]] = {
    S.TASK_STAGING: frozenset({S.TASK_STARTING, S.TASK_RUNNING, S.TASK_KILLING,
                               S.TASK_UNREACHABLE}) | _ANY_TERMINAL,
    S.TASK_STARTING: frozenset({S.TASK_RUNNING, S.TASK_KILLING, S.TASK_UNREACHABLE})
    | _ANY_TERMINAL,
    S.TASK_RUNNING: frozenset({S.TASK_RUNNING, S.TASK_KILLING, S.TASK_UNREACHABLE})
    | _ANY_TERMINAL,
    S.TASK_KILLING: frozenset({S.TASK_KILLING, S.TASK_UNREACHABLE}) | _ANY_TERMINAL,
    S.TASK_UNREACHABLE: frozenset({S.TASK_STARTING, S.TASK_RUNNING, S.TASK_KILLING,
                                   S.TASK_UNREACHABLE}) | _ANY_TERMINAL,
}


class InvalidTransition(Exception):
    def __init__(self, task_id: str, current: int, new: int, history: Sequence[int]) -> None:
        self.task_id, self.current, self.new = task_id, current, new
        story = " → ".join(name(s) for s in history)
        super().__init__(
            f"task {task_id!r}: {name(current)} → {name(new)} is not allowed (history: {story})"
        )


def name(state: int) -> str:
    return pb.TaskState.Name(state)


def is_terminal(state: int) -> bool:
    return state in TERMINAL


def check(task_id: str, current: int, new: int, history: Sequence[int] = ()) -> None:
    """Raise InvalidTransition unless `current → new` is allowed."""
    if new not in TRANSITIONS.get(current, frozenset()):
        raise InvalidTransition(task_id, current, new, history or (current,))
