"""The local end of exec and attach: raw terminal, detach keys, stdio relay.

`relay()` drives one bidi call (Agent.Exec or Agent.Attach): it sends the
first message, then what the user types (and terminal sizes on SIGWINCH) and
writes what comes back to stdout/stderr, until the remote process's exit
code (returned) or a detach (None).

Detach keys are detected here, on the client, as docker does: Ctrl-P Ctrl-Q.
A byte that may start the sequence is held back until the next one shows
whether it does; if not, both are sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import termios
import threading
import tty
from collections.abc import Callable, Iterator

import grpc

from juggler.common.detach_keys import DETACH_KEYS
from juggler.common.detach_keys import DetachScanner as DetachKeys
from juggler.container import console
from juggler.v1 import executor_pb2

NOT_A_TTY = "the input device is not a TTY"


def tty_refused(tty: bool, interactive: bool, fd: int = 0) -> str:
    """Docker's check before `run -it`/`exec -it`/`start -ai` (the docker CLI's
    In().CheckTty): a terminal asked for with stdin attached needs stdin to be
    one. Returns the error to print (exit 1), or ""."""
    return NOT_A_TTY if tty and interactive and not os.isatty(fd) else ""


@contextlib.contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """The local terminal in raw mode (keys go to the remote one as typed)."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSANOW)  # not TCSAFLUSH: keep what was typed ahead
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def terminal_size() -> executor_pb2.TerminalSize:
    for fd in (0, 1):
        with contextlib.suppress(OSError):
            rows, columns = console.get_size(fd)
            return executor_pb2.TerminalSize(rows=rows, columns=columns)
    return executor_pb2.TerminalSize()


Wrap = Callable[[executor_pb2.ProcessInput], object]


class StreamEnded(Exception):
    """The call ended without an exit code and without the user detaching
    (the executor dropped the client, the agent went away)."""


async def relay(open_call, first, wrap: Wrap, *, tty: bool, interactive: bool,  # type: ignore[no-untyped-def]
                detach: bool, detach_keys: bytes = DETACH_KEYS, strict: bool = False
                ) -> int | None:
    """Run one Exec/Attach call; `wrap` makes a request from a ProcessInput.
    Its exit code, or None after the user detached — or, unless `strict`
    (then StreamEnded is raised), when the call ended without one."""
    loop = asyncio.get_running_loop()
    outbox: asyncio.Queue[object] = asyncio.Queue()
    outbox.put_nowait(first)
    detached = asyncio.Event()
    keyed = asyncio.Event()  # the user detached (the detach keys)
    keys = DetachKeys(detach_keys) if detach else None

    async def requests():  # type: ignore[no-untyped-def]
        while (message := await outbox.get()) is not None:
            yield message

    def send(message: executor_pb2.ProcessInput) -> None:
        outbox.put_nowait(wrap(message))

    def typed(data: bytes) -> None:
        if not data:
            send(executor_pb2.ProcessInput(close_stdin=True))
            return
        if keys is not None:
            data, done = keys.feed(data)
            if data:
                send(executor_pb2.ProcessInput(stdin=data))
            if done:
                keyed.set()
                detached.set()
                outbox.put_nowait(None)  # ending our stream detaches
            return
        send(executor_pb2.ProcessInput(stdin=data))

    def read_stdin() -> None:  # a daemon thread: works for ttys, pipes and files
        while not detached.is_set():
            try:
                data = os.read(0, 65536)
            except OSError:
                data = b""
            loop.call_soon_threadsafe(typed, data)
            if not data:
                return

    if interactive:
        threading.Thread(target=read_stdin, daemon=True).start()
    elif not tty:
        send(executor_pb2.ProcessInput(close_stdin=True))  # no input: EOF at once
    if tty:
        with contextlib.suppress(ValueError, RuntimeError):
            loop.add_signal_handler(signal.SIGWINCH, lambda: send(
                executor_pb2.ProcessInput(resize=terminal_size())))
    call = open_call(requests())
    code: int | None = None
    try:
        async for message in call:
            kind = message.WhichOneof("output")
            if kind == "stdout":
                sys.stdout.buffer.write(message.stdout)
                sys.stdout.flush()
            elif kind == "stderr":
                sys.stderr.buffer.write(message.stderr)
                sys.stderr.flush()
            elif kind == "exit_code":
                code = message.exit_code
    except grpc.aio.AioRpcError:
        # The exit code is the stream's last message: the answer is whole.
        # A status after it is grpc aio's own (a write of ours that crossed
        # the agent's end is reported INTERNAL over the agent's OK,
        # grpc/grpc#36066), and changes nothing.
        if code is None:
            raise
    finally:
        with contextlib.suppress(ValueError, RuntimeError):
            loop.remove_signal_handler(signal.SIGWINCH)
        detached.set()
    if strict and code is None and not keyed.is_set():
        raise StreamEnded("the stream ended before the exit code")
    return code
