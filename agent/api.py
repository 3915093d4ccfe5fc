"""The agent's own API (gRPC service `Agent`): task logs and state.

Streams that must not pass through the master (logs -f, later exec and attach)
are served here; clients find the agent's address in the master's state.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from juggler.common import task_states
from juggler.v1 import agent_pb2, agent_pb2_grpc, common_pb2

if TYPE_CHECKING:
    from juggler.agent.server import Agent


class AgentServicer(agent_pb2_grpc.AgentServicer):
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
        streams = []
        if want_out:
            streams.append((agent_pb2.LogChunk.STDOUT, sandbox / "stdout"))
        if want_err:
            streams.append((agent_pb2.LogChunk.STDERR, sandbox / "stderr"))
        offsets = {}
        for kind, path in streams:
            offsets[kind] = _tail_offset(path, request.tail) if request.tail else 0
        task = self.a.find_task(request.task_id, request.framework_id)
        while True:
            done = (not request.follow or task is None or task.finished.is_set()
                    or task_states.is_terminal(task.state))
            sent = False
            for kind, path in streams:
                try:
                    with open(path, "rb") as f:
                        f.seek(offsets[kind])
                        data = f.read(1 << 20)
                except FileNotFoundError:
                    continue
                if data:
                    offsets[kind] += len(data)
                    sent = True
                    yield agent_pb2.LogChunk(stream=kind, data=data)
            if done and not sent:
                return
            if not sent:
                await asyncio.sleep(0.05)


    async def GetState(self, request: agent_pb2.GetAgentStateRequest,
                       context: grpc.aio.ServicerContext) -> agent_pb2.GetAgentStateResponse:
        a = self.a
        info = common_pb2.AgentInfo(id=a.agent_id, hostname=a.hostname, address=a.address,
                                    resources=a.config.resources.to_proto())
        return agent_pb2.GetAgentStateResponse(agent=info, tasks=[
            common_pb2.TaskStatus(task_id=t.info.task_id, framework_id=t.framework.id,
                                  agent_id=a.agent_id, state=t.state)
            for t in a.tasks.values()])


def _tail_offset(path: Path, lines: int) -> int:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    end = len(data)
    if data.endswith(b"\n"):
        end -= 1
    pos = end
    for _ in range(lines):
        pos = data.rfind(b"\n", 0, pos)
        if pos < 0:
            return 0
    return pos + 1
