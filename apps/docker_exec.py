"""Docker's exec instances over the agents' Exec stream.

    POST /containers/{id}/exec   ExecConfig → 201 {"Id"}; 409 when not running
    POST /exec/{id}/start        {"Detach", "Tty", "ConsoleSize"}: the hijacked
                                 stream (docker_stream.py); Detach: 200 at once,
                                 the command runs with no input and its output
                                 dropped, as Docker's
    POST /exec/{id}/resize?h=&w=
    GET  /exec/{id}/json         ExecInspect: Running, ExitCode, Pid (0: the
                                 agent does not report it), ProcessConfig

An instance lives in the leading apps service's memory (Docker's do not
survive a daemon restart either): its exit code is recorded before its
stream closes, since the docker CLI asks for it right after. Ended instances
are forgotten after `KEEP_SECONDS` or when more than `MAX_KEPT` are known.

The command runs through the agent (Agent.Exec) inside the container's
namespaces and cgroup. Differences with Docker: `Privileged` is refused; a
client that leaves or detaches (detach keys) ends the command (the agent
kills what it exec'd when its stream is cancelled); when the agent cannot run
it, the reason is written to the stream's stderr and the exit code is 126
(Docker: "OCI runtime exec failed", 126).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiohttp import web

from juggler.apps.containers import CS, Container
from juggler.apps.docker_api import backend_of, find, json_response
from juggler.apps.docker_errors import DockerError
from juggler.apps.docker_logs import STDERR, Output, content_type, frame
from juggler.apps.docker_stream import Hijack, Session, detach_keys, relay, size_query
from juggler.common import logs as logging
from juggler.common import servers
from juggler.v1 import agent_pb2, agent_pb2_grpc, executor_pb2

log = logging.get("apps.docker")

KEEP_SECONDS = 600.0
MAX_KEPT = 1024
CANNOT_RUN = 126        # Docker's exit code when the command could not be run


@dataclass
class ExecInstance:
    id: str
    container: Container
    argv: list[str]
    env: dict[str, str]
    user: str
    working_dir: str
    tty: bool
    stdin: bool
    stdout: bool
    stderr: bool
    keys: bytes
    raw_keys: str
    session: Session = field(default_factory=Session)
    started: bool = False
    running: bool = False
    exit_code: int | None = None
    ended_at: float = 0.0

    def inspect(self) -> dict[str, Any]:
        return {
            "ID": self.id, "ContainerID": self.container.id, "Running": self.running,
            "ExitCode": self.exit_code, "Pid": 0, "CanRemove": False,
            "OpenStdin": self.stdin, "OpenStdout": self.stdout, "OpenStderr": self.stderr,
            "DetachKeys": self.raw_keys,
            "ProcessConfig": {"entrypoint": self.argv[0], "arguments": self.argv[1:],
                              "privileged": False, "tty": self.tty, "user": self.user},
        }


class Execs:
    """The exec instances of this service, by id."""

    def __init__(self) -> None:
        self.instances: dict[str, ExecInstance] = {}

    def add(self, e: ExecInstance) -> None:
        self.prune(time.time())
        self.instances[e.id] = e

    def get(self, exec_id: str) -> ExecInstance:
        e = self.instances.get(exec_id)
        if e is None:
            raise DockerError(404, f"No such exec instance: {exec_id}")
        return e

    def prune(self, now: float) -> None:
        for key, e in list(self.instances.items()):
            if e.exit_code is not None and now - e.ended_at > KEEP_SECONDS:
                del self.instances[key]
        ended = sorted((e for e in self.instances.values() if e.exit_code is not None),
                       key=lambda e: e.ended_at)
        while len(self.instances) > MAX_KEPT and ended:
            self.instances.pop(ended.pop(0).id, None)


EXECS = web.AppKey("docker_execs", Execs)


def setup(app: web.Application) -> None:
    app[EXECS] = Execs()


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise DockerError(400, f"invalid JSON: {e}") from None
    if not isinstance(body, dict):
        raise DockerError(400, "the request body must be a JSON object")
    return body


def _running(c: Container) -> None:
    if c.status != CS.RUNNING or not c.agent_address:
        raise DockerError(409, f"container {c.id} is not running")


def _console_size(value: Any) -> tuple[int, int] | None:
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return (value[0], value[1]) if value[0] > 0 and value[1] > 0 else None
    return None


async def create(request: web.Request) -> web.Response:
    """POST /containers/{id}/exec. DockerError 400 (no command, Privileged,
    bad detach keys), 404, 409 (not running)."""
    c = find(request)
    body = await _body(request)
    _running(c)
    argv = body.get("Cmd") or []
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise DockerError(400, "No exec command specified")
    if body.get("Privileged"):
        raise DockerError(400, "juggler cannot honour Privileged (docker exec --privileged)")
    env: dict[str, str] = {}
    for item in body.get("Env") or []:
        name, sep, value = str(item).partition("=")
        if sep:
            env[name] = value
    raw_keys = body.get("DetachKeys") or ""
    e = ExecInstance(
        id=secrets.token_hex(32), container=c, argv=list(argv), env=env,
        user=str(body.get("User") or ""), working_dir=str(body.get("WorkingDir") or ""),
        tty=bool(body.get("Tty")), stdin=bool(body.get("AttachStdin")),
        stdout=bool(body.get("AttachStdout")), stderr=bool(body.get("AttachStderr")),
        keys=detach_keys(raw_keys), raw_keys=raw_keys,
        session=Session(_console_size(body.get("ConsoleSize"))))
    request.app[EXECS].add(e)
    return json_response({"Id": e.id}, 201)


async def inspect(request: web.Request) -> web.Response:
    return json_response(request.app[EXECS].get(request.match_info["id"]).inspect())


async def resize(request: web.Request) -> web.Response:
    e = request.app[EXECS].get(request.match_info["id"])
    rows, columns = size_query(request)
    e.session.resize(rows, columns)
    return web.Response(status=200)


async def start(request: web.Request) -> web.StreamResponse:
    """POST /exec/{id}/start. DockerError 404, 409 (already started, or the
    container does not run)."""
    execs = request.app[EXECS]
    e = execs.get(request.match_info["id"])
    body = await _body(request)
    if e.started:
        raise DockerError(409, f"exec instance {e.id} has already been started")
    _running(e.container)
    if "Tty" in body:
        e.tty = bool(body["Tty"])
    if (size := _console_size(body.get("ConsoleSize"))) is not None:
        e.session.size = size
    e.started = e.running = True
    framework_id = backend_of(request).framework_id
    if body.get("Detach"):
        task = asyncio.ensure_future(_detached(e, framework_id))
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)
        return web.Response(status=200)
    hijack = await Hijack.open(request, content_type(request, e.tty))
    out = Output(hijack.write, tty=e.tty, stdout=e.stdout, stderr=e.stderr)
    code: int | None = None
    try:
        code = await _run(e, framework_id, hijack, out)
    except Exception:   # the 101 is out: an error can only end the stream
        log.exception("exec failed", exec_id=e.id)
    finally:
        _ended(e, code)
    return hijack.response


_BACKGROUND: set[asyncio.Task[None]] = set()


def _ended(e: ExecInstance, code: int | None) -> None:
    e.running = False
    e.exit_code = code if code is not None else (e.exit_code if e.exit_code is not None
                                                 else CANNOT_RUN)
    e.ended_at = time.time()


def _start_request(e: ExecInstance, framework_id: str) -> agent_pb2.ExecRequest:
    c = e.container
    start = agent_pb2.ExecRequest.Start(
        task_id=c.task_id, framework_id=framework_id, argv=e.argv, tty=e.tty,
        environment=e.env, user=e.user, working_directory=e.working_dir)
    if e.tty:
        start.environment.setdefault("TERM", "xterm")
    if (size := e.session.terminal_size()) is not None:
        start.size.CopyFrom(size)
    return agent_pb2.ExecRequest(start=start)


async def _run(e: ExecInstance, framework_id: str, hijack: Hijack, out: Output) -> int | None:
    channel = servers.channel(e.container.agent_address)
    async with channel:
        stub = agent_pb2_grpc.AgentStub(channel)
        try:
            result = await relay(
                hijack, stub.Exec, _start_request(e, framework_id),
                lambda message: agent_pb2.ExecRequest(input=message), out,
                stdin=e.stdin, keys=e.keys, session=e.session,
                close_stdin_at_once=not e.stdin and not e.tty)
        except grpc.aio.AioRpcError as err:
            log.info("exec refused by the agent", exec_id=e.id, code=err.code().name,
                     details=err.details())
            message = f"juggler: cannot exec in container {e.container.name}: " \
                      f"{err.details() or err.code().name}\n".encode()
            await hijack.write(message if e.tty else frame(STDERR, message))
            return CANNOT_RUN
    return result.exit_code


async def _detached(e: ExecInstance, framework_id: str) -> None:
    """`docker exec -d`: run it to its end with no client."""
    code: int | None = None
    try:
        channel = servers.channel(e.container.agent_address)
        async with channel:
            stub = agent_pb2_grpc.AgentStub(channel)

            async def requests() -> Any:
                yield _start_request(e, framework_id)
                if not e.tty:
                    yield agent_pb2.ExecRequest(input=executor_pb2.ProcessInput(close_stdin=True))
                await asyncio.Event().wait()   # keep the stream open until the end

            call = stub.Exec(requests())
            async for message in call:
                if message.WhichOneof("output") == "exit_code":
                    code = int(message.exit_code)
                    break
            call.cancel()
    except grpc.aio.AioRpcError as err:
        log.info("detached exec refused by the agent", exec_id=e.id, details=err.details())
        code = CANNOT_RUN
    finally:
        _ended(e, code)
