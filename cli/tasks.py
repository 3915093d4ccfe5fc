"""Finding a task, and the agent that runs (or ran) it, in the master's state."""

from __future__ import annotations

import grpc

from juggler.common import task_states
from juggler.v1 import operator_pb2


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
        raise TaskNotFound(f"no task {task_id!r} (see `juggler ps -a`)")
    view = max(views, key=lambda v: v.launched_time)
    if not view.agent_address:
        raise TaskNotFound(f"task {task_id!r} has no agent address (is its agent gone?)")
    return view


def unreachable(what: str, address: str, e: grpc.aio.AioRpcError) -> str:
    return f"cannot reach the {what} at {address}: {e.details()}"


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
        return f"cannot reach the agent {where} of task {view.info.task_id!r}: {e.details()}"
    agent = next((a for a in agents if a.info.id == view.agent_id), None)
    if agent is None:
        return (f"the agent {where} of task {view.info.task_id!r} is not known to the "
                "master any more (gone?)")
    state = operator_pb2.AgentState.Name(agent.state).removeprefix("AGENT_")
    if state == "ACTIVE":
        return f"cannot reach the agent {where} of task {view.info.task_id!r}: {e.details()}"
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
