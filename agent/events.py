"""What happens to an agent, as events for its pure core (agent/state.py).

The shell (agent/server.py) turns every stimulus into one of these — a message
from the master, an executor's hello or update, a process that exited, an
image pulled, the agent's own start — and hands it to `AgentState.handle`.
Keys are (framework_id, task_id).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from juggler.v1 import agent_pb2, common_pb2, executor_pb2

Key = tuple[str, str]


@dataclass(frozen=True)
class Recovered:
    """A task found in the work dir when the agent starts (agent/checkpoint.py):
    its sandbox, the spec it was launched with, its updates and which of them
    were acknowledged, and whether its executor still runs."""

    sandbox: Path
    spec: executor_pb2.ExecutorSpec
    updates: list[common_pb2.TaskStatus] = field(default_factory=list)
    acked: frozenset[bytes] = frozenset()
    executor_alive: bool = False


@dataclass(frozen=True)
class Started:
    """The agent starts: its id from its work dir ("" if it never registered)
    and every task it finds there."""

    agent_id: str
    recovered: tuple[Recovered, ...] = ()


@dataclass(frozen=True)
class FromMaster:
    """One message of the master's stream (never a Batch: the shell unpacks)."""

    message: agent_pb2.MasterMessage


@dataclass(frozen=True)
class MasterLost:
    """The stream to the master ended; updates wait for the next one."""


@dataclass(frozen=True)
class SandboxMade:
    """The task's sandbox exists, its spec written there; its executor is being
    started (updates from it are checkpointed there from now on)."""

    key: Key
    sandbox: Path


@dataclass(frozen=True)
class ExecutorFailedToStart:
    key: Key
    error: str


@dataclass(frozen=True)
class ExecutorHello:
    """An executor connected to the agent's socket; `container_pid` is its
    task's pid 1 (0 before the launch)."""

    key: Key
    container_pid: int


@dataclass(frozen=True)
class ExecutorUpdate:
    """A status update from an executor (it carries a uuid)."""

    key: Key
    status: common_pb2.TaskStatus


@dataclass(frozen=True)
class ExecutorDisconnected:
    key: Key


@dataclass(frozen=True)
class ExecutorExited:
    """The executor's process is gone; `code` when known, `log_tail` the last
    line it logged."""

    key: Key
    code: int | None = None
    log_tail: str = ""


@dataclass(frozen=True)
class ImagePulling:
    """The task's image is not in the store: a pull started."""

    key: Key


@dataclass(frozen=True)
class ImageReady:
    """The task's image is pinned for it: `task` with the image's config
    resolved into its command, the layers (top first) and the image id."""

    key: Key
    task: common_pb2.TaskInfo
    layers: tuple[str, ...]
    image_id: str


@dataclass(frozen=True)
class ImageFailed:
    key: Key
    error: str


@dataclass(frozen=True)
class SignalTask:
    """Agent.Signal: send `signal` (a number) to the task's PID 1."""

    key: Key
    signal: int


@dataclass(frozen=True)
class LimitTask:
    """The agent found the task over a limit it enforces (agent/port_watch.py:
    a port it listens on but was not given): kill it at once; its terminal update
    is TASK_FAILED with `reason` and `message`."""

    key: Key
    reason: int
    message: str


@dataclass(frozen=True)
class Tick:
    """Time passed: updates whose (re)send time has come go to the master."""


Event = (Started | FromMaster | MasterLost | SandboxMade | ExecutorFailedToStart
         | ExecutorHello | ExecutorUpdate | ExecutorDisconnected | ExecutorExited
         | ImagePulling | ImageReady | ImageFailed | SignalTask | LimitTask | Tick)
