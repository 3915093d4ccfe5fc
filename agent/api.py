"""The agent's own API (gRPC service `Agent`): task logs, exec, attach, state,
signals, processes, writable layers.

Streams that must not pass through the master (logs -f, exec and attach) are
served here; clients find the agent's address in the master's state. Logs
follow the files the executor writes and rotates (log_files.py) and end
DATA_LOSS when rotation deleted bytes a reader had not read yet; exec and
attach carry a process's stdio (task_stdio.py). Signal passes a signal to the
task's executor for its PID 1 (`docker kill -s`); Top lists the processes of
its cgroup with the host's `ps` (top.py, `docker top`); RemoveWritableLayer
deletes a layer kept by name (writable_layers.py).

A call about one task answers NOT_FOUND for a task this agent does not have
and FAILED_PRECONDITION for one that ended or has not started yet (Docker's
"container is not running", 409).

Access rules (`juggler agent --acls`, common/access.py), checked before
anything is done, PERMISSION_DENIED when refused; the object of the
per-task rules is the principal of the task's framework (the master sets
FrameworkInfo.principal on Subscribe; the agent got it with the task): see
ACCESS. The framework's owner (a caller with that non-empty principal) needs
neither access_sandboxes nor launch_nested_container_sessions on its own
tasks, as it needs no kill_tasks to kill them; Exec still checks run_tasks
on the user the new process runs as. GetState lists every framework's
tasks, so it needs view_cluster (as the master's Get* do) rather than
access_sandboxes. Logs of a sandbox whose task the agent no longer knows
check access_sandboxes with the framework principal "" (only ANY rules, or
"*", allow it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc

from juggler.agent import events as ev
from juggler.agent import log_files, task_stdio, top
from juggler.agent.image_service import ImageServicer
from juggler.agent.log_files import FollowedFile
from juggler.common import ids, principals, task_check, task_states
from juggler.common.access import Denied
from juggler.v1 import agent_pb2, agent_pb2_grpc, common_pb2, executor_pb2

if TYPE_CHECKING:
    from juggler.agent.server import Agent
    from juggler.agent.state import AgentTask

_CHUNK = 1 << 20

# Every RPC of the Agent service → the access rule deciding it (object in
# parentheses). tests/unit/test_access_coverage.py fails on an RPC missing here.
ACCESS: dict[str, str] = {
    "juggler.v1.Agent/Logs": "access_sandboxes (the task's framework principal)",
    "juggler.v1.Agent/GetUsage": "access_sandboxes (the task's framework principal)",
    "juggler.v1.Agent/Top": "access_sandboxes (the task's framework principal)",
    "juggler.v1.Agent/GetState": "view_cluster",
    "juggler.v1.Agent/Exec": "launch_nested_container_sessions (the task's framework principal)",
    "juggler.v1.Agent/Attach": "launch_nested_container_sessions (the task's framework "
                               "principal)",
    "juggler.v1.Agent/Signal": "launch_nested_container_sessions (the task's framework "
                               "principal)",
    "juggler.v1.Agent/PullImage": "manage_images",
    "juggler.v1.Agent/ListImages": "manage_images",
    "juggler.v1.Agent/ListTags": "manage_images",
    "juggler.v1.Agent/RemoveImage": "manage_images",
    "juggler.v1.Agent/ImportImage": "manage_images",
    "juggler.v1.Agent/RemoveWritableLayer": "manage_images",
}


class AgentServicer(ImageServicer, agent_pb2_grpc.AgentServicer):
    # ImageServicer: PullImage, ListImages, RemoveImage, ImportImage (agent/image_service.py).
    def __init__(self, agent: Agent) -> None:
        self.a = agent

    async def _allow(self, context: grpc.aio.ServicerContext, action: str,
                     obj: str | None = None) -> None:
        """The access rules allow the caller `action` on `obj`, or the call
        ends PERMISSION_DENIED (logged and counted by common/access.py)."""
        if not self.a.access.enabled:
            return
        try:
            self.a.access.require(action, principals.grpc_principal(context), obj)
        except Denied as e:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, e.message)

    async def _allow_task(self, context: grpc.aio.ServicerContext, action: str, task_id: str,
                          framework_id: str) -> None:
        """_allow on the task's framework principal (_allow_owned); an
        unknown task is left to the call (NOT_FOUND)."""
        task = self.a.find_task(task_id, framework_id)
        if task is not None:
            await self._allow_owned(context, action, task.framework.principal)

    async def _allow_owned(self, context: grpc.aio.ServicerContext, action: str,
                           owner: str) -> None:
        """_allow(action, owner) for access_sandboxes and
        launch_nested_container_sessions, except for the framework's owner: a
        caller whose principal is the (non-empty) principal of the task's
        framework reads its own tasks and opens sessions in them without a
        rule, as the master lets it kill them (master/access.py). Exec's
        run_tasks check on the user is not this one's: it stays."""
        if self.a.access.enabled and owner and principals.grpc_principal(context) == owner:
            return
        await self._allow(context, action, owner)

    async def PullImage(self, request: agent_pb2.PullImageRequest,
                        context: grpc.aio.ServicerContext
                        ) -> AsyncIterator[agent_pb2.PullImageProgress]:
        await self._allow(context, "manage_images")
        async for progress in super().PullImage(request, context):
            yield progress

    async def ListImages(self, request: agent_pb2.ListImagesRequest,
                         context: grpc.aio.ServicerContext) -> agent_pb2.ListImagesResponse:
        await self._allow(context, "manage_images")
        return await super().ListImages(request, context)

    async def ListTags(self, request: agent_pb2.ListTagsRequest,
                       context: grpc.aio.ServicerContext) -> agent_pb2.ListTagsResponse:
        await self._allow(context, "manage_images")
        return await super().ListTags(request, context)

    async def RemoveImage(self, request: agent_pb2.RemoveImageRequest,
                          context: grpc.aio.ServicerContext) -> agent_pb2.RemoveImageResponse:
        await self._allow(context, "manage_images")
        return await super().RemoveImage(request, context)

    async def ImportImage(self, request_iterator: AsyncIterator[agent_pb2.ImportImageChunk],
                          context: grpc.aio.ServicerContext) -> agent_pb2.ListImagesResponse:
        await self._allow(context, "manage_images")
        return await super().ImportImage(request_iterator, context)

    async def Logs(self, request: agent_pb2.LogsRequest,
                   context: grpc.aio.ServicerContext) -> AsyncIterator[agent_pb2.LogChunk]:
        sandbox = self.a.find_sandbox(request.task_id, request.framework_id)
        if sandbox is not None:
            known = self.a.find_task(request.task_id, request.framework_id)
            await self._allow_owned(context, "access_sandboxes",
                                    known.framework.principal if known is not None else "")
        if sandbox is None:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"task {request.task_id!r} has no sandbox on this agent")
            return
        want_out = request.stdout or not request.stderr
        want_err = request.stderr or not request.stdout
        streams: list[tuple[int, FollowedFile]] = []
        for wanted, kind, name in ((want_out, agent_pb2.LogChunk.STDOUT, "stdout"),
                                   (want_err, agent_pb2.LogChunk.STDERR, "stderr")):
            if not wanted:
                continue
            given = f"{name}_from"
            position = (getattr(request, given) if request.HasField(given)  # type: ignore[arg-type]
                        else log_files.first_position(sandbox / name, request.tail))
            streams.append((kind, FollowedFile(sandbox / name, position)))
        task = self.a.find_task(request.task_id, request.framework_id)
        try:
            while True:
                # Decided before reading: a task seen terminal here has written
                # everything (its executor drains the output first), so one
                # more empty round means the end.
                done = (not request.follow or task is None or task.exited
                        or task_states.is_terminal(task.state))
                sent = False
                for kind, followed in streams:
                    offset = followed.position
                    try:
                        data = followed.read(_CHUNK)
                    except log_files.LogGap as gap:
                        await context.abort(grpc.StatusCode.DATA_LOSS,
                                            _gap_message(gap, task))
                    if data:
                        sent = True
                        yield agent_pb2.LogChunk(stream=kind, data=data, offset=offset)
                if done and not sent:
                    return
                if not sent:
                    await asyncio.sleep(0.05)
        finally:
            for _, followed in streams:
                followed.close()

    async def Exec(self, request_iterator: AsyncIterator[agent_pb2.ExecRequest],
                   context: grpc.aio.ServicerContext
                   ) -> AsyncIterator[executor_pb2.ProcessOutput]:
        requests = await self._session_allowed(request_iterator, context)
        # aclosing: a cancelled call kills the process / detaches at once.
        async with contextlib.aclosing(
                task_stdio.exec_process(self.a, requests, context)) as messages:
            async for message in messages:
                yield message

    async def Attach(self, request_iterator: AsyncIterator[agent_pb2.AttachRequest],
                     context: grpc.aio.ServicerContext
                     ) -> AsyncIterator[executor_pb2.ProcessOutput]:
        requests = await self._session_allowed(request_iterator, context)
        # aclosing: a cancelled call kills the process / detaches at once.
        async with contextlib.aclosing(
                task_stdio.attach(self.a, requests, context)) as messages:
            async for message in messages:
                yield message

    async def _session_allowed(self, requests: AsyncIterator[Any],
                               context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        """Exec/Attach: launch_nested_container_sessions on the task of the
        first message (its `start`), and for Exec run_tasks on the user the
        process runs as (its `user`, else the task's user as the master's
        run_tasks check saw it); then the messages as they came."""
        first = await anext(aiter(requests), None)
        if first is not None and first.WhichOneof("message") == "start":
            start = first.start
            await self._allow_task(context, "launch_nested_container_sessions",
                                   start.task_id, start.framework_id)
            task = self.a.find_task(start.task_id, start.framework_id)
            if isinstance(first, agent_pb2.ExecRequest) and task is not None:
                # A new process runs as someone: run_tasks must allow that user
                # as it did the task's own (exec -u 0 in a task run as nobody).
                await self._allow(context, "run_tasks", start.user or task.info.command.user
                                  or task.framework.user or "root")

        async def replay() -> AsyncIterator[Any]:
            if first is not None:
                yield first
            async for request in requests:
                yield request
        return replay()

    async def GetState(self, request: agent_pb2.GetAgentStateRequest,
                       context: grpc.aio.ServicerContext) -> agent_pb2.GetAgentStateResponse:
        await self._allow(context, "view_cluster")
        core = self.a.core
        message = core.registration()
        info = (message.register.agent if message.HasField("register")
                else message.reregister.agent)
        return agent_pb2.GetAgentStateResponse(
            agent=info,
            tasks=[_task_status(t, core.agent_id) for t in core.tasks.values()],
            executors=core.executor_views())

    async def GetUsage(self, request: agent_pb2.GetUsageRequest,
                       context: grpc.aio.ServicerContext) -> agent_pb2.TaskUsage:
        await self._allow_task(context, "access_sandboxes", request.task_id,
                               request.framework_id)
        task = self.a.find_task(request.task_id, request.framework_id)
        if task is None:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"task {request.task_id!r} does not run on this agent")
        assert task is not None
        if task_states.is_terminal(task.state):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"task {request.task_id!r} has ended "
                                f"({task_states.name(task.state)}); it has no usage")
        from juggler.container.cgroups import open_cgroup

        stats = await asyncio.to_thread(
            lambda: open_cgroup(task.cgroup or self.a.cgroup_of(*task.key)).stats())
        return usage_message(task.framework.id, task.info, stats)

    async def Signal(self, request: agent_pb2.SignalRequest,
                     context: grpc.aio.ServicerContext) -> agent_pb2.SignalResponse:
        try:
            number = task_check.parse_signal(request.signal)
        except task_check.TaskError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        await self._allow_task(context, "launch_nested_container_sessions", request.task_id,
                               request.framework_id)
        task = await self._running(request.task_id, request.framework_id, context)
        if task.executor != agent_pb2.EXECUTOR_CONNECTED or not task.container_pid:
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                f"task {request.task_id!r}: its executor is not connected to "
                                "the agent (the agent restarted?); try again")
        self.a.handle(ev.SignalTask(task.key, number))
        return agent_pb2.SignalResponse()

    async def Top(self, request: agent_pb2.TopRequest,
                  context: grpc.aio.ServicerContext) -> agent_pb2.TopResponse:
        await self._allow_task(context, "access_sandboxes", request.task_id,
                               request.framework_id)
        task = await self._running(request.task_id, request.framework_id, context)
        from juggler.container.cgroups import open_cgroup

        try:
            pids = await asyncio.to_thread(
                lambda: open_cgroup(task.cgroup or self.a.cgroup_of(*task.key)).pids())
            titles, rows = await top.run(request.ps_args, pids)
        except top.TopError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except OSError as e:
            await context.abort(grpc.StatusCode.INTERNAL, f"cannot list the task's processes: "
                                f"{e}")
        return agent_pb2.TopResponse(
            titles=titles, processes=[agent_pb2.TopResponse.Process(fields=r) for r in rows])

    async def RemoveWritableLayer(self, request: agent_pb2.RemoveWritableLayerRequest,
                                  context: grpc.aio.ServicerContext
                                  ) -> agent_pb2.RemoveWritableLayerResponse:
        await self._allow(context, "manage_images")
        for kind, value in (("framework id", request.framework_id),
                            ("writable layer", request.name)):
            try:
                ids.check(kind, value)
            except ids.InvalidId as e:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        user = self.a.core.layer_user(request.framework_id, request.name)
        if user is not None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"writable layer {request.name!r} is in use by task "
                                f"{user.info.task_id!r} ({task_states.name(user.state)}); "
                                "remove it once that task has ended")
        try:
            purge = self.a.remove_writable_layer(request.framework_id, request.name)
        except OSError as e:
            await context.abort(grpc.StatusCode.INTERNAL,
                                f"cannot remove writable layer {request.name!r}: {e}")
        if purge is not None:
            await asyncio.shield(purge)  # gone from disk when the call returns
        return agent_pb2.RemoveWritableLayerResponse(removed=purge is not None)

    async def _running(self, task_id: str, framework_id: str,
                       context: grpc.aio.ServicerContext) -> AgentTask:
        """The task, if it runs here; otherwise the call ends NOT_FOUND (no
        such task) or FAILED_PRECONDITION (ended, or not started yet)."""
        task = self.a.find_task(task_id, framework_id)
        if task is None:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"task {task_id!r} does not run on this agent")
        assert task is not None
        if task_states.is_terminal(task.state):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"task {task_id!r} is not running: it has ended "
                                f"({task_states.name(task.state)})")
        if task.state not in (common_pb2.TASK_RUNNING, common_pb2.TASK_KILLING):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"task {task_id!r} is not running yet "
                                f"({task_states.name(task.state)})")
        return task


def _gap_message(gap: log_files.LogGap, task: AgentTask | None) -> str:
    """DATA_LOSS's message: what was lost, and why."""
    limits = ""
    if task is not None:
        with contextlib.suppress(task_check.TaskError):
            parsed = task_check.task_labels(task.info.labels)
            limits = (f" (this task keeps {parsed.log_max_files} rotated file(s) of "
                      f"{parsed.log_max_bytes} bytes per stream: labels "
                      "juggler.log_max_files, juggler.log_max_bytes)")
    return (f"{gap.lost} bytes of the task's {gap.path.name} (from byte {gap.position}) were "
            f"rotated away before this reader got them: it fell behind{limits}")


def _task_status(task: AgentTask, agent_id: str) -> common_pb2.TaskStatus:
    status = common_pb2.TaskStatus(task_id=task.info.task_id, framework_id=task.framework.id,
                                   agent_id=agent_id, state=task.state)
    if task.container_pid and not task_states.is_terminal(task.state):
        status.pid = task.container_pid
    return status


def usage_message(framework_id: str, info: common_pb2.TaskInfo, stats: object
                  ) -> agent_pb2.TaskUsage:
    """A cgroup's Stats (container/cgroups.py) as the API's TaskUsage."""
    import time

    s = stats  # duck-typed: juggler.container.cgroups.Stats
    return agent_pb2.TaskUsage(
        task_id=info.task_id, framework_id=framework_id, timestamp=time.time(),
        cpu_seconds=s.cpu_usage_ns / 1e9,  # type: ignore[attr-defined]
        cpu_user_seconds=s.cpu_user_ns / 1e9,  # type: ignore[attr-defined]
        cpu_system_seconds=s.cpu_system_ns / 1e9,  # type: ignore[attr-defined]
        cpu_periods=s.cpu_periods,  # type: ignore[attr-defined]
        cpu_throttled_periods=s.cpu_throttled_periods,  # type: ignore[attr-defined]
        cpu_throttled_seconds=s.cpu_throttled_ns / 1e9,  # type: ignore[attr-defined]
        memory_bytes=s.memory_bytes,  # type: ignore[attr-defined]
        memory_peak_bytes=s.memory_peak_bytes,  # type: ignore[attr-defined]
        memory_limit_bytes=s.memory_limit_bytes or 0,  # type: ignore[attr-defined]
        pids=s.pids,  # type: ignore[attr-defined]
        oom_kills=s.oom_kills,  # type: ignore[attr-defined]
        resources=info.resources)
