"""What an agent writes to disk so that a restarted agent finds its tasks.

Per task sandbox (<work dir>/frameworks/<framework>/tasks/<task>/):

    task.pb        the ExecutorSpec (framework, task, cgroup), written at launch
    executor.pid   "<pid> <start time in clock ticks>" of the executor (the start
                   time tells a live executor from a recycled pid)
    updates.log    one JSON line per event: {"update": <TaskStatus, base64>} when the
                   agent takes an update from the executor (before acknowledging it),
                   {"ack": <uuid, base64>} when the framework acknowledged it
    done           the task is terminal and every update acknowledged: nothing to recover

Writes are appended and flushed before the agent acts on them (at-least-once: a
crash between writing and acting replays the action, and updates are
idempotent by uuid).
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from juggler.v1 import common_pb2, executor_pb2

SPEC = "task.pb"
PID = "executor.pid"
UPDATES = "updates.log"
DONE = "done"


@dataclass
class Recovered:
    sandbox: Path
    spec: executor_pb2.ExecutorSpec
    updates: list[common_pb2.TaskStatus] = field(default_factory=list)
    acked: set[bytes] = field(default_factory=set)
    executor_pid: int | None = None

    @property
    def pending(self) -> list[common_pb2.TaskStatus]:
        return [u for u in self.updates if u.uuid not in self.acked]

    @property
    def state(self) -> int:
        return self.updates[-1].state if self.updates else common_pb2.TASK_STAGING


def write_spec(sandbox: Path, spec: executor_pb2.ExecutorSpec) -> None:
    tmp = sandbox / (SPEC + ".tmp")
    tmp.write_bytes(spec.SerializeToString())
    os.replace(tmp, sandbox / SPEC)


def read_spec(sandbox: Path) -> executor_pb2.ExecutorSpec:
    """The ExecutorSpec the task was launched with: for a task from an image, the
    command resolved from the image's config and the layers. Raises OSError when
    it cannot be read, DecodeError when it is not an ExecutorSpec."""
    return executor_pb2.ExecutorSpec.FromString((sandbox / SPEC).read_bytes())


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None  # exited, waiting to be reaped: not alive
    # Field 22 (starttime), counted after the parenthesised command name.
    return fields[19]


def write_pid(sandbox: Path, pid: int) -> None:
    (sandbox / PID).write_text(f"{pid} {_start_time(pid) or 0}\n")


def live_executor(sandbox: Path) -> int | None:
    """The executor's pid if that very process still runs."""
    try:
        pid_text, start = (sandbox / PID).read_text().split()
    except (OSError, ValueError):
        return None
    pid = int(pid_text)
    return pid if _start_time(pid) == start else None


def append_update(sandbox: Path, status: common_pb2.TaskStatus) -> None:
    _append(sandbox, {"update": base64.b64encode(status.SerializeToString()).decode()})


def append_ack(sandbox: Path, uuid: bytes) -> None:
    _append(sandbox, {"ack": base64.b64encode(uuid).decode()})


def _append(sandbox: Path, record: dict[str, str]) -> None:
    with open(sandbox / UPDATES, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


def mark_done(sandbox: Path) -> None:
    (sandbox / DONE).touch()


def recover(work_dir: Path) -> list[Recovered]:
    """Every task sandbox under `work_dir` that is not done, oldest first."""
    found = []
    for spec_file in sorted((work_dir / "frameworks").glob(f"*/tasks/*/{SPEC}"),
                            key=lambda p: p.stat().st_mtime):
        sandbox = spec_file.parent
        if (sandbox / DONE).exists():
            continue
        rec = Recovered(sandbox=sandbox, spec=read_spec(sandbox))
        try:
            lines = (sandbox / UPDATES).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            lines = []
        seen: set[bytes] = set()
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line: that event was never acted on
            if "update" in record:
                status = common_pb2.TaskStatus.FromString(base64.b64decode(record["update"]))
                if status.uuid not in seen:
                    seen.add(status.uuid)
                    rec.updates.append(status)
            elif "ack" in record:
                rec.acked.add(base64.b64decode(record["ack"]))
        rec.executor_pid = live_executor(sandbox)
        found.append(rec)
    return found
