"""`juggler stats TASK...`: a running task's resource usage (like docker stats)."""

from __future__ import annotations

import argparse
import asyncio
import sys

import grpc

from juggler.cli import address as addr
from juggler.cli.tasks import TaskNotFound, agent_error, locate_running
from juggler.common import servers
from juggler.v1 import agent_pb2, agent_pb2_grpc


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stats", help="show running tasks' resource usage",
                       description="CPU, memory and pids of running tasks, read from their "
                                   "cgroups on their agents.")
    p.add_argument("--master", default=None, help="master address (default: what `up` wrote)")
    p.add_argument("-w", "--watch", type=float, default=0.0, metavar="SECONDS",
                   help="refresh every SECONDS until Ctrl-C (default: print once)")
    p.add_argument("tasks", nargs="+", metavar="TASK")
    p.set_defaults(func=main)


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f}MiB"


def render(rows: list[tuple[agent_pb2.TaskUsage, float | None]]) -> str:
    table = [("TASK ID", "CPU %", "CPU TIME", "THROTTLED", "MEM USAGE / LIMIT", "MEM PEAK",
              "PIDS", "OOM")]
    for usage, cpu_percent in rows:
        limit = _mib(usage.memory_limit_bytes) if usage.memory_limit_bytes else "-"
        table.append((
            usage.task_id, "-" if cpu_percent is None else f"{cpu_percent:.1f}%",
            f"{usage.cpu_seconds:.2f}s", f"{usage.cpu_throttled_seconds:.2f}s",
            f"{_mib(usage.memory_bytes)} / {limit}", _mib(usage.memory_peak_bytes),
            str(usage.pids), str(usage.oom_kills)))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in table)


async def _usage(master: str, task_id: str) -> agent_pb2.TaskUsage:
    view = await locate_running(master, task_id)
    try:
        async with servers.channel(view.agent_address) as channel:
            return await agent_pb2_grpc.AgentStub(channel).GetUsage(
                agent_pb2.GetUsageRequest(task_id=task_id, framework_id=view.framework_id),
                timeout=10)
    except grpc.aio.AioRpcError as e:
        raise TaskNotFound(await agent_error(master, view, e)) from None


async def _run(args: argparse.Namespace) -> int:
    master = addr.resolve(args.master)
    previous: dict[str, agent_pb2.TaskUsage] = {}
    while True:
        rows = []
        for task_id in args.tasks:
            usage = await _usage(master, task_id)
            before = previous.get(task_id)
            percent = None
            if before is not None and usage.timestamp > before.timestamp:
                percent = 100 * (usage.cpu_seconds - before.cpu_seconds) / (
                    usage.timestamp - before.timestamp)
            previous[task_id] = usage
            rows.append((usage, percent))
        print(render(rows), flush=True)
        if args.watch <= 0:
            return 0
        await asyncio.sleep(args.watch)
        print()


def main(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except TaskNotFound as e:
        print(f"juggler stats: {e}", file=sys.stderr)
        return 1
    except grpc.aio.AioRpcError as e:
        print(f"juggler stats: {e.details()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
