"""The Docker Engine API (apps/docker_api.py, docker_stream.py, docker_exec.py)
over a fake apps service and a fake agent, through aiohttp's test client.

`FakeService` stands in for the apps service (apps/service.py, tested for real
in tests/integration/test_docker_cli.py): it owns the real pure core
(ContainersState) and carries its commands out itself, playing the master and
one agent: a start is offered the agent at once, a launched run turns RUNNING,
a kill ends it (143 after a stop, 137 for SIGKILL). `FakeAgent` is a real gRPC
server on 127.0.0.1 serving the Agent API (Logs, Attach, Exec, Top, GetUsage,
ListImages) and the Operator API's GetAgents, with scripted processes: a run
of `echo WORDS` prints them and exits 0, `sh -c 'exit N'` exits N, `cat`
echoes its stdin and exits at its end, anything else runs until killed.

Hijacked streams (attach, exec) are driven over a raw socket, as the docker
CLI drives them: the request with `Upgrade: tcp`, the 101, then bytes both
ways.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import stat
import struct
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from juggler.apps import docker_api, rest
from juggler.apps.commands import Command, Kill, Launch, RemoveLayer, Revive, Signal
from juggler.apps.container_requests import ContainerRequests
from juggler.apps.containers import CS, Container
from juggler.apps.containers_state import ContainersState
from juggler.common.clock import SystemClock
from juggler.common.fdio import SUN_PATH_MAX
from juggler.common.resources import Resources
from juggler.common.task_defaults import HOLD_OUTPUT_LABEL, INTERACTIVE_LABEL
from juggler.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    common_pb2,
    executor_pb2,
    operator_pb2,
    operator_pb2_grpc,
)

AGENT_ID = "agent-1"
FRAMEWORK_ID = "framework-1"


# -- a fake agent ------------------------------------------------------------------------------


@dataclass
class FakeTask:
    task_id: str
    argv: list[str]
    tty: bool
    interactive: bool
    output: list[tuple[int, bytes]] = field(default_factory=list)   # (LogChunk stream, data)
    listeners: list[asyncio.Queue[Any]] = field(default_factory=list)
    stdin: bytearray = field(default_factory=bytearray)
    stdin_closed: bool = False
    sizes: list[tuple[int, int]] = field(default_factory=list)
    exit_code: int | None = None
    labels: dict[str, str] = field(default_factory=dict)

    def write(self, stream: int, data: bytes) -> None:
        if self.tty:
            stream = agent_pb2.LogChunk.STDOUT
        self.output.append((stream, data))
        for q in self.listeners:
            q.put_nowait((stream, data))

    def history(self, stream: int) -> bytes:
        return b"".join(d for s, d in self.output if s == stream)


class FakeAgent(agent_pb2_grpc.AgentServicer, operator_pb2_grpc.OperatorServicer):
    """The Agent API of one agent and the master's GetAgents (module docstring)."""

    def __init__(self) -> None:
        self.tasks: dict[str, FakeTask] = {}
        self.address = ""
        self.signals: list[tuple[str, str]] = []
        self.execs: list[agent_pb2.ExecRequest.Start] = []
        self.exec_inputs: list[executor_pb2.ProcessInput] = []
        self.on_exit: Callable[[FakeTask], None] = lambda task: None
        self.server: grpc.aio.Server | None = None

    async def start(self) -> None:
        self.server = grpc.aio.server()
        agent_pb2_grpc.add_AgentServicer_to_server(self, self.server)
        operator_pb2_grpc.add_OperatorServicer_to_server(self, self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{port}"
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(0)

    # -- processes ---------------------------------------------------------------------
    def launch(self, info: common_pb2.TaskInfo) -> FakeTask:
        task = FakeTask(info.task_id, list(info.command.argv), info.container.tty,
                        info.labels.get(INTERACTIVE_LABEL) == "true", labels=dict(info.labels))
        self.tasks[info.task_id] = task
        argv = task.argv
        if argv[:1] == ["echo"]:
            task.write(agent_pb2.LogChunk.STDOUT, " ".join(argv[1:]).encode() + b"\n")
            asyncio.get_running_loop().call_soon(self.exit, task.task_id, 0)
        elif argv[:2] == ["sh", "-c"] and argv[2].startswith("exit "):
            asyncio.get_running_loop().call_soon(self.exit, task.task_id, int(argv[2][5:]))
        return task

    def exit(self, task_id: str, code: int) -> None:
        task = self.tasks[task_id]
        if task.exit_code is not None:
            return
        task.exit_code = code
        for q in task.listeners:
            q.put_nowait(None)
        self.on_exit(task)

    def _input(self, task: FakeTask, message: executor_pb2.ProcessInput) -> None:
        kind = message.WhichOneof("input")
        if kind == "resize":
            task.sizes.append((message.resize.rows, message.resize.columns))
        elif kind == "stdin" and (task.tty or task.interactive):
            task.stdin += message.stdin
            if task.argv[:1] == ["cat"]:
                task.write(agent_pb2.LogChunk.STDOUT, message.stdin)
        elif kind == "close_stdin":
            task.stdin_closed = True
            if task.argv[:1] == ["cat"]:
                self.exit(task.task_id, 0)

    # -- Agent API ------------------------------------------------------------------------
    async def Logs(self, request: agent_pb2.LogsRequest,
                   context: grpc.aio.ServicerContext) -> AsyncIterator[agent_pb2.LogChunk]:
        task = self.tasks.get(request.task_id)
        if task is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no sandbox for {request.task_id}")
            return
        want = [s for s, on in ((1, request.stdout), (2, request.stderr)) if on] or [1, 2]
        q: asyncio.Queue[Any] = asyncio.Queue()
        if request.follow and task.exit_code is None:
            task.listeners.append(q)
        for stream in want:
            data = task.history(stream)
            if request.tail:
                data = b"".join(data.splitlines(keepends=True)[-request.tail:])
            if data:
                yield agent_pb2.LogChunk(stream=stream, data=data)
        if q not in task.listeners:
            return
        try:
            while (item := await q.get()) is not None:
                if item[0] in want:
                    yield agent_pb2.LogChunk(stream=item[0], data=item[1])
        finally:
            task.listeners.remove(q)

    async def _running(self, task_id: str, context: grpc.aio.ServicerContext) -> FakeTask:
        task = self.tasks.get(task_id)
        if task is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no task {task_id!r}")
        assert task is not None
        if task.exit_code is not None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"task {task_id!r} is TASK_FINISHED, not running")
        return task

    async def Attach(self, request_iterator: AsyncIterator[agent_pb2.AttachRequest],
                     context: grpc.aio.ServicerContext
                     ) -> AsyncIterator[executor_pb2.ProcessOutput]:
        first = await request_iterator.__anext__()
        start = first.start
        task = await self._running(start.task_id, context)
        if start.size.rows:
            task.sizes.append((start.size.rows, start.size.columns))
        q: asyncio.Queue[Any] = asyncio.Queue()
        task.listeners.append(q)
        if start.logs:
            for stream, data in task.output:
                q.put_nowait((stream, data))

        async def forward() -> None:
            async for r in request_iterator:
                self._input(task, r.input)
            q.put_nowait("detached")

        pump = asyncio.create_task(forward())
        try:
            while True:
                item = await q.get()
                if item == "detached":
                    return
                if item is None:
                    yield executor_pb2.ProcessOutput(exit_code=task.exit_code or 0)
                    return
                stream, data = item
                yield (executor_pb2.ProcessOutput(stderr=data) if stream == 2
                       else executor_pb2.ProcessOutput(stdout=data))
        finally:
            pump.cancel()
            task.listeners.remove(q)

    async def Exec(self, request_iterator: AsyncIterator[agent_pb2.ExecRequest],
                   context: grpc.aio.ServicerContext
                   ) -> AsyncIterator[executor_pb2.ProcessOutput]:
        first = await request_iterator.__anext__()
        start = first.start
        await self._running(start.task_id, context)
        self.execs.append(start)
        argv = list(start.argv)
        if argv[:1] == ["echo"]:
            yield executor_pb2.ProcessOutput(stdout=" ".join(argv[1:]).encode() + b"\n")
            yield executor_pb2.ProcessOutput(exit_code=0)
        elif argv[:2] == ["sh", "-c"]:
            yield executor_pb2.ProcessOutput(stderr=b"to stderr\n")
            yield executor_pb2.ProcessOutput(exit_code=int(argv[2].split()[-1]))
        elif argv[:1] == ["cat"]:
            async for r in request_iterator:
                self.exec_inputs.append(r.input)
                if r.input.WhichOneof("input") == "stdin":
                    yield executor_pb2.ProcessOutput(stdout=r.input.stdin)
                elif r.input.WhichOneof("input") == "close_stdin":
                    break
            yield executor_pb2.ProcessOutput(exit_code=0)
        else:
            yield executor_pb2.ProcessOutput(stderr=f"{argv[0]}: not found\n".encode())
            yield executor_pb2.ProcessOutput(exit_code=127)

    async def Top(self, request: agent_pb2.TopRequest,
                  context: grpc.aio.ServicerContext) -> agent_pb2.TopResponse:
        task = await self._running(request.task_id, context)
        return agent_pb2.TopResponse(
            titles=["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"],
            processes=[agent_pb2.TopResponse.Process(
                fields=["root", "4242", "4200", "0", "10:00", "?", "00:00:00",
                        " ".join(task.argv)])])

    async def GetUsage(self, request: agent_pb2.GetUsageRequest,
                       context: grpc.aio.ServicerContext) -> agent_pb2.TaskUsage:
        await self._running(request.task_id, context)
        now = time.time()
        return agent_pb2.TaskUsage(task_id=request.task_id, timestamp=now,
                                   cpu_seconds=now % 1000 / 4, memory_bytes=10 * 2**20,
                                   memory_peak_bytes=12 * 2**20,
                                   memory_limit_bytes=64 * 2**20, pids=3)

    async def Signal(self, request: agent_pb2.SignalRequest,
                     context: grpc.aio.ServicerContext) -> agent_pb2.SignalResponse:
        await self._running(request.task_id, context)
        self.signals.append((request.task_id, request.signal))
        return agent_pb2.SignalResponse()

    async def ListImages(self, request: agent_pb2.ListImagesRequest,
                         context: grpc.aio.ServicerContext) -> agent_pb2.ListImagesResponse:
        # busybox only: a create of any other image is Docker's 404
        return agent_pb2.ListImagesResponse(images=[agent_pb2.Image(
            id="sha256:" + "b" * 64, references=["docker.io/library/busybox:latest"])])

    # -- Operator API (the master) -----------------------------------------------------
    async def GetAgents(self, request: operator_pb2.GetAgentsRequest,
                        context: grpc.aio.ServicerContext) -> operator_pb2.GetAgentsResponse:
        view = operator_pb2.AgentView(
            info=common_pb2.AgentInfo(id=AGENT_ID, hostname="agent1", address=self.address),
            state=operator_pb2.AGENT_ACTIVE,
            total=Resources({"cpus": 2, "mem": 1024}, ports=PORTS).to_proto())
        return operator_pb2.GetAgentsResponse(agents=[view])


# -- a fake apps service ------------------------------------------------------------------------

PORTS = "[31000-31099]"   # the agent's "ports" resource


class FakeService(ContainerRequests):
    """docker_api.DockerBackend: the service's real requests (container_requests.py)
    over the real ContainersState, with this module's agent and master in place
    of the framework (module docstring)."""

    def __init__(self, agent: FakeAgent) -> None:
        self.agent = agent
        agent.on_exit = self._exited
        self.containers = ContainersState(SystemClock(), lambda: secrets.token_hex(32))
        self.containers.reconciling = False
        self.config = SimpleNamespace(master=agent.address)
        self.framework_id = FRAMEWORK_ID
        self.leading = True
        self.leader: str | None = None
        self.url = "http://127.0.0.1:8080"
        self.state = None
        self.hold = False                   # launched runs stay STARTING
        self._changes = asyncio.Event()
        self._lock = asyncio.Lock()
        self._offers = 0

    @property
    def acting(self) -> bool:
        return self.leading

    def leader_url(self) -> str | None:
        return self.url if self.leading else self.leader

    def info(self) -> dict[str, Any]:
        return {"name": "test-cluster", "master": self.agent.address}

    def _changed(self) -> None:
        self._changes.set()
        self._changes = asyncio.Event()

    async def _execute(self, commands: list[Command]) -> None:
        self._run(commands)

    def _run(self, commands: list[Command]) -> None:
        for cmd in commands:
            if isinstance(cmd, Revive) and not self.hold:
                self._offer()
            elif isinstance(cmd, Launch):
                for info in cmd.tasks:
                    self.agent.launch(info)
                    self._update(info.task_id, common_pb2.TASK_RUNNING, pid=4242)
            elif isinstance(cmd, Kill):
                task = self.agent.tasks.get(cmd.task_id)
                if task is not None:
                    self.agent.exit(cmd.task_id, 137 if cmd.grace_seconds == 0 else 143)
            elif isinstance(cmd, Signal):
                self.agent.signals.append((cmd.task_id, cmd.signal))
            elif isinstance(cmd, RemoveLayer):
                self._run(self.containers.layer_removed(cmd.agent_id, cmd.name))
        self._changed()

    def _offer(self) -> None:
        self._offers += 1
        offer = common_pb2.Offer(
            id=f"offer-{self._offers}", framework_id=FRAMEWORK_ID, agent_id=AGENT_ID,
            hostname="agent1", agent_address=self.agent.address,
            resources=Resources({"cpus": 4, "mem": 4096}, ports=PORTS).to_proto())
        commands, _ = self.containers.on_offers([offer])
        self._run(commands)

    def release(self) -> None:
        """Launch the runs `hold` kept waiting."""
        self.hold = False
        self._offer()

    def _update(self, task_id: str, state: int, **fields: Any) -> None:
        status = common_pb2.TaskStatus(task_id=task_id, agent_id=AGENT_ID, state=state,
                                       timestamp=time.time(), **fields)
        self._run(self.containers.on_updates([status]))

    def _exited(self, task: FakeTask) -> None:
        code = task.exit_code or 0
        state = common_pb2.TASK_FINISHED if code == 0 else (
            common_pb2.TASK_KILLED if code in (137, 143) else common_pb2.TASK_FAILED)
        self._update(task.task_id, state, exit_code=code)


# -- harness ------------------------------------------------------------------------------------


@dataclass
class Env:
    client: TestClient
    service: FakeService
    agent: FakeAgent

    async def create(self, name: str = "web", **body: Any) -> str:
        body.setdefault("Image", "busybox")
        body.setdefault("Cmd", ["sleep", "300"])
        r = await self.client.post(f"/v1.47/containers/create?name={name}", json=body)
        assert r.status == 201, await r.text()
        return (await r.json())["Id"]

    async def run(self, name: str = "web", **body: Any) -> str:
        cid = await self.create(name, **body)
        r = await self.client.post(f"/v1.47/containers/{cid}/start")
        assert r.status == 204, await r.text()
        return cid

    def container(self, ref: str) -> Container:
        return self.service.containers.find(ref)

    async def hijack(self, path: str, body: dict[str, Any] | None = None
                     ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
        """A raw connection that asked to upgrade: (reader, writer, the answer's head)."""
        server = self.client.server
        reader, writer = await asyncio.open_connection(server.host, server.port)
        data = json.dumps(body).encode() if body is not None else b""
        writer.write((f"POST {path} HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\n"
                      f"Upgrade: tcp\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {len(data)}\r\n\r\n").encode() + data)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        return reader, writer, head


def scenario(fn: Callable[[Env], Coroutine[Any, Any, None]], *,
             standby: bool = False, marathon: bool = False) -> None:
    async def main() -> None:
        agent = FakeAgent()
        await agent.start()
        service = FakeService(agent)
        if standby:
            service.leading, service.leader = False, "http://10.0.0.9:8080"
        app = rest.make_app(service) if marathon else web.Application()  # type: ignore[arg-type]
        docker_api.add_docker_routes(app, service)  # type: ignore[arg-type]
        try:
            async with TestClient(TestServer(app)) as client:
                await asyncio.wait_for(fn(Env(client, service, agent)), 30)
        finally:
            await agent.stop()

    asyncio.run(main())


async def read_frames(reader: asyncio.StreamReader) -> list[tuple[int, bytes]]:
    """Docker's framed stream until EOF."""
    frames = []
    while True:
        head = await _exactly(reader, 8)
        if not head:
            return frames
        stream, size = struct.unpack(">BxxxI", head)
        frames.append((stream, await reader.readexactly(size)))


async def _exactly(reader: asyncio.StreamReader, n: int) -> bytes:
    try:
        return await reader.readexactly(n)
    except asyncio.IncompleteReadError as e:
        assert not e.partial, f"a frame cut short: {e.partial!r}"
        return b""


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll what the fake agent saw (its inputs change no container state)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def joined(frames: list[tuple[int, bytes]], stream: int) -> bytes:
    return b"".join(d for s, d in frames if s == stream)


# -- system --------------------------------------------------------------------------------------


def test_ping_version_and_headers() -> None:
    async def go(env: Env) -> None:
        for method in ("GET", "HEAD"):
            r = await env.client.request(method, "/_ping")
            assert r.status == 200
            assert r.headers["Api-Version"] == "1.47"
            assert r.headers["Docker-Experimental"] == "false"
            assert r.headers["Ostype"] == "linux"
            assert r.headers["Server"].startswith("juggler/")
            if method == "GET":
                assert await r.text() == "OK"
        r = await env.client.get("/v1.41/version")
        body = await r.json()
        assert body["ApiVersion"] == "1.47" and body["MinAPIVersion"] == "1.24"
        assert body["Components"][0]["Name"] == "Engine"

    scenario(go)


def test_versions_out_of_range_are_refused_as_docker_does() -> None:
    async def go(env: Env) -> None:
        r = await env.client.get("/v1.50/containers/json")
        assert r.status == 400
        assert r.headers["Content-Type"] == "application/json"
        assert (await r.json())["message"] == ("client version 1.50 is too new. Maximum "
                                               "supported API version is 1.47")
        r = await env.client.get("/v1.23/containers/json")
        assert r.status == 400
        assert "client version 1.23 is too old" in (await r.json())["message"]
        r = await env.client.get("/v1.47/networks")
        assert r.status == 404 and (await r.json())["message"] == "page not found"

    scenario(go)


def test_info_counts_containers_and_sums_the_agents() -> None:
    async def go(env: Env) -> None:
        await env.run("aa")
        await env.create("bb")
        info = await (await env.client.get("/v1.47/info")).json()
        assert (info["Containers"], info["ContainersRunning"], info["ContainersStopped"]) == \
            (2, 1, 1)
        assert info["NCPU"] == 2 and info["MemTotal"] == 1024 * 2**20
        assert info["OperatingSystem"] == "juggler" and info["Driver"] == "overlay2"
        assert info["Name"] == "test-cluster"
        assert any("juggler" in line for line in info["Labels"])
        assert info["Images"] == 1   # busybox, on the one agent

    scenario(go)


# -- create -------------------------------------------------------------------------------------


def test_create_reads_docker_s_config_and_refuses_what_it_cannot_honour() -> None:
    async def go(env: Env) -> None:
        cid = await env.create(
            "web", Env=["A=1", "B=x=y"], WorkingDir="/tmp", User="nobody", Hostname="hh",
            Labels={"k": "v"}, Tty=True, OpenStdin=True, StopSignal="SIGHUP", StopTimeout=3,
            HostConfig={"Memory": 64 * 2**20, "MemorySwap": 128 * 2**20, "CpuShares": 256,
                        "NanoCpus": 500_000_000, "PidsLimit": 10, "NetworkMode": "host",
                        "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2},
                        "MemorySwappiness": -1, "LogConfig": {"Type": "", "Config": {}}})
        cfg = env.container(cid).config
        assert cfg.env == {"A": "1", "B": "x=y"} and cfg.working_dir == "/tmp"
        assert (cfg.memory, cfg.memory_swap, cfg.cpu_shares, cfg.cpus, cfg.pids_limit) == \
            (64 * 2**20, 128 * 2**20, 256, 0.5, 10)
        assert cfg.network == "host" and cfg.restart.text() == "on-failure:2"
        assert cfg.tty and cfg.open_stdin and cfg.stop_signal == "SIGHUP"
        # An absolute path is a root filesystem.
        rid = await env.create("rooted", Image="/srv/rootfs")
        assert env.container(rid).config.rootfs == "/srv/rootfs"
        assert env.container(rid).config.image == ""

        for body, words in [
            ({"Entrypoint": ["sh"]}, "Entrypoint (--entrypoint)"),
            ({"HostConfig": {"Binds": ["/a:/b"]}}, "HostConfig.Binds (-v/--volume)"),
            ({"HostConfig": {"Privileged": True}}, "HostConfig.Privileged (--privileged)"),
            ({"HostConfig": {"CapAdd": ["NET_FOO"]}},
             'invalid CapAdd: unknown capability: "CAP_NET_FOO"'),
            ({"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "8080-8081"}]}}},
             "juggler cannot publish a host port range for one container port"),
            ({"HostConfig": {"Memory": 1024}}, "Minimum memory limit allowed is 6MB"),
            ({"HostConfig": {"MemorySwap": 2**30}}, "always set the Memory limit"),
            ({"HostConfig": {"RestartPolicy": {"Name": "sometimes"}}}, "unknown policy"),
            ({"HostConfig": {"AutoRemove": True, "RestartPolicy": {"Name": "always"}}},
             "AutoRemove"),
        ]:
            r = await env.client.post("/v1.47/containers/create",
                                      json={"Image": "busybox", **body})
            assert r.status == 400, (body, await r.text())
            assert words in (await r.json())["message"], body
        r = await env.client.post("/v1.47/containers/create?name=web",
                                  json={"Image": "busybox"})
        assert r.status == 409 and "is already in use" in (await r.json())["message"]
        # moby's words for an image no agent has; no container is made
        before = len(env.service.containers.containers)
        for image, words in (("nosuch:3", "No such image: nosuch:3"),
                             ("nosuch", "No such image: nosuch:latest"),
                             ("127.0.0.1:5999/nope:1", "No such image: 127.0.0.1:5999/nope:1")):
            r = await env.client.post("/v1.47/containers/create?name=nope",
                                      json={"Image": image})
            assert (r.status, (await r.json())["message"]) == (404, words)
        assert len(env.service.containers.containers) == before
        r = await env.client.post("/v1.47/containers/create", json={"Image": "Bad:Name"})
        assert r.status == 400
        assert (await r.json())["message"].startswith("invalid reference format")
        r = await env.client.post("/v1.47/containers/create",
                                  json={"Image": "x", "HostConfig": {"NetworkMode": "my/net"}})
        assert r.status == 400
        assert (await r.json())["message"].startswith("network my/net not found")

    scenario(go)


# -- lifecycle ----------------------------------------------------------------------------------


def test_start_stop_restart_kill_rename_remove() -> None:
    async def go(env: Env) -> None:
        cid = await env.run("web")
        c = env.container(cid)
        assert c.status == CS.RUNNING
        assert (await env.client.post("/v1.47/containers/web/start")).status == 304
        r = await env.client.post("/v1.47/containers/web/kill?signal=HUP")
        assert r.status == 204 and env.agent.signals == [(c.task_id, "HUP")]
        r = await env.client.delete("/v1.47/containers/web")
        assert r.status == 409
        assert (await r.json())["message"] == (
            'cannot remove container "/web": container is running: stop the container '
            "before removing or force remove")
        assert (await env.client.post("/v1.47/containers/web/stop?t=3")).status == 204
        assert c.status == CS.EXITED and c.exit_code == 143
        assert (await env.client.post("/v1.47/containers/web/stop")).status == 304
        assert (await env.client.post("/v1.47/containers/web/restart")).status == 204
        assert c.status == CS.RUNNING and c.generation == 2
        r = await env.client.post("/v1.47/containers/web/stop?signal=KILL")
        assert r.status == 400 and "StopSignal" in (await r.json())["message"]
        assert (await env.client.post(f"/v1.47/containers/{cid[:8]}/rename?name=web2")
                ).status == 204
        assert c.name == "web2"
        r = await env.client.post("/v1.47/containers/nosuch/start")
        assert r.status == 404 and (await r.json())["message"] == "No such container: nosuch"
        assert (await env.client.delete("/v1.47/containers/web2?force=1&v=1")).status == 204
        assert cid not in env.service.containers.containers

    scenario(go)


def test_wait_sends_its_status_line_at_once() -> None:
    async def go(env: Env) -> None:
        await env.create("job", Cmd=["sh", "-c", "exit 3"])
        r = await asyncio.wait_for(
            env.client.post("/v1.47/containers/job/wait?condition=next-exit"), 5)
        assert r.status == 200    # before the container even started
        assert (await env.client.post("/v1.47/containers/job/start")).status == 204
        assert await asyncio.wait_for(r.json(), 5) == {"StatusCode": 3, "Error": None}
        r = await env.client.post("/v1.47/containers/job/wait")
        assert await r.json() == {"StatusCode": 3, "Error": None}
        r = await env.client.post("/v1.47/containers/job/wait?condition=sometime")
        assert r.status == 400

    scenario(go)


def test_list_filters_limit_and_status_text() -> None:
    async def go(env: Env) -> None:
        await env.run("web", Labels={"tier": "front"})
        await env.create("db")
        await env.run("job", Cmd=["sh", "-c", "exit 3"])
        await env.service.until(lambda: env.container("job").status == CS.EXITED, 5)

        async def names(query: str) -> list[str]:
            r = await env.client.get(f"/v1.47/containers/json{query}")
            assert r.status == 200, await r.text()
            return [item["Names"][0] for item in await r.json()]

        assert await names("") == ["/web"]
        assert await names("?all=1") == ["/job", "/db", "/web"]
        assert await names("?limit=1") == ["/job"]
        assert await names('?all=1&filters={"name":{"we":true}}') == ["/web"]
        assert await names('?all=1&filters={"status":["exited"]}') == ["/job"]
        assert await names('?all=1&filters={"label":{"tier=front":true}}') == ["/web"]
        assert await names('?all=1&filters={"exited":{"3":true}}') == ["/job"]
        r = await env.client.get('/v1.47/containers/json?filters={"volume":{"x":true}}')
        assert r.status == 400 and (await r.json())["message"] == "invalid filter 'volume'"
        items = {i["Names"][0]: i for i in
                 await (await env.client.get("/v1.47/containers/json?all=1")).json()}
        assert items["/web"]["State"] == "running"
        assert items["/web"]["Status"].startswith("Up ")
        assert items["/db"]["Status"] == "Created"
        assert items["/job"]["Status"].startswith("Exited (3) ")
        assert items["/web"]["Command"] == "sleep 300" and items["/web"]["Ports"] == []

    scenario(go)


def test_inspect_has_docker_s_shape_and_the_agent() -> None:
    async def go(env: Env) -> None:
        cid = await env.run("web", HostConfig={"Memory": 64 * 2**20})
        body = await (await env.client.get("/v1.47/containers/web/json")).json()
        assert body["Id"] == cid and body["Name"] == "/web"
        state = body["State"]
        assert state["Status"] == "running" and state["Running"] and not state["OOMKilled"]
        assert state["Pid"] == 4242 and state["FinishedAt"] == "0001-01-01T00:00:00Z"
        assert state["StartedAt"].endswith("Z") and "T" in state["StartedAt"]
        assert body["HostConfig"]["Memory"] == 64 * 2**20
        assert body["HostConfig"]["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
        assert body["Config"]["Cmd"] == ["sleep", "300"]
        assert body["Node"]["ID"] == AGENT_ID and body["Node"]["IP"] == "127.0.0.1"
        assert body["Juggler"]["TaskId"] == f"{cid[:12]}.1"
        assert body["Juggler"]["FrameworkId"] == FRAMEWORK_ID

    scenario(go)


def test_top_and_stats() -> None:
    async def go(env: Env) -> None:
        await env.run("web")
        top = await (await env.client.get("/v1.47/containers/web/top?ps_args=-ef")).json()
        assert top["Titles"][1] == "PID" and top["Processes"][0][-1] == "sleep 300"
        r = await env.client.get("/v1.47/containers/web/stats?stream=0&one-shot=1")
        s = await r.json()
        assert s["memory_stats"]["usage"] == 10 * 2**20
        assert s["memory_stats"]["limit"] == 64 * 2**20
        assert s["pids_stats"]["current"] == 3 and s["cpu_stats"]["online_cpus"] == 2
        assert s["name"] == "/web"
        await env.create("idle")
        r = await env.client.get("/v1.47/containers/idle/top")
        assert r.status == 409
        s = await (await env.client.get("/v1.47/containers/idle/stats?stream=0")).json()
        assert s["memory_stats"] == {}

    scenario(go)


# -- streams ------------------------------------------------------------------------------------


def test_logs_are_framed_and_follow_the_run_until_it_ends() -> None:
    async def go(env: Env) -> None:
        cid = await env.run("web")
        task = env.agent.tasks[env.container(cid).task_id]
        task.write(1, b"one\ntwo\n")
        task.write(2, b"oops\n")
        r = await env.client.get("/v1.47/containers/web/logs?stdout=1&stderr=1")
        assert r.headers["Content-Type"] == "application/vnd.docker.multiplexed-stream"
        frames = await read_frames(r.content)   # type: ignore[arg-type]
        assert joined(frames, 1) == b"one\ntwo\n" and joined(frames, 2) == b"oops\n"
        r = await env.client.get("/v1.47/containers/web/logs?stdout=1&tail=1")
        assert joined(await read_frames(r.content), 1) == b"two\n"  # type: ignore[arg-type]
        r = await env.client.get("/v1.47/containers/web/logs?stdout=1&follow=1&tail=1")
        task.write(1, b"three\n")
        first = await asyncio.wait_for(r.content.readexactly(8 + 4), 5)
        assert first[8:] == b"two\n"
        more = await asyncio.wait_for(r.content.readexactly(8 + 6), 5)
        assert more[8:] == b"three\n"
        env.agent.exit(task.task_id, 0)
        assert await asyncio.wait_for(r.content.read(), 5) == b""
        r = await env.client.get("/v1.47/containers/web/logs")
        assert r.status == 400
        r = await env.client.get("/v1.47/containers/web/logs?stdout=1&timestamps=1")
        assert r.status == 400 and "timestamps" in (await r.json())["message"]

    scenario(go)


def test_logs_span_every_run() -> None:
    async def go(env: Env) -> None:
        cid = await env.run("web")
        env.agent.tasks[env.container(cid).task_id].write(1, b"first run\n")
        await env.client.post("/v1.47/containers/web/restart")
        env.agent.tasks[env.container(cid).task_id].write(1, b"second run\n")
        r = await env.client.get("/v1.47/containers/web/logs?stdout=1")
        frames = await read_frames(r.content)  # type: ignore[arg-type]
        assert joined(frames, 1) == b"first run\nsecond run\n"

    scenario(go)


def test_attach_before_start_gets_everything_and_the_exit() -> None:
    """As `docker run` does: create, attach (101), wait, start."""
    async def go(env: Env) -> None:
        await env.create("hello", Cmd=["echo", "hi", "there"])
        reader, writer, head = await env.hijack(
            "/v1.47/containers/hello/attach?stream=1&stdout=1&stderr=1")
        assert head.startswith(b"HTTP/1.1 101 UPGRADED\r\n"), head
        assert b"Transfer-Encoding" not in head
        assert b"Content-Type: application/vnd.docker.multiplexed-stream" in head
        wait = await env.client.post("/v1.47/containers/hello/wait?condition=next-exit")
        assert (await env.client.post("/v1.47/containers/hello/start")).status == 204
        frames = await asyncio.wait_for(read_frames(reader), 5)
        assert joined(frames, 1) == b"hi there\n"
        assert (await wait.json())["StatusCode"] == 0
        writer.close()

    scenario(go)


def test_an_attach_without_streams_holds_only_the_run_it_waits_for() -> None:
    """`juggler run`'s way (cli/docker_client.attach_begin): it says it waits, reads
    the streams from the agent; the hijack ends once the run is launched. A later
    start nobody attaches to is not held."""
    async def go(env: Env) -> None:
        cid = await env.create("hello", Cmd=["echo", "hi"])
        reader, writer, head = await env.hijack("/v1.47/containers/hello/attach?stream=1")
        assert head.startswith(b"HTTP/1.1 101 UPGRADED\r\n"), head
        assert cid in env.service.containers.attaches_waiting
        wait = await env.client.post("/v1.47/containers/hello/wait?condition=next-exit")
        assert (await env.client.post("/v1.47/containers/hello/start")).status == 204
        assert await asyncio.wait_for(reader.read(), 5) == b""   # nothing relayed: it ends
        writer.close()
        assert (await wait.json())["StatusCode"] == 0
        assert env.agent.tasks[f"{cid[:12]}.1"].labels.get(HOLD_OUTPUT_LABEL) == "10"
        assert cid not in env.service.containers.attaches_waiting
        wait = await env.client.post("/v1.47/containers/hello/wait?condition=next-exit")
        assert (await env.client.post("/v1.47/containers/hello/start")).status == 204
        assert (await wait.json())["StatusCode"] == 0
        assert HOLD_OUTPUT_LABEL not in env.agent.tasks[f"{cid[:12]}.2"].labels

    scenario(go)


def test_attach_with_stdin_a_half_close_and_a_tty() -> None:
    async def go(env: Env) -> None:
        # `echo hi | docker run -i IMAGE cat`: the input comes before the start;
        # its EOF closes the container's stdin (StdinOnce, which run -i sets).
        await env.create("cat", Cmd=["cat"], OpenStdin=True, StdinOnce=True)
        reader, writer, _ = await env.hijack(
            "/v1.47/containers/cat/attach?stream=1&stdin=1&stdout=1&stderr=1")
        writer.write(b"hello\n")
        writer.write_eof()
        await env.client.post("/v1.47/containers/cat/start")
        frames = await asyncio.wait_for(read_frames(reader), 5)
        assert joined(frames, 1) == b"hello\n"
        task = env.agent.tasks[env.container("cat").task_id]
        assert task.stdin_closed
        writer.close()

        # A tty: raw bytes, resize, and the detach keys leave it running.
        await env.run("shell", Cmd=["sleep", "1"], Tty=True, OpenStdin=True)
        task = env.agent.tasks[env.container("shell").task_id]
        reader, writer, head = await env.hijack(
            "/v1.47/containers/shell/attach?stream=1&stdin=1&stdout=1&stderr=1"
            "&detachKeys=ctrl-x,x")
        assert b"application/vnd.docker.raw-stream" in head
        await asyncio.sleep(0)
        r = await env.client.post("/v1.47/containers/shell/resize?h=40&w=120")
        assert r.status == 200
        writer.write(b"ls\r")
        await eventually(lambda: bytes(task.stdin) == b"ls\r")
        task.write(1, b"bin etc\r\n")
        assert await asyncio.wait_for(reader.readexactly(9), 5) == b"bin etc\r\n"
        assert (40, 120) in task.sizes
        writer.write(b"\x18x")
        assert await asyncio.wait_for(reader.read(), 5) == b""   # closed: detached
        assert bytes(task.stdin) == b"ls\r" and env.container("shell").status == CS.RUNNING
        writer.close()

    scenario(go)


def test_exec_create_start_inspect() -> None:
    async def go(env: Env) -> None:
        await env.run("web")
        r = await env.client.post("/v1.47/containers/web/exec", json={
            "Cmd": ["sh", "-c", "exit 7"], "AttachStdout": True, "AttachStderr": True,
            "Env": ["X=1"], "User": "nobody", "WorkingDir": "/tmp"})
        assert r.status == 201
        exec_id = (await r.json())["Id"]
        reader, writer, head = await env.hijack(f"/v1.47/exec/{exec_id}/start",
                                                {"Detach": False, "Tty": False})
        assert head.startswith(b"HTTP/1.1 101 UPGRADED")
        frames = await asyncio.wait_for(read_frames(reader), 5)
        assert joined(frames, 2) == b"to stderr\n"
        body = await (await env.client.get(f"/v1.47/exec/{exec_id}/json")).json()
        assert body["ExitCode"] == 7 and body["Running"] is False
        start = env.agent.execs[-1]
        assert dict(start.environment) == {"X": "1"} and start.user == "nobody"
        writer.close()

        # With stdin: what is sent comes back; the client's EOF ends it.
        r = await env.client.post("/v1.47/containers/web/exec", json={
            "Cmd": ["cat"], "AttachStdin": True, "AttachStdout": True})
        exec_id = (await r.json())["Id"]
        reader, writer, _ = await env.hijack(f"/v1.47/exec/{exec_id}/start", {})
        writer.write(b"abc")
        writer.write_eof()
        frames = await asyncio.wait_for(read_frames(reader), 5)
        assert joined(frames, 1) == b"abc"
        assert (await (await env.client.get(f"/v1.47/exec/{exec_id}/json")).json()
                )["ExitCode"] == 0

        r = await env.client.post("/v1.47/containers/web/exec", json={"Cmd": []})
        assert r.status == 400
        r = await env.client.post("/v1.47/containers/web/exec",
                                  json={"Cmd": ["id"], "Privileged": True})
        assert r.status == 400
        r = await env.client.get("/v1.47/exec/nosuch/json")
        assert r.status == 404
        await env.create("idle")
        r = await env.client.post("/v1.47/containers/idle/exec", json={"Cmd": ["id"]})
        assert r.status == 409

    scenario(go)


# -- standbys ------------------------------------------------------------------------------------


def test_a_standby_answers_ping_itself_and_refuses_hijacks_naming_the_leader() -> None:
    async def go(env: Env) -> None:
        r = await env.client.get("/v1.47/_ping")
        assert r.status == 200 and await r.text() == "OK"
        r = await env.client.get("/v1.47/version")
        assert r.status == 200
        r = await env.client.post("/v1.47/containers/web/attach?stream=1")
        assert r.status == 503
        assert "10.0.0.9:8080" in (await r.json())["message"]
        r = await env.client.post("/v1.99/containers/web/attach?stream=1")
        assert r.status == 400

    scenario(go, standby=True, marathon=True)


def test_beside_marathon_s_api() -> None:
    async def go(env: Env) -> None:
        r = await env.client.get("/ping")
        assert await r.text() == "pong"
        r = await env.client.get("/v1.47/containers/nosuch/json")
        assert r.status == 404 and r.headers["Content-Type"] == "application/json"
        assert r.headers["Api-Version"] == "1.47"
        r = await env.client.get("/v2/nosuch")
        assert r.status == 404 and "Api-Version" not in r.headers

    scenario(go, marathon=True)


@pytest.mark.parametrize("spec,keys", [("", b"\x10\x11"), ("ctrl-a,x", b"\x01x"),
                                       ("ctrl-@,ctrl-[,DEL", b"\x00\x1b\x7f")])
def test_detach_keys(spec: str, keys: bytes) -> None:
    from juggler.apps.docker_stream import detach_keys

    assert detach_keys(spec) == keys


def test_prune_and_what_is_not_implemented() -> None:
    async def go(env: Env) -> None:
        await env.run("web")
        idle = await env.create("idle", Labels={"x": "y"})
        await env.create("other")
        r = await env.client.post('/v1.47/containers/prune?filters={"label":["x=y"]}')
        assert await r.json() == {"ContainersDeleted": [idle], "SpaceReclaimed": 0}
        assert sorted(c.name for c in env.service.containers.containers.values()) == \
            ["other", "web"]
        r = await env.client.post("/v1.47/containers/web/pause")
        assert r.status == 501
        assert (await r.json())["message"] == "juggler does not implement docker pause"
        r = await env.client.get("/v1.47/containers/web/changes")
        assert (await r.json())["message"] == "juggler does not implement docker diff"
        r = await env.client.post("/v1.47/containers/web/nonsense")
        assert r.status == 404

    scenario(go)


# -- the unix socket --------------------------------------------------------------------------


def test_the_unix_socket_mode_group_stale_and_live(tmp_path: Path) -> None:
    async def go() -> None:
        async def ok(request: web.Request) -> web.Response:
            return web.Response(text="OK")

        app = web.Application()
        app.router.add_get("/_ping", ok)
        path = str(tmp_path / "run" / "docker.sock")
        os.makedirs(os.path.dirname(path))
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(path)            # a socket file nothing listens on
        stale.close()
        runner = web.AppRunner(app)
        await runner.setup()
        site = await docker_api.serve_unix(runner, path, str(os.getgid()))
        assert site.name == f"http://unix:{path}:"
        try:
            st = os.stat(path)
            assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
            assert st.st_gid == os.getgid()
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert (await reader.read()).endswith(b"OK")
            writer.close()
            other = web.AppRunner(web.Application())
            await other.setup()
            with pytest.raises(OSError, match="already listens"):
                await docker_api.serve_unix(other, path, None)
            await other.cleanup()
            assert os.path.exists(path)       # the live one is left alone
        finally:
            await runner.cleanup()
        assert not os.path.exists(path)       # removed with its site
        (tmp_path / "file").write_text("not a socket")
        with pytest.raises(OSError, match="not a socket"):
            await docker_api.serve_unix(runner, str(tmp_path / "file"), None)
        with pytest.raises(OSError, match="no group"):
            await docker_api.serve_unix(runner, path, "no-such-group-here")
        # A path that just fits sun_path is served, though its temporary name
        # (.NAME.PID.tmp) would not fit; one longer is refused, saying why.
        deep = tmp_path / ("d" * (SUN_PATH_MAX - len(str(tmp_path)) - len("//x/docker.sock")))
        fits = deep / "x" / "docker.sock"
        assert len(os.fsencode(str(fits))) == SUN_PATH_MAX
        runner = web.AppRunner(app)
        await runner.setup()
        await docker_api.serve_unix(runner, str(fits), None)
        try:
            reader, writer = await asyncio.open_unix_connection(str(fits))
            writer.write(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert (await reader.read()).endswith(b"OK")
            writer.close()
        finally:
            await runner.cleanup()
        with pytest.raises(OSError, match="at most 107 bytes"):
            await docker_api.serve_unix(runner, str(deep / "x" / "docker.sock1"), None)

    asyncio.run(go())


# -- published ports --------------------------------------------------------------------------


def test_published_ports_in_create_list_and_inspect() -> None:
    async def go(env: Env) -> None:
        r = await env.client.post("/v1.47/containers/create?name=hosted", json={
            "Image": "busybox", "Cmd": ["true"], "ExposedPorts": {"80/tcp": {}},
            "HostConfig": {"NetworkMode": "host",
                           "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}}})
        assert r.status == 201   # 8080 is reserved; 80 cannot be remapped to it: Docker's words
        assert (await r.json())["Warnings"] == [
            "Published ports are discarded when using host network mode"]
        r = await env.client.post("/v1.47/containers/create?name=hosted2", json={
            "Image": "busybox", "Cmd": ["true"], "HostConfig": {
                "NetworkMode": "host", "PortBindings": {"80/tcp": [{"HostPort": "80"}]}}})
        assert (await r.json())["Warnings"] == []   # 80 reserved as it is: no warning
        cid = await env.run("web", ExposedPorts={"80/tcp": {}, "90/udp": {}}, HostConfig={
            "NetworkMode": "default", "PortBindings": {
                "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "31005"}],
                "90/udp": [{"HostIp": "", "HostPort": ""}]}})
        udp = next(p["hostPort"] for p in env.container(cid).host_ports
                   if p["protocol"] == "udp")
        assert 31000 <= udp <= 31099 and udp != 31005
        listed = await (await env.client.get("/v1.47/containers/json")).json()
        web = next(c for c in listed if c["Names"] == ["/web"])
        assert sorted(web["Ports"], key=lambda p: p["PrivatePort"]) == [
            {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 31005, "Type": "tcp"},
            {"IP": "0.0.0.0", "PrivatePort": 90, "PublicPort": udp, "Type": "udp"}]
        assert web["HostConfig"]["NetworkMode"] == "bridge"
        assert list(web["NetworkSettings"]["Networks"]) == ["bridge"]
        info = await (await env.client.get(f"/v1.47/containers/{cid}/json")).json()
        assert info["NetworkSettings"]["Ports"] == {
            "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "31005"}],
            "90/udp": [{"HostIp": "0.0.0.0", "HostPort": str(udp)}]}
        assert info["HostConfig"]["PortBindings"]["80/tcp"] == [
            {"HostIp": "0.0.0.0", "HostPort": "31005"}]
        assert info["Config"]["ExposedPorts"] == {"80/tcp": {}, "90/udp": {}}
        # A host port no agent offers: refused at once, naming the agent's ports.
        await env.create("far", HostConfig={"PortBindings": {"80/tcp": [{"HostPort": "8080"}]}})
        r = await env.client.post("/v1.47/containers/far/start")
        assert r.status == 500
        assert "no agent offers host port 8080 (agents' ports: agent1 [31000-31099]" in \
            (await r.json())["message"]
        r = await env.client.post("/v1.47/containers/create", json={
            "Image": "busybox", "HostConfig": {"PortBindings": {"80/tcp": [
                {"HostPort": "31001"}], "81/tcp": [{"HostPort": "31001"}]}}})
        assert r.status == 400
        assert "Bind for 0.0.0.0:31001 failed: port is already allocated" in \
            (await r.json())["message"]

    scenario(go)
