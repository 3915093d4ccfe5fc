"""A task's stdio, owned by its executor: pipes (or a pty) into rotated files.

    task fd 1 ──pipe──▶ executor ──▶ sandbox/stdout  (→ stdout.1 → stdout.2)
    task fd 2 ──pipe──▶          ──▶ sandbox/stderr  (→ stderr.1 → stderr.2)
    task fd 0 ◀── /dev/null, or a pipe fed by attach (label juggler.interactive)
                                  └─▶ attached clients (attach.py), live
    with ContainerInfo.tty: fds 0, 1 and 2 are one pty slave, allocated inside
    the container (container/console.py); its master is read into `stdout`.

The executor is the only writer of the log files, so rotation is a rename
chain it does between two writes, and every byte goes to the files before it
goes to attached clients. The task ends only once the executor has read its
pipes to EOF (every process of the container is gone with its pid 1), so the
terminal status update is sent after the last byte is on disk.

Rotation is by size, per stream: a file reaching `max_bytes` becomes `.1`,
`.1` becomes `.2`, ... and the oldest beyond `keep` is removed. Files are cut
after a newline when one fits, so a line is split only when it alone is
longer than the cap. Task labels tune it (common/task_defaults.py holds the
names, defaults and limits; common/task_check.py parses them):

    juggler.log_max_bytes = "<bytes, ≥ 1024>"     (default 10 MiB)
    juggler.log_max_files = "<rotated files kept>" (default 2)

Each file records the position of its first byte in the stream (bytes since
the task started) before it takes its name (common/log_positions.py), so that
readers can tell what they lost when they fall behind (agent/log_files.py).

The task's pipes are read only while the `ReadGate` is open. It is closed by
a back-pressured client that is behind (attach.py: the task then waits in
write(2) once a pipe is full) and by a hold: with the label

    juggler.hold_output = "<seconds, 0 to 3600>"  (default 0: none)

nothing is read from the start until a client attaches with back-pressure,
or those seconds pass (then the task's output is read as any task's), so
that a client started with the task (`juggler run`, `docker run` without -d)
gets it from its first byte, however much it writes before the attach lands.
A kill ends the hold. Once the task's processes are gone, attach.py opens
the gate for good (`AttachServer.processes_gone`): what is left in the pipes
is bounded then. The task's end waits for its output as ever; time while the
gate is closed does not count against the drain's DRAIN_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from juggler.common import fdio, log_positions
from juggler.common.task_check import task_labels
from juggler.common.task_defaults import DEFAULT_LOG_MAX_BYTES as DEFAULT_MAX_BYTES
from juggler.common.task_defaults import DEFAULT_LOG_MAX_FILES as DEFAULT_KEEP
from juggler.common.task_defaults import INTERACTIVE_LABEL
from juggler.container import console

__all__ = ["DEFAULT_KEEP", "DEFAULT_MAX_BYTES", "INTERACTIVE_LABEL", "ChildStdio",
           "RotatingLog", "RotationPolicy", "TaskStdio"]

DRAIN_SECONDS = 5.0


@dataclass(frozen=True)
class RotationPolicy:
    """When to rotate a log file: pure."""

    max_bytes: int = DEFAULT_MAX_BYTES
    keep: int = DEFAULT_KEEP

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> RotationPolicy:
        """From juggler.log_max_bytes and juggler.log_max_files; raises TaskError
        (a ValueError) as common/task_check.py does for a bad value."""
        parsed = task_labels(labels)
        return cls(parsed.log_max_bytes, parsed.log_max_files)

    def split(self, size: int, data: bytes) -> list[tuple[bool, bytes]]:
        """How to append `data` to a file holding `size` bytes: the pieces to
        write in order, each with whether to rotate the file before it."""
        pieces: list[tuple[bool, bytes]] = []
        rotate = False
        while data:
            room = self.max_bytes - size
            if len(data) <= room:
                pieces.append((rotate, data))
                break
            cut = data.rfind(b"\n", 0, room) + 1 if room > 0 else 0
            if cut == 0 and size == 0:
                cut = room  # one line longer than a whole file: cut it at the cap
            if cut:
                pieces.append((rotate, data[:cut]))
                data = data[cut:]
            rotate, size = True, 0
        return pieces

    def rotated(self, path: Path) -> list[Path]:
        """The rotated files of `path`, newest first (`stdout.1`, `stdout.2`)."""
        return [path.with_name(f"{path.name}.{i}") for i in range(1, self.keep + 1)]


class RotatingLog:
    """An append-only file rotated by a `RotationPolicy`; `start` is the
    position of the live file's first byte in the stream, recorded on each
    file (common/log_positions.py)."""

    def __init__(self, path: Path, policy: RotationPolicy) -> None:
        self.path = path
        self.policy = policy
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW
                          | os.O_CLOEXEC, 0o644)
        self.size = os.fstat(self.fd).st_size
        recorded = log_positions.start_of(self.fd)
        self.start = recorded or 0
        if recorded is None:
            log_positions.mark_start(self.fd, self.start)

    @property
    def end(self) -> int:
        """The position of the next byte written: all the stream so far."""
        return self.start + self.size

    def write(self, data: bytes) -> None:
        for rotate, piece in self.policy.split(self.size, data):
            if rotate:
                self._rotate()
            view = memoryview(piece)
            while view:
                view = view[os.write(self.fd, view):]
            self.size += len(piece)

    def _rotate(self) -> None:
        # The new file gets its start before its name, so that no reader
        # ever sees it without one.
        fresh = self.path.with_name(f".{self.path.name}.new")
        # The task can write its sandbox: whatever it put at that name goes,
        # and the file is made afresh, never through a link of the task's.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(fresh)
        fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_APPEND
                     | os.O_CLOEXEC, 0o644)
        log_positions.mark_start(fd, self.end)
        os.close(self.fd)
        names = [self.path, *self.policy.rotated(self.path)]
        # Oldest first: stdout.1 → stdout.2 replaces the oldest, then stdout → stdout.1
        # (keep 0: the new file replaces the full one).
        for older, newer in reversed(list(zip(names[1:], names[:-1], strict=True))):
            with contextlib.suppress(FileNotFoundError):
                os.replace(newer, older)
        os.replace(fresh, self.path)
        self.fd = fd
        self.start, self.size = self.end, 0

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass
class ChildStdio:
    """The container's end, handed to container.launch.start: fds to make its
    0, 1 and 2, or (`console` ≥ 0) a socket to send a new pty's master over."""

    stdin: int = -1
    stdout: int = -1
    stderr: int = -1
    console: int = -1

    def fds(self) -> list[int]:
        return [fd for fd in (self.stdin, self.stdout, self.stderr, self.console) if fd >= 0]


Output = Callable[[str, bytes], None]
HOLD = "hold"  # the ReadGate holder of a hold (label juggler.hold_output)


class ReadGate:
    """Whether the task's output is read now: closed while anything holds
    it (a hold, a back-pressured client that is behind: executor/attach.py).
    Pure; `close` and `open` say whether the gate changed."""

    def __init__(self) -> None:
        self.holders: set[object] = set()

    @property
    def is_open(self) -> bool:
        return not self.holders

    def close(self, holder: object) -> bool:
        """`holder` holds the gate; True when this closed an open gate."""
        was_open = self.is_open
        self.holders.add(holder)
        return was_open

    def open(self, holder: object) -> bool:
        """`holder` lets go (again: nothing); True when that opened the gate."""
        if holder not in self.holders:
            return False
        self.holders.discard(holder)
        return self.is_open


class TaskStdio:
    """The executor's end of its task's stdio (see the module docstring)."""

    def __init__(self, sandbox: Path, *, tty: bool, interactive: bool,
                 policy: RotationPolicy, hold: float = 0.0) -> None:
        self.tty = tty
        self.policy = policy
        self.hold = hold  # seconds to leave the output unread for an attach (0: none)
        self.gate = ReadGate()
        self._gate_changed: list[asyncio.Future[None]] = []
        self._hold_timer: asyncio.TimerHandle | None = None
        self.hold_expired: Callable[[], None] = lambda: None  # said when no client came
        self.logs = {"stdout": RotatingLog(sandbox / "stdout", policy),
                     "stderr": RotatingLog(sandbox / "stderr", policy)}
        self.listeners: list[Output] = []
        self.master = -1
        self.stdin: fdio.FdWriter | None = None
        self._readers: dict[str, int] = {}
        self._watches: list[fdio.Reader] = []
        self._console: socket.socket | None = None
        self.child = ChildStdio()
        if tty:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            self._console = ours
            self.child.console = theirs.detach()
            return
        out_r, self.child.stdout = os.pipe()
        err_r, self.child.stderr = os.pipe()
        self._readers = {"stdout": out_r, "stderr": err_r}
        if interactive:
            self.child.stdin, stdin_w = os.pipe()
            self.stdin = fdio.FdWriter(stdin_w)
        else:
            self.child.stdin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)

    @classmethod
    def for_task(cls, sandbox: Path, tty: bool, labels: Mapping[str, str]) -> TaskStdio:
        parsed = task_labels(labels)
        return cls(sandbox, tty=tty, interactive=parsed.interactive,
                   policy=RotationPolicy(parsed.log_max_bytes, parsed.log_max_files),
                   hold=parsed.hold_output)

    def started(self) -> None:
        """The container runs (exec succeeded): close its ends, start reading."""
        for fd in self.child.fds():
            os.close(fd)
        self.child = ChildStdio()
        if self._console is not None:
            self._console.setblocking(False)
            try:
                master = console.receive(self._console)
            except BlockingIOError:
                master = None
            self._console.close()
            self._console = None
            if master is None:
                raise OSError("the container sent no terminal")
            self.master = master
            self._readers = {"stdout": master}
            self.stdin = fdio.FdWriter(master, close_fd=False)
        if self.hold > 0:
            self.pause(HOLD)
            self._hold_timer = asyncio.get_running_loop().call_later(self.hold, self._hold_over)
        for name, fd in self._readers.items():
            self._watches.append(fdio.Reader(fd, lambda data, name=name: self._output(name, data),
                                             paused=not self.gate.is_open))

    # -- reading or not (back-pressure, hold) -------------------------------
    def pause(self, holder: object) -> None:
        """Stop reading the task's output until every holder has resumed."""
        if self.gate.close(holder):
            for reader in self._watches:
                reader.pause()
            self._changed()

    def resume(self, holder: object) -> None:
        if self.gate.open(holder):
            for reader in self._watches:
                reader.resume()
            self._changed()

    @property
    def holding(self) -> bool:
        """Still in its hold: no back-pressured client has attached yet."""
        return HOLD in self.gate.holders

    def end_hold(self) -> None:
        """A back-pressured client attached, or the hold's time is up."""
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        self.resume(HOLD)

    def _hold_over(self) -> None:
        self._hold_timer = None
        if self.holding:
            self.hold_expired()
        self.end_hold()

    def _changed(self) -> None:
        waiters, self._gate_changed = self._gate_changed, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _output(self, stream: str, data: bytes) -> None:
        self.logs[stream].write(data)
        for listener in list(self.listeners):
            listener(stream, data)

    # -- input (from attach) ----------------------------------------------
    def write_stdin(self, data: bytes) -> None:
        if self.stdin is not None:
            self.stdin.write(data)

    def close_stdin(self) -> None:
        if self.tty:
            self.write_stdin(b"\x04")  # the line discipline's end of file
        elif self.stdin is not None:
            self.stdin.close()
            self.stdin = None

    def resize(self, rows: int, columns: int) -> None:
        if self.master >= 0:
            with contextlib.suppress(OSError):
                console.set_size(self.master, rows, columns)

    # -- end ----------------------------------------------------------------
    async def drain(self, timeout: float = DRAIN_SECONDS) -> bool:
        """Wait until every stream reached its end; False if it read for
        `timeout` seconds without reaching it. Time while the output is not
        read (a back-pressured client is behind, a hold) does not count:
        those end when the client catches up or goes away, or the hold's
        time is up."""
        loop = asyncio.get_running_loop()
        left = timeout
        while pending := [r.done for r in self._watches if not r.done.done()]:
            reading = self.gate.is_open
            changed = loop.create_future()
            self._gate_changed.append(changed)
            began = loop.time()
            done, _ = await asyncio.wait([*pending, changed], timeout=left if reading else None,
                                         return_when=asyncio.FIRST_COMPLETED)
            if not changed.done():
                changed.cancel()
            if reading:
                left -= loop.time() - began
                if not done and left <= 0:
                    return False
        return True

    def close(self) -> None:
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        for reader in self._watches:
            reader.done.cancel()
        self._watches = []
        for fd in [*self.child.fds(), *set(self._readers.values())]:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.child = ChildStdio()
        self._readers = {}
        self.master = -1
        if self._console is not None:
            self._console.close()
            self._console = None
        if self.stdin is not None and not self.tty:
            with contextlib.suppress(OSError):
                os.close(self.stdin.fd)
        self.stdin = None
        for log in self.logs.values():
            log.close()
