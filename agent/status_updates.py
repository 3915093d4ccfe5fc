"""The agent's status-update manager: one ordered stream of updates per task.

An update is sent to the master and re-sent (with a growing interval) until the
framework's acknowledgement comes back; only then is the task's next update
sent, so a framework sees each task's updates in order. Pure: the agent's shell
asks `due(now)` what to (re)send.

The streams that have something to send sit in a heap by their next send time,
so `due` and `next_due` cost O(log n) per stream that is due, not a scan of
every task the agent ever ran (a scan per update is quadratic when a thousand
tasks start at once). A stream's heap entry is valid while it carries the
stream's current `token`; rescheduling a stream leaves its old entry behind,
and that entry is dropped when it reaches the top.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from dataclasses import dataclass, field

from juggler.v1 import common_pb2


@dataclass
class _Stream:
    pending: deque[common_pb2.TaskStatus] = field(default_factory=deque)
    seen: set[bytes] = field(default_factory=set)
    interval: float = 0.0
    token: int = -1  # of its heap entry (which holds its next send time); -1: none
    head_sent: bool = False  # the head was sent at least once (a send now is a re-send)


# Mesos's agent waits 10 s before its first retry. The stream to the master is
# reliable (a broken one is re-established and every pending head re-sent at
# once, `resend_all`), so a retry only covers an update the master lost; an
# eager one (it was 2 s) re-sent half of the RUNNING updates while a thousand
# tasks started, because their acknowledgements took longer than that.
FIRST_RETRY = 10.0


class StatusUpdateManager:
    """Per task, its updates in order. For metrics: `pending_total`, the
    updates queued and not yet acknowledged (all tasks), and `resent`, how
    many times a head was sent again (a retry, or after a reconnection)."""

    def __init__(self, first_retry: float = FIRST_RETRY, max_retry: float = 60.0) -> None:
        self.first_retry = first_retry
        self.max_retry = max_retry
        self.pending_total = 0
        self.resent = 0
        self._streams: dict[tuple[str, str], _Stream] = {}
        self._heap: list[tuple[float, int, tuple[str, str]]] = []
        self._tokens = itertools.count()

    def _schedule(self, key: tuple[str, str], stream: _Stream, when: float) -> None:
        stream.token = next(self._tokens)
        heapq.heappush(self._heap, (when, stream.token, key))

    def _top(self) -> tuple[float, int, tuple[str, str]] | None:
        """The heap's first valid entry (stale ones above it are dropped)."""
        while self._heap:
            entry = self._heap[0]
            stream = self._streams.get(entry[2])
            if stream is not None and stream.token == entry[1] and stream.pending:
                return entry
            heapq.heappop(self._heap)
        return None

    def add(self, status: common_pb2.TaskStatus, now: float) -> bool:
        """Queue an update; False when its uuid was already queued (a duplicate)."""
        key = (status.framework_id, status.task_id)
        stream = self._streams.setdefault(key, _Stream())
        if status.uuid in stream.seen:
            return False
        stream.seen.add(status.uuid)
        stream.pending.append(status)
        self.pending_total += 1
        if len(stream.pending) == 1:
            stream.interval = self.first_retry
            self._schedule(key, stream, now)
        return True

    def acknowledge(self, framework_id: str, task_id: str, uuid: bytes, now: float) -> bool:
        """The framework acknowledged `uuid`; True when it was the head of its stream."""
        stream = self._streams.get((framework_id, task_id))
        if stream is None or not stream.pending or stream.pending[0].uuid != uuid:
            return False
        stream.pending.popleft()
        self.pending_total -= 1
        stream.head_sent = False
        stream.interval = self.first_retry
        if stream.pending:
            self._schedule((framework_id, task_id), stream, now)
        else:
            stream.token = -1
        return True

    def due(self, now: float) -> list[common_pb2.TaskStatus]:
        """Heads of streams whose (re)send time has come; schedules the next retry."""
        out = []
        while (entry := self._top()) is not None and entry[0] <= now:
            heapq.heappop(self._heap)
            stream = self._streams[entry[2]]
            out.append(stream.pending[0])
            if stream.head_sent:
                self.resent += 1
            stream.head_sent = True
            self._schedule(entry[2], stream, now + stream.interval)
            stream.interval = min(stream.interval * 2, self.max_retry)
        return out

    def resend_all(self, now: float) -> None:
        """After (re)connecting to a master: every head is due at once."""
        for key, stream in self._streams.items():
            stream.interval = self.first_retry
            if stream.pending:
                self._schedule(key, stream, now)

    def head(self, framework_id: str, task_id: str) -> common_pb2.TaskStatus | None:
        """The task's oldest unacknowledged update (the one the master has)."""
        stream = self._streams.get((framework_id, task_id))
        return stream.pending[0] if stream and stream.pending else None

    def pending(self, framework_id: str, task_id: str) -> int:
        stream = self._streams.get((framework_id, task_id))
        return len(stream.pending) if stream else 0

    def forget(self, framework_id: str, task_id: str) -> None:
        stream = self._streams.pop((framework_id, task_id), None)
        if stream is not None:
            self.pending_total -= len(stream.pending)

    def next_due(self) -> float | None:
        entry = self._top()
        return entry[0] if entry is not None else None
