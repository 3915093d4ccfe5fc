"""Tasks in the master's state: `juggler tasks [-a]` (the tasks of every framework,
as `juggler ps` listed them before containers), and finding a task and the
agent that runs (or ran) it, for logs, exec, attach and stats."""

from __future__ import annotations

import argparse
import sys
import time

import grpc

from juggler.common import task_states
from juggler.v1 import operator_pb2


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tasks", help="list the cluster's tasks",
                       description="List the tasks of every framework, as the master sees "
                                   "them (containers: `juggler ps`).")
    p.add_argument("--master", default=None, help="master address (default: what `up` wrote)")
    p.add_argument("-a", "--all", action="store_true", help="include finished tasks")
    p.set_defaults(func=main)


def command_of(view: operator_pb2.TaskView, width: int = 40) -> str:
    text = " ".join(view.info.command.argv)
    return text if len(text) <= width else text[: width - 1] + "…"


def render(views: list[operator_pb2.TaskView], now: float) -> str:
    """TASK ID, STATE, AGENT, COMMAND, AGE; the latest launched first."""
    from juggler.cli.ps import age

    rows = [("TASK ID", "STATE", "AGENT", "COMMAND", "AGE")]
    for t in sorted(views, key=lambda v: v.launched_time, reverse=True):
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
    from juggler.cli import address as addr
    from juggler.cli import operator

    master = addr.resolve(args.master)
    try:
        got = operator.call(master, "GetTasks",
                            operator_pb2.GetTasksRequest(include_completed=args.all))
    except (operator.NoMaster, grpc.RpcError) as e:
        print(f"juggler tasks: {e}", file=sys.stderr)
        return 1
    print(render([*got.tasks, *got.completed_tasks], time.time()))
    return 0


class TaskNotFound(LookupError):
    pass


async def locate(master: str, task_id: str) -> operator_pb2.TaskView:
    """The task called `task_id` (the latest launched, if several frameworks
    used the id), running or completed. Raises TaskNotFound, or
    grpc.aio.AioRpcError when the master cannot be reached."""
    import asyncio

    from juggler.cli import operator

    try:
        got = await asyncio.to_thread(operator.call, master, "GetTasks",
                                      operator_pb2.GetTasksRequest(include_completed=True))
    except operator.NoMaster as e:
        raise TaskNotFound(str(e)) from None
    views = [v for v in [*got.tasks, *got.completed_tasks] if v.info.task_id == task_id]
    if not views:
        raise TaskNotFound(f"no task {task_id!r} (see `juggler tasks -a`)")
    view = max(views, key=lambda v: v.launched_time)
    if not view.agent_address:
        raise TaskNotFound(f"task {task_id!r} has no agent address (is its agent gone?)")
    return view


def unreachable(what: str, address: str, e: grpc.aio.AioRpcError) -> str:
    return f"cannot reach the {what} at {address}: {why(address, e)}"


def why(address: str, e: grpc.aio.AioRpcError) -> str:
    """Why a call to `address` failed: for UNAVAILABLE, what a probe finds
    (TLS against plain text, a certificate refused: common/tls.py), else
    gRPC's own details."""
    from juggler.common import tls

    if e.code() == grpc.StatusCode.UNAVAILABLE:
        return tls.explain(address) or e.details() or "UNAVAILABLE"
    return e.details() or e.code().name


async def agent_error(master: str, view: operator_pb2.TaskView,
                      e: grpc.aio.AioRpcError) -> str:
    """What to tell a user whose call to the task's agent failed: the agent's
    own message, or, when it cannot be reached, what the master knows of it
    (DISCONNECTED, UNREACHABLE…) instead of a raw gRPC error."""
    if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return e.details() or e.code().name
    import asyncio

    from juggler.cli import operator

    where = f"{view.agent_hostname or view.agent_id} ({view.agent_address})"
    try:
        agents = (await asyncio.to_thread(operator.call, master, "GetAgents",
                                          operator_pb2.GetAgentsRequest())).agents
    except (operator.NoMaster, grpc.RpcError):
        return (f"cannot reach the agent {where} of task {view.info.task_id!r}: "
                f"{why(view.agent_address, e)}")
    agent = next((a for a in agents if a.info.id == view.agent_id), None)
    if agent is None:
        return (f"the agent {where} of task {view.info.task_id!r} is not known to the "
                "master any more (gone?)")
    state = operator_pb2.AgentState.Name(agent.state).removeprefix("AGENT_")
    if state == "ACTIVE":
        return (f"cannot reach the agent {where} of task {view.info.task_id!r}: "
                f"{why(view.agent_address, e)}")
    return (f"the agent {where} of task {view.info.task_id!r} is {state}: try again once it "
            "is back (see `juggler agents`)")


def not_running(view: operator_pb2.TaskView) -> str | None:
    """Why exec/attach cannot reach the task, or None when it runs."""
    if view.state in (task_states.S.TASK_RUNNING, task_states.S.TASK_KILLING):
        return None
    return f"task {view.info.task_id!r} is {task_states.name(view.state)}, not running"


async def locate_running(master: str, task_id: str) -> operator_pb2.TaskView:
    """As locate(), for commands that need the task running (exec, attach, stats);
    every failure is a TaskNotFound whose message says why."""
    try:
        view = await locate(master, task_id)
    except grpc.aio.AioRpcError as e:
        raise TaskNotFound(unreachable("master", master, e)) from None
    if (why := not_running(view)) is not None:
        raise TaskNotFound(why)
    return view
