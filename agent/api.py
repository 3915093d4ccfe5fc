"""The agent's own API (gRPC service `Agent`): task logs, exec, attach, state.

Streams that must not pass through the master (logs -f, exec and attach) are
served here; clients find the agent's address in the master's state. Logs
follow the files the executor writes and rotates (log_files.py); exec and
attach carry a process's stdio (task_stdio.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc

from juggler.agent import log_files, task_stdio
from juggler.agent.image_service import ImageServicer
from juggler.agent.log_files import FollowedFile
from juggler.common import task_states
from juggler.v1 import agent_pb2, agent_pb2_grpc, common_pb2, executor_pb2

if TYPE_CHECKING:
    from juggler.agent.server import Agent

_CHUNK = 1 << 20


class AgentServicer(ImageServicer, agent_pb2_grpc.AgentServicer):
    # ImageServicer: PullImage, ListImages, RemoveImage, ImportImage (agent/image_service.py).
    def __init__(self, agent: Agent) -> None:
        self.a = agent

    async def Logs(self, request: agent_pb2.LogsRequest,
                   context: grpc.aio.ServicerContext) -> AsyncIterator[agent_pb2.LogChunk]:
        sandbox = self.a.find_sandbox(request.task_id, request.framework_id)
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
            old, offset = log_files.history(sandbox / name, request.tail)
            for i in range(0, len(old), _CHUNK):
                yield agent_pb2.LogChunk(stream=kind, data=old[i:i + _CHUNK])
            streams.append((kind, FollowedFile(sandbox / name, offset)))
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
                    data = followed.read(_CHUNK)
                    if data:
                        sent = True
                        yield agent_pb2.LogChunk(stream=kind, data=data)
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
        # aclosing: a cancelled call kills the process / detaches at once.
        async with contextlib.aclosing(
                task_stdio.exec_process(self.a, request_iterator, context)) as messages:
            async for message in messages:
                yield message

    async def Attach(self, request_iterator: AsyncIterator[agent_pb2.AttachRequest],
                     context: grpc.aio.ServicerContext
                     ) -> AsyncIterator[executor_pb2.ProcessOutput]:
        # aclosing: a cancelled call kills the process / detaches at once.
        async with contextlib.aclosing(
                task_stdio.attach(self.a, request_iterator, context)) as messages:
            async for message in messages:
                yield message

    async def GetState(self, request: agent_pb2.GetAgentStateRequest,
                       context: grpc.aio.ServicerContext) -> agent_pb2.GetAgentStateResponse:
        core = self.a.core
        message = core.registration()
        info = (message.register.agent if message.HasField("register")
                else message.reregister.agent)
        return agent_pb2.GetAgentStateResponse(
            agent=info,
            tasks=[common_pb2.TaskStatus(task_id=t.info.task_id, framework_id=t.framework.id,
                                         agent_id=core.agent_id, state=t.state)
                   for t in core.tasks.values()],
            executors=core.executor_views())

    async def GetUsage(self, request: agent_pb2.GetUsageRequest,
                       context: grpc.aio.ServicerContext) -> agent_pb2.TaskUsage:
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
