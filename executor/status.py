"""Status updates an executor sends, and how a container's end maps to one: pure.

`outcome` decides the terminal update from PID 1's wait status, whether a
kill was asked for, and how many OOM kills the task's cgroup recorded during
the run (`oom_kills`):

    PID 1's end        kill asked  OOM kills  state     reason                       exit code
    exit 0             no          any        FINISHED  COMMAND_EXITED               0
    exit N             no          any        FAILED    COMMAND_EXITED               N
    SIGKILL            no          ≥ 1        FAILED    CONTAINER_LIMITATION_MEMORY  137
    SIGKILL            no          0          FAILED    COMMAND_EXITED               137
    signal N (other)   no          any        FAILED    COMMAND_EXITED               128+N
    any                yes         any        KILLED    TASK_KILLED                  its code

The exit code is always PID 1's own (128+N for signal N), never rewritten.
The memory limitation is the reason only when PID 1 itself died of SIGKILL
while the cgroup recorded an OOM kill (the kernel's OOM killer kills with
SIGKILL; a cgroup's count does not say which process it took, so a SIGKILL
from elsewhere at the same time reads as OOM too). The container is not
killed as a whole when one of its processes is OOM-killed: as Docker, which
leaves that to the container because "some containers can gracefully handle
OOM kills" (moby PR #8479), and runs on until PID 1 ends.

A child's OOM kill — e.g. `sh -c 'python3 -c "bytearray(200*2**20)"; exit 3'`
under a 32 MiB limit — is said in the status message ("Command exited with
status 3; 1 process of the task was killed for memory (limit 32 MiB)") but
does not change the state, exit code or reason. `Outcome.oom_killed` (the
update's `oom_killed`) is Docker's State.OOMKilled: true when the cgroup
recorded any OOM kill during the run, PID 1's or a child's, whatever the
exit code — moby sets it on any OOM event of the container (daemon/
monitor.go, ProcessEvent's EventOOM case) and keeps the init process's own
exit code (handleContainerExit).
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
    oom_killed: bool = False  # Docker's State.OOMKilled: any OOM kill during the run


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


def pid1_out_of_memory(wait_status: int, oom_kills: int) -> bool:
    """PID 1 died of SIGKILL while the cgroup recorded `oom_kills` (>= 1)
    OOM kills during the run: the memory limitation ended the task."""
    return (os.WIFSIGNALED(wait_status) and os.WTERMSIG(wait_status) == signal.SIGKILL
            and oom_kills > 0)


def oom_note(oom_kills: int, memory_mib: float = 0) -> str:
    """What a status message adds when processes other than PID 1 were
    OOM-killed: "1 process of the task was killed for memory (limit 32 MiB)"."""
    were = "process of the task was" if oom_kills == 1 else "processes of the task were"
    limit = f"limit {memory_mib:g} MiB" if memory_mib else "its memory limit"
    return f"{oom_kills} {were} killed for memory ({limit})"


def outcome(wait_status: int, *, killed: bool = False, oom_kills: int = 0,
            memory_mib: float = 0) -> Outcome:
    """The terminal update for a container whose PID 1 ended with
    `wait_status` (a waitpid status), `killed` when a kill was asked for,
    `oom_kills` the OOM kills its cgroup recorded during the run, and
    `memory_mib` its memory limit (0: unknown): the table in this module's
    docstring."""
    oom_kills = max(0, oom_kills)
    oom = oom_kills > 0
    code, sig = exit_code_of(wait_status)
    if sig is not None:
        how = f"Command terminated by signal {sig} ({signal_name(sig)})"
    else:
        how = f"Command exited with status {code}"
    if not killed and pid1_out_of_memory(wait_status, oom_kills):
        limit = f"Memory limit of {memory_mib:g} MiB" if memory_mib else "Memory limit"
        return Outcome(pb.TASK_FAILED, pb.REASON_CONTAINER_LIMITATION_MEMORY,
                       f"{limit} exceeded: the task was OOM-killed", code, oom_killed=True)
    if oom:
        how = f"{how}; {oom_note(oom_kills, memory_mib)}"
    if killed:
        return Outcome(pb.TASK_KILLED, pb.REASON_TASK_KILLED, how, code, oom)
    if code == 0:
        return Outcome(pb.TASK_FINISHED, pb.REASON_COMMAND_EXITED, how, 0, oom)
    return Outcome(pb.TASK_FAILED, pb.REASON_COMMAND_EXITED, how, code, oom)


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
