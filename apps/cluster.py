"""What the apps service asks of the cluster besides the Scheduler API: the
leading master's Operator API (agents, tasks) and an agent's own API (a
container's signals, processes, writable layer, logs, images).

The Operator API is read-only here; the service holds no privilege the
Scheduler API does not give (design.md), beyond what any operator's CLI may
read. Calls follow the leading master as the CLI does: a standby refuses
with UNAVAILABLE naming the leader (common/leader.py).
"""

from __future__ import annotations

from typing import Any

import grpc

from juggler.common import servers
from juggler.common.leader import leader_of, parse_masters
from juggler.v1 import agent_pb2_grpc, operator_pb2, operator_pb2_grpc

CALL_SECONDS = 10.0


class ClusterUnavailable(Exception):
    """No leading master answered (the message says what was tried)."""


async def operator_call(masters: str, method: str, request: Any,
                        timeout: float = CALL_SECONDS) -> Any:
    """Operator.<method>(request) on the leading master of `masters`
    ("host:port[,host:port…]"). Raises ClusterUnavailable when none answers,
    grpc.aio.AioRpcError for the master's other refusals."""
    candidates = parse_masters(masters)
    tried: set[str] = set()
    detail = ""
    i = 0
    while i < len(candidates):
        address = candidates[i]
        i += 1
        if address in tried:
            continue
        tried.add(address)
        try:
            async with servers.channel(address) as channel:
                stub = operator_pb2_grpc.OperatorStub(channel)
                return await getattr(stub, method)(request, timeout=timeout)
        except grpc.aio.AioRpcError as e:
            if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise
            detail = e.details() or e.code().name
            leader = leader_of(e)
            if leader and leader not in tried:
                candidates.insert(i, leader)
    raise ClusterUnavailable(f"no leading master at {masters}: {detail}")


async def agents(masters: str) -> list[operator_pb2.AgentView]:
    """Every agent the leading master knows, whatever its state."""
    return list((await operator_call(masters, "GetAgents",
                                     operator_pb2.GetAgentsRequest())).agents)


async def agent_call(address: str, method: str, request: Any,
                     timeout: float = CALL_SECONDS) -> Any:
    """Agent.<method>(request) (a unary call) on the agent API at `address`.
    Raises grpc.aio.AioRpcError."""
    async with servers.channel(address) as channel:
        return await getattr(agent_pb2_grpc.AgentStub(channel), method)(request, timeout=timeout)
