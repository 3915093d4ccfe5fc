"""Exec and Attach: a process's stdio carried over a gRPC stream by the agent.

Exec: the agent starts `python -m juggler.container.nsenter` (a short-lived,
single-threaded helper: the agent never forks itself, it runs gRPC threads),
which enters the task's namespaces and cgroup and forks the process. Without
a tty the helper's pipes are the process's stdio; with one, the helper makes
the pty inside the container and sends its master here over a socketpair, so
the agent reads and writes it and sets its size. The agent rather than the
executor does this because the gRPC stream ends here, it knows the task's
pid 1 (the executor's hello) and cgroup, and the executor stays lean.

Attach: the executor serves the task's own stdio on sandbox/attach.sock
(executor/attach.py); the agent relays frames both ways. Ending the request
stream detaches. Output is relayed one message at a time, each sent before
the next is read from the executor: a client that reads slowly (gRPC's flow
control) fills the socket and the executor sees it behind (back-pressure).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc

from juggler.common import fdio, framing, task_states
from juggler.container import console
from juggler.container.process import ProcessSpec, privileges_of
from juggler.container.spec import ContainerSpec, SpecError
from juggler.v1 import agent_pb2, executor_pb2

if TYPE_CHECKING:
    from juggler.agent.server import Agent, AgentTask

S = task_states.S
DRAIN_SECONDS = 2.0
_LIVE = (S.TASK_RUNNING, S.TASK_KILLING)


async def _first(requests: AsyncIterator, context: grpc.aio.ServicerContext, kind: str):  # type: ignore[no-untyped-def]
    first = await anext(aiter(requests), None)
    if first is None or first.WhichOneof("message") != "start":
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                            f"the first {kind} message must be `start`")
    return first.start


async def _running_task(agent: Agent, task_id: str, framework_id: str,
                        context: grpc.aio.ServicerContext) -> AgentTask:
    task = agent.find_task(task_id, framework_id)
    if task is None:
        await context.abort(grpc.StatusCode.NOT_FOUND, f"no task {task_id!r} on this agent")
    assert task is not None
    if task.state not in _LIVE or task.exited or task.sandbox is None:
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                            f"task {task_id!r} is {task_states.name(task.state)}, not running")
    return task


# -- exec -----------------------------------------------------------------------


async def exec_process(agent: Agent, requests: AsyncIterator[agent_pb2.ExecRequest],
                       context: grpc.aio.ServicerContext
                       ) -> AsyncIterator[executor_pb2.ProcessOutput]:
    start = await _first(requests, context, "Exec")
    task = await _running_task(agent, start.task_id, start.framework_id, context)
    if not start.argv or not start.argv[0]:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "exec needs a command (argv)")
    if not task.container_pid:
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                            f"task {start.task_id!r} has not reported its container yet")
    # The container as launched (the ExecutorSpec the agent started it with): a task
    # from an image has its layers and the command, user, working directory
    # and environment of the image's config there, not in the TaskInfo.
    try:
        assert task.spec is not None  # it runs: its executor was started with it
        spec = ContainerSpec.from_executor_spec(task.spec)
    except SpecError as e:
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))
    env = dict(spec.env)
    # TERM=xterm follows the exec's terminal, not the task's (moby's exec
    # environment: CreateDaemonEnvironment(exec's Tty) + the container's Env).
    command = task.spec.task.command
    if task.spec.task.container.tty and "TERM" not in command.environment:
        env.pop("TERM", None)
    if start.tty:
        env.setdefault("TERM", "xterm")
    env.update(start.environment)
    # The task's capabilities, no_new_privs and ulimits, as `docker exec` has them.
    process = ProcessSpec(argv=tuple(start.argv), env=env,
                          cwd=start.working_directory or spec.working_dir,
                          user=start.user or spec.user,
                          home_from_task=spec.home_from_task or "HOME" in start.environment,
                          **privileges_of(spec))
    request = {"pid": task.container_pid, "cgroup": task.cgroup,
               "tty": start.tty, "process": process.to_json()}
    out: asyncio.Queue[executor_pb2.ProcessOutput] = asyncio.Queue()
    session = _ExecSession(request, out)
    helpers: list[asyncio.Task[None]] = []
    try:
        await session.start(start.size)
        helpers += [asyncio.create_task(session.pump_input(requests)),
                    asyncio.create_task(session.wait())]
        while True:
            message = await out.get()
            yield message
            if message.WhichOneof("output") == "exit_code":
                return
    finally:
        for t in helpers:
            t.cancel()
        session.close()


class _ExecSession:
    def __init__(self, request: dict, out: asyncio.Queue[executor_pb2.ProcessOutput]) -> None:
        self.request = request
        self.out = out
        self.tty = bool(request["tty"])
        self.proc: asyncio.subprocess.Process | None = None
        self.master = -1
        self.stdin: fdio.FdWriter | None = None
        self.streams: list[asyncio.Future[None]] = []

    async def start(self, size: executor_pb2.TerminalSize) -> None:
        helper = [sys.executable, "-m", "juggler.container.nsenter"]
        if not self.tty:
            self.proc = await asyncio.create_subprocess_exec(
                *helper, json.dumps(self.request), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            self.streams = [asyncio.ensure_future(self._copy(self.proc.stdout, "stdout")),
                            asyncio.ensure_future(self._copy(self.proc.stderr, "stderr"))]
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with ours, theirs:
            self.request["console_fd"] = theirs.fileno()
            self.proc = await asyncio.create_subprocess_exec(
                *helper, json.dumps(self.request), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
                pass_fds=[theirs.fileno()])
            theirs.close()
            self.streams = [asyncio.ensure_future(self._copy(self.proc.stderr, "stderr"))]
            ours.setblocking(False)
            loop = asyncio.get_running_loop()
            try:
                readable = loop.create_future()
                loop.add_reader(ours.fileno(), lambda: readable.done() or
                                readable.set_result(None))
                try:
                    await asyncio.wait_for(readable, 30)
                finally:
                    loop.remove_reader(ours.fileno())
                master = console.receive(ours)
            except (TimeoutError, OSError):
                master = None
        if master is None:
            return  # the helper failed before the fork; its stderr says why
        self.master = master
        with contextlib.suppress(OSError):
            console.set_size(master, size.rows, size.columns)
        self.stdin = fdio.FdWriter(master, close_fd=False)
        self.streams.append(fdio.watch(
            master, lambda data: self.out.put_nowait(executor_pb2.ProcessOutput(stdout=data))))

    async def _copy(self, stream: asyncio.StreamReader | None, name: str) -> None:
        assert stream is not None
        while data := await stream.read(65536):
            self.out.put_nowait(executor_pb2.ProcessOutput(**{name: data}))

    async def pump_input(self, requests: AsyncIterator[agent_pb2.ExecRequest]) -> None:
        async for request in requests:
            if request.WhichOneof("message") != "input":
                continue
            message = request.input
            kind = message.WhichOneof("input")
            if kind == "stdin":
                await self._write(message.stdin)
            elif kind == "resize" and self.master >= 0:
                with contextlib.suppress(OSError):
                    console.set_size(self.master, message.resize.rows, message.resize.columns)
            elif kind == "close_stdin":
                await self._close_stdin()
        if not self.tty:
            await self._close_stdin()  # the client's end of input is the process's

    async def _write(self, data: bytes) -> None:
        if self.stdin is not None:
            self.stdin.write(data)
        elif self.proc is not None and self.proc.stdin is not None:
            with contextlib.suppress(ConnectionError):
                self.proc.stdin.write(data)
                await self.proc.stdin.drain()

    async def _close_stdin(self) -> None:
        if self.tty:
            await self._write(b"\x04")
        elif self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()

    async def wait(self) -> None:
        assert self.proc is not None
        code = await self.proc.wait()
        if self.streams:
            await asyncio.wait(self.streams, timeout=DRAIN_SECONDS)
        self.out.put_nowait(executor_pb2.ProcessOutput(exit_code=code))

    def close(self) -> None:
        for stream in self.streams:
            stream.cancel()
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()  # its process dies with it (parent-death signal)
        if self.master >= 0:
            os.close(self.master)
            self.master = -1


# -- attach ---------------------------------------------------------------------


async def attach(agent: Agent, requests: AsyncIterator[agent_pb2.AttachRequest],
                 context: grpc.aio.ServicerContext) -> AsyncIterator[executor_pb2.ProcessOutput]:
    from juggler.executor.attach import SOCKET_NAME

    start = await _first(requests, context, "Attach")
    task = await _running_task(agent, start.task_id, start.framework_id, context)
    relayed = executor_pb2.AttachStart(logs=start.logs, size=start.size,
                                       backpressure=start.backpressure)
    for given in ("stdout_from", "stderr_from"):
        if start.HasField(given):
            setattr(relayed, given, getattr(start, given))
    try:
        sock = fdio.connect_unix(task.sandbox, SOCKET_NAME)
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        writer.write(framing.encode(relayed))
    except OSError as e:
        # Its executor is gone or going (the task just ended): the client
        # reads what the logs keep instead.
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                            f"cannot attach to task {start.task_id!r}: its executor does not "
                            f"serve its stdio ({e.strerror or e})")

    async def forward() -> None:
        async for request in requests:
            if request.WhichOneof("message") == "input":
                writer.write(framing.encode(request.input))
        writer.close()  # the client ended its stream: detach

    pump = asyncio.create_task(forward())
    try:
        while True:
            try:
                message = await framing.read(reader, executor_pb2.ProcessOutput)
            except (OSError, framing.FrameError):
                message = None
            if message is None:
                return
            yield message
            if message.WhichOneof("output") == "exit_code":
                return
    finally:
        pump.cancel()
        writer.close()
