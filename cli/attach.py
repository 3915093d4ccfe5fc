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
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

import grpc

from juggler.cli import containers, terminal
from juggler.cli.containers import EXIT_JUGGLER
from juggler.common import servers
from juggler.common.detach_keys import parse as parse_detach_keys
from juggler.v1 import agent_pb2, agent_pb2_grpc

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"

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


async def attach(address: str, task_id: str, framework_id: str, *, tty: bool,
                 stdin: bool = True, logs: bool = False, detach_keys: bool = True,
                 keys: bytes = terminal.DETACH_KEYS) -> int | None:
    """Attach to a run; its exit code, or None after a detach."""
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
                tty=tty, interactive=stdin, detach=tty and detach_keys, detach_keys=keys)


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
