"""The master's lifecycles: agents (connectivity and maintenance, two separate
fields) and frameworks. Tasks have theirs in common/task_states.py.

Agent connectivity (AgentEntry.state, operator.proto AgentState):

    ACTIVE       → ACTIVE, DISCONNECTED, UNREACHABLE
    DISCONNECTED → ACTIVE, UNREACHABLE
    UNREACHABLE  → ACTIVE, GONE
    terminal: GONE

    (register) ─▶ ACTIVE ◀─▶ DISCONNECTED          stream lost / re-registered
                    │              │
                    └──────┬───────┘ silent for ping timeout × max ping timeouts
                           ▼         (or not back within the re-register
                      UNREACHABLE    timeout after a failover)
                           │ agent_gone_timeout          (re-registers ─▶ ACTIVE)
                           ▼
                          GONE  (a returning agent is told to kill its tasks)

Agent maintenance (AgentEntry.maintenance, MaintenanceState), an operator's
decision, kept whatever the connectivity:

    NONE     → DRAINING
    DRAINING → NONE, DOWN
    DOWN     → NONE, DRAINING

Framework (FrameworkEntry.state, FrameworkState):

    SUBSCRIBED   → SUBSCRIBED, DISCONNECTED, TORN_DOWN
    DISCONNECTED → SUBSCRIBED, TORN_DOWN
    terminal: TORN_DOWN

A new scheduler instance taking over a framework's subscription is SUBSCRIBED
→ SUBSCRIBED ("failed over"); the failover timeout passing or a Teardown is
→ TORN_DOWN. The proto enums carry the same lines (checked by
tests/unit/test_lifecycles.py, as these are).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from juggler.common.lifecycle import Lifecycle
from juggler.v1 import operator_pb2

A = operator_pb2.AgentState
M = operator_pb2.MaintenanceState
F = operator_pb2.FrameworkState


def _short(enum: Any, prefix: str) -> Callable[[int], str]:
    return lambda state: enum.Name(state).removeprefix(prefix)


AGENT = Lifecycle("agent", "state", {
    A.AGENT_ACTIVE: {A.AGENT_ACTIVE, A.AGENT_DISCONNECTED, A.AGENT_UNREACHABLE},
    A.AGENT_DISCONNECTED: {A.AGENT_ACTIVE, A.AGENT_UNREACHABLE},
    A.AGENT_UNREACHABLE: {A.AGENT_ACTIVE, A.AGENT_GONE},
    A.AGENT_GONE: set(),
}, _short(A, "AGENT_"))

MAINTENANCE = Lifecycle("maintenance", "maintenance", {
    M.MAINTENANCE_NONE: {M.MAINTENANCE_DRAINING},
    M.MAINTENANCE_DRAINING: {M.MAINTENANCE_NONE, M.MAINTENANCE_DOWN},
    M.MAINTENANCE_DOWN: {M.MAINTENANCE_NONE, M.MAINTENANCE_DRAINING},
}, _short(M, "MAINTENANCE_"))

FRAMEWORK = Lifecycle("framework", "state", {
    F.FRAMEWORK_SUBSCRIBED: {F.FRAMEWORK_SUBSCRIBED, F.FRAMEWORK_DISCONNECTED,
                             F.FRAMEWORK_TORN_DOWN},
    F.FRAMEWORK_DISCONNECTED: {F.FRAMEWORK_SUBSCRIBED, F.FRAMEWORK_TORN_DOWN},
    F.FRAMEWORK_TORN_DOWN: set(),
}, _short(F, "FRAMEWORK_"))
