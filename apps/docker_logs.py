"""A container's output: `docker logs`, and what attach (docker_stream.py)
replays, from the logs the agents keep of each run; Docker's framing.

Framing (moby pkg/stdcopy): without a tty, each piece of output is
`[stream, 0, 0, 0, size (uint32, big endian)]` + the bytes, stream 1 stdout
and 2 stderr; with a tty, the raw bytes. Content type (API ≥ 1.42):
application/vnd.docker.multiplexed-stream, else …raw-stream.

A container's runs are tasks `<id12>.1`, `.2`, … on its agent; `docker logs`
prints every run's output still kept there, oldest first, stdout then stderr
within a run (the agent keeps them apart). `tail=N` keeps the last N lines of
each stream over the runs; `follow` then goes on with the current run's
output as it comes, until the run ends (a follower that falls behind, so that
output it had not read is rotated away, gets the agent's DATA_LOSS as moby's
"Error grabbing logs: …" in the stream, which the docker CLI prints as "error
from daemon in stream: …" and exits 1). The agents keep no time per line:
`timestamps`, and a `since`/`until` inside the container's life, are refused
(400), not ignored.
"""

from __future__ import annotations

import contextlib
import re
import struct
from collections.abc import Callable
from typing import Any

import grpc
from aiohttp import web

from juggler.apps.containers import CS, Container
from juggler.apps.docker_api import (
    agent_error,
    backend_of,
    find,
    flag,
    until_disconnected,
    version_at_least,
)
from juggler.apps.docker_errors import DockerError
from juggler.common import logs as logging
from juggler.common import servers
from juggler.v1 import agent_pb2, agent_pb2_grpc

log = logging.get("apps.docker")

RAW = "application/vnd.docker.raw-stream"
MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
STDOUT, STDERR = 1, 2
SYSTEMERR = 3   # moby stdcopy's stream for the daemon's own error, which ends the stream


# -- framing (pure) ---------------------------------------------------------------------------


def frame(stream: int, data: bytes) -> bytes:
    """moby's stdcopy header + `data`: stream (1 stdout, 2 stderr), 3 zero
    bytes, the size as a big-endian uint32."""
    return struct.pack(">BxxxI", stream, len(data)) + data


_LINE = re.compile(rb"[^\n]*\n|[^\n]+$")


def tail_runs(runs: list[dict[int, bytes]], n: int) -> list[dict[int, bytes]]:
    """Keep the last `n` lines of each stream over `runs` (oldest first; each
    maps a stream to its output)."""
    out = [dict(r) for r in runs]
    for stream in (STDOUT, STDERR):
        left = n
        for run in reversed(out):
            data = run.get(stream, b"")
            if not data:
                continue
            lines = _LINE.findall(data)
            if len(lines) > left:
                run[stream] = b"".join(lines[len(lines) - left:]) if left > 0 else b""
                left = 0
            else:
                left -= len(lines)
    return out


def content_type(request: web.Request, tty: bool) -> str:
    return MULTIPLEXED if not tty and version_at_least(request, "1.42") else RAW


class Output:
    """Writes output to a Docker client: framed without a tty, raw with one;
    only the streams it asked for."""

    def __init__(self, write: Callable[[bytes], Any], *, tty: bool, stdout: bool,
                 stderr: bool) -> None:
        self._write = write
        self.tty, self.stdout, self.stderr = tty, stdout, stderr

    async def send(self, stream: int, data: bytes) -> bool:
        if not data or (stream == STDOUT and not self.stdout) or \
                (stream == STDERR and not self.stderr):
            return True
        ok = await self._write(data if self.tty else frame(stream, data))
        return ok is not False

    async def error(self, text: str) -> None:
        """The daemon's error in the stream, as moby writes one in a logs stream
        (stdcopy's Systemerr frame, the raw text with a tty): the docker CLI
        prints "error from daemon in stream: <text>" and exits 1. The stream
        ends after it."""
        line = f"{text}\n".encode()
        await self._write(line if self.tty else frame(SYSTEMERR, line))


# -- the agents' logs of a container's runs ----------------------------------------------


def agent_stub(address: str) -> tuple[Any, agent_pb2_grpc.AgentStub]:
    channel = servers.channel(address)
    return channel, agent_pb2_grpc.AgentStub(channel)


def run_ids(c: Container) -> list[str]:
    """Every run's task id, oldest first (runs that never launched have no
    logs; the agent answers NOT_FOUND for them)."""
    return [f"{c.short_id}.{n}" for n in range(1, c.generation + 1)]


async def fetch(c: Container, framework_id: str, task_id: str, *, tail: int,
                 stdout: bool, stderr: bool, ends: dict[int, int] | None = None
                 ) -> dict[int, bytes] | None:
    """A run's output as the agent keeps it (None: it has none). `ends` gets
    the position after the last byte of each stream sent (when the agent
    tells positions: LogChunk.offset)."""
    channel, stub = agent_stub(c.agent_address)
    got: dict[int, bytearray] = {STDOUT: bytearray(), STDERR: bytearray()}
    try:
        async with channel:
            async for chunk in stub.Logs(agent_pb2.LogsRequest(
                    task_id=task_id, framework_id=framework_id, follow=False, tail=tail,
                    stdout=stdout, stderr=stderr)):
                stream = STDERR if chunk.stream == agent_pb2.LogChunk.STDERR else STDOUT
                got[stream] += chunk.data
                if ends is not None and chunk.HasField("offset"):
                    ends[stream] = chunk.offset + len(chunk.data)
    except grpc.aio.AioRpcError as e:
        if e.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
            return None
        raise
    return {k: bytes(v) for k, v in got.items()}


async def history(c: Container, framework_id: str, task_ids: list[str], *, tail: int | None,
                   stdout: bool, stderr: bool) -> list[dict[int, bytes]]:
    runs: list[dict[int, bytes]] = []
    for task_id in task_ids:
        got = await fetch(c, framework_id, task_id, tail=tail or 0, stdout=stdout,
                           stderr=stderr)
        if got is not None:
            runs.append(got)
    return tail_runs(runs, tail) if tail is not None else runs


async def send_runs(out: Output, runs: list[dict[int, bytes]]) -> bool:
    for run in runs:
        for stream in (STDOUT, STDERR):
            if not await out.send(stream, run.get(stream, b"")):
                return False
    return True


# -- GET /containers/{id}/logs -----------------------------------------------------------


def _tail(request: web.Request) -> int | None:
    text = request.query.get("tail", "all") or "all"
    if text == "all":
        return None
    try:
        n = int(text)
    except ValueError:
        raise DockerError(400, f"invalid value for tail: {text!r}") from None
    return None if n < 0 else n


def _no_times(request: web.Request, c: Container) -> None:
    if flag(request, "timestamps"):
        raise DockerError(400, "juggler cannot honour timestamps=1 (docker logs -t): the "
                               "agents keep no time per line")
    for name in ("since", "until"):
        text = request.query.get(name, "")
        if not text:
            continue
        try:
            value = float(text)
        except ValueError:
            raise DockerError(400, f"invalid value for {name}: {text!r}") from None
        if value != 0 and (name == "until" or value > c.created):
            raise DockerError(400, f"juggler cannot honour {name}={text} (docker logs "
                                   f"--{name}): the agents keep no time per line")


async def logs(request: web.Request) -> web.StreamResponse:
    """GET /containers/{id}/logs?stdout=&stderr=&follow=&tail=: every run's
    output, then (follow) the current run's as it comes, until it ends."""
    backend = backend_of(request)
    c = find(request)
    stdout, stderr = flag(request, "stdout"), flag(request, "stderr")
    if not (stdout or stderr):
        raise DockerError(400, "Bad parameters: you must choose at least one stream")
    _no_times(request, c)
    tail = _tail(request)
    follow = flag(request, "follow") and c.status == CS.RUNNING and c.live
    runs = run_ids(c)
    if follow:
        runs = runs[:-1]
    if not c.agent_address:
        runs = []
    ends: dict[int, int] = {}
    try:
        kept = await history(c, backend.framework_id, runs, tail=tail, stdout=stdout,
                             stderr=stderr)
        # The current run whole: the follow goes on from where it ends.
        current = (await fetch(c, backend.framework_id, c.task_id, tail=0, stdout=stdout,
                               stderr=stderr, ends=ends) or {}) if follow else None
    except grpc.aio.AioRpcError as e:
        raise agent_error(c, e) from None
    if current is not None:
        kept.append(current)
    if tail is not None:
        kept = tail_runs(kept, tail)
    response = web.StreamResponse(
        headers={"Content-Type": content_type(request, c.config.tty)})
    await response.prepare(request)

    async def write(data: bytes) -> bool:
        try:
            await response.write(data)
        except (ConnectionError, RuntimeError):
            return False
        return True

    out = Output(write, tty=c.config.tty, stdout=stdout, stderr=stderr)
    if await send_runs(out, kept) and current is not None:
        # An agent that tells no positions: skip what was sent instead.
        positions = not any(current.values()) or bool(ends)
        await _follow(request, c, out, skip={k: len(v) for k, v in current.items()},
                      ends=ends if positions else None)
    with contextlib.suppress(ConnectionError, RuntimeError):
        await response.write_eof()
    return response


async def _follow(request: web.Request, c: Container, out: Output, skip: dict[int, int],
                  ends: dict[int, int] | None = None) -> None:
    """The current run's output from the positions `ends` (of each stream; 0
    when none was sent), or else past the first `skip` bytes of each stream
    (already sent), until the run ends or the client leaves. Bytes rotated
    away before they were sent (the client fell behind) end the stream with
    the agent's DATA_LOSS message as the daemon's error (Output.error)."""
    backend = backend_of(request)
    channel, stub = agent_stub(c.agent_address)
    async with channel:
        logs_request = agent_pb2.LogsRequest(task_id=c.task_id,
                                             framework_id=backend.framework_id,
                                             follow=True, stdout=out.stdout, stderr=out.stderr)
        left = dict(skip)
        if ends is not None:
            logs_request.stdout_from = ends.get(STDOUT, 0)
            logs_request.stderr_from = ends.get(STDERR, 0)
            left = {}
        call = stub.Logs(logs_request)

        async def pump() -> None:
            async for chunk in call:
                stream = STDERR if chunk.stream == agent_pb2.LogChunk.STDERR else STDOUT
                data = chunk.data
                if left.get(stream, 0):
                    cut = min(left[stream], len(data))
                    left[stream] -= cut
                    data = data[cut:]
                if not await out.send(stream, data):
                    return

        try:
            await until_disconnected(request, pump())
        except grpc.aio.AioRpcError as e:
            log.info("logs ended by the agent", container=c.id, code=e.code().name)
            if e.code() == grpc.StatusCode.DATA_LOSS:
                await out.error(f"Error grabbing logs: {e.details()}")
        finally:
            call.cancel()
