"""`juggler logs [-f] [--tail N] [--stdout|--stderr] CONTAINER|TASK`: what it wrote.

A container's output is every run's, oldest first (each run is a task,
`<id12>.<n>`, whose output its agent keeps in the task's sandbox; a run whose
sandbox is gone is skipped); `--tail N` counts lines of the current run. A
task's is its own. `-f` keeps following until the (current) run ends; a
restart starts a new run, which `-f` does not follow (docker's does). The output comes
from the agent directly (Agent.Logs), found through the containers service's
inspect or the master's state (cli/containers.py).

Only what the run's log files keep is shown (juggler.log_max_bytes and
juggler.log_max_files say how much). A reader that falls behind a run writing
faster than it reads, so that files it had not read yet are rotated away,
is told: the agent ends the stream with DATA_LOSS and how many bytes were
lost, which `logs` prints before it exits 1. Starting after earlier output
was rotated away is no loss.

Not yet: `-t/--timestamps` and `--since`, which need the agent to record when
each line was written (it keeps the bytes only); they are refused with that
reason rather than answered wrongly.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import grpc

from juggler.cli import containers
from juggler.cli.attach import Written
from juggler.common import servers
from juggler.v1 import agent_pb2, agent_pb2_grpc


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("logs", help="print a container's (or task's) stdout and stderr",
                       description="Print a container's or a task's output (from its agent's "
                                   "sandbox).")
    p.add_argument("--master", default=None, help="master address (default: what `up` wrote)")
    containers.add_host_flag(p)
    p.add_argument("-f", "--follow", action="store_true",
                   help="keep printing new output until it ends")
    p.add_argument("-n", "--tail", type=_lines, default=0, metavar="N",
                   help="only the last N lines of each stream (of the current run)")
    p.add_argument("-t", "--timestamps", action="store_true",
                   help="(not yet: the agent does not record when lines were written)")
    p.add_argument("--since", default="", metavar="TIME",
                   help="(not yet: the agent does not record when lines were written)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--stdout", action="store_true", help="only stdout")
    which.add_argument("--stderr", action="store_true", help="only stderr")
    p.add_argument("ref", metavar="CONTAINER|TASK", help="container name or id, or a task id")
    p.set_defaults(func=main)


def _lines(text: str) -> int:
    if text == "all":   # docker's default spelling
        return 0
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of lines")
    return value


async def copy_output(address: str, task_id: str, framework_id: str, *, follow: bool,
                      tail: int = 0, stdout: bool = False, stderr: bool = False,
                      written: Written | None = None) -> None:
    """Write one run's output (Agent.Logs) to this process's stdout and stderr.
    `written`: the position each stream reached here, counted on: output goes
    on from exactly there (a caller that reconnects after an agent restart
    writes nothing twice and misses nothing, or gets DATA_LOSS). Raises
    grpc.aio.AioRpcError: DATA_LOSS when bytes this reader had not read were
    rotated away (it fell behind, or `written` is no longer kept)."""
    request = agent_pb2.LogsRequest(task_id=task_id, framework_id=framework_id, follow=follow,
                                    tail=tail, stdout=stdout, stderr=stderr)
    if written is not None:
        request.stdout_from, request.stderr_from = written.stdout, written.stderr
    async with servers.channel(address) as channel:
        async for chunk in agent_pb2_grpc.AgentStub(channel).Logs(request):
            name = "stderr" if chunk.stream == agent_pb2.LogChunk.STDERR else "stdout"
            out = sys.stderr if name == "stderr" else sys.stdout
            out.buffer.write(chunk.data)
            out.flush()
            if written is not None:
                setattr(written, name, getattr(written, name) + len(chunk.data))


async def stream(args: argparse.Namespace) -> int:
    try:
        target = await containers.locate(args.ref, args.docker_host, args.master)
    except containers.NotFound as e:
        print(f"juggler logs: {e}", file=sys.stderr)
        return 1
    if target.container is not None and not target.task_id:
        return 0   # created, never started: no output yet (docker prints nothing either)
    runs = [target.task_id]
    if target.container is not None and not args.tail:
        runs = [target.run_id(n) for n in range(1, target.generation() + 1)]
    try:
        for i, task_id in enumerate(runs):
            last = i == len(runs) - 1
            try:
                await copy_output(target.agent_address, task_id, target.framework_id,
                                  follow=args.follow and last, tail=args.tail,
                                  stdout=args.stdout, stderr=args.stderr)
            except grpc.aio.AioRpcError as e:
                if last or e.code() != grpc.StatusCode.NOT_FOUND:
                    raise
    except grpc.aio.AioRpcError as e:
        print(f"juggler logs: {await containers.agent_failure(target, e)}", file=sys.stderr)
        return 1
    return 0


def main(args: argparse.Namespace) -> int:
    if args.timestamps or args.since:
        print("juggler logs: -t/--timestamps and --since are not supported yet: agents keep "
              "a run's output without the time each line was written", file=sys.stderr)
        return 1
    try:
        return asyncio.run(stream(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `juggler logs X | head`: the reader has had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
