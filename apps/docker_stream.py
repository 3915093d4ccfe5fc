"""The hijacked connections of attach and exec, relayed to the agents'
Attach and Exec streams; attach and resize (exec: docker_exec.py; the
output's framing and the logs of earlier runs: docker_logs.py).

Hijack (moby api/server/router/container, `POST …/attach`, `POST
/exec/{id}/start`): the client sends `Connection: Upgrade`, `Upgrade: tcp`;
the answer is `101 UPGRADED` (200 when no upgrade was asked for) with no
transfer encoding, and from then on the connection is a raw byte stream both
ways: what the client writes is the process's stdin (a half-close is its
EOF), what the server writes is its output, until the server closes.
aiohttp does not know an `Upgrade: tcp` request (its C parser upgrades to
websocket only), so the connection's transport is handed to a small protocol
of ours (`asyncio.Transport.set_protocol`) that queues what the client sends
and keeps the connection open after the client's EOF; flow control and the
end of the connection still reach aiohttp's protocol.

Attach to a container that does not run yet (the docker CLI attaches before
it starts a `docker run`) waits until its run starts, then attaches to the
agent with the run's output from its beginning (AttachRequest.Start.logs), so
nothing it wrote first is lost; a run that ended before the attach reached it
is replayed from its logs. Detach keys (`detachKeys`, default ctrl-p,ctrl-q)
found in the input end the attach and leave the container running; so does
the client's EOF with a tty (the docker CLI closes its connection when its
own detach keys come), as moby's attach does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from aiohttp import web

from juggler.apps.containers import CS, Container
from juggler.apps.docker_api import backend_of, find, flag
from juggler.apps.docker_errors import DockerError
from juggler.apps.docker_logs import (
    STDERR,
    STDOUT,
    Output,
    agent_stub,
    content_type,
    fetch,
    history,
    run_ids,
    send_runs,
)
from juggler.common import logs as logging
from juggler.common.detach_keys import DetachScanner
from juggler.common.detach_keys import parse as keys_of
from juggler.v1 import agent_pb2, executor_pb2

log = logging.get("apps.docker")

RESIZE_SECONDS = 5.0                 # a resize through a brief attach waits this long at most
READ_PAUSE_BYTES = 1 << 20           # stop reading a client that sent this much unread input


# -- detach keys (pure) ---------------------------------------------------------------------


def detach_keys(spec: str) -> bytes:
    """Docker's detach-keys spec as bytes (common/detach_keys.py). Raises
    DockerError 400."""
    try:
        return keys_of(spec)
    except ValueError as e:   # dockerd's words around moby/term's
        raise DockerError(400, f"Invalid detach keys ({spec}) provided: {e}") from None


# -- the hijacked connection -------------------------------------------------------------------


class _RawResponse(web.StreamResponse):
    # No Content-Length and no chunked encoding: the body is the raw stream
    # (what aiohttp's WebSocketResponse does for its upgraded connection).
    _length_check = False


class _Takeover(asyncio.Protocol):
    """The connection's protocol once hijacked: input to the Hijack; flow
    control and the connection's end to aiohttp's protocol too."""

    def __init__(self, original: Any, hijack: Hijack) -> None:
        self.original = original
        self.hijack = hijack

    def data_received(self, data: bytes) -> None:
        self.hijack._feed(data)

    def eof_received(self) -> bool:
        self.hijack._feed(b"")
        return True     # a half-close: keep writing the output

    def connection_lost(self, exc: Exception | None) -> None:
        self.hijack._feed(b"")
        self.hijack.lost.set()
        self.original.connection_lost(exc)

    def pause_writing(self) -> None:
        self.original.pause_writing()

    def resume_writing(self) -> None:
        self.original.resume_writing()


class Hijack:
    """A hijacked connection: `read()` what the client sends (b"" once it
    sent EOF), `write()` to it; `lost` is set when the connection is gone."""

    def __init__(self, response: web.StreamResponse, transport: asyncio.Transport) -> None:
        self.response = response
        self.transport = transport
        self.lost = asyncio.Event()
        self._chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self._buffered = 0
        self._paused = False
        self._eof = False

    @classmethod
    async def open(cls, request: web.Request, media_type: str) -> Hijack:
        """Answer 101 UPGRADED (200 without `Upgrade` in the request) and take
        the connection over."""
        upgrade = request.headers.get("Upgrade", "").lower() == "tcp" or \
            "upgrade" in request.headers.get("Connection", "").lower()
        headers = {"Content-Type": media_type}
        if upgrade:
            headers.update({"Connection": "Upgrade", "Upgrade": "tcp"})
        response = _RawResponse(status=101 if upgrade else 200,
                                reason="UPGRADED" if upgrade else "OK", headers=headers)
        response.force_close()
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("the client is gone")
        hijack = cls(response, transport)  # type: ignore[arg-type]
        transport.set_protocol(_Takeover(request.protocol, hijack))
        await response.prepare(request)
        return hijack

    def _feed(self, data: bytes) -> None:
        if self._eof:
            return
        if not data:
            self._eof = True
        self._chunks.put_nowait(data)
        self._buffered += len(data)
        if self._buffered > READ_PAUSE_BYTES and not self._paused:
            self._paused = True
            with contextlib.suppress(Exception):
                self.transport.pause_reading()

    async def read(self) -> bytes:
        data = await self._chunks.get()
        if not data:
            self._chunks.put_nowait(b"")    # EOF stays EOF
            return b""
        self._buffered -= len(data)
        if self._paused and self._buffered < READ_PAUSE_BYTES // 2:
            self._paused = False
            with contextlib.suppress(Exception):
                self.transport.resume_reading()
        return data

    async def write(self, data: bytes) -> bool:
        """False when the client is gone."""
        if self.lost.is_set():
            return False
        try:
            await self.response.write(data)
        except (ConnectionError, RuntimeError):
            return False
        return True


# -- sessions: where resize requests go --------------------------------------------------------


class Session:
    """One attach or exec stream: its terminal size, and how to send it a
    ProcessInput once the agent's stream is open."""

    def __init__(self, size: tuple[int, int] | None = None) -> None:
        self.size = size
        self.send: Callable[[executor_pb2.ProcessInput], None] | None = None

    def terminal_size(self) -> executor_pb2.TerminalSize | None:
        if not self.size or not all(self.size):
            return None
        return executor_pb2.TerminalSize(rows=self.size[0], columns=self.size[1])

    def resize(self, rows: int, columns: int) -> None:
        self.size = (rows, columns)
        if self.send is not None:
            self.send(executor_pb2.ProcessInput(resize=self.terminal_size()))


SESSIONS = web.AppKey("docker_attach_sessions", dict)   # container id → set[Session]


def setup(app: web.Application) -> None:
    app[SESSIONS] = {}


def size_query(request: web.Request) -> tuple[int, int]:
    try:
        rows, columns = int(request.query.get("h", "")), int(request.query.get("w", ""))
    except ValueError:
        raise DockerError(400, "h and w must be integers (rows, columns)") from None
    if rows < 0 or columns < 0:
        raise DockerError(400, "h and w cannot be negative")
    return rows, columns


# -- relaying a Docker client to an agent's Attach or Exec ---------------------------------------


@dataclass
class Relayed:
    exit_code: int | None = None    # the process's, when it ended while attached
    detached: bool = False          # the detach keys came
    gone: bool = False              # the client went away


async def relay(hijack: Hijack, open_call: Callable[[AsyncIterator[Any]], Any], first: Any,
                wrap: Callable[[executor_pb2.ProcessInput], Any], out: Output, *,
                stdin: bool, keys: bytes, session: Session | None,
                close_stdin_at_once: bool = False, close_stdin_at_eof: bool = True) -> Relayed:
    """Run one agent stream (Attach or Exec): `first` request, then what the
    client sends (when `stdin`; its EOF closes the process's stdin when
    `close_stdin_at_eof` — a container's StdinOnce, always for an exec — or
    ends the relay with a tty), terminal sizes from `session`; output to `out`
    until the process's exit code, the detach keys, or the client's leaving.
    Raises grpc.aio.AioRpcError."""
    outbox: asyncio.Queue[Any] = asyncio.Queue()
    outbox.put_nowait(first)
    result = Relayed()
    detached = asyncio.Event()

    async def requests() -> AsyncIterator[Any]:
        while (message := await outbox.get()) is not None:
            yield message

    def send(message: executor_pb2.ProcessInput) -> None:
        outbox.put_nowait(wrap(message))

    if close_stdin_at_once:
        send(executor_pb2.ProcessInput(close_stdin=True))

    async def pump_input() -> None:
        scanner = DetachScanner(keys) if keys else None
        while data := await hijack.read():
            if not stdin:
                continue
            hit = False
            if scanner is not None:
                data, hit = scanner.feed(data)
            if data:
                send(executor_pb2.ProcessInput(stdin=data))
            if hit:
                detached.set()
                return
        # The client's EOF (moby container/stream/attach.go): with a tty it
        # ends the attach and leaves the process's input open (the docker CLI
        # closes its connection when it detaches); without one it closes the
        # process's stdin, and the output goes on until the process ends.
        if out.tty:
            detached.set()
        elif stdin and close_stdin_at_eof:
            send(executor_pb2.ProcessInput(close_stdin=True))

    async def pump_output() -> int | None:
        async for message in call:
            kind = message.WhichOneof("output")
            if kind == "exit_code":
                return int(message.exit_code)
            if kind in ("stdout_lost", "stderr_lost"):
                await out.error(f"{getattr(message, kind)} bytes of the container's "
                                f"{kind.removesuffix('_lost')} were rotated away before this "
                                "attach could send them")
                result.gone = True
                return None
            stream = STDERR if kind == "stderr" else STDOUT
            if not await out.send(stream, getattr(message, kind)):
                result.gone = True
                return None
        return None

    call = open_call(requests())
    if session is not None:
        session.send = send
    tasks = {asyncio.create_task(pump_output()): "output",
             asyncio.create_task(pump_input()): "input",
             asyncio.create_task(detached.wait()): "detach",
             asyncio.create_task(hijack.lost.wait()): "lost"}
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            which = {tasks[t] for t in done}
            if "output" in which:
                output = next(t for t in done if tasks[t] == "output")
                result.exit_code = output.result()
                break
            if "detach" in which:
                result.detached = True
                break
            if "lost" in which:
                result.gone = True
                break
    finally:
        if session is not None:
            session.send = None
        outbox.put_nowait(None)   # ends our side of the stream: the agent detaches
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await t
        call.cancel()
    return result


# -- attach ---------------------------------------------------------------------------------------


async def _wait_for_run(request: web.Request, hijack: Hijack, c: Container) -> bool:
    """Wait until `c` runs or a run ended (or it is removed); False when the
    client left first."""
    backend = backend_of(request)
    exits = c.exits
    state = backend.containers

    def ready() -> bool:
        return c.status == CS.RUNNING or c.exits > exits or c.id not in state.containers

    waiting = asyncio.ensure_future(backend.until(ready, float("inf")))
    lost = asyncio.ensure_future(hijack.lost.wait())
    try:
        await asyncio.wait({waiting, lost}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (waiting, lost):
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
    return ready()


async def attach(request: web.Request) -> web.StreamResponse:
    """POST /containers/{id}/attach?stream=&stdin=&stdout=&stderr=&logs=&detachKeys="""
    backend = backend_of(request)
    c = find(request)
    keys = detach_keys(request.query.get("detachKeys", ""))
    stream, replay = flag(request, "stream"), flag(request, "logs")
    if c.status == CS.RESTARTING:
        raise DockerError(409, f"You cannot attach to a restarting container {c.name}, wait "
                               "until it is running")
    if c.status == CS.DEAD:
        raise DockerError(409, f"You cannot attach to a dead container {c.name}")
    tty = c.config.tty
    live = c.status == CS.RUNNING and c.live
    # Before the 101: the client starts the container once it has it, and the
    # run must know a client waits for its output (containers_state.attach_waits).
    waiting = stream and not live
    if waiting:
        backend.containers.attach_waits(c.id, True)
    try:
        hijack = await Hijack.open(request, content_type(request, tty))
    except BaseException:
        if waiting:
            backend.containers.attach_waits(c.id, False)
        raise
    out = Output(hijack.write, tty=tty, stdout=flag(request, "stdout"),
                 stderr=flag(request, "stderr"))
    session = Session()
    sessions = request.app[SESSIONS].setdefault(c.id, set())
    sessions.add(session)
    try:
        if replay:
            earlier = run_ids(c)[:-1] if live and stream else run_ids(c)
            runs = await history(c, backend.framework_id, earlier, tail=None,
                                  stdout=out.stdout, stderr=out.stderr)
            if not await send_runs(out, runs):
                return hijack.response
        if stream:
            if not live and not await _wait_for_run(request, hijack, c):
                return hijack.response
            if waiting:   # its run is launched (with the hold) or over
                waiting = False
                backend.containers.attach_waits(c.id, False)
            if not (out.stdout or out.stderr or flag(request, "stdin")):
                # Nothing to relay: `juggler run` says it waits this way and
                # reads the run's streams from its agent (cli/container_run.py).
                return hijack.response
            await _attach_run(request, hijack, c, out, session, keys,
                              from_start=not live or replay, every_byte=not live)
    except grpc.aio.AioRpcError as e:
        log.info("attach ended by its agent", container=c.id, code=e.code().name,
                 details=e.details())
    except Exception:   # the 101 is out: an error can only end the stream
        log.exception("attach failed", container=c.id)
    finally:
        if waiting:
            backend.containers.attach_waits(c.id, False)
        sessions.discard(session)
        if not sessions:
            request.app[SESSIONS].pop(c.id, None)
    return hijack.response


async def _attach_run(request: web.Request, hijack: Hijack, c: Container, out: Output,
                      session: Session, keys: bytes, *, from_start: bool,
                      every_byte: bool = False) -> None:
    """Attach to the current run of `c` on its agent, with back-pressure; a
    run that ended before the attach reached it is replayed from its logs
    when `from_start`. `every_byte`: the client waited for this run, so output
    of it rotated away already is an error in the stream (relay)."""
    backend = backend_of(request)
    task_id = c.task_id
    if not task_id or not c.agent_address:
        return      # it never reached an agent (removed before any run)
    stdin = flag(request, "stdin") and c.config.open_stdin
    start = agent_pb2.AttachRequest.Start(task_id=task_id, framework_id=backend.framework_id,
                                          logs=from_start, backpressure=True)
    if every_byte:   # every byte of the run, or it is said what was lost
        start.stdout_from = start.stderr_from = 0
    if (size := session.terminal_size()) is not None:
        start.size.CopyFrom(size)
    channel, stub = agent_stub(c.agent_address)
    async with channel:
        try:
            await relay(hijack, stub.Attach, agent_pb2.AttachRequest(start=start),
                        lambda message: agent_pb2.AttachRequest(input=message), out,
                        stdin=stdin, keys=keys, session=session,
                        close_stdin_at_eof=c.config.stdin_once)
            return
        except grpc.aio.AioRpcError as e:
            if not from_start or e.code() not in (grpc.StatusCode.NOT_FOUND,
                                                  grpc.StatusCode.FAILED_PRECONDITION):
                raise
    got = await fetch(c, backend.framework_id, task_id, tail=0, stdout=out.stdout,
                       stderr=out.stderr)
    if got is not None:
        await send_runs(out, [got])


async def resize(request: web.Request) -> web.Response:
    """POST /containers/{id}/resize?h=&w=: the terminal of every attach to it;
    a running tty container nobody is attached to gets it through a brief
    attach."""
    backend = backend_of(request)
    c = find(request)
    rows, columns = size_query(request)
    sessions = request.app[SESSIONS].get(c.id)
    if sessions:
        for session in sessions:
            session.resize(rows, columns)
        return web.Response(status=200)
    if c.status != CS.RUNNING or not c.agent_address:
        raise DockerError(409, f"Container {c.id} is not running")
    if not c.config.tty:
        return web.Response(status=200)
    start = agent_pb2.AttachRequest.Start(task_id=c.task_id, framework_id=backend.framework_id,
                                          size=executor_pb2.TerminalSize(rows=rows,
                                                                         columns=columns))

    async def once() -> AsyncIterator[agent_pb2.AttachRequest]:
        yield agent_pb2.AttachRequest(start=start)   # then the end: a detach

    channel, stub = agent_stub(c.agent_address)
    async with channel:
        call = stub.Attach(once())

        async def drain() -> None:
            async for _ in call:
                pass

        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.TimeoutError):
            await asyncio.wait_for(drain(), RESIZE_SECONDS)
        call.cancel()
    return web.Response(status=200)
