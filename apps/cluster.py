"""What the apps service asks of the cluster besides the Scheduler API: the
leading master's Operator API (agents, tasks) and an agent's own API (a
container's signals, processes, writable layer, logs, images).

The Operator API is read-only here; the service holds no privilege the
Scheduler API does not give (design.md), beyond what any operator's CLI may
read. Calls follow the leading master as the CLI does (cli/operator.py): the
masters are asked who leads (common/leader.py find_leader), and a standby
refuses with UNAVAILABLE naming the leader.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from juggler.common import servers
from juggler.common.leader import Dialling, find_leader, leader_of, parse_masters
from juggler.v1 import agent_pb2_grpc, operator_pb2, operator_pb2_grpc

CALL_SECONDS = 10.0
# Seconds a call waits for the masters to say who leads (an election takes
# about a lease TTL, 5 s by default).
FIND_SECONDS = 8.0


class ClusterUnavailable(Exception):
    """No leading master answered (the message says what was tried)."""


async def operator_call(masters: str, method: str, request: Any,
                        timeout: float = CALL_SECONDS) -> Any:
    """Operator.<method>(request) on the leading master of `masters`
    ("host:port[,host:port…]"). Raises ClusterUnavailable when none answers,
    grpc.aio.AioRpcError for the master's other refusals. The masters are
    asked who leads for up to min(FIND_SECONDS, `timeout`); a master (other
    than the one found) whose connection is not set up within a second
    (frozen, or slow) is passed over when there are others, and called once
    more at the end with what is left of `timeout` (common/leader.py
    Dialling)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    candidates = parse_masters(masters)
    found = None
    if len(candidates) > 1:
        found = await find_leader(candidates, min(FIND_SECONDS, timeout))
    dialling = Dialling(candidates, found)
    detail = ""
    while (step := dialling.next()) is not None:
        address, check, again = step
        try:
            async with servers.channel(address) as channel:
                if check and not await servers.connects(channel):
                    detail = (f"no answer from {address} within {servers.CONNECT_SECONDS:g} s "
                              "(stopped or overloaded?)")
                    dialling.slow(address)
                    continue
                stub = operator_pb2_grpc.OperatorStub(channel)
                left = max(servers.CONNECT_SECONDS, deadline - loop.time())
                return await getattr(stub, method)(request, timeout=left if again else timeout)
        except grpc.aio.AioRpcError as e:
            if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise
            detail = e.details() or e.code().name
            leader = leader_of(e)
            if leader:
                dialling.named(leader)
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
