"""A stream's writer sends what is queued together as one batch (common/batching.py)."""

from __future__ import annotations

import asyncio

from juggler.common import batching


def test_drain_takes_what_is_queued_in_order_up_to_the_limit() -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(1, 6):
        queue.put_nowait(i)
    assert batching.drain(queue, 0, limit=4) == [0, 1, 2, 3]
    assert batching.drain(queue, 9) == [9, 4, 5]
    assert batching.drain(queue, 7) == [7]  # nothing else queued: alone
    assert queue.empty()


def test_several_messages_travel_as_one_batch_and_come_out_in_order() -> None:
    from juggler.v1 import agent_pb2

    M = agent_pb2.MasterMessage
    acks = [M(acknowledgement=M.Acknowledgement(task_id=f"t{i}")) for i in range(3)]
    lone = batching.message(acks[:1], M)
    assert lone == acks[0]  # one goes as it is
    assert batching.unpack(lone) == [acks[0]]
    both = batching.message(acks, M)
    assert both.WhichOneof("message") == "batch"
    assert batching.unpack(M.FromString(both.SerializeToString())) == acks
