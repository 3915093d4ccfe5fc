"""`juggler ps`: tasks as a table (like docker ps)."""

from __future__ import annotations

import argparse
import sys
import time

import grpc

from juggler.cli import address as addr
from juggler.cli import operator
from juggler.common import task_states
from juggler.v1 import operator_pb2


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ps", help="list tasks", description="List the cluster's tasks.")
    p.add_argument("--master", default=None, help="master address (default: what `up` wrote)")
    p.add_argument("-a", "--all", action="store_true", help="include finished tasks")
    p.set_defaults(func=main)


def age(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def command_of(view: operator_pb2.TaskView, width: int = 40) -> str:
    text = " ".join(view.info.command.argv)
    return text if len(text) <= width else text[: width - 1] + "…"


def render(tasks: list[operator_pb2.TaskView], now: float) -> str:
    rows = [("TASK ID", "STATE", "AGENT", "COMMAND", "AGE")]
    for t in sorted(tasks, key=lambda v: v.launched_time, reverse=True):
        started = t.history[0].timestamp if t.history else 0.0
        state = task_states.name(t.state).removeprefix("TASK_")
        if t.kill_requested:  # desired state not reached yet (e.g. its agent is away)
            state += " (kill requested)"
        rows.append((t.info.task_id, state,
                     t.agent_hostname or t.agent_id, command_of(t),
                     age(now - started) if started else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def main(args: argparse.Namespace) -> int:
    master = addr.resolve(args.master)
    try:
        got = operator.call(master, "GetTasks",
                            operator_pb2.GetTasksRequest(include_completed=args.all))
    except (operator.NoMaster, grpc.RpcError) as e:
        print(f"juggler ps: {e}", file=sys.stderr)
        return 1
    print(render([*got.tasks, *got.completed_tasks], time.time()))
    return 0
