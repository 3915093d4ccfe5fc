"""The campaign's history: every operation, status update, fault and
leadership observation, in the order they were recorded.

Times are seconds on the campaign's monotonic clock (0 = start). Records are
plain dicts (JSON-able: the history is also written as JSON lines beside the
lab's logs), each with a "type":

    op        kind, target, t, ok, detail          a request the workload made
    update    task_id, state, agent_id, t, source  a status update the framework got
                                                   (source "event" or "reconcile")
    launch    task_id, agent_id, t                 a task the framework launched
    fault     kind, target, start, heal            heal is None while not healed
    leader    master, t0, t1, is_leader            one GetLeader answer (t0 sent, t1 got)
    etcd_leader  address, revision, t0, t1         etcd's election: lowest create revision
    drained   agent_id, t, left                    a drain's end: tasks the leader still had there
    executors counts, t                            executor processes per task id, when
                                                   some task id had more than one
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Record = dict[str, Any]


class History:
    """Append-only, thread-safe; `clock` gives seconds (monotonic)."""

    def __init__(self, path: Path | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._start = clock()
        self._clock = clock
        self._lock = threading.Lock()
        self.records: list[Record] = []
        self._file = open(path, "a") if path is not None else None  # noqa: SIM115

    def now(self) -> float:
        return round(self._clock() - self._start, 3)

    def add(self, type_: str, **fields: Any) -> Record:
        record: Record = {"type": type_, **fields}
        with self._lock:
            self.records.append(record)
            if self._file is not None:
                self._file.write(json.dumps(record) + "\n")
                self._file.flush()
        return record

    def op(self, kind: str, target: str, ok: bool, detail: str = "") -> Record:
        return self.add("op", kind=kind, target=target, t=self.now(), ok=ok, detail=detail)

    def fault_started(self, kind: str, target: str) -> Record:
        return self.add("fault", kind=kind, target=target, start=self.now(), heal=None)

    def fault_healed(self, record: Record) -> None:
        with self._lock:   # faults heal from several threads (nemesis --overlap)
            record["heal"] = self.now()
            if self._file is not None:
                self._file.write(json.dumps({"type": "heal", "fault": record}) + "\n")
                self._file.flush()

    def of(self, type_: str) -> list[Record]:
        with self._lock:
            return [r for r in self.records if r["type"] == type_]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def load(path: Path) -> list[Record]:
    """The records of a history written by History(path), heals applied to
    their faults (the file has a "heal" line after each healed fault).
    Raises OSError, ValueError (a line that is not JSON)."""
    records: list[Record] = []
    open_faults: dict[tuple[str, str, float], Record] = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if r["type"] == "heal":
            f = r["fault"]
            target = open_faults.get((f["kind"], f["target"], f["start"]))
            if target is not None:
                target["heal"] = f["heal"]
            continue
        if r["type"] == "fault":
            open_faults[(r["kind"], r["target"], r["start"])] = r
        records.append(r)
    return records
