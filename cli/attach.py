"""`juggler attach [--logs] TASK`: connect to a running task's own stdio.

Prints the task's output live and sends what you type to it. With a task
started with a terminal (`juggler run -t`, ContainerInfo.tty) the local
terminal goes raw and every key, Ctrl-C included, goes to the task; Ctrl-P
Ctrl-Q detaches and leaves the task running (as `docker attach`). Without a
terminal, Ctrl-C detaches (the task keeps running) and input reaches the task
only if it was started interactive (`juggler run -i`). Exits with the task's
exit code when it ends while attached, 0 on detach, 125 when juggler failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

import grpc

from juggler.cli import address as addr
from juggler.cli import tasks, terminal
from juggler.common import servers
from juggler.v1 import agent_pb2, agent_pb2_grpc

EXIT_JUGGLER = 125


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("attach", help="attach to a running task's stdio",
                       description="Attach to a running task's input and output; "
                                   "Ctrl-P Ctrl-Q detaches.")
    p.add_argument("--master", default=None, help="master address (default: what `up` wrote)")
    p.add_argument("--logs", action="store_true", help="first print what the task wrote")
    p.add_argument("--no-stdin", action="store_true", help="do not send input")
    p.add_argument("task", metavar="TASK", help="task id")
    p.set_defaults(func=main)


async def attach(address: str, task_id: str, framework_id: str, *, tty: bool,
                 stdin: bool = True, logs: bool = False, detach_keys: bool = True
                 ) -> int | None:
    """Attach to a task; its exit code, or None after a detach."""
    start = agent_pb2.AttachRequest.Start(task_id=task_id, framework_id=framework_id,
                                          logs=logs)
    if tty:
        start.size.CopyFrom(terminal.terminal_size())
    async with servers.channel(address) as channel:
        stub = agent_pb2_grpc.AgentStub(channel)
        with terminal.raw_mode(0) if tty and stdin else contextlib.nullcontext():
            return await terminal.relay(
                stub.Attach, agent_pb2.AttachRequest(start=start),
                lambda message: agent_pb2.AttachRequest(input=message),
                tty=tty, interactive=stdin, detach=tty and detach_keys)


async def run(args: argparse.Namespace, master: str) -> int:
    try:
        view = await tasks.locate_running(master, args.task)
    except tasks.TaskNotFound as e:
        print(f"juggler attach: {e}", file=sys.stderr)
        return EXIT_JUGGLER
    tty = view.info.container.tty
    try:
        code = await attach(view.agent_address, args.task, view.framework_id, tty=tty,
                            stdin=not args.no_stdin, logs=args.logs)
    except grpc.aio.AioRpcError as e:
        print(f"juggler attach: {await tasks.agent_error(master, view, e)}", file=sys.stderr)
        return EXIT_JUGGLER
    if code is None:
        print("\r\njuggler: detached; the task keeps running", file=sys.stderr)
        return 0
    return code


def main(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(run(args, addr.resolve(args.master)))
    except KeyboardInterrupt:  # no terminal: Ctrl-C detaches, the task keeps running
        print("\njuggler: detached; the task keeps running", file=sys.stderr)
        return 0
