"""`juggler exec [-i] [-t] TASK -- CMD [ARG...]`: run a command in a running task.

The command runs inside the task's container (its namespaces, cgroup, user
and hardening; see container/nsenter.py), started by the task's agent.
`-t` gives it a terminal (the local one goes raw), `-i` forwards stdin. Exits
with the command's exit code; 125 when juggler itself failed (no such task,
not running, agent unreachable), as `docker exec`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys

import grpc

from juggler.cli import address as addr
from juggler.cli import tasks, terminal
from juggler.common import servers
from juggler.v1 import agent_pb2, agent_pb2_grpc

EXIT_JUGGLER = 125


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("exec", help="run a command inside a running task",
                       description="Run a command inside a running task's container.")
    p.add_argument("--master", default=None, help="master address (default: what `up` wrote)")
    p.add_argument("-i", "--interactive", action="store_true", help="forward stdin")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a terminal")
    p.add_argument("-e", "--env", action="append", default=[], metavar="NAME=VALUE",
                   help="environment variable (repeatable)")
    p.add_argument("-u", "--user", default="", help="user (default: the task's)")
    p.add_argument("-w", "--workdir", default="", help="working directory (default: the task's)")
    p.add_argument("task", metavar="TASK", help="task id")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARG...]")
    p.set_defaults(func=main)


async def run(args: argparse.Namespace, master: str, argv: list[str]) -> int:
    try:
        view = await tasks.locate_running(master, args.task)
    except tasks.TaskNotFound as e:
        print(f"juggler exec: {e}", file=sys.stderr)
        return EXIT_JUGGLER
    env = dict(item.partition("=")[::2] for item in args.env)
    start = agent_pb2.ExecRequest.Start(
        task_id=args.task, framework_id=view.framework_id, argv=argv, tty=args.tty,
        environment=env, user=args.user, working_directory=args.workdir)
    if args.tty:
        start.size.CopyFrom(terminal.terminal_size())
        start.environment.setdefault("TERM", os.environ.get("TERM", "xterm"))
    try:
        async with servers.channel(view.agent_address) as channel:
            stub = agent_pb2_grpc.AgentStub(channel)
            raw = args.tty and args.interactive
            with terminal.raw_mode(0) if raw else contextlib.nullcontext():
                code = await terminal.relay(
                    stub.Exec, agent_pb2.ExecRequest(start=start),
                    lambda message: agent_pb2.ExecRequest(input=message),
                    tty=args.tty, interactive=args.interactive, detach=False)
    except grpc.aio.AioRpcError as e:
        print(f"juggler exec: {await tasks.agent_error(master, view, e)}", file=sys.stderr)
        return EXIT_JUGGLER
    return EXIT_JUGGLER if code is None else code


def main(args: argparse.Namespace) -> int:
    argv = list(args.command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print("juggler exec: no command given (usage: juggler exec [-it] TASK -- CMD [ARG...])",
              file=sys.stderr)
        return 2
    return asyncio.run(run(args, addr.resolve(args.master), argv))
