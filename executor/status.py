"""Status updates an executor sends, and how a container's end maps to one: pure.

    exit 0                       → FINISHED  COMMAND_EXITED  0
    exit N                       → FAILED    COMMAND_EXITED  N
    signal N                     → FAILED    COMMAND_EXITED  128+N
    OOM-killed (cgroup says so)  → FAILED    CONTAINER_LIMITATION_MEMORY 137
    ended after a kill request   → KILLED    TASK_KILLED     its code (128+N)
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from dataclasses import dataclass

from juggler.v1 import common_pb2 as pb


@dataclass(frozen=True)
class Outcome:
    state: int
    reason: int
    message: str
    exit_code: int | None = None


def exit_code_of(wait_status: int) -> tuple[int, int | None]:
    """(exit code, signal number or None) from a waitpid status."""
    if os.WIFSIGNALED(wait_status):
        sig = os.WTERMSIG(wait_status)
        return 128 + sig, sig
    return os.WEXITSTATUS(wait_status), None


def signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def outcome(wait_status: int, *, killed: bool = False, oom_killed: bool = False,
            memory_mib: float = 0) -> Outcome:
    code, sig = exit_code_of(wait_status)
    if sig is not None:
        how = f"Command terminated by signal {sig} ({signal_name(sig)})"
    else:
        how = f"Command exited with status {code}"
    if killed:
        return Outcome(pb.TASK_KILLED, pb.REASON_TASK_KILLED, how, code)
    if oom_killed and code != 0:
        limit = f"{memory_mib:g} MiB" if memory_mib else "the memory limit"
        return Outcome(pb.TASK_FAILED, pb.REASON_CONTAINER_LIMITATION_MEMORY,
                       f"Memory limit of {limit} exceeded: the task was OOM-killed", 137)
    if code == 0:
        return Outcome(pb.TASK_FINISHED, pb.REASON_COMMAND_EXITED, how, 0)
    return Outcome(pb.TASK_FAILED, pb.REASON_COMMAND_EXITED, how, code)


def make_status(*, task_id: str, agent_id: str, framework_id: str, state: int,
                reason: int = pb.REASON_UNSPECIFIED, message: str = "",
                exit_code: int | None = None) -> pb.TaskStatus:
    status = pb.TaskStatus(
        task_id=task_id, state=state, reason=reason, message=message,
        source=pb.SOURCE_EXECUTOR, agent_id=agent_id, framework_id=framework_id,
        uuid=uuid.uuid4().bytes, timestamp=time.time(),
    )
    if exit_code is not None:
        status.exit_code = exit_code
    return status
