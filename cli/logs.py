"""`juggler logs [-f] [--tail N] [--stdout|--stderr] TASK`: a task's output.

Finds the task's agent through the master (running or completed tasks) and
streams Agent.Logs from it; `-f` keeps following until the task ends.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import grpc

from juggler.cli import address as addr
from juggler.cli import tasks
from juggler.common import servers
from juggler.v1 import agent_pb2, agent_pb2_grpc


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("logs", help="print a task's stdout and stderr",
                       description="Print a task's output (from its agent's sandbox).")
    p.add_argument("--master", default=None, help="master address (default: what `up` wrote)")
    p.add_argument("-f", "--follow", action="store_true",
                   help="keep printing new output until the task ends")
    p.add_argument("--tail", type=_lines, default=0, metavar="N",
                   help="only the last N lines of each stream")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--stdout", action="store_true", help="only stdout")
    which.add_argument("--stderr", action="store_true", help="only stderr")
    p.add_argument("task", metavar="TASK", help="task id")
    p.set_defaults(func=main)


def _lines(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of lines")
    return value


async def stream(args: argparse.Namespace, master: str) -> int:
    try:
        view = await tasks.locate(master, args.task)
    except grpc.aio.AioRpcError as e:
        print(f"juggler logs: {tasks.unreachable('master', master, e)}", file=sys.stderr)
        return 1
    except tasks.TaskNotFound as e:
        print(f"juggler logs: {e}", file=sys.stderr)
        return 1
    request = agent_pb2.LogsRequest(task_id=args.task, framework_id=view.framework_id,
                                    follow=args.follow, tail=args.tail, stdout=args.stdout,
                                    stderr=args.stderr)
    try:
        async with servers.channel(view.agent_address) as channel:
            async for chunk in agent_pb2_grpc.AgentStub(channel).Logs(request):
                out = sys.stderr if chunk.stream == agent_pb2.LogChunk.STDERR else sys.stdout
                out.buffer.write(chunk.data)
                out.flush()
    except grpc.aio.AioRpcError as e:
        print(f"juggler logs: {await tasks.agent_error(master, view, e)}", file=sys.stderr)
        return 1
    return 0


def main(args: argparse.Namespace) -> int:
    master = addr.resolve(args.master)
    try:
        return asyncio.run(stream(args, master))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `juggler logs TASK | head`: the reader has had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
