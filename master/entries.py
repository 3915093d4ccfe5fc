"""The master's book: one entry per agent, framework, offer and task.

Plain records; MasterState (state.py) and AgentBook (agent_book.py) keep them
consistent (MasterState.validate_state checks it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from juggler.common.resources import Resources
from juggler.master.commands import CallError, Code
from juggler.v1 import common_pb2, operator_pb2

S = common_pb2.TaskState
DEFAULT_ROLE = "*"
DEFAULT_REFUSE_SECONDS = 5.0  # Mesos's default, and the proto's
COMPLETED_TASKS_KEPT = 1000
COMPLETED_FRAMEWORKS_KEPT = 100


A = operator_pb2.AgentState


@dataclass
class AgentEntry:
    info: common_pb2.AgentInfo
    total: Resources
    state: int = A.AGENT_ACTIVE
    # None, AGENT_DRAINING or AGENT_DOWN (an operator's decision).
    maintenance: int | None = None
    registered_time: float = 0.0
    last_seen: float = 0.0
    last_seen_time: float = 0.0
    unreachable_since: float | None = None
    # Read back from the registry by a new leader; cleared when the agent re-registers.
    reregister_deadline: float | None = None
    tasks: set[tuple[str, str]] = field(default_factory=set)  # (framework_id, task_id)
    offers: set[str] = field(default_factory=set)
    # The record last written to (or read from) the registry for this agent.
    persisted: bytes | None = None


@dataclass
class FrameworkEntry:
    info: common_pb2.FrameworkInfo
    stream_id: str = ""
    connected: bool = False
    registered_time: float = 0.0
    disconnected_at: float | None = None
    offers: set[str] = field(default_factory=set)
    tasks: set[str] = field(default_factory=set)


@dataclass
class OfferEntry:
    offer_id: str
    framework_id: str
    agent_id: str
    role: str
    resources: Resources
    created: float


@dataclass
class TaskEntry:
    info: common_pb2.TaskInfo
    framework_id: str
    agent_id: str
    role: str
    resources: Resources
    launched_time: float
    state: int = S.TASK_STAGING
    status: common_pb2.TaskStatus | None = None
    history: list[common_pb2.TaskStatus] = field(default_factory=list)
    # The uuid of the latest update from the agent (what an ack must name).
    latest_uuid: bytes = b""
    resources_recovered: bool = False


class AgentGone(CallError):
    """A GONE agent tried to come back; it must kill its tasks and start afresh."""

    def __init__(self, agent_id: str) -> None:
        super().__init__(Code.FAILED_PRECONDITION,
                         f"agent {agent_id} is gone: kill its tasks and register as a new agent")
        self.agent_id = agent_id
