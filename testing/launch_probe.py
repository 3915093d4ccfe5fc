"""Run the probe (testing/probe.py) under juggler's own runtime, in-process:
the executor's launch path (a cgroup limited as the spec says, then
container/launch.py `start`) without the executor around it.

`start` makes the caller's next child pid 1 of a new pid namespace
(unshare(CLONE_NEWPID) on the caller), which the test process must not do to
itself: each run forks a runner that launches, waits for the container and
exits with its status, as an executor would.

`LaunchServer` does the same from a fresh Python process (`python -m
juggler.testing.launch_probe`, started once): a test process that has run gRPC
must not fork runners that fork again — gRPC's fork handlers abort a forked
child of a process whose gRPC threads it no longer has ("Fatal Python error:
Aborted" in `launch.start`'s fork), which the whole suite, unlike the file
alone, runs into.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
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


class LaunchServer:
    """`run_juggler` in a process of its own (see the module docstring): calls
    go over its stdin and stdout as length-prefixed pickles."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "juggler.testing.launch_probe"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def run(self, spec: ContainerSpec, sandbox: Path, cgroup: str,
            timeout: float = 30.0) -> probe.Outcome:
        """As `run_juggler`; raises what it raised, or RuntimeError if the
        server died."""
        assert self.process.stdin is not None and self.process.stdout is not None
        _send(self.process.stdin, (spec, sandbox, cgroup, timeout))
        result = _receive(self.process.stdout)
        if result is None:
            raise RuntimeError(f"the launch server exited ({self.process.wait()})")
        if isinstance(result, BaseException):
            raise result
        return result

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _send(stream, value: object) -> None:  # type: ignore[no-untyped-def]
    data = pickle.dumps(value)
    stream.write(struct.pack(">I", len(data)) + data)
    stream.flush()


def _receive(stream) -> object | None:  # type: ignore[no-untyped-def]
    head = stream.read(4)
    if len(head) < 4:
        return None
    (size,) = struct.unpack(">I", head)
    return pickle.loads(stream.read(size))


def _serve() -> None:  # pragma: no cover - the server process
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # nothing else may write into the replies
    requests = sys.stdin.buffer
    while (request := _receive(requests)) is not None:
        spec, sandbox, cgroup, timeout = request  # type: ignore[misc]
        try:
            result: object = run_juggler(spec, sandbox, cgroup, timeout)
        except Exception as e:
            result = e
        _send(replies, result)


if __name__ == "__main__":
    _serve()
