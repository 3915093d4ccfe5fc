"""The agent's status-update manager: one ordered stream of updates per task.

An update is sent to the master and re-sent (with a growing interval) until the
framework's acknowledgement comes back; only then is the task's next update
sent, so a framework sees each task's updates in order. Pure: the agent's shell
asks `due(now)` what to (re)send.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from juggler.v1 import common_pb2


@dataclass
class _Stream:
    pending: deque[common_pb2.TaskStatus] = field(default_factory=deque)
    seen: set[bytes] = field(default_factory=set)
    next_send: float = 0.0
    interval: float = 0.0


class StatusUpdateManager:
    def __init__(self, first_retry: float = 2.0, max_retry: float = 60.0) -> None:
        self.first_retry = first_retry
        self.max_retry = max_retry
        self._streams: dict[tuple[str, str], _Stream] = {}

    def add(self, status: common_pb2.TaskStatus, now: float) -> bool:
        """Queue an update; False when its uuid was already queued (a duplicate)."""
        key = (status.framework_id, status.task_id)
        stream = self._streams.setdefault(key, _Stream())
        if status.uuid in stream.seen:
            return False
        stream.seen.add(status.uuid)
        stream.pending.append(status)
        if len(stream.pending) == 1:
            stream.next_send = now
            stream.interval = self.first_retry
        return True

    def acknowledge(self, framework_id: str, task_id: str, uuid: bytes, now: float) -> bool:
        """The framework acknowledged `uuid`; True when it was the head of its stream."""
        stream = self._streams.get((framework_id, task_id))
        if stream is None or not stream.pending or stream.pending[0].uuid != uuid:
            return False
        stream.pending.popleft()
        stream.next_send = now
        stream.interval = self.first_retry
        return True

    def due(self, now: float) -> list[common_pb2.TaskStatus]:
        """Heads of streams whose (re)send time has come; schedules the next retry."""
        out = []
        for stream in self._streams.values():
            if stream.pending and stream.next_send <= now:
                out.append(stream.pending[0])
                stream.next_send = now + stream.interval
                stream.interval = min(stream.interval * 2, self.max_retry)
        return out

    def resend_all(self, now: float) -> None:
        """After (re)connecting to a master: every head is due at once."""
        for stream in self._streams.values():
            stream.next_send = now
            stream.interval = self.first_retry

    def pending(self, framework_id: str, task_id: str) -> int:
        stream = self._streams.get((framework_id, task_id))
        return len(stream.pending) if stream else 0

    def forget(self, framework_id: str, task_id: str) -> None:
        self._streams.pop((framework_id, task_id), None)

    def next_due(self) -> float | None:
        times = [s.next_send for s in self._streams.values() if s.pending]
        return min(times) if times else None
