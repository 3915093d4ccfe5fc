"""The master's book: one entry per agent, framework, offer and task.

Plain records. Their states change only through the lifecycles of
master/lifecycles.py (agents, frameworks) and common/task_states.py (tasks),
each move recorded in the entry's story. MasterState (state.py) and AgentBook
(agent_book.py) keep them consistent (MasterState.validate_state checks it).

What a framework or an operator *wants* (TaskEntry.kill, a framework torn down,
AgentEntry.maintenance) is kept apart from what an agent *observed*
(TaskEntry.state and .status, the latest status update).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from juggler.common.enums import plain
from juggler.common.lifecycle import Step, new_story
from juggler.common.resources import Resources
from juggler.master.commands import CallError, Code
from juggler.v1 import common_pb2, operator_pb2

S = plain(common_pb2.TaskState)
A = plain(operator_pb2.AgentState)
M = plain(operator_pb2.MaintenanceState)
F = plain(operator_pb2.FrameworkState)
DEFAULT_ROLE = "*"
DEFAULT_REFUSE_SECONDS = 5.0  # Mesos's default, and the proto's
COMPLETED_TASKS_KEPT = 1000
TORN_DOWN_FRAMEWORKS_KEPT = 100


@dataclass
class AgentEntry:
    info: common_pb2.AgentInfo
    total: Resources
    # Connectivity (AGENT lifecycle) and maintenance (MAINTENANCE lifecycle);
    # set by AgentBook.begin/move only.
    state: int = A.AGENT_STATE_UNSPECIFIED
    maintenance: int = M.MAINTENANCE_NONE
    story: deque[Step] = field(default_factory=new_story)
    registered_time: float = 0.0
    last_seen: float = 0.0
    last_seen_time: float = 0.0
    unreachable_since: float | None = None  # clock.now() seconds
    unreachable_time: float = 0.0  # the same moment, seconds since the epoch (0: reachable)
    # Read back from the registry by a new leader; cleared when the agent re-registers.
    reregister_deadline: float | None = None
    tasks: set[tuple[str, str]] = field(default_factory=set)  # (framework_id, task_id)
    offers: set[str] = field(default_factory=set)
    # The record last written to (or read from) the registry for this agent.
    persisted: bytes | None = None

    @property
    def connected(self) -> bool:
        """Whether messages reach it now (its stream is registered)."""
        return self.state == A.AGENT_ACTIVE


@dataclass
class FrameworkEntry:
    info: common_pb2.FrameworkInfo
    # FRAMEWORK lifecycle; set by MasterState's _framework_move only.
    state: int = F.FRAMEWORK_STATE_UNSPECIFIED
    story: deque[Step] = field(default_factory=new_story)
    stream_id: str = ""
    registered_time: float = 0.0
    disconnected_at: float | None = None
    offers: set[str] = field(default_factory=set)
    tasks: set[str] = field(default_factory=set)
    # A torn-down framework read from the registry by a new leader: agents not
    # back yet may hold tasks of it, so its record is kept until they are.
    recovered: bool = False

    @property
    def connected(self) -> bool:
        return self.state == F.FRAMEWORK_SUBSCRIBED


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
    # Observed: the latest state an agent reported (or the master decided,
    # e.g. UNREACHABLE); changed by MasterState._task_move only.
    state: int = S.TASK_STAGING
    status: common_pb2.TaskStatus | None = None
    history: list[common_pb2.TaskStatus] = field(default_factory=list)
    # The uuid of the latest update from the agent (what an ack must name),
    # and the latest uuid acknowledged (by its framework, or by the master in
    # its place): they differ while an update waits for its acknowledgement.
    latest_uuid: bytes = b""
    acked_uuid: bytes = b""
    resources_recovered: bool = False
    # Desired: a framework's Kill (with the policy it asked for), kept until the
    # task is seen terminal and written to the registry (kills/…) so that a new
    # leader re-drives it too. A teardown or a drain asks the same of every
    # task of the framework or the agent without a record of its own
    # (MasterState.kill_wanted).
    kill: common_pb2.KillPolicy | None = None
    # Its framework (not partition-aware) was told it ended (TASK_LOST while its
    # agent was unreachable): it hears nothing more of it; the master
    # acknowledges its updates until it has really ended.
    told_end: bool = False
    # Known to this master only from its agent's re-registration, as ended
    # (its updates on the way), and nothing of it told to its framework yet:
    # a running copy of its id that another agent reports wins over it.
    reported_ended: bool = False


class AgentGone(CallError):
    """A GONE agent tried to come back; it must kill its tasks and start afresh."""

    def __init__(self, agent_id: str) -> None:
        super().__init__(Code.FAILED_PRECONDITION,
                         f"agent {agent_id} is gone: kill its tasks and register as a new agent")
        self.agent_id = agent_id
