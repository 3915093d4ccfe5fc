"""Sending what a stream has queued as one batch message.

A launch of a hundred tasks queues a hundred RunTask messages for one agent at
once; a framework's batched acknowledgement queues as many acknowledgements;
an agent's due status updates come out of its manager together. Each gRPC
message costs both ends far more CPU than its protobuf, so a stream's writer
takes everything queued at the moment it sends (`drain`) and wraps two or more
in the message type's `Batch` (proto/juggler/v1/agent.proto), which the other
end unpacks and handles in order.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

T = TypeVar("T")

MAX_BATCH = 256  # messages in one batch (a RunTask is a few hundred bytes)


def drain(queue: asyncio.Queue[T], first: T, limit: int = MAX_BATCH) -> list[T]:
    """`first`, then whatever else `queue` holds right now, in order, `limit` in all."""
    items = [first]
    while len(items) < limit:
        try:
            items.append(queue.get_nowait())
        except asyncio.QueueEmpty:
            break
    return items


def message(items: list[Any], kind: Any) -> Any:
    """What to send for `items` (messages of type `kind`, AgentMessage or
    MasterMessage): a lone one as it is, several as one `kind.Batch`."""
    return items[0] if len(items) == 1 else kind(batch=kind.Batch(messages=items))


def unpack(msg: Any) -> list[Any]:
    """The messages a received one stands for, in order: a batch's, or itself.
    (Batches are never nested: one inside a batch is handled as an unknown kind.)"""
    return list(msg.batch.messages) if msg.WhichOneof("message") == "batch" else [msg]
