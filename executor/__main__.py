"""`python -m juggler.executor --sandbox DIR [--meta DIR]`: supervise the task
whose ExecutorSpec is META/task.pb (META: the sandbox's meta directory by
default, common/sandbox_paths.py; never the sandbox, which the task can write).

Imports stay lean (no grpc): an executor starts per task.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m juggler.executor")
    parser.add_argument("--sandbox", required=True, type=Path,
                        help="the task's sandbox")
    parser.add_argument("--meta", type=Path, default=None,
                        help="holds task.pb (an ExecutorSpec) and executor.lock; default "
                             "the sandbox's meta directory (<work>/meta/frameworks/F/tasks/T)")
    args = parser.parse_args(argv)
    return run(args.sandbox, args.meta)


def run(sandbox: Path, meta: Path | None = None) -> int:
    """Supervise the task in `sandbox` whose spec is in `meta` (default: the
    sandbox's meta directory; also entered directly by agent/launcher.py).
    Returns the exit code: 2 when the spec cannot be read, 3 when another
    executor supervises the task, 4 when the agent gave the task up before
    this executor took its lock (common/sandbox_paths.py GIVEN_UP)."""
    from juggler.common import logs, sandbox_paths
    from juggler.executor.executor import Executor
    from juggler.v1 import executor_pb2

    logs.configure("executor")
    sandbox = sandbox.resolve()
    try:
        if meta is not None:
            meta = meta.resolve()
        else:  # started by an agent: its work dir is in the environment
            work = os.environ.get(sandbox_paths.WORK_ENV)
            meta = sandbox_paths.meta_dir(sandbox, Path(work) if work else None)
    except ValueError as e:
        print(f"executor: {e} (give --meta)", file=sys.stderr)
        return 2
    spec = executor_pb2.ExecutorSpec()
    try:
        spec.ParseFromString((meta / sandbox_paths.SPEC).read_bytes())
    except (OSError, ValueError) as e:
        print(f"executor: cannot read {meta / sandbox_paths.SPEC}: {e}", file=sys.stderr)
        return 2
    sole = _sole_executor(meta)
    if sole is None:
        print(f"executor: the agent gave {sandbox} up before this executor started (it "
              "found no executor while it restarted, and reported the task ended); not "
              "running it", file=sys.stderr)
        return sandbox_paths.EXIT_GIVEN_UP
    if not sole:
        print(f"executor: another executor supervises {sandbox} already", file=sys.stderr)
        return sandbox_paths.EXIT_ANOTHER_EXECUTOR
    return asyncio.run(Executor(sandbox, spec).run())


_LOCK_FD = -1


def _sole_executor(meta: Path) -> bool | None:
    """Take the task's executor lock (in its meta directory, out of the task's
    reach: a task holding it would keep any executor from starting) for this
    process's life (the kernel drops it when the process dies; CLOEXEC keeps
    it from the container). One
    executor per task: a launcher that forks late (it was stopped while the
    agent gave up on it and started a fresh executor) must not run the task a
    second time. Its pid goes into the file, for an agent that never
    recorded this executor (agent/checkpoint.py `lock_holder`). False when
    another executor holds the lock; None when the agent marked the lock
    given up (it reported the task ended: sandbox_paths.GIVEN_UP), which
    stays marked."""
    import fcntl

    from juggler.common.sandbox_paths import GIVEN_UP, LOCK

    global _LOCK_FD
    fd = os.open(meta / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    if os.pread(fd, len(GIVEN_UP), 0) == GIVEN_UP:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _LOCK_FD = fd
    return True


if __name__ == "__main__":
    sys.exit(main())
