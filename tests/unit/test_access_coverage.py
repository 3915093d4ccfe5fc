"""Every RPC of the master's and the agent's services has an access decision.

Walks the service descriptors: a new RPC added to a .proto fails here until
master/access.py DECISIONS or agent/api.py ACCESS says which rule guards it,
and its servicer method checks it.
"""

from __future__ import annotations

import inspect
import re

import pytest

from juggler.agent.api import ACCESS, AgentServicer
from juggler.common.access_rules import ACTIONS
from juggler.master.access import DECISIONS
from juggler.master.server import AgentChannelServicer, OperatorServicer, SchedulerServicer
from juggler.v1 import agent_pb2, operator_pb2, scheduler_pb2

SERVICES = [
    (scheduler_pb2, "Scheduler", DECISIONS, SchedulerServicer),
    (operator_pb2, "Operator", DECISIONS, OperatorServicer),
    (agent_pb2, "AgentChannel", DECISIONS, AgentChannelServicer),
    (agent_pb2, "Agent", ACCESS, AgentServicer),
]
METHODS = [(module, service, table, servicer, m.name)
           for module, service, table, servicer in SERVICES
           for m in module.DESCRIPTOR.services_by_name[service].methods]
# What a servicer method calls to check its rule (master/server.py, agent/api.py).
CHECKS = re.compile(r"_guard\(|guard=|self\._view\(|self\._call\(|self\._allow(_task|_owned)?\("
                    r"|_session_allowed\(")


@pytest.mark.parametrize(("module", "service", "table", "servicer", "method"), METHODS,
                         ids=[f"{s}.{m}" for _, s, _, _, m in METHODS])
def test_every_rpc_has_an_access_decision(module, service, table, servicer,  # type: ignore[no-untyped-def]
                                          method: str) -> None:
    full = f"{module.DESCRIPTOR.services_by_name[service].full_name}/{method}"
    assert full in table, f"{full} has no access decision (master/access.py or agent/api.py)"
    named = set(re.findall(r"[a-z_]+", table[full])) & set(ACTIONS)
    assert named or "framework owner" in table[full], f"{full}: names no rule"
    # The servicer's own method checks it (not an inherited one that does not).
    assert method in vars(servicer), f"{servicer.__name__} does not define {method}"
    source = inspect.getsource(vars(servicer)[method])
    assert CHECKS.search(source), f"{servicer.__name__}.{method} checks no rule"


def test_no_decision_for_an_rpc_that_does_not_exist() -> None:
    served = {f"{module.DESCRIPTOR.services_by_name[s].full_name}/{m}"
              for module, s, _, _, m in METHODS}
    assert set(DECISIONS) | set(ACCESS) <= served
