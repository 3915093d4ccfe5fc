"""What the apps service's pure core (state.py) asks its shell (service.py) to
do, and how a request is refused. The shell carries commands out in order: a
Persist before the Launch that follows it, so that a restarted service knows
of every task it may have launched."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from juggler.v1 import common_pb2


class AppsError(Exception):
    """A request is refused; nothing it asked for was applied. `status` is the
    HTTP status Marathon answers with (404, 409, 422), `body` its JSON."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"message": self.message, **self.extra}


@dataclass(frozen=True)
class Persist:
    """Write these store keys: a JSON-able value, or None to delete the key."""

    writes: dict[str, Any]


@dataclass(frozen=True)
class Launch:
    offer_id: str
    tasks: list[common_pb2.TaskInfo]


@dataclass(frozen=True)
class Decline:
    offer_ids: list[str]
    refuse_seconds: float


@dataclass(frozen=True)
class Kill:
    task_id: str
    agent_id: str
    grace_seconds: float | None = None
    signal: str = ""          # the first signal (empty: the task's own)


@dataclass(frozen=True)
class Signal:
    """Send `signal` to a running task's pid 1 through its agent's API
    (`docker kill -s`); nothing else changes."""

    agent_address: str
    task_id: str
    signal: str


@dataclass(frozen=True)
class RemoveLayer:
    """Delete a container's writable layer on its agent (`docker rm`); retried
    by the core until it is gone (`ContainersState.layer_removed`)."""

    agent_id: str
    agent_address: str
    name: str


@dataclass(frozen=True)
class Revive:
    pass


@dataclass(frozen=True)
class Suppress:
    pass


@dataclass(frozen=True)
class Emit:
    """An event for /v2/events subscribers and the log: Marathon's
    `eventType` and its fields (the shell adds `timestamp`)."""

    event_type: str
    body: dict[str, Any] = field(default_factory=dict)


Command = Persist | Launch | Decline | Kill | Revive | Suppress | Emit | Signal | RemoveLayer
