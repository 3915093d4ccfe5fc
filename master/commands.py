"""What the master's pure core asks its shell to do, and how a call fails.

The core (master/state.py) never does I/O: it returns these commands and the
shell (master/server.py) carries them out in order.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

from juggler.v1 import agent_pb2, common_pb2, scheduler_pb2

if TYPE_CHECKING:
    from juggler.master.entries import TaskEntry


class Code(enum.Enum):
    """gRPC status codes the core uses (names match grpc.StatusCode)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAVAILABLE = "UNAVAILABLE"


class CallError(Exception):
    """A call is refused; nothing it asked for was applied."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ToAgent:
    agent_id: str
    message: agent_pb2.MasterMessage


@dataclass(frozen=True)
class ToFramework:
    framework_id: str
    event: scheduler_pb2.Event


@dataclass(frozen=True)
class CloseStream:
    """End a framework's subscription stream (after sending `message` as ERROR)."""

    framework_id: str
    stream_id: str
    message: str


@dataclass(frozen=True)
class CloseAgentStream:
    """Hang up on an agent; it must reconnect and re-register."""

    agent_id: str


@dataclass(frozen=True)
class Persist:
    """Write (value) or delete (None) a registry key."""

    key: str
    value: bytes | None


@dataclass(frozen=True)
class Allocate:
    """Run an allocation cycle soon: resources came back or a framework or an
    agent arrived (the shell spaces the cycles out)."""


@dataclass(frozen=True)
class Log:
    """A line for the operator's log; the core does no I/O, so it says it here.
    `level` is "info", "warning" or "error"; `fields` become bound log fields."""

    level: str
    event: str
    fields: tuple[tuple[str, str], ...] = ()


Command = ToAgent | ToFramework | CloseStream | CloseAgentStream | Persist | Allocate | Log


def kill_command(task: TaskEntry, policy: common_pb2.KillPolicy | None = None) -> ToAgent:
    """Kill `task` on its agent, with `policy` or else the task's own kill policy."""
    return ToAgent(task.agent_id, agent_pb2.MasterMessage(
        kill_task=agent_pb2.MasterMessage.KillTask(
            framework_id=task.framework_id, task_id=task.info.task_id,
            kill_policy=policy if policy is not None else task.info.kill_policy)))


def kill_on(agent_id: str, framework_id: str, task_id: str,
            policy: common_pb2.KillPolicy) -> ToAgent:
    """Kill a task by its ids on `agent_id` (a copy the master does not track)."""
    return ToAgent(agent_id, agent_pb2.MasterMessage(kill_task=agent_pb2.MasterMessage.KillTask(
        framework_id=framework_id, task_id=task_id, kill_policy=policy)))


def kill_key(framework_id: str, task_id: str, agent_id: str) -> str:
    """The registry key of a Kill's record: kills/<framework>/<task>/<agent>
    ("-" for a Kill that named no agent): a task id reused on another agent
    has a record of its own."""
    return f"kills/{framework_id}/{task_id}/{agent_id or '-'}"


def ack_command(agent_id: str, framework_id: str, task_id: str, uuid: bytes) -> ToAgent:
    """Pass a framework's acknowledgement (of `uuid`) on to the agent."""
    return ToAgent(agent_id, agent_pb2.MasterMessage(
        acknowledgement=agent_pb2.MasterMessage.Acknowledgement(
            framework_id=framework_id, task_id=task_id, uuid=uuid)))
