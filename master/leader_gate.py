"""Standby masters answer every call with UNAVAILABLE naming the leader.

A gRPC server interceptor: while this master does not lead, every method but
the ones in ALWAYS (health, reflection, Operator.GetLeader) is refused with
status UNAVAILABLE, the leader's address in the trailing metadata key
`juggler-leader` and in the message, so any client can follow it.

A client that has just lost its leader says which one in the metadata key
`juggler-lost-leader` (common/leader.py LeaderFollower.metadata). While that
is still the leader this standby knows of (its lease has not run out), or it
knows of none, a refusal would only send the client round the masters again:
so, if this standby cannot reach that leader either (`reachable`, a health
check shared by every call that names it), the call is held until the leader
changes (at most `hold` seconds, about two lease TTLs), then refused naming
the new leader, or, when this very master is the one elected, served. After
a failover ten thousand agents wait in their calls instead of polling the
standbys, and reach the new leader the moment it is there; a client that only
lost its own connection to a live leader is sent back to it at once.

A stream opened ahead of time names, in `juggler-standby-for`, the leader
it stands by for (an agent opens one to the master that would lead next,
agent/server.py). A standby master takes it in without refusing and waits
for its first message, which the client sends only when it has lost that
leader; from then on the call is treated as one that names it lost. So
after a failover the call is already set up on both sides and the agent's
re-registration is one message: no connection, no new call, while ten
thousand agents reconnect at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from juggler.common.leader import LEADER_KEY, LOST_LEADER_KEY, STANDBY_FOR_KEY

ALWAYS = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.",
    "/juggler.v1.Operator/GetLeader",
)
WATCH_INTERVAL = 0.05  # how often held calls' leader is looked at (one watcher for all)
PROBE_TTL = 0.5  # seconds a check of a lost leader's reachability is reused


class LeaderGate(grpc.aio.ServerInterceptor):
    def __init__(self, is_leader: Callable[[], bool], leader: Callable[[], str | None],
                 hold: float = 0.0, address: Callable[[], str] = lambda: "",
                 reachable: Callable[[str], Awaitable[bool]] | None = None) -> None:
        self._is_leader = is_leader
        self._leader = leader
        self._address = address
        self._reachable = reachable
        # address -> (when asked, the answer) of the last reachability check,
        # shared by every call that names that leader for PROBE_TTL.
        self._probes: dict[str, tuple[float, asyncio.Future[bool]]] = {}
        self.hold = hold
        self.held = 0  # calls waiting for a new leader now
        self.standing_by = 0  # streams opened ahead of a failover, waiting for their first message
        self._changed: asyncio.Event | None = None
        self._watcher: asyncio.Task[None] | None = None

    def _state(self) -> tuple[bool, str | None]:
        return self._is_leader(), self._leader() or None

    async def _watch(self) -> None:
        """While calls are held: wake them whenever leadership changes."""
        seen = self._state()
        try:
            while self.held:
                await asyncio.sleep(WATCH_INTERVAL)
                now = self._state()
                if now != seen and self._changed is not None:
                    seen = now
                    self._changed.set()
                    self._changed = asyncio.Event()
        finally:
            self._watcher = None

    async def _wait_for_a_new_leader(self, lost: str) -> None:
        """Hold a call from a client that lost `lost` until another leader is
        known (or this master leads), or until `hold` seconds have passed. An
        election this master won is not over until it acts as the leader (it
        first reads the registry): the call is held until then too."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.hold
        self.held += 1
        try:
            while not self._is_leader() and (self._leader() or None) in (
                    lost, None, self._address() or None):
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                if self._changed is None:
                    self._changed = asyncio.Event()
                if self._watcher is None:
                    self._watcher = asyncio.create_task(self._watch())
                try:
                    async with asyncio.timeout(remaining):
                        await self._changed.wait()
                except TimeoutError:
                    return
        finally:
            self.held -= 1

    async def _lost_here_too(self, lost: str) -> bool:
        """Whether `lost` is unreachable from here as well (so probably down)."""
        if self._reachable is None or lost != (self._leader() or None):
            return True  # a leader this standby no longer names, or none: hold
        loop = asyncio.get_running_loop()
        asked = self._probes.get(lost)
        if asked is None or loop.time() - asked[0] > PROBE_TTL:
            asked = (loop.time(), asyncio.ensure_future(self._reachable(lost)))
            self._probes[lost] = asked
        try:
            return not await asyncio.shield(asked[1])
        except Exception:
            return True

    async def _admit(self, context: grpc.aio.ServicerContext, lost: str | None = None) -> None:
        """Return when the call may be served here; otherwise refuse it."""
        lost = lost or dict(context.invocation_metadata() or ()).get(LOST_LEADER_KEY)
        if lost and self.hold > 0 and await self._lost_here_too(str(lost)):
            await self._wait_for_a_new_leader(str(lost))
            if self._is_leader():
                return
        leader = self._leader() or ""
        context.set_trailing_metadata(((LEADER_KEY, leader),))
        where = f"the leader is {leader}" if leader else "no leader is elected yet"
        await context.abort(grpc.StatusCode.UNAVAILABLE, f"not the leading master; {where}")

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or self._is_leader() or details.method.startswith(ALWAYS):
            return handler
        admit = self._admit
        options = {"request_deserializer": handler.request_deserializer,
                   "response_serializer": handler.response_serializer}
        standby_for = dict(details.invocation_metadata or ()).get(STANDBY_FOR_KEY)
        if standby_for and handler.request_streaming and handler.response_streaming:
            behaviour = handler.stream_stream

            async def standby(requests: Any,
                              context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                requests = aiter(requests)
                self.standing_by += 1
                try:
                    first = await anext(requests, None)  # sent once the client lost its leader
                finally:
                    self.standing_by -= 1
                if first is None:
                    return
                if not self._is_leader():
                    await admit(context, str(standby_for))
                async for item in behaviour(_Chain(first, requests), context):
                    yield item

            return grpc.stream_stream_rpc_method_handler(standby, **options)
        if handler.response_streaming:
            behaviour: Any = (handler.stream_stream if handler.request_streaming
                              else handler.unary_stream)

            async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                await admit(context)
                async for item in behaviour(request, context):
                    yield item

            make = (grpc.stream_stream_rpc_method_handler if handler.request_streaming
                    else grpc.unary_stream_rpc_method_handler)
            return make(stream, **options)
        behaviour = handler.stream_unary if handler.request_streaming else handler.unary_unary

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await admit(context)
            return await behaviour(request, context)

        make = (grpc.stream_unary_rpc_method_handler if handler.request_streaming
                else grpc.unary_unary_rpc_method_handler)
        return make(unary, **options)


class _Chain:
    """`first`, then what `rest` yields: an async iterator that hands each of
    rest's awaitables straight on (no coroutine of its own per message)."""

    def __init__(self, first: Any, rest: AsyncIterator[Any]) -> None:
        self._first: list[Any] = [first]
        self._rest = rest

    def __aiter__(self) -> _Chain:
        return self

    def __anext__(self) -> Awaitable[Any]:
        if self._first:
            done = asyncio.get_running_loop().create_future()
            done.set_result(self._first.pop())
            return done
        return self._rest.__anext__()
