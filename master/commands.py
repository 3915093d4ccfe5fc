"""What the master's pure core asks its shell to do, and how a call fails.

The core (master/state.py) never does I/O: it returns these commands and the
shell (master/server.py) carries them out in order.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from juggler.v1 import agent_pb2, scheduler_pb2


class Code(enum.Enum):
    """gRPC status codes the core uses (names match grpc.StatusCode)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAVAILABLE = "UNAVAILABLE"


class CallError(Exception):
    """A call is refused; nothing it asked for was applied."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ToAgent:
    agent_id: str
    message: agent_pb2.MasterMessage


@dataclass(frozen=True)
class ToFramework:
    framework_id: str
    event: scheduler_pb2.Event


@dataclass(frozen=True)
class CloseStream:
    """End a framework's subscription stream (after sending `message` as ERROR)."""

    framework_id: str
    stream_id: str
    message: str


@dataclass(frozen=True)
class CloseAgentStream:
    """Hang up on an agent; it must reconnect and re-register."""

    agent_id: str


@dataclass(frozen=True)
class Persist:
    """Write (value) or delete (None) a registry key."""

    key: str
    value: bytes | None


Command = ToAgent | ToFramework | CloseStream | CloseAgentStream | Persist
