"""The executor's attach socket: a task's live stdio for the agent to bridge.

`sandbox/attach.sock` (mode 0600, root only) speaks framed messages (see
executor.proto): the agent sends `AttachStart`, then `ProcessInput`s; the
executor sends `ProcessOutput`s, ending with `exit_code` once the task is
over. Any number of clients may attach; each gets every byte written from its
attach on (and first the current log files, when it asked). A client that
stops reading is dropped once its backlog passes `MAX_BACKLOG`: a slow
terminal must never stall the task. Closing the connection detaches.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from juggler.common import fdio, framing
from juggler.executor.stdio import TaskStdio
from juggler.v1 import executor_pb2 as epb

SOCKET_NAME = "attach.sock"
MAX_BACKLOG = 4 * 2**20
_READ = 1 << 20


class AttachServer:
    def __init__(self, sandbox: Path, stdio: TaskStdio, log) -> None:  # type: ignore[no-untyped-def]
        self.sandbox = sandbox
        self.stdio = stdio
        self.log = log
        self.clients: set[asyncio.StreamWriter] = set()
        self._server: asyncio.AbstractServer | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        stdio.listeners.append(self._broadcast)

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.sandbox / SOCKET_NAME).unlink()
        sock = fdio.bind_unix(self.sandbox, SOCKET_NAME)
        os.chmod(self.sandbox / SOCKET_NAME, 0o600)
        self._server = await asyncio.start_unix_server(self._client, sock=sock)

    def _send(self, writer: asyncio.StreamWriter, message: epb.ProcessOutput) -> None:
        if writer.is_closing():
            self.clients.discard(writer)
            return
        writer.write(framing.encode(message))
        if writer.transport.get_write_buffer_size() > MAX_BACKLOG:
            self.log.warning("dropping an attached client that does not keep up")
            self.clients.discard(writer)
            writer.close()

    def _broadcast(self, stream: str, data: bytes) -> None:
        if not self.clients:
            return
        message = epb.ProcessOutput(**{stream: data})
        for writer in list(self.clients):
            self._send(writer, message)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            start = await framing.read(reader, epb.AttachStart)
            if start is None:
                return
            if start.HasField("size"):
                self.stdio.resize(start.size.rows, start.size.columns)
            if start.logs:
                # Same loop turn as the join: nothing written in between is lost.
                for stream, log in self.stdio.logs.items():
                    data = _read_all(log.path)
                    for i in range(0, len(data), _READ):
                        writer.write(framing.encode(
                            epb.ProcessOutput(**{stream: data[i:i + _READ]})))
            self.clients.add(writer)
            self.log.info("client attached", clients=len(self.clients))
            while True:
                message = await framing.read(reader, epb.ProcessInput)
                if message is None:
                    break
                kind = message.WhichOneof("input")
                if kind == "stdin":
                    self.stdio.write_stdin(message.stdin)
                elif kind == "resize":
                    self.stdio.resize(message.resize.rows, message.resize.columns)
                elif kind == "close_stdin":
                    self.stdio.close_stdin()
        except (OSError, framing.FrameError) as e:
            self.log.info("attached client failed", error=str(e))
        finally:
            if writer in self.clients:
                self.clients.discard(writer)
                self.log.info("client detached", clients=len(self.clients))
            writer.close()
            if task is not None:
                self._handlers.discard(task)

    async def finish(self, exit_code: int) -> None:
        """The task is over: tell every client its exit code, stop serving."""
        self.close_listener()
        for writer in list(self.clients):
            self._send(writer, epb.ProcessOutput(exit_code=exit_code))
        for writer in list(self.clients):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.drain(), 2)
            writer.close()
        self.clients.clear()

    def close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                (self.sandbox / SOCKET_NAME).unlink()

    def close(self) -> None:
        self.close_listener()
        for writer in list(self.clients):
            writer.close()
        self.clients.clear()
        for task in list(self._handlers):
            task.cancel()


def _read_all(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""
