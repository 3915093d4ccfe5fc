"""Where a task's files live in an agent's work dir (pure):

    <work>/frameworks/<framework>/tasks/<task>/        its sandbox: the task's own,
                                                       writable by the task
    <work>/meta/frameworks/<framework>/tasks/<task>/   its meta directory: the
                                                       agent's checkpoint of it
                                                       (agent/checkpoint.py) and the
                                                       executor's lock, 0700, never
                                                       in the task's view

Mesos keeps its checkpoints (`meta/`) apart from the sandboxes in the same
way (Mesos src/slave/paths.hpp). The executor (executor/__main__.py) finds its
spec here; the agent writes it.
"""

from __future__ import annotations

from pathlib import Path

META = "meta"
SPEC = "task.pb"
LOCK = "executor.lock"
# An executor's exit code when another one holds the task's LOCK.
EXIT_ANOTHER_EXECUTOR = 3
# What an agent writes into a free LOCK when it gives the task up (it found
# no executor for it: agent/checkpoint.py `lock_holder`), and the exit code
# of an executor that takes the lock after that: it must not run the task
# the agent has reported ended.
GIVEN_UP = b"given up\n"
EXIT_GIVEN_UP = 4
# The agent's work dir (resolved), in the environment of its launcher and
# executors (agent/server.py): an executor takes only a sandbox of that dir.
WORK_ENV = "JUGGLER_AGENT_WORK_DIR"


def meta_dir(sandbox: Path, work: Path | None = None) -> Path:
    """<work>/meta/frameworks/F/tasks/T for the sandbox <work>/frameworks/F/tasks/T.
    Raises ValueError for a path not of that shape, or (`work` given) not in
    `work` (a path like <sandbox>/x/frameworks/F/tasks/T, whose "meta
    directory" a task could write, is refused)."""
    parts = sandbox.parts
    if len(parts) < 5 or parts[-2] != "tasks" or parts[-4] != "frameworks":
        raise ValueError(f"not a task sandbox (<work>/frameworks/F/tasks/T): {sandbox}")
    found = sandbox.parents[3]
    if work is not None and found != work:
        raise ValueError(f"not a task sandbox of the agent's work dir {work}: {sandbox}")
    return found / META / sandbox.relative_to(found)
