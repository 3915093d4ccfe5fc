"""Standby masters answer every call with UNAVAILABLE naming the leader.

A gRPC server interceptor: while this master does not lead, every method but
the ones in ALWAYS (health, reflection, Operator.GetLeader) is refused with
status UNAVAILABLE, the leader's address in the trailing metadata key
`juggler-leader` and in the message, so any client can follow it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from juggler.common.leader import LEADER_KEY

ALWAYS = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.",
    "/juggler.v1.Operator/GetLeader",
)


class LeaderGate(grpc.aio.ServerInterceptor):
    def __init__(self, is_leader: Callable[[], bool], leader: Callable[[], str | None]) -> None:
        self._is_leader = is_leader
        self._leader = leader

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or self._is_leader() or details.method.startswith(ALWAYS):
            return handler
        leader = self._leader() or ""

        async def refuse(_request: Any, context: grpc.aio.ServicerContext) -> None:
            context.set_trailing_metadata(((LEADER_KEY, leader),))
            where = f"the leader is {leader}" if leader else "no leader is elected yet"
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"not the leading master; {where}")

        kinds = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }
        make = kinds[(handler.request_streaming, handler.response_streaming)]
        return make(refuse, request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer)
