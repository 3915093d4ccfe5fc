"""A Connect stream opened ahead of a failover to the master that would lead next.

Once registered, the agent opens a second Connect stream to the master its
leader names as next in line (`Registered.masters`), with the metadata
`juggler-standby-for: <leader>` and no message. That standby master takes
the stream in and waits (master/leader_gate.py). When the agent loses its
leader, it sends its re-registration on this stream instead of dialling: the
connection and the call are already set up on both sides, so after a
failover the new leader's work for each agent is one message, which matters
when ten thousand agents come back at once.

If the master it waits on is not the one elected, or the lost leader turns
out to be alive, the first message is refused naming the leader, as any call
to a standby is, and the agent follows that as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator

import grpc

from juggler.common import batching, servers
from juggler.common.leader import STANDBY_FOR_KEY
from juggler.v1 import agent_pb2, agent_pb2_grpc

# At most this many seconds from a registration to opening the stream (a random
# delay, at least a third of it): right after a failover every agent registers at
# once, and the new leader and the next master need those seconds for the
# re-registrations.
STANDBY_DELAY = 15.0


def standby_delay(most: float = STANDBY_DELAY) -> float:
    return random.uniform(most / 3, most)


async def outgoing(outbox: asyncio.Queue[agent_pb2.AgentMessage],
                   ) -> AsyncIterator[agent_pb2.AgentMessage]:
    """What an agent's Connect stream sends: the (re)registration alone, then
    whatever is queued at each send in one message."""
    yield await outbox.get()
    while True:
        yield batching.message(batching.drain(outbox, await outbox.get()),
                               agent_pb2.AgentMessage)


class StandbyStream:
    """The stream to `address`, standing by for the leader `leader`."""

    def __init__(self, address: str, leader: str) -> None:
        self.address = address
        self.leader = leader
        self.outbox: asyncio.Queue[agent_pb2.AgentMessage] = asyncio.Queue()
        self.channel = servers.channel(address)
        self.call = agent_pb2_grpc.AgentChannelStub(self.channel).Connect(
            outgoing(self.outbox), metadata=((STANDBY_FOR_KEY, leader),))

    async def ended(self) -> grpc.StatusCode:
        """Wait until the master ends the stream (it died, or refused it)."""
        return await self.call.code()

    async def close(self) -> None:
        self.call.cancel()
        with contextlib.suppress(Exception):
            await self.channel.close()
