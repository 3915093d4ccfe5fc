"""A task's executor as its agent sees it: the executor lifecycle.

    PULLING      → LAUNCHING, EXITED
    LAUNCHING    → CONNECTED, EXITED
    CONNECTED    → DISCONNECTED, EXITED
    DISCONNECTED → CONNECTED, EXITED
    terminal: EXITED

    RunTask ─┬─(image)─▶ PULLING ──pulled──▶ LAUNCHING ──hello──▶ CONNECTED
             └─────────────────────────────▶ LAUNCHING              │   ▲
                 (pull failed, killed first)     │      socket lost │   │ hello
                          │                      │                  ▼   │
                          ▼                      │               DISCONNECTED
                        EXITED ◀─────────────────┴── process gone ──────┘

An executor found alive when the agent starts (its agent restarted) begins
DISCONNECTED, one found dead begins EXITED. What the agent holds for an
executor that is not CONNECTED (a kill, a shutdown once its updates are
acknowledged) is sent when it says hello. The table is the agent.proto
ExecutorState's comment too (tests/unit/test_lifecycles.py checks both).
"""

from __future__ import annotations

from juggler.common.lifecycle import Lifecycle
from juggler.v1 import agent_pb2

E = agent_pb2.ExecutorState

EXECUTOR = Lifecycle("executor", "executor", {
    E.EXECUTOR_PULLING: {E.EXECUTOR_LAUNCHING, E.EXECUTOR_EXITED},
    E.EXECUTOR_LAUNCHING: {E.EXECUTOR_CONNECTED, E.EXECUTOR_EXITED},
    E.EXECUTOR_CONNECTED: {E.EXECUTOR_DISCONNECTED, E.EXECUTOR_EXITED},
    E.EXECUTOR_DISCONNECTED: {E.EXECUTOR_CONNECTED, E.EXECUTOR_EXITED},
    E.EXECUTOR_EXITED: set(),
}, lambda state: E.Name(state).removeprefix("EXECUTOR_"))
