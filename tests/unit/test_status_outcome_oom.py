"""How a container's end becomes its terminal update when the OOM killer
struck (executor/status.py's table): PID 1's own wait status is the exit
code, always; the memory limitation is the reason only when PID 1 itself died
of SIGKILL while the cgroup recorded an OOM kill; `oom_killed` (Docker's
State.OOMKilled) says whether the OOM killer took any process of the task."""

from __future__ import annotations

import signal

import pytest

from juggler.executor import status as st
from juggler.v1 import common_pb2 as pb


def exited(code: int) -> int:
    """A waitpid status for exit(code)."""
    return code << 8


def signalled(sig: int) -> int:
    """A waitpid status for death by `sig`."""
    return int(sig)


KILL = signalled(signal.SIGKILL)
MEM = pb.REASON_CONTAINER_LIMITATION_MEMORY
EXITED = pb.REASON_COMMAND_EXITED

# (PID 1's status, kill asked, OOM kills) → (state, reason, exit code, oom_killed)
TABLE = [
    (exited(0), False, 0, (pb.TASK_FINISHED, EXITED, 0, False)),
    (exited(0), False, 1, (pb.TASK_FINISHED, EXITED, 0, True)),
    (exited(3), False, 0, (pb.TASK_FAILED, EXITED, 3, False)),
    (exited(3), False, 1, (pb.TASK_FAILED, EXITED, 3, True)),       # the input
    (exited(137), False, 1, (pb.TASK_FAILED, EXITED, 137, True)),   # a shell passing it on
    (KILL, False, 1, (pb.TASK_FAILED, MEM, 137, True)),             # PID 1 OOM-killed
    (KILL, False, 2, (pb.TASK_FAILED, MEM, 137, True)),
    (KILL, False, 0, (pb.TASK_FAILED, EXITED, 137, False)),         # a SIGKILL from elsewhere
    (signalled(signal.SIGTERM), False, 1, (pb.TASK_FAILED, EXITED, 143, True)),
    (signalled(signal.SIGSEGV), False, 0, (pb.TASK_FAILED, EXITED, 139, False)),
    (KILL, True, 1, (pb.TASK_KILLED, pb.REASON_TASK_KILLED, 137, True)),
    (signalled(signal.SIGTERM), True, 0, (pb.TASK_KILLED, pb.REASON_TASK_KILLED, 143, False)),
    (exited(0), False, -1, (pb.TASK_FINISHED, EXITED, 0, False)),   # a counter that went back
]


@pytest.mark.parametrize(("wait_status", "killed", "oom_kills", "expected"), TABLE)
def test_the_table(wait_status: int, killed: bool, oom_kills: int,
                   expected: tuple[int, int, int, bool]) -> None:
    out = st.outcome(wait_status, killed=killed, oom_kills=oom_kills, memory_mib=32)
    assert (out.state, out.reason, out.exit_code, out.oom_killed) == expected


def test_the_exit_code_is_always_pid_1s_own() -> None:
    for status in (exited(0), exited(3), exited(255), KILL, signalled(signal.SIGTERM)):
        code, _ = st.exit_code_of(status)
        for killed in (False, True):
            for kills in (0, 1, 5):
                assert st.outcome(status, killed=killed, oom_kills=kills).exit_code == code


def test_a_childs_oom_kill_is_said_in_the_message_only() -> None:
    out = st.outcome(exited(3), oom_kills=1, memory_mib=32)
    assert out.message == ("Command exited with status 3; 1 process of the task was killed "
                           "for memory (limit 32 MiB)")
    two = st.outcome(exited(0), oom_kills=2)
    assert two.message == ("Command exited with status 0; 2 processes of the task were killed "
                           "for memory (its memory limit)")
    assert st.outcome(exited(3)).message == "Command exited with status 3"


def test_pid_1_oom_killed_names_the_limit() -> None:
    out = st.outcome(KILL, oom_kills=1, memory_mib=32)
    assert out.message == "Memory limit of 32 MiB exceeded: the task was OOM-killed"
    assert st.outcome(KILL, oom_kills=1).message == (
        "Memory limit exceeded: the task was OOM-killed")


def test_pid1_out_of_memory() -> None:
    assert st.pid1_out_of_memory(KILL, 1)
    assert not st.pid1_out_of_memory(KILL, 0)
    assert not st.pid1_out_of_memory(exited(137), 1)
    assert not st.pid1_out_of_memory(signalled(signal.SIGTERM), 1)
