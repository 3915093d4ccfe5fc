"""Run the probe (testing/probe.py) under juggler's own runtime, in-process:
the executor's launch path (a cgroup limited as the spec says, then
container/launch.py `start`) without the executor around it.

`start` makes the caller's next child pid 1 of a new pid namespace
(unshare(CLONE_NEWPID) on the caller), which the test process must not do to
itself: each run forks a runner that launches, waits for the container and
exits with its status, as an executor would.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from pathlib import Path

from juggler.container import launch
from juggler.container.cgroups import open_cgroup
from juggler.container.spec import ContainerSpec
from juggler.executor.stdio import ChildStdio
from juggler.testing import probe


def run_juggler(spec: ContainerSpec, sandbox: Path, cgroup: str,
                timeout: float = 30.0) -> probe.Outcome:
    """Launch `spec` (its argv runs the probe) with its sandbox at `sandbox`
    and its cgroup named `cgroup`. A launch that failed before the exec is an
    Outcome with ran False, its exit code (125: setup) and message."""
    group = open_cgroup(cgroup)
    group.create()
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    report_r, report_w = os.pipe()
    try:
        group.set(spec.limits)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the runner
            _runner(spec, sandbox, group, (in_r, out_w, err_w), (in_w, out_r, err_r, report_r),
                    report_w)
        for fd in (in_r, out_w, err_w, report_w):
            os.close(fd)
        try:
            outcome = probe.collect(out_r, err_r, in_w, time.monotonic() + timeout)
            outcome.exit_code = _wait(pid, time.monotonic() + timeout)
        finally:
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        report = _read_all(report_r)
        if report:
            code, _, message = report.partition("\n")
            outcome.exit_code, outcome.error = int(code), message
        return outcome
    finally:
        for fd in (in_w, out_r, err_r, report_r):
            with contextlib.suppress(OSError):
                os.close(fd)
        group.destroy()


def _runner(spec, sandbox, group, child_fds, parent_fds, report_w) -> None:  # pragma: no cover
    code = 125
    try:
        for fd in parent_fds:
            os.close(fd)
        # An agent's own umask and OOM score are not its tasks': runc gives
        # the container 0022 and Docker 0 whatever its caller has.
        os.umask(0o027)
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("100")
        stdin, stdout, stderr = child_fds
        join = group.join_files()
        started = launch.start(spec, sandbox, None if join else group.add,
                               ChildStdio(stdin=stdin, stdout=stdout, stderr=stderr),
                               join=join, cgroup_dirs=list(group.paths().values()))
        for fd in child_fds:
            os.close(fd)
        error = launch.read_error(started.error_fd)
        if error is not None:
            os.write(report_w, f"{error.exit_code}\n{error}".encode())
        os.close(report_w)
        _, status = os.waitpid(started.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.write(report_w, f"125\nthe runner failed: {e!r}".encode())
    finally:
        os._exit(code & 0xFF)


def _wait(pid: int, deadline: float) -> int:
    pidfd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([pidfd], [], [], max(0.0, deadline - time.monotonic()))
    finally:
        os.close(pidfd)
    if not ready:
        raise TimeoutError(f"the runner {pid} did not exit")
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _read_all(fd: int) -> str:
    chunks = []
    while data := os.read(fd, 65536):
        chunks.append(data)
    return b"".join(chunks).decode(errors="replace")
