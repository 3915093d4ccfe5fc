"""What the agent's pure core (agent/state.py) asks its shell to do.

The shell (agent/server.py) carries them out in the order given: a checkpoint
write comes before the acknowledgement that relies on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from juggler.v1 import agent_pb2, common_pb2, executor_pb2

Key = tuple[str, str]


@dataclass(frozen=True)
class ToMaster:
    """Queue a message on the master's stream (dropped if there is none: what
    must arrive is re-sent by the core)."""

    message: agent_pb2.AgentMessage


@dataclass(frozen=True)
class PullImage:
    """Pull (if needed) and pin the task's image, then report ImageReady,
    ImageFailed (and ImagePulling when a pull starts)."""

    key: Key
    framework: common_pb2.FrameworkInfo
    task: common_pb2.TaskInfo


@dataclass(frozen=True)
class CancelPull:
    key: Key


@dataclass(frozen=True)
class StartExecutor:
    """Make the task's sandbox (a reused task id's old one kept aside), write
    `spec` there and report SandboxMade; then start the executor, reporting
    ExecutorFailedToStart if it cannot be, and ExecutorExited when it ends."""

    key: Key
    spec: executor_pb2.ExecutorSpec


@dataclass(frozen=True)
class ToExecutor:
    """Send on the executor's connection (nothing if it has none)."""

    key: Key
    message: executor_pb2.AgentToExecutor


@dataclass(frozen=True)
class CloseExecutor:
    """Hang up on the executor's connection (after what was sent to it)."""

    key: Key


@dataclass(frozen=True)
class CheckpointUpdate:
    """Append the update to the task's sandbox (before anything relies on it)."""

    sandbox: Path
    status: common_pb2.TaskStatus


@dataclass(frozen=True)
class CheckpointAck:
    sandbox: Path
    uuid: bytes


@dataclass(frozen=True)
class MarkDone:
    """The task is terminal and every update acknowledged (or reported gone by
    the master): never recover it."""

    sandbox: Path


@dataclass(frozen=True)
class DestroyCgroup:
    """Remove a dead executor's cgroup (its name under every controller)."""

    name: str


@dataclass(frozen=True)
class ReleaseImage:
    """Drop the task's lease on its image's layers."""

    key: Key


@dataclass(frozen=True)
class Forget:
    """The core let go of the task: drop what the shell keeps for it."""

    key: Key


@dataclass(frozen=True)
class SaveAgentId:
    """Write the agent id to the work dir ("" removes it)."""

    agent_id: str


@dataclass(frozen=True)
class Log:
    """A line for the agent's log (`level`: "info", "warning" or "error")."""

    level: str
    event: str
    fields: tuple[tuple[str, str], ...] = ()


Command = (ToMaster | PullImage | CancelPull | StartExecutor | ToExecutor | CloseExecutor
           | CheckpointUpdate | CheckpointAck | MarkDone | DestroyCgroup | ReleaseImage
           | Forget | SaveAgentId | Log)
