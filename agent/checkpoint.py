"""What an agent writes to disk so that a restarted agent finds its tasks.

Per task, in its meta directory (`meta_dir`), apart from its sandbox:

    <work dir>/frameworks/<framework>/tasks/<task>/        the sandbox: the task's
    <work dir>/meta/frameworks/<framework>/tasks/<task>/   the agent's, never in the
                                                           task's view (0700, root)

    task.pb        the ExecutorSpec (framework, task, cgroup), written at launch
    executor.pid   "<pid> <start time in clock ticks>" of the executor (the start
                   time tells a live executor from a recycled pid)
    updates.log    one JSON line per event: {"update": <TaskStatus, base64>} when the
                   agent takes an update from the executor (before acknowledging it),
                   {"ack": <uuid, base64>} when the framework acknowledged it
    done           the task is terminal and every update acknowledged: nothing to recover
    executor.lock  held by the task's executor while it lives (executor/__main__.py)

(common/sandbox_paths.py says where these directories are.)

The task can write its sandbox (as root, or as its user: the agent gives it the
sandbox): what the agent trusts lives elsewhere, as Mesos keeps its `meta/`
checkpoint tree apart from the sandboxes (Mesos src/slave/paths.hpp). A work dir of
the old layout (these files in the sandbox) is moved to the meta tree when the
agent recovers it (`recover`).

Writes are appended and flushed before the agent acts on them (at-least-once: a
crash between writing and acting replays the action, and updates are
idempotent by uuid).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from juggler.common.sandbox_paths import GIVEN_UP, LOCK, META, SPEC, meta_dir
from juggler.v1 import common_pb2, executor_pb2

PID = "executor.pid"
UPDATES = "updates.log"
DONE = "done"
_FILES = (SPEC, PID, UPDATES, DONE)


def make_meta(sandbox: Path) -> Path:
    """Make the sandbox's meta directory (0700, as is <work>/meta: a task that
    can read its work dir still cannot enter it); returns it. Raises OSError,
    ValueError (see `meta_dir`)."""
    meta = meta_dir(sandbox)
    root = meta.parents[3]
    root.mkdir(mode=0o700, exist_ok=True)
    os.chmod(root, 0o700)
    meta.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(meta, 0o700)
    return meta


def rename(sandbox: Path, new_name: str) -> None:
    """Move a sandbox and its meta directory aside (a reused task id keeps the
    old run's files apart). Raises OSError."""
    meta = meta_dir(sandbox)
    if sandbox.exists():
        sandbox.rename(sandbox.with_name(new_name))
    if meta.exists():   # also without its sandbox (a rename cut short, a sandbox deleted)
        meta.rename(meta.with_name(new_name))


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
    """Into the sandbox's meta directory, made here; 0600: the task's secret
    environment values are in it (common/secrets.py). Raises OSError, ValueError."""
    meta = make_meta(sandbox)
    tmp = meta / (SPEC + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(spec.SerializeToString())
    os.chmod(tmp, 0o600)  # an older file of that name kept its mode
    os.replace(tmp, meta / SPEC)


def read_spec(meta: Path) -> executor_pb2.ExecutorSpec:
    """The ExecutorSpec the task was launched with, from its meta directory: for
    a task from an image, the command resolved from the image's config and the
    layers. Raises OSError when it cannot be read, DecodeError when it is not an
    ExecutorSpec."""
    return executor_pb2.ExecutorSpec.FromString((meta / SPEC).read_bytes())


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
    (meta_dir(sandbox) / PID).write_text(f"{pid} {_start_time(pid) or 0}\n")


def live_executor(sandbox: Path) -> int | None:
    """The executor's pid if that very process still runs: the one
    executor.pid names, else the one holding the task's executor.lock. An
    agent killed between its launcher's fork and writing executor.pid left an
    executor it never recorded, which runs the task all the same (the fault
    campaign's seed 1 found it reported FAILED, its container killed, and the
    executor left behind); it is recorded now, where the file can be
    written."""
    try:
        pid_text, start = (meta_dir(sandbox) / PID).read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        pid = 0
    if pid and _start_time(pid) == start:
        return pid
    holder = holder_or_give_up(sandbox)
    if holder is None:
        return None
    with contextlib.suppress(OSError):
        write_pid(sandbox, holder)
    return holder


# How long `lock_holder` waits for a holder to write its pid (it does so
# right after it takes the lock): seconds, and between looks.
HOLDER_PID_WAIT = 1.0
_HOLDER_PID_POLL = 0.01


def lock_holder(sandbox: Path, give_up: bool = False) -> int | None:
    """The live process holding the task's executor.lock (an flock(2) its
    executor takes for its life, and writes its pid into:
    executor/__main__.py), None when no process holds it. Probed by trying
    the lock, which works on every filesystem and in every pid namespace
    (/proc/locks names a btrfs subvolume's or an overlay's files by another
    device than stat does).

    With `give_up` (the agent will report the task ended when no process
    holds the lock), a free lock is marked `GIVEN_UP` while this holds it,
    the file made if need be: an executor that reaches the lock later (its
    launcher forked it before the agent died, and it was stopped until
    now) finds the mark and exits without running the task. Raises OSError
    when the mark cannot be written."""
    flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if give_up else 0)
    try:
        fd = os.open(meta_dir(sandbox) / LOCK, flags, 0o600)
    except OSError:
        if give_up:
            raise
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass
        else:
            if give_up:
                os.ftruncate(fd, 0)
                os.pwrite(fd, GIVEN_UP, 0)
            return None  # free (closing the fd lets it go again)
        deadline = time.monotonic() + HOLDER_PID_WAIT
        while True:
            text = os.pread(fd, 32, 0).split()
            if text and text[0].isdigit() and _start_time(int(text[0])) is not None:
                return int(text[0])
            if time.monotonic() > deadline:
                return None
            time.sleep(_HOLDER_PID_POLL)
    finally:
        os.close(fd)


def give_up(sandbox: Path) -> bool:
    """Mark the task's executor.lock given up if no process holds it (see
    `lock_holder`), without waiting: the agent saw the task's executor end.
    False when a process holds the lock, or the mark cannot be written."""
    try:
        fd = os.open(meta_dir(sandbox) / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(fd, 0)
        os.pwrite(fd, GIVEN_UP, 0)
        return True
    except OSError:   # BlockingIOError: held
        return False
    finally:
        os.close(fd)


def holder_or_give_up(sandbox: Path) -> int | None:
    """`lock_holder` for an agent about to report the task ended when no
    process holds the lock: a free lock is marked given up (where the mark
    cannot be written, the task is given up all the same)."""
    try:
        return lock_holder(sandbox, give_up=True)
    except OSError:
        return lock_holder(sandbox)


def append_update(sandbox: Path, status: common_pb2.TaskStatus) -> None:
    _append(sandbox, {"update": base64.b64encode(status.SerializeToString()).decode()})


def append_ack(sandbox: Path, uuid: bytes) -> None:
    _append(sandbox, {"ack": base64.b64encode(uuid).decode()})


def _append(sandbox: Path, record: dict[str, str]) -> None:
    with open(meta_dir(sandbox) / UPDATES, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


def mark_done(sandbox: Path) -> None:
    (meta_dir(sandbox) / DONE).touch()


def _migrate(work_dir: Path) -> None:
    """Move the checkpoint files of a work dir of the old layout (in the
    sandboxes) to the meta tree, but for sandboxes already done. Raises OSError."""
    for spec_file in (work_dir / "frameworks").glob(f"*/tasks/*/{SPEC}"):
        sandbox = spec_file.parent
        if (sandbox / DONE).exists() or (meta_dir(sandbox) / SPEC).exists():
            continue
        meta = make_meta(sandbox)
        for name in _FILES:
            if (sandbox / name).exists():
                os.replace(sandbox / name, meta / name)


def recover(work_dir: Path) -> list[Recovered]:
    """Every task under `work_dir` that is not done, oldest first (a work dir of
    the old layout is moved to the meta tree first). Raises OSError, DecodeError."""
    _migrate(work_dir)
    found = []
    for spec_file in sorted((work_dir / META / "frameworks").glob(f"*/tasks/*/{SPEC}"),
                            key=lambda p: p.stat().st_mtime):
        meta = spec_file.parent
        if (meta / DONE).exists():
            continue
        sandbox = work_dir / meta.relative_to(work_dir / META)
        rec = Recovered(sandbox=sandbox, spec=read_spec(meta))
        try:
            lines = (meta / UPDATES).read_text(encoding="utf-8").splitlines()
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
