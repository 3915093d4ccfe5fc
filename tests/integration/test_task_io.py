"""Getting inside tasks on a real cluster, through the `juggler` CLI: logs
(--tail, -f, rotation), exec (with and without a terminal) and attach with
detach keys. Terminals are real: the CLI runs under a pty made by the test.
Every wait has a deadline.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from juggler.common import servers, task_states
from juggler.container.spec import hostname_for
from juggler.v1 import operator_pb2, operator_pb2_grpc
from tests.conftest import Cluster, wait_for

pytestmark = [pytest.mark.root]
S = task_states.S
DEADLINE = 30.0


def task_state(cluster: Cluster, task_id: str) -> int | None:
    with servers.sync_channel(cluster.master) as ch:
        got = operator_pb2_grpc.OperatorStub(ch).GetTasks(
            operator_pb2.GetTasksRequest(include_completed=True), timeout=10)
    for view in [*got.tasks, *got.completed_tasks]:
        if view.info.task_id == task_id:
            return view.state
    return None


def start_task(cluster: Cluster, name: str, *args: str) -> subprocess.Popen[str]:
    """`juggler run` in the background; returns once the task is RUNNING."""
    proc = cluster.popen("run", "-q", "--name", name, *args)
    wait_for(lambda: task_state(cluster, name) == S.TASK_RUNNING or proc.poll() is not None,
             timeout=DEADLINE, what=f"task {name} RUNNING")
    assert proc.poll() is None, proc.communicate()
    return proc


def stop_task(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # juggler run kills its task
        try:
            proc.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def sandbox_of(cluster: Cluster, task_id: str) -> Path:
    found = sorted(cluster.work_dir.glob(f"*/frameworks/*/tasks/{task_id}"))
    assert len(found) == 1, found
    return found[0]


class PtyCommand:
    """The `juggler` CLI with a pseudo-terminal as its stdin/stdout/stderr and its
    controlling terminal (`setsid --ctty`).

    Started as any subprocess, not with pty.fork(): a fork of this process runs
    gRPC's fork handlers, which can wait forever on gRPC's own threads (seen: the
    suite hung in pty.fork() while a channel was being shut down, out of reach of
    pytest's timeout)."""

    def __init__(self, cluster: Cluster, *args: str) -> None:
        self.fd, terminal = os.openpty()
        try:
            self.proc = subprocess.Popen(
                ["setsid", "--ctty", "--wait", sys.executable, "-m", "juggler.cli.main", *args],
                stdin=terminal, stdout=terminal, stderr=terminal, env=cluster.env())
        finally:
            os.close(terminal)  # the command's end only: reads fail once it is gone
        self.output = b""
        self.code: int | None = None

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the command and its terminal are gone
            return False
        self.output += data
        return bool(data)

    def expect(self, pattern: bytes, timeout: float = DEADLINE) -> re.Match[bytes]:
        deadline = time.monotonic() + timeout
        while not (m := re.search(pattern, self.output)):
            if time.monotonic() > deadline or not self._read(0.1):
                raise AssertionError(f"no {pattern!r} in {self.output!r}")
        return m

    def wait(self, timeout: float = DEADLINE) -> int:
        deadline = time.monotonic() + timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                self.code = code
                while self._read(0.05):  # what is left in the terminal
                    pass
                os.close(self.fd)
                return self.code
            if time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"still running after {timeout} s: {self.output!r}")
            self._read(0.05)


# -- logs -----------------------------------------------------------------------


def test_logs_tail_and_streams(cluster: Cluster) -> None:
    cluster.juggler("run", "--name", "io-tail", "--", "sh", "-c",
                    "for i in 1 2 3 4 5 6 7 8 9 10; do echo line $i; done; echo oops >&2",
                    check=True)
    r = cluster.juggler("logs", "--tail", "3", "--stdout", "io-tail", check=True)
    assert r.stdout == "line 8\nline 9\nline 10\n"
    r = cluster.juggler("logs", "--stderr", "io-tail", check=True)
    assert r.stdout == "" and r.stderr == "oops\n"
    assert cluster.juggler("logs", "io-tail", check=True).stdout.count("line") == 10
    r = cluster.juggler("logs", "no-such-task")
    assert r.returncode == 1 and "no task 'no-such-task'" in r.stderr


def test_logs_follow_sees_new_lines_then_ends_with_the_task(cluster: Cluster,
                                                           host_dir: Path) -> None:
    # The task writes ten lines, then waits for the test (a file on the host's
    # filesystem, which the task shares, read-only and but for /tmp): the other
    # twenty are written while `logs -f` follows, and the task ends after them.
    go = host_dir / "go"
    proc = start_task(cluster, "io-follow", "--", "sh", "-c",
                      "i=0; while [ $i -lt 30 ]; do echo tick $i; i=$((i+1)); "
                      f"if [ $i = 10 ]; then while [ ! -e {go} ]; do sleep 0.05; done; fi; "
                      "done")
    try:
        follow = cluster.popen("logs", "-f", "io-follow")
        assert follow.stdout is not None
        lines: list[str] = []

        def pump() -> None:
            for line in follow.stdout:  # type: ignore[union-attr]
                lines.append(line)

        threading.Thread(target=pump, daemon=True).start()
        wait_for(lambda: len(lines) >= 10, DEADLINE, what="the first ten lines")
        assert task_state(cluster, "io-follow") == S.TASK_RUNNING
        go.touch()
        follow.wait(DEADLINE)
        assert follow.returncode == 0, follow.stderr.read() if follow.stderr else ""
        wait_for(lambda: len(lines) >= 30, DEADLINE, what="the follow's last lines")
        assert [line.rstrip("\n") for line in lines] == [f"tick {i}" for i in range(30)]
        # logs -f ended because the agent saw the task end; the master hears of it
        # through the task's status update, a moment later.
        wait_for(lambda: task_state(cluster, "io-follow") == S.TASK_FINISHED, DEADLINE,
                 what="the master to see the task FINISHED")
    finally:
        stop_task(proc)


def test_rotation_keeps_files_bounded_and_logs_show_the_latest(cluster: Cluster) -> None:
    cap = 4096
    cluster.juggler("run", "-q", "--name", "io-rot", "-l", f"juggler.log_max_bytes={cap}",
                    "--", "sh", "-c",
                    "i=0; while [ $i -lt 3000 ]; do echo \"row $i\"; i=$((i+1)); done",
                    check=True)
    sandbox = sandbox_of(cluster, "io-rot")
    files = sorted(p.name for p in sandbox.glob("stdout*"))
    assert files == ["stdout", "stdout.1", "stdout.2"]
    assert all((sandbox / f).stat().st_size <= cap for f in files)
    # Rotated files end at a line boundary.
    assert (sandbox / "stdout.1").read_bytes().endswith(b"\n")
    r = cluster.juggler("logs", "--tail", "5", "io-rot", check=True)
    assert r.stdout.splitlines() == [f"row {i}" for i in range(2995, 3000)]
    everything = cluster.juggler("logs", "io-rot", check=True).stdout.splitlines()
    assert everything[-1] == "row 2999" and len(everything) < 3000
    numbers = [int(line.split()[1]) for line in everything]
    assert numbers == list(range(numbers[0], 3000))  # contiguous across the three files


def test_bad_log_label_fails_the_launch(cluster: Cluster) -> None:
    r = cluster.juggler("run", "-l", "juggler.log_max_bytes=lots", "--", "true")
    assert r.returncode != 0 and "juggler.log_max_bytes" in r.stderr


# -- exec -----------------------------------------------------------------------


def test_exec_runs_inside_the_task(cluster: Cluster) -> None:
    proc = start_task(cluster, "io-exec", "--", "sh", "-c", "while :; do sleep 0.2; done")
    try:
        r = cluster.juggler("exec", "io-exec", "--", "sh", "-c",
                            "echo $$; hostname; tr '\\0' ' ' < /proc/1/cmdline; echo; "
                            "grep -E 'NoNewPrivs|CapBnd' /proc/self/status; exit 3")
        assert r.returncode == 3, r.stderr
        pid, host, cmdline, *status = r.stdout.splitlines()
        assert 1 < int(pid) < 100  # a pid of the task's namespace, not the host's
        assert host == hostname_for("io-exec")
        assert cmdline.strip() == "sh -c while :; do sleep 0.2; done"
        assert "NoNewPrivs:\t0" in status   # the task's: Docker's default
        assert "CapBnd:\t00000000a80425fb" in status  # the task's capability set
        # stdin is forwarded with -i; its end reaches the process.
        r = subprocess.run([sys.executable, "-m", "juggler.cli.main", "exec", "-i", "io-exec",
                            "--", "sh", "-c", "tr a-z A-Z"], input="shout\n",
                           capture_output=True, text=True, timeout=DEADLINE, env=cluster.env())
        assert (r.returncode, r.stdout) == (0, "SHOUT\n"), r.stderr
        missing = cluster.juggler("exec", "io-exec", "--", "/no/such/binary")
        assert missing.returncode == 127
    finally:
        stop_task(proc)
    ended = cluster.juggler("exec", "io-exec", "--", "true")
    assert ended.returncode == 125 and "not running" in ended.stderr


def test_exec_with_a_terminal(cluster: Cluster) -> None:
    proc = start_task(cluster, "io-exec-tty", "--", "sh", "-c", "while :; do sleep 0.2; done")
    try:
        term = PtyCommand(cluster, "exec", "-it", "io-exec-tty", "--", "sh")
        term.expect(rb"# ")  # the remote shell's prompt
        term.write(b"tty; exit 7\r")
        term.expect(rb"/dev/pts/\d+")
        assert term.wait() == 7, term.output
    finally:
        stop_task(proc)


# -- attach -----------------------------------------------------------------------


def test_attach_to_a_tty_task_and_detach_with_ctrl_p_ctrl_q(cluster: Cluster) -> None:
    proc = start_task(cluster, "io-attach", "-t", "--", "sh", "-c",
                      "while read line; do echo \"got:$line\"; done")
    try:
        term = PtyCommand(cluster, "attach", "io-attach")
        term.write(b"hello\r")
        term.expect(rb"got:hello")
        term.write(b"\x10\x11")  # Ctrl-P Ctrl-Q
        assert term.wait() == 0, term.output
        assert b"detached" in term.output
        assert task_state(cluster, "io-attach") == S.TASK_RUNNING
        # Attach again: the task still answers.
        again = PtyCommand(cluster, "attach", "io-attach")
        again.write(b"again\r")
        again.expect(rb"got:again")
        again.write(b"\x10\x11")
        assert again.wait() == 0
        assert task_state(cluster, "io-attach") == S.TASK_RUNNING
    finally:
        stop_task(proc)


def test_attach_sees_the_exit_code(cluster: Cluster) -> None:
    proc = start_task(cluster, "io-attach-exit", "-t", "--", "sh", "-c",
                      "read line; exit 4")
    try:
        term = PtyCommand(cluster, "attach", "io-attach-exit")
        term.write(b"bye\r")
        assert term.wait() == 4, term.output
    finally:
        stop_task(proc)


def test_run_with_a_terminal(cluster: Cluster) -> None:
    term = PtyCommand(cluster, "run", "-q", "-t", "-i", "--", "sh")
    term.write(b"echo hi-$((40+2)); tty; exit 5\r")
    term.expect(rb"hi-42")
    term.expect(rb"/dev/pts/\d+")
    assert term.wait() == 5, term.output


# -- exec: Docker's exit codes (container/process.py) -------------------------------


def test_exec_exit_codes_are_docker_execs(cluster: Cluster, host_dir: Path) -> None:
    # The task shares the host's filesystem (no --rootfs): what is made here is
    # in it (outside /tmp: the task's /tmp is its own).
    no_x = host_dir / "no-x-bit"
    no_x.write_text("#!/bin/sh\necho hi\n")
    no_x.chmod(0o644)
    proc = start_task(cluster, "io-exec-codes", "--", "sh", "-c", "while :; do sleep 0.2; done")
    try:
        for args, code, words in [
            (["--", "nosuch"], 127, "exec 'nosuch': No such file or directory"),
            (["--", str(no_x)], 126, f"exec '{no_x}': Permission denied"),
            (["--", str(host_dir)], 126, f"exec '{host_dir}': Permission denied"),
            (["-w", "/no/such/dir", "--", "true"], 125,
             "chdir '/no/such/dir': No such file or directory"),
            (["-u", "ghost", "--", "true"], 125,
             "run as user 'ghost': no user 'ghost' in the container's /etc/passwd"),
        ]:
            options, command = args[:args.index("--")], args[args.index("--"):]
            r = cluster.juggler("exec", *options, "io-exec-codes", *command)
            assert (r.returncode, r.stderr) == (code, f"juggler exec: {words}\n"), args
    finally:
        stop_task(proc)
