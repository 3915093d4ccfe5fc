"""`python -m juggler.executor --sandbox DIR`: supervise the task in DIR/task.pb.

Imports stay lean (no grpc): an executor starts per task.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m juggler.executor")
    parser.add_argument("--sandbox", required=True, type=Path,
                        help="the task's sandbox; holds task.pb (an ExecutorSpec)")
    args = parser.parse_args(argv)
    return run(args.sandbox)


def run(sandbox: Path) -> int:
    """Supervise the task in `sandbox` (also entered directly by agent/launcher.py)."""
    from juggler.common import logs
    from juggler.executor.executor import Executor
    from juggler.v1 import executor_pb2

    logs.configure("executor")
    sandbox = sandbox.resolve()
    if not _sole_executor(sandbox):
        print(f"executor: another executor supervises {sandbox} already", file=sys.stderr)
        return 3
    spec = executor_pb2.ExecutorSpec()
    try:
        spec.ParseFromString((sandbox / "task.pb").read_bytes())
    except (OSError, ValueError) as e:
        print(f"executor: cannot read {sandbox / 'task.pb'}: {e}", file=sys.stderr)
        return 2
    return asyncio.run(Executor(sandbox, spec).run())


_LOCK_FD = -1


def _sole_executor(sandbox: Path) -> bool:
    """Take the sandbox's executor lock for this process's life (the kernel
    drops it when the process dies; CLOEXEC keeps it from the container). One
    executor per task: a launcher that forks late (it was stopped while the
    agent gave up on it and started a fresh executor) must not run the task a
    second time."""
    import fcntl
    import os

    global _LOCK_FD
    fd = os.open(sandbox / "executor.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _LOCK_FD = fd
    return True


if __name__ == "__main__":
    sys.exit(main())
