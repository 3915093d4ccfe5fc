"""What explicit reconciliation answers for a task the master does not hold.

Pure. The rule is Mesos's (`Master::_reconcileTasks`, master.cpp, and the
"Reconciliation" page of the Mesos docs): a task the master does not know is
judged by what the master knows of the agent the framework names for it,

    the named agent                       the answer (partition-aware | not)
    registered (active or disconnected,   TASK_GONE       | TASK_LOST
      and not awaited after a failover)     it reported its tasks, and not this one
    unreachable                           TASK_UNREACHABLE | TASK_LOST
    gone (unreachable past the            TASK_GONE_BY_OPERATOR | TASK_LOST
      gone timeout)                         gone for good, with its writable layers
    awaited after a failover              nothing yet: it may bring the task back
    none named, or unknown                TASK_UNKNOWN

so a framework whose launch was lost with its agent's partition and a master
failover hears a terminal state once that agent is back without the task,
instead of TASK_UNKNOWN for ever.

TASK_GONE says what Mesos's docs give it: the agent came back, and the task is
not running (its writable layer, if any, is still there: the apps service may
start a container there again). A gone agent's tasks get TASK_GONE_BY_OPERATOR,
Mesos's answer for an agent marked gone for good; juggler's agents go GONE by
the gone timeout (agent_book.py), not by an operator's word, but the meaning
for the framework is the same: that agent and all it held will not return.

A task the master completed is answered from its completed record before this
rule is asked (master/state.py).
"""

from __future__ import annotations

from enum import Enum

from juggler.v1 import common_pb2

S = common_pb2.TaskState

# What a framework that is not partition-aware hears as TASK_LOST, in updates
# and in reconciliation's answers alike (Mesos: PARTITION_AWARE capability).
PARTITION_STATES = frozenset({S.TASK_UNREACHABLE, S.TASK_GONE, S.TASK_GONE_BY_OPERATOR})


class AgentKnown(Enum):
    """What the master knows of the agent a reconciled task names."""

    REGISTERED = "registered"
    UNREACHABLE = "unreachable"
    GONE = "gone"
    AWAITED = "awaited"
    UNKNOWN = "unknown"


_ANSWER: dict[AgentKnown, tuple[int, str]] = {
    AgentKnown.REGISTERED: (S.TASK_GONE, "its agent is registered and does not run it"),
    AgentKnown.UNREACHABLE: (S.TASK_UNREACHABLE, "its agent is unreachable"),
    AgentKnown.GONE: (S.TASK_GONE_BY_OPERATOR, "its agent is gone for good"),
    AgentKnown.UNKNOWN: (S.TASK_UNKNOWN, "the master knows of no such task"),
}


def unknown_task_answer(agent: AgentKnown, partition_aware: bool) -> tuple[int, str] | None:
    """(task state, message) to answer for a task the master does not hold,
    by what it knows of the task's agent (module docstring); None: answer
    nothing yet (the agent may still re-register with it)."""
    if agent is AgentKnown.AWAITED:
        return None
    state, message = _ANSWER[agent]
    if not partition_aware and state in PARTITION_STATES:
        state = S.TASK_LOST
    return state, message
