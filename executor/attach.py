"""The executor's attach socket: a task's live stdio for the agent to bridge.

`sandbox/attach.sock` (mode 0600, root only) speaks framed messages (see
executor.proto): the agent sends `AttachStart`, then `ProcessInput`s; the
executor sends `ProcessOutput`s, ending with `exit_code` once the task is
over. Any number of clients may attach; each gets every byte written from its
attach on (and first, when it asked, what the log files keep from the
positions it gave; `*_lost` says how much of that was rotated away already).
Closing the connection detaches.

Two kinds of client, by `AttachStart.backpressure`:

- without (a glance, a resize): one that stops reading is dropped once its
  backlog passes `MAX_BACKLOG`; it never slows the task.
- with (`juggler run`, `juggler attach`, `docker run`/`attach` through the
  Docker API: what an attached `docker run` gets from Docker, whose
  attached streams are written synchronously by the container's copier):
  never dropped for being slow. When its backlog passes `HIGH_WATER` the
  executor stops reading the task's pipes (stdio.py's ReadGate), so the task
  waits in write(2) once a pipe is full; reading resumes when the backlog is
  below `LOW_WATER` (asyncio's write-buffer limits), or at once when the
  client goes away — a client that disconnects, or whose agent dies, never
  leaves the task stalled. Its first attach also ends a hold (label
  juggler.hold_output). A kill leaves back-pressure on, as Docker's: its
  signal reaches a process waiting in write(2), and SIGKILL after the grace
  period ends them all.

The task's end (`processes_gone`, then `finish`), as moby's container exit
(daemon handleContainerExit: the exit is recorded after waiting at most 2 s
for the container's streams): once pid 1 is reaped and the cgroup is empty,
nothing writes to the pipes any more, so back-pressure holds nothing back:
what is left in them (a pipe's worth) is read into the log files and every
client's buffer at once. `finish` sends the exit code and gives every client
FINISH_SECONDS to take it all; the executor then sends the terminal update,
whoever is still behind. A back-pressured client still behind is owed the
rest: `deliver_owed` keeps sending it (the executor lives on for that) until
it has everything, or goes away, or takes nothing for STALL_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from juggler.common import fdio, framing, log_positions
from juggler.executor.stdio import RotatingLog, TaskStdio
from juggler.v1 import executor_pb2 as epb

SOCKET_NAME = "attach.sock"
MAX_BACKLOG = 4 * 2**20  # bytes unsent to a client without back-pressure: it is dropped
HIGH_WATER = 2**20  # bytes unsent to a back-pressured client: the task's output waits
LOW_WATER = 256 * 2**10  # ... until it is down to this
FINISH_SECONDS = 2.0  # clients get this long to take their last output before the end is said
STALL_SECONDS = 30.0  # a back-pressured client owed output and taking none of it is dropped
_READ = 1 << 20


def behind(unsent: int) -> bool:
    """Whether a back-pressured client with `unsent` bytes queued holds the
    task's output (asyncio pauses its protocol past the same mark)."""
    return unsent > HIGH_WATER


class AttachServer:
    def __init__(self, sandbox: Path, stdio: TaskStdio, log) -> None:  # type: ignore[no-untyped-def]
        self.sandbox = sandbox
        self.stdio = stdio
        self.log = log
        self.clients: set[asyncio.StreamWriter] = set()
        self.backpressured: set[asyncio.StreamWriter] = set()
        self._behind: dict[asyncio.StreamWriter, asyncio.Task[None]] = {}
        self._ended = False  # the task's processes are gone: back-pressure holds nothing
        self.owed: set[asyncio.StreamWriter] = set()  # back-pressured, behind at the end
        self._exit_code: int | None = None  # the task's, once it ended
        self._server: asyncio.AbstractServer | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        stdio.listeners.append(self._broadcast)
        stdio.hold_expired = lambda: log.info(
            "no client attached within the hold (juggler.hold_output): reading the task's "
            "output", seconds=stdio.hold)

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.sandbox / SOCKET_NAME).unlink()
        self._server = await fdio.serve_unix(self._client, self.sandbox, SOCKET_NAME, 0o600)

    def _send(self, writer: asyncio.StreamWriter, message: epb.ProcessOutput) -> None:
        if writer.is_closing():
            self._drop(writer)
            return
        writer.write(framing.encode(message))
        self._check(writer)

    def _check(self, writer: asyncio.StreamWriter) -> None:
        unsent = writer.transport.get_write_buffer_size()
        if writer in self.backpressured:
            if behind(unsent) and writer not in self._behind and not self._ended:
                self.stdio.pause(writer)
                self._behind[writer] = asyncio.ensure_future(self._catch_up(writer))
        elif unsent > MAX_BACKLOG:
            self.log.warning("dropping an attached client that does not keep up")
            self._drop(writer)
            writer.close()

    async def _catch_up(self, writer: asyncio.StreamWriter) -> None:
        """Read the task's output again once `writer` is below LOW_WATER (or gone)."""
        try:
            await writer.drain()
        except Exception:  # gone, however: it holds nothing either way
            pass
        finally:
            self._behind.pop(writer, None)
            self.stdio.resume(writer)

    def processes_gone(self) -> None:
        """Pid 1 is reaped and the cgroup empty: read what is left in the
        pipes (bounded: nothing writes to them any more) whoever is behind.
        Back-pressured clients stay: never dropped for being slow. A hold
        (no client attached yet) is kept to its end — the first attach or its
        time — so that a run that ended before its client came (`juggler run
        -- true`: the client attaches once it hears TASK_RUNNING) still gives
        that client all of its output."""
        self._ended = True
        for writer, waiting in list(self._behind.items()):
            waiting.cancel()
            self._behind.pop(writer, None)
            self.stdio.resume(writer)

    def _drop(self, writer: asyncio.StreamWriter) -> None:
        self.clients.discard(writer)
        self.backpressured.discard(writer)
        waiting = self._behind.pop(writer, None)
        if waiting is not None:
            waiting.cancel()
        self.stdio.resume(writer)  # a client that is gone holds nothing

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
                    given = f"{stream}_from"
                    position = getattr(start, given) if start.HasField(given) else None
                    for message in _replay(stream, log, position):
                        writer.write(framing.encode(message))
            if self._exit_code is not None:  # it ended while this client came in
                writer.write(framing.encode(epb.ProcessOutput(exit_code=self._exit_code)))
                with contextlib.suppress(OSError):
                    writer.write_eof()
            else:
                self.clients.add(writer)
            if writer in self.clients and start.backpressure:
                self.backpressured.add(writer)
                writer.transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)
                if self.stdio.holding:
                    self.log.info("a client attached: reading the task's output")
                    self.stdio.end_hold()
                self._check(writer)
            self.log.info("client attached", clients=len(self.clients),
                          backpressure=start.backpressure)
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
                self._drop(writer)
                self.log.info("client detached", clients=len(self.clients))
            writer.close()
            if task is not None:
                self._handlers.discard(task)

    async def finish(self, exit_code: int) -> None:
        """The task is over: tell every client its exit code, stop serving.
        Every client gets FINISH_SECONDS to take all it was sent; a
        back-pressured one still behind then is `owed` the rest
        (`deliver_owed`), the others are closed."""
        self.close_listener()
        self._exit_code = exit_code
        last = framing.encode(epb.ProcessOutput(exit_code=exit_code))
        writers = [w for w in self.clients if not w.is_closing()]
        for writer in writers:
            writer.write(last)
            writer.transport.set_write_buffer_limits(high=0)  # drain() waits for all
        await asyncio.gather(*(_flush(w, FINISH_SECONDS) for w in writers))
        for writer in list(self.clients):
            if writer in self.backpressured and writer.transport.get_write_buffer_size() \
                    and not writer.is_closing():
                self.owed.add(writer)
                continue
            self._end(writer)

    async def deliver_owed(self, stall: float = STALL_SECONDS, every: float = 1.0) -> None:
        """Send the `owed` clients the rest (after the terminal update): until
        each has it all, is gone, or took nothing for `stall` seconds (then
        it is dropped: the stream ends without its exit code)."""
        loop = asyncio.get_running_loop()
        progress = {w: (w.transport.get_write_buffer_size(), loop.time()) for w in self.owed}
        while progress:
            await asyncio.sleep(every)
            for writer, (unsent, since) in list(progress.items()):
                now_unsent = writer.transport.get_write_buffer_size()
                if writer.is_closing() or now_unsent == 0:
                    del progress[writer]
                    self._end(writer)
                elif now_unsent < unsent:
                    progress[writer] = (now_unsent, loop.time())
                elif loop.time() - since >= stall:
                    self.log.warning("dropping an attached client that took none of its last "
                                     "output", seconds=stall, unsent=now_unsent)
                    del progress[writer]
                    self._drop(writer)
                    writer.transport.abort()
        self.owed.clear()

    def _end(self, writer: asyncio.StreamWriter) -> None:
        self.owed.discard(writer)
        self._drop(writer)
        # Half-close: the handler reads on to the client's end, so that no
        # input (a late close_stdin) is left unread here; closing with
        # unread input resets the connection, and the agent's reader then
        # drops what it had buffered, the exit code with it.
        if writer.can_write_eof():
            with contextlib.suppress(OSError):
                writer.write_eof()
        else:
            writer.close()

    def close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                (self.sandbox / SOCKET_NAME).unlink()

    def close(self) -> None:
        self.close_listener()
        for writer in list(self.clients):
            self._drop(writer)
            writer.close()
        for task in list(self._handlers):
            task.cancel()


async def _flush(writer: asyncio.StreamWriter, timeout: float | None) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.drain(), timeout)


def _replay(stream: str, log: RotatingLog, position: int | None
            ) -> list[epb.ProcessOutput]:
    """What `log`'s files keep of `stream` from `position` (None: the oldest
    byte kept) on, as messages: first `<stream>_lost` when bytes from
    `position` were rotated away."""
    files = log_positions.kept(log.path, live_start=log.start)
    try:
        spans = [(f.start, f.size) for f in files]
        if position is None:
            position = spans[0][0] if spans else 0
        place = log_positions.locate(spans, position)
        if place is None:
            return []
        messages = []
        if place.lost:
            messages.append(epb.ProcessOutput(**{f"{stream}_lost": place.lost}))
        for i, kept in enumerate(files[place.index:]):
            kept.file.seek(place.skip if i == 0 else 0)
            left = kept.size - (place.skip if i == 0 else 0)
            while left > 0 and (data := kept.file.read(min(_READ, left))):
                left -= len(data)
                messages.append(epb.ProcessOutput(**{stream: data}))
        return messages
    finally:
        log_positions.close_all(files)
