"""`juggler stats [--no-stream] CONTAINER|TASK...`: resource usage, read from the
cgroups of the runs on their agents (Agent.GetUsage).

Containers are shown as `docker stats` shows them (CONTAINER ID, NAME, CPU %,
MEM USAGE / LIMIT, MEM %, NET I/O, BLOCK I/O, PIDS), refreshed every second
until Ctrl-C (on a terminal, in place), or once with --no-stream; CPU % is
measured over that second (the first table of a stream too: it waits for a
second sample, as docker does). A container that does not run shows zeros, as
docker's; NET I/O and BLOCK I/O are "--" (agents do not measure them yet).
PIDS is the pids controller's count, as docker's: processes and threads,
zombies not yet reaped included (they hold a slot of the pids limit).

Tasks (or a mix) keep juggler's own table (TASK ID, CPU %, CPU TIME, THROTTLED,
MEM USAGE / LIMIT, MEM PEAK, PIDS, OOM), printed once, or every -w SECONDS.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import grpc

from juggler.cli import containers
from juggler.cli.containers import NotFound, Target
from juggler.cli.go_format import tabwrite
from juggler.common import servers
from juggler.v1 import agent_pb2, agent_pb2_grpc

SAMPLE_SECONDS = 1.0
CLEAR = "\033[2J\033[H"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stats", help="show running containers' (or tasks') resource usage",
                       description="CPU, memory and pids of running containers or tasks, "
                                   "read from their cgroups on their agents.")
    p.add_argument("--master", default=None, help="master address (default: what `up` wrote)")
    containers.add_host_flag(p)
    p.add_argument("--no-stream", action="store_true",
                   help="print once (containers; tasks print once unless -w)")
    p.add_argument("-w", "--watch", type=float, default=0.0, metavar="SECONDS",
                   help="tasks: refresh every SECONDS until Ctrl-C (default: print once)")
    p.add_argument("refs", nargs="+", metavar="CONTAINER|TASK")
    p.set_defaults(func=main)


# -- sizes as docker prints them (go-units) --------------------------------------------

def bytes_size(n: float) -> str:
    """go-units BytesSize: binary units, 4 significant digits ("1.953MiB")."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{n:.4g}{units[i]}"


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f}MiB"


# -- docker's table --------------------------------------------------------------------

def docker_row(target: Target, usage: agent_pb2.TaskUsage | None,
               cpu_percent: float | None) -> str:
    info = target.container or {}
    cid = str(info.get("Id", target.ref))[:12]
    if usage is None:   # not running: docker's zeros
        return "\t".join((cid, target.name, "0.00%", "0B / 0B", "0.00%", "--", "--", "0"))
    limit = usage.memory_limit_bytes
    mem_percent = 100 * usage.memory_bytes / limit if limit else 0.0
    return "\t".join((cid, target.name,
                      f"{cpu_percent or 0.0:.2f}%",
                      f"{bytes_size(usage.memory_bytes)} / {bytes_size(limit)}",
                      f"{mem_percent:.2f}%", "--", "--", str(usage.pids)))


def docker_table(rows: list[str]) -> str:
    header = "CONTAINER ID\tNAME\tCPU %\tMEM USAGE / LIMIT\tMEM %\tNET I/O\tBLOCK I/O\tPIDS"
    return tabwrite("\n".join([header, *rows]))


# -- juggler's table for tasks --------------------------------------------------------

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


# -- sampling ---------------------------------------------------------------------------

async def _usage(target: Target) -> agent_pb2.TaskUsage | None:
    """The run's usage; None when a container does not run. Raises NotFound
    when the agent cannot tell (or a task does not run)."""
    if target.container is not None and not target.running:
        return None
    if target.container is None and not target.running:
        raise NotFound(f"task {target.task_id!r} is {target.state}, not running")
    try:
        async with servers.channel(target.agent_address) as channel:
            return await agent_pb2_grpc.AgentStub(channel).GetUsage(
                agent_pb2.GetUsageRequest(task_id=target.task_id,
                                          framework_id=target.framework_id), timeout=10)
    except grpc.aio.AioRpcError as e:
        if target.container is not None and e.code() == grpc.StatusCode.FAILED_PRECONDITION:
            return None   # it ended since
        raise NotFound(await containers.agent_failure(target, e)) from None


def _percent(before: agent_pb2.TaskUsage | None, now: agent_pb2.TaskUsage | None
             ) -> float | None:
    if before is None or now is None or now.timestamp <= before.timestamp:
        return None
    return 100 * (now.cpu_seconds - before.cpu_seconds) / (now.timestamp - before.timestamp)


async def _containers(args: argparse.Namespace, targets: list[Target]) -> int:
    terminal = sys.stdout.isatty()
    previous = [await _usage(t) for t in targets]
    while True:
        await asyncio.sleep(SAMPLE_SECONDS)
        current = [await _usage(t) for t in targets]
        rows = [docker_row(t, u, _percent(b, u))
                for t, b, u in zip(targets, previous, current, strict=True)]
        table = docker_table(rows)
        if args.no_stream:
            print(table, flush=True)
            return 0
        print(f"{CLEAR}{table}" if terminal else table + "\n", flush=True)
        previous = current


async def _tasks(args: argparse.Namespace, targets: list[Target]) -> int:
    previous: dict[str, agent_pb2.TaskUsage] = {}
    while True:
        rows = []
        for target in targets:
            usage = await _usage(target)
            assert usage is not None
            percent = _percent(previous.get(target.task_id), usage)
            previous[target.task_id] = usage
            rows.append((usage, percent))
        print(render(rows), flush=True)
        if args.watch <= 0:
            return 0
        await asyncio.sleep(args.watch)
        print()


async def _run(args: argparse.Namespace) -> int:
    targets = [await containers.locate(ref, args.docker_host, args.master)
               for ref in args.refs]
    if all(t.container is not None for t in targets):
        return await _containers(args, targets)
    return await _tasks(args, targets)


def main(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except NotFound as e:
        print(str(e) if e.daemon else f"juggler stats: {e}", file=sys.stderr)
        return 1
    except grpc.aio.AioRpcError as e:
        print(f"juggler stats: {e.details()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
