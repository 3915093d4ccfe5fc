"""The agent's status-update manager: ordered per task, deduplicated, retried with backoff."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from juggler.agent.status_updates import StatusUpdateManager
from juggler.v1 import common_pb2

S = common_pb2.TaskState


def update(task: str, state: int, uuid: bytes, framework: str = "fw") -> common_pb2.TaskStatus:
    return common_pb2.TaskStatus(task_id=task, framework_id=framework, state=state, uuid=uuid)


def uuids(statuses: list[common_pb2.TaskStatus]) -> list[bytes]:
    return [s.uuid for s in statuses]


def test_a_task_s_updates_are_sent_one_at_a_time_in_order():
    m = StatusUpdateManager()
    assert m.add(update("t", S.TASK_STARTING, b"u1"), now=0)
    assert m.add(update("t", S.TASK_RUNNING, b"u2"), now=0)
    assert m.add(update("t", S.TASK_FINISHED, b"u3"), now=0)
    assert m.pending("fw", "t") == 3
    assert uuids(m.due(0)) == [b"u1"]
    assert m.due(0) == []  # not again before the retry interval
    for head, following in ((b"u1", b"u2"), (b"u2", b"u3")):
        assert m.acknowledge("fw", "t", head, now=1)
        assert uuids(m.due(1)) == [following]  # the next one goes out at once
    assert m.acknowledge("fw", "t", b"u3", now=2)
    assert m.pending("fw", "t") == 0
    assert m.due(100) == []
    assert m.next_due() is None


def test_tasks_and_frameworks_are_independent_streams():
    m = StatusUpdateManager()
    m.add(update("a", S.TASK_RUNNING, b"a1"), now=0)
    m.add(update("a", S.TASK_FINISHED, b"a2"), now=0)
    m.add(update("b", S.TASK_RUNNING, b"b1"), now=0)
    m.add(update("a", S.TASK_RUNNING, b"x1", framework="other"), now=0)
    assert sorted(uuids(m.due(0))) == [b"a1", b"b1", b"x1"]
    assert m.acknowledge("fw", "b", b"b1", now=0)
    assert m.due(0) == []  # a still waits for a1's ack
    assert m.pending("fw", "a") == 2 and m.pending("other", "a") == 1


def test_a_duplicate_uuid_is_ignored_even_after_it_was_acknowledged():
    m = StatusUpdateManager()
    assert m.add(update("t", S.TASK_RUNNING, b"u1"), now=0)
    assert not m.add(update("t", S.TASK_RUNNING, b"u1"), now=0)
    assert m.pending("fw", "t") == 1
    m.due(0)
    assert m.acknowledge("fw", "t", b"u1", now=0)
    assert not m.add(update("t", S.TASK_RUNNING, b"u1"), now=1)  # a late executor retry
    assert m.pending("fw", "t") == 0
    assert m.due(10) == []


def test_retries_back_off_doubling_up_to_the_cap():
    m = StatusUpdateManager(first_retry=2, max_retry=10)
    m.add(update("t", S.TASK_RUNNING, b"u1"), now=100)
    sent_at = []
    for now in range(100, 160):
        if m.due(now):
            sent_at.append(now)
    # intervals 2, 4, 8, then capped at 10
    assert sent_at == [100, 102, 106, 114, 124, 134, 144, 154]
    assert m.next_due() == 164


def test_acknowledging_anything_but_the_head_is_ignored():
    m = StatusUpdateManager(first_retry=2)
    m.add(update("t", S.TASK_RUNNING, b"u1"), now=0)
    m.add(update("t", S.TASK_FINISHED, b"u2"), now=0)
    m.due(0)
    assert not m.acknowledge("fw", "t", b"u2", now=1)  # not the head yet
    assert not m.acknowledge("fw", "t", b"nope", now=1)
    assert not m.acknowledge("fw", "unknown", b"u1", now=1)
    assert m.pending("fw", "t") == 2
    assert uuids(m.due(2)) == [b"u1"]  # u1 still retried as scheduled
    assert m.acknowledge("fw", "t", b"u1", now=3)
    assert not m.acknowledge("fw", "t", b"u1", now=3)  # a second ack of it changes nothing
    assert m.pending("fw", "t") == 1


def test_resend_all_makes_every_head_due_now_with_a_fresh_interval():
    m = StatusUpdateManager(first_retry=2, max_retry=60)
    m.add(update("a", S.TASK_RUNNING, b"a1"), now=0)
    m.add(update("a", S.TASK_FINISHED, b"a2"), now=0)
    m.add(update("b", S.TASK_RUNNING, b"b1"), now=0)
    for now in (0, 2, 6, 14):  # back off to an interval of 16
        assert len(m.due(now)) == 2
    assert m.due(20) == []
    m.resend_all(now=20)  # reconnected to a (new) master
    assert sorted(uuids(m.due(20))) == [b"a1", b"b1"]  # heads only, in task order
    assert m.due(21) == []
    assert len(m.due(22)) == 2  # the interval restarted at first_retry


def test_forget_drops_a_task_s_stream():
    m = StatusUpdateManager()
    m.add(update("t", S.TASK_RUNNING, b"u1"), now=0)
    m.forget("fw", "t")
    assert m.pending("fw", "t") == 0
    assert m.due(0) == []
    assert m.add(update("t", S.TASK_RUNNING, b"u1"), now=0)  # a new stream knows nothing


class _Naive:
    """The scan-every-stream model the heap in StatusUpdateManager must match."""

    def __init__(self, first_retry: float, max_retry: float) -> None:
        self.first, self.max = first_retry, max_retry
        self.streams: dict[str, dict] = {}

    def add(self, task: str, uuid: bytes, now: float) -> None:
        s = self.streams.setdefault(task, {"pending": [], "seen": set(), "next": 0.0,
                                           "interval": 0.0})
        if uuid in s["seen"]:
            return
        s["seen"].add(uuid)
        s["pending"].append(uuid)
        if len(s["pending"]) == 1:
            s["next"], s["interval"] = now, self.first

    def ack(self, task: str, uuid: bytes, now: float) -> None:
        s = self.streams.get(task)
        if s and s["pending"] and s["pending"][0] == uuid:
            s["pending"].pop(0)
            s["next"], s["interval"] = now, self.first

    def due(self, now: float) -> set[bytes]:
        out = set()
        for s in self.streams.values():
            if s["pending"] and s["next"] <= now:
                out.add(s["pending"][0])
                s["next"] = now + s["interval"]
                s["interval"] = min(s["interval"] * 2, self.max)
        return out

    def resend_all(self, now: float) -> None:
        for s in self.streams.values():
            s["next"], s["interval"] = now, self.first

    def forget(self, task: str) -> None:
        self.streams.pop(task, None)

    def next_due(self) -> float | None:
        times = [s["next"] for s in self.streams.values() if s["pending"]]
        return min(times) if times else None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "ack", "due", "resend", "forget", "tick"]),
                          st.sampled_from(["a", "b", "c"]), st.integers(0, 5)),
                max_size=60))
def test_the_scheduling_heap_matches_a_scan_of_every_stream(steps):
    m, model = StatusUpdateManager(first_retry=2, max_retry=10), _Naive(2, 10)
    now = 0.0
    for op, t, n in steps:
        uuid = f"{t}{n}".encode()
        if op == "add":
            m.add(update(t, S.TASK_RUNNING, uuid), now)
            model.add(t, uuid, now)
        elif op == "ack":
            m.acknowledge("fw", t, uuid, now)
            model.ack(t, uuid, now)
        elif op == "due":
            assert set(uuids(m.due(now))) == model.due(now)
        elif op == "resend":
            m.resend_all(now)
            model.resend_all(now)
        elif op == "forget":
            m.forget("fw", t)
            model.forget(t)
        else:
            now += n
        assert m.next_due() == model.next_due()
