"""The agent's checkpoint files in their meta directory, apart from the
sandbox (agent/checkpoint.py, common/sandbox_paths.py), and the readers and
writers of a task's sandbox files that must not follow what the task put
there (common/log_positions.py, executor/stdio.py, agent/server.py)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from juggler.agent import checkpoint
from juggler.agent.server import _tail
from juggler.common import log_positions
from juggler.common.sandbox_paths import WORK_ENV, meta_dir
from juggler.executor.stdio import RotatingLog, RotationPolicy
from juggler.v1 import common_pb2, executor_pb2

S = common_pb2.TaskState


def spec(task_id: str) -> executor_pb2.ExecutorSpec:
    return executor_pb2.ExecutorSpec(
        framework=common_pb2.FrameworkInfo(id="fw"),
        task=common_pb2.TaskInfo(task_id=task_id, name=task_id))


def sandbox_of(work: Path, task_id: str) -> Path:
    sandbox = work / "frameworks" / "fw" / "tasks" / task_id
    sandbox.mkdir(parents=True)
    return sandbox


def test_the_meta_directory_mirrors_the_sandbox_under_meta() -> None:
    assert meta_dir(Path("/w/frameworks/F/tasks/T")) == Path("/w/meta/frameworks/F/tasks/T")
    for wrong in ("/w/frameworks/F/T", "/w/sandbox", "/frameworks/F/tasks/T/evil"):
        with pytest.raises(ValueError, match="not a task sandbox"):
            meta_dir(Path(wrong))


def test_the_checkpoint_is_written_outside_the_sandbox_for_root_only(tmp_path: Path) -> None:
    sandbox = sandbox_of(tmp_path, "t1")
    checkpoint.write_spec(sandbox, spec("t1"))
    checkpoint.write_pid(sandbox, os.getpid())
    status = common_pb2.TaskStatus(task_id="t1", state=S.TASK_RUNNING, uuid=b"u1")
    checkpoint.append_update(sandbox, status)
    checkpoint.append_ack(sandbox, b"u1")
    assert os.listdir(sandbox) == []
    meta = tmp_path / "meta" / "frameworks" / "fw" / "tasks" / "t1"
    assert sorted(os.listdir(meta)) == ["executor.pid", "task.pb", "updates.log"]
    for d in (tmp_path / "meta", meta):
        assert os.stat(d).st_mode & 0o777 == 0o700
    assert os.stat(meta / "task.pb").st_mode & 0o777 == 0o600
    [rec] = checkpoint.recover(tmp_path)
    assert (rec.sandbox, rec.spec, rec.updates, rec.acked) == (sandbox, spec("t1"), [status],
                                                              {b"u1"})
    assert rec.executor_pid == os.getpid()
    checkpoint.mark_done(sandbox)
    assert checkpoint.recover(tmp_path) == []


def test_files_a_task_put_in_its_sandbox_are_not_read(tmp_path: Path) -> None:
    sandbox = sandbox_of(tmp_path, "t1")
    checkpoint.write_spec(sandbox, spec("t1"))
    (sandbox / "task.pb").write_bytes(spec("evil").SerializeToString())
    (sandbox / "executor.pid").write_text("1 1\n")
    (sandbox / "done").touch()
    [rec] = checkpoint.recover(tmp_path)
    assert rec.spec == spec("t1") and rec.executor_pid is None and rec.updates == []


def test_a_work_dir_of_the_old_layout_is_moved_to_the_meta_tree(tmp_path: Path) -> None:
    running, finished = sandbox_of(tmp_path, "running"), sandbox_of(tmp_path, "finished")
    status = common_pb2.TaskStatus(task_id="running", state=S.TASK_RUNNING, uuid=b"u1")
    for sandbox in (running, finished):
        (sandbox / "task.pb").write_bytes(spec(sandbox.name).SerializeToString())
        (sandbox / "updates.log").write_text(
            json.dumps({"update": base64.b64encode(status.SerializeToString()).decode()})
            + "\n")
        (sandbox / "stdout").write_text("output\n")
    (running / "executor.pid").write_text(f"{os.getpid()} 0\n")
    (finished / "done").touch()
    [rec] = checkpoint.recover(tmp_path)
    assert rec.spec == spec("running") and rec.updates == [status] and rec.sandbox == running
    assert os.listdir(running) == ["stdout"]
    # (executor.lock: marked given up, its executor being gone)
    assert sorted(os.listdir(meta_dir(running))) == ["executor.lock", "executor.pid", "task.pb",
                                                     "updates.log"]
    assert not meta_dir(finished).exists()  # done: nothing to recover, left as it was
    assert checkpoint.recover(tmp_path) == [rec]  # once moved, found in its new place


def test_a_reused_task_id_moves_the_old_runs_meta_aside_too(tmp_path: Path) -> None:
    sandbox = sandbox_of(tmp_path, "t1")
    checkpoint.write_spec(sandbox, spec("t1"))
    checkpoint.rename(sandbox, "t1.123")
    assert (tmp_path / "frameworks/fw/tasks/t1.123").is_dir() and not sandbox.exists()
    assert (tmp_path / "meta/frameworks/fw/tasks/t1.123/task.pb").exists()
    assert not meta_dir(sandbox).exists()


def test_log_readers_and_the_rotation_never_follow_a_tasks_links(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"key material\n")
    sandbox = sandbox_of(tmp_path, "t1")
    (sandbox / "stdout").symlink_to(secret)
    os.mkfifo(sandbox / "stderr")
    (sandbox / "executor.log").symlink_to(secret)
    assert log_positions.kept(sandbox / "stdout") == []
    assert log_positions.kept(sandbox / "stderr") == []  # a FIFO: skipped, not waited on
    assert _tail(sandbox / "executor.log") == ""
    # The executor's rotation makes its new file afresh, whatever the task put there.
    (sandbox / "stdout").unlink()
    out = RotatingLog(sandbox / "stdout", RotationPolicy(max_bytes=8, keep=1))
    (sandbox / ".stdout.new").symlink_to(secret)
    out.write(b"0123456789abcdef")
    assert secret.read_bytes() == b"key material\n"
    assert not (sandbox / "stdout").is_symlink() and not (sandbox / "stdout.1").is_symlink()


def test_an_executor_takes_only_a_sandbox_of_its_agents_work_dir(tmp_path: Path) -> None:
    """A path that looks like a sandbox but lies in a task's own sandbox (its
    "meta directory" the task could write) is refused before anything is read."""
    agent_work = tmp_path / "work"
    inner = sandbox_of(agent_work / "frameworks" / "fw" / "tasks" / "t1" / "x", "evil")
    checkpoint.write_spec(inner, spec("evil"))
    with pytest.raises(ValueError, match="not a task sandbox of the agent's work dir"):
        meta_dir(inner, agent_work)
    env = {**os.environ, WORK_ENV: str(agent_work)}
    done = subprocess.run([sys.executable, "-m", "juggler.executor", "--sandbox", str(inner)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "not a task sandbox of the agent's work dir" in done.stderr



# Takes the lock as an executor does (executor/__main__.py): flock, then its
# pid into the file (unless told not to).
HOLD_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
if sys.argv[2] == "write":
    os.pwrite(fd, f"{os.getpid()}\\n".encode(), 0)
print("locked", flush=True)
sys.stdin.read()
"""


def hold_lock(lock: Path, write_pid: bool = True) -> subprocess.Popen[str]:
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock),
                               "write" if write_pid else "no"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
    return holder


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_an_executor_the_agent_never_recorded_is_found_by_its_lock(tmp_path: Path) -> None:
    """An agent killed between its launcher's fork and writing executor.pid:
    the executor runs the task and holds the task's executor.lock, and a
    restarted agent finds it by that lock (and records it), instead of
    reporting the task FAILED, killing its container and leaving the
    executor behind (the fault campaign's seed 1)."""
    sandbox = sandbox_of(tmp_path, "t1")
    checkpoint.write_spec(sandbox, spec("t1"))
    assert checkpoint.recover(tmp_path)[0].executor_pid is None  # no executor.pid, no lock
    lock = meta_dir(sandbox) / "executor.lock"
    holder = hold_lock(lock)
    try:
        assert checkpoint.lock_holder(sandbox) == holder.pid
        [rec] = checkpoint.recover(tmp_path)
        assert rec.executor_pid == holder.pid
        assert (meta_dir(sandbox) / "executor.pid").read_text().split()[0] == str(holder.pid)
        # A stale executor.pid (a process that is gone) is no obstacle either.
        (meta_dir(sandbox) / "executor.pid").write_text(f"{dead_pid()} 0\n")
        assert checkpoint.recover(tmp_path)[0].executor_pid == holder.pid
    finally:
        holder.communicate("")
    # Free again (the holder's pid is still in the file): no executor.
    (meta_dir(sandbox) / "executor.pid").unlink()
    assert checkpoint.lock_holder(sandbox) is None
    assert checkpoint.recover(tmp_path)[0].executor_pid is None


def test_a_holder_that_names_no_live_process_is_no_executor(tmp_path: Path,
                                                            monkeypatch) -> None:
    """A lock held by a process that wrote no pid (yet) is waited for
    HOLDER_PID_WAIT, then not taken for an executor."""
    monkeypatch.setattr(checkpoint, "HOLDER_PID_WAIT", 0.05)
    sandbox = sandbox_of(tmp_path, "t1")
    checkpoint.write_spec(sandbox, spec("t1"))
    lock = meta_dir(sandbox) / "executor.lock"
    lock.write_text(f"{dead_pid()}\n")  # an earlier executor's
    holder = hold_lock(lock, write_pid=False)
    try:
        assert checkpoint.lock_holder(sandbox) is None
    finally:
        holder.communicate("")


def test_a_task_given_up_is_never_run_by_an_executor_that_comes_later(tmp_path: Path) -> None:
    """A restarted agent that finds no executor for a task reports it ended;
    it marks the task's free lock given up (making the file if the executor
    never got that far), so that an executor its dead launcher forked, and
    that was stopped until now, exits (4) instead of running the task. A
    held lock is never marked."""
    from juggler.common.sandbox_paths import EXIT_GIVEN_UP, GIVEN_UP

    sandbox = sandbox_of(tmp_path / "work", "t1")
    task = spec("t1")
    task.task.command.argv[:] = ["touch", str(tmp_path / "ran")]
    checkpoint.write_spec(sandbox, task)
    lock = meta_dir(sandbox) / "executor.lock"
    assert not lock.exists()
    [rec] = checkpoint.recover(tmp_path / "work")
    assert rec.executor_pid is None
    assert lock.read_bytes() == GIVEN_UP

    env = {**os.environ, WORK_ENV: str(tmp_path / "work")}
    late = subprocess.run([sys.executable, "-m", "juggler.executor", "--sandbox", str(sandbox)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert late.returncode == EXIT_GIVEN_UP, late.stderr
    assert "gave" in late.stderr and "not running it" in late.stderr
    assert not (tmp_path / "ran").exists() and not (sandbox / "stdout").exists()
    assert lock.read_bytes() == GIVEN_UP       # and for any later one too

    other = sandbox_of(tmp_path / "work", "t2")
    checkpoint.write_spec(other, spec("t2"))
    holder = hold_lock(meta_dir(other) / "executor.lock")
    try:
        assert checkpoint.holder_or_give_up(other) == holder.pid
        assert (meta_dir(other) / "executor.lock").read_text() == f"{holder.pid}\n"
    finally:
        holder.communicate("")


def test_giving_up_never_waits_for_nor_marks_a_held_lock(tmp_path: Path) -> None:
    from juggler.common.sandbox_paths import GIVEN_UP

    sandbox = sandbox_of(tmp_path, "t1")
    checkpoint.write_spec(sandbox, spec("t1"))
    lock = meta_dir(sandbox) / "executor.lock"
    holder = hold_lock(lock, write_pid=False)   # no pid: lock_holder would wait for one
    try:
        assert checkpoint.give_up(sandbox) is False
        assert lock.read_bytes() == b""
    finally:
        holder.communicate("")
    assert checkpoint.give_up(sandbox) is True
    assert lock.read_bytes() == GIVEN_UP


def test_a_reused_task_id_moves_an_old_meta_directory_without_its_sandbox(
        tmp_path: Path) -> None:
    """A rename cut short (or a sandbox deleted by hand) left the old run's
    meta directory, and its lock marked given up: a new run of the id must
    not start from them."""
    sandbox = sandbox_of(tmp_path, "t1")
    checkpoint.write_spec(sandbox, spec("t1"))
    assert checkpoint.give_up(sandbox)
    sandbox.rmdir()
    checkpoint.rename(sandbox, "t1.1")
    assert not meta_dir(sandbox).exists()
    assert (meta_dir(sandbox).with_name("t1.1") / "executor.lock").exists()
