"""Length-prefixed protobuf frames on a stream socket (the executor protocol).

A frame is a 4-byte big-endian length followed by that many bytes of one
serialized message. Used between the agent and its executors over a Unix
socket; see proto/juggler/v1/executor.proto.
"""

from __future__ import annotations

import asyncio
import struct
from typing import TypeVar

from google.protobuf.message import Message

M = TypeVar("M", bound=Message)

MAX_FRAME = 16 * 1024 * 1024
_HEADER = struct.Struct(">I")


class FrameError(Exception):
    """The peer sent something that is not a frame."""


def encode(message: Message) -> bytes:
    body = message.SerializeToString()
    return _HEADER.pack(len(body)) + body


async def read(reader: asyncio.StreamReader, kind: type[M]) -> M | None:
    """The next message, or None at a clean end of stream."""
    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError as e:
        if e.partial:
            raise FrameError("stream ended inside a frame header") from e
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME:
        raise FrameError(f"frame of {size} bytes exceeds the {MAX_FRAME}-byte limit")
    try:
        body = await reader.readexactly(size)
    except asyncio.IncompleteReadError as e:
        raise FrameError("stream ended inside a frame") from e
    message = kind()
    message.ParseFromString(body)
    return message


async def write(writer: asyncio.StreamWriter, message: Message) -> None:
    writer.write(encode(message))
    await writer.drain()
