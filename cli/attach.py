"""`juggler attach [--detach-keys KEYS] CONTAINER|TASK`: connect to a running
container's (or task's) own stdio.

Prints its output live and sends what you type to it. With a terminal
(`juggler run -t`) the local terminal goes raw and every key, Ctrl-C
included, goes to it; the detach keys (Ctrl-P Ctrl-Q, or --detach-keys in
docker's spelling: "ctrl-p,ctrl-q", "ctrl-a,x") detach and leave it running,
as `docker attach`. Without a terminal, Ctrl-C detaches (it keeps running)
and input reaches it only if it was started interactive (`-i`). Exits with
its exit code when it ends while attached, 0 on detach; 1 when the containers
service refused (no such container, not running: docker's words), 125 when
juggler failed.

Attached, it gets every byte the container writes, as `docker attach` does:
while this terminal (or the pipe it writes to) is behind, the container waits
in its writes (Agent.Attach with back-pressure, executor/attach.py). The same
`attach` carries `juggler run`'s output (cli/run.py, cli/container_run.py),
counting what it wrote (`Written`) so that a run whose agent restarts goes on
from there, and failing (`OutputLost`) when bytes it should have had were
rotated away first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc

from juggler.cli import containers, terminal
from juggler.cli.containers import EXIT_JUGGLER
from juggler.common import servers
from juggler.common.detach_keys import parse as parse_detach_keys
from juggler.v1 import agent_pb2, agent_pb2_grpc, executor_pb2

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"


class OutputLost(Exception):
    """Output the client was owed is gone (rotated away before it got it)."""


class ReaderGone(Exception):
    """What reads this process's output went away (EPIPE): stop streaming."""


@dataclass
class Written:
    """Bytes of each stream written here so far (the positions to go on from)."""

    stdout: int = 0
    stderr: int = 0

def detach_keys(text: str) -> bytes:
    """Docker's --detach-keys (common/detach_keys.py). Raises
    argparse.ArgumentTypeError."""
    try:
        return parse_detach_keys(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("attach", help="attach to a running container's (or task's) stdio",
                       description="Attach to a running container's (or task's) input and "
                                   "output; Ctrl-P Ctrl-Q detaches.")
    p.add_argument("--master", default=None, help="master address (default: what `up` wrote)")
    containers.add_host_flag(p)
    p.add_argument("--logs", action="store_true", help="first print what it wrote")
    p.add_argument("--no-stdin", action="store_true", help="do not send input")
    p.add_argument("--detach-keys", type=detach_keys, default=terminal.DETACH_KEYS,
                   metavar="KEYS", help=f"keys that detach (default {DEFAULT_DETACH_KEYS})")
    p.add_argument("ref", metavar="CONTAINER|TASK")
    p.set_defaults(func=main)


GRPC_CORE_INTERNAL = "Internal error from Core"


def dropped_by_grpc(error: grpc.aio.AioRpcError) -> bool:
    """Whether a stream's error is grpc aio's own INTERNAL, not the agent's:
    a write of the client that crossed the end of the call replaces the
    agent's status with it (grpc/grpc#36066). The stream is as good as
    dropped: what it did not deliver is in the run's logs."""
    return (error.code() == grpc.StatusCode.INTERNAL
            and (error.details() or "") == GRPC_CORE_INTERNAL)


async def attach(address: str, task_id: str, framework_id: str, *, tty: bool,
                 stdin: bool = True, logs: bool = False, detach_keys: bool = True,
                 keys: bytes = terminal.DETACH_KEYS,
                 written: Written | None = None) -> int | None:
    """Attach to a run, with back-pressure; its exit code, or None after the
    user detached. With `logs`, what it wrote first: from the positions in
    `written` (which counts on), else what its logs still keep. Raises
    grpc.aio.AioRpcError, OutputLost (bytes from `written` on were rotated
    away), ReaderGone, terminal.StreamEnded (the stream ended without the
    exit code and without a detach: never to be taken for one)."""
    count = written if written is not None else Written()
    start = agent_pb2.AttachRequest.Start(task_id=task_id, framework_id=framework_id,
                                          logs=logs, backpressure=True)
    if written is not None:  # every byte from there, or OutputLost
        start.stdout_from, start.stderr_from = written.stdout, written.stderr
    if tty:
        start.size.CopyFrom(terminal.terminal_size())
    async with servers.channel(address) as channel:
        stub = agent_pb2_grpc.AgentStub(channel)
        with terminal.raw_mode(0) if tty and stdin else contextlib.nullcontext():
            return await terminal.relay(
                lambda requests: _write_output(stub.Attach(requests), count),
                agent_pb2.AttachRequest(start=start),
                lambda message: agent_pb2.AttachRequest(input=message),
                tty=tty, interactive=stdin, detach=tty and detach_keys, detach_keys=keys,
                strict=True)


async def _write_output(call: AsyncIterator[executor_pb2.ProcessOutput], written: Written
                        ) -> AsyncIterator[executor_pb2.ProcessOutput]:
    """Write the call's output here, counting it; pass on the rest. Written
    from a thread: a full pipe holds this writer (and so, through the agent,
    the task), not the event loop that answers Ctrl-C."""
    async for message in call:
        kind = message.WhichOneof("output")
        if kind in ("stdout", "stderr"):
            data = getattr(message, kind)
            try:
                await _write(sys.stdout if kind == "stdout" else sys.stderr, data)
            except BrokenPipeError:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                raise ReaderGone() from None
            setattr(written, kind, getattr(written, kind) + len(data))
        elif kind in ("stdout_lost", "stderr_lost"):
            stream = kind.removesuffix("_lost")
            raise OutputLost(f"{getattr(message, kind)} bytes of its {stream} (from byte "
                             f"{getattr(written, stream)}) were rotated away before this "
                             "client could read them")
        else:
            yield message


async def _write(out, data: bytes) -> None:  # type: ignore[no-untyped-def]
    """os.write(2) all of `data` to `out`'s fd from a daemon thread: one stuck
    for good (nothing reads the pipe) neither holds the loop nor keeps this
    process from exiting, and holds no lock that exit's flush needs."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if not done.done():
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)

    def work() -> None:
        error: BaseException | None = None
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError as e:
            error = e
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
            loop.call_soon_threadsafe(settle, error)

    out.flush()  # what print() left in its buffer goes first
    fd = out.fileno()
    threading.Thread(target=work, daemon=True, name="attach-output").start()
    await done


async def run(args: argparse.Namespace) -> int:
    try:
        target = await containers.locate(args.ref, args.docker_host, args.master)
    except containers.NotFound as e:
        print(str(e) if e.daemon else f"juggler attach: {e}", file=sys.stderr)
        return 1 if e.daemon else EXIT_JUGGLER
    if not target.running:
        if target.container is not None:
            print("You cannot attach to a stopped container, start it first", file=sys.stderr)
            return 1
        print(f"juggler attach: task {target.task_id!r} is {target.state}, not running",
              file=sys.stderr)
        return EXIT_JUGGLER
    try:
        code = await attach(target.agent_address, target.task_id, target.framework_id,
                            tty=target.tty, stdin=not args.no_stdin, logs=args.logs,
                            keys=args.detach_keys)
    except grpc.aio.AioRpcError as e:
        print(f"juggler attach: {await containers.agent_failure(target, e)}", file=sys.stderr)
        return EXIT_JUGGLER
    except ReaderGone:
        return 0  # `juggler attach X | head`: detached, it keeps running
    except terminal.StreamEnded:
        print("juggler attach: the stream ended before the exit code came (its agent or "
              "executor went away)", file=sys.stderr)
        return EXIT_JUGGLER
    what = "container" if target.container is not None else "task"
    if code is None:
        print(f"\r\njuggler: detached; the {what} keeps running", file=sys.stderr)
        return 0
    return code


def main(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:  # no terminal: Ctrl-C detaches, it keeps running
        print("\njuggler: detached; it keeps running", file=sys.stderr)
        return 0
