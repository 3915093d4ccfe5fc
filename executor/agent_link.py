"""The executor's end of the executor protocol: a Unix socket to the agent.

The link reconnects for as long as the executor lives (capped backoff 50 ms →
1 s: the agent may restart). On every (re)connect it sends `hello`, then every
update not yet acknowledged, in order. Updates stay pending until the agent
acks their uuid, so none is lost to an agent restart (at-least-once; the agent
drops duplicates by uuid).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import OrderedDict
from collections.abc import Callable

from juggler.common import fdio, framing
from juggler.v1 import common_pb2, executor_pb2

BACKOFF_MIN = 0.05
BACKOFF_MAX = 1.0


class AgentLink:
    def __init__(self, socket_path: str,
                 hello: Callable[[], executor_pb2.ExecutorMessage.Hello],
                 on_message: Callable[[executor_pb2.AgentToExecutor], None],
                 log) -> None:
        self.socket_path = socket_path
        self._hello = hello
        self._on_message = on_message
        self._log = log
        self._writer: asyncio.StreamWriter | None = None
        self.pending: OrderedDict[bytes, executor_pb2.ExecutorMessage] = OrderedDict()
        self.acked: set[bytes] = set()
        self.ack_event = asyncio.Event()
        self.first_attempt = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._close()

    def send_update(self, status: common_pb2.TaskStatus) -> None:
        message = executor_pb2.ExecutorMessage(
            update=executor_pb2.ExecutorMessage.Update(status=status))
        self.pending[status.uuid] = message
        if self._writer is not None:
            try:
                self._writer.write(framing.encode(message))
            except (OSError, RuntimeError):
                self._close()  # resent after the reconnect

    def send_hello(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(OSError, RuntimeError):
                self._writer.write(framing.encode(
                    executor_pb2.ExecutorMessage(hello=self._hello())))

    async def wait_acked(self, uuid: bytes) -> None:
        while uuid not in self.acked:
            self.ack_event.clear()
            await self.ack_event.wait()

    def _close(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None

    async def _run(self) -> None:
        backoff = BACKOFF_MIN
        while True:
            try:
                # Through its directory's fd: the agent's work dir may be longer
                # than sun_path allows (common/fdio.py).
                reader, writer = await asyncio.open_unix_connection(
                    sock=await fdio.connect_unix_async(os.path.dirname(self.socket_path),
                                                       os.path.basename(self.socket_path)))
            except OSError as e:
                self.first_attempt.set()
                if not os.path.isdir(os.path.dirname(self.socket_path)):
                    # The agent's work dir is gone: no agent will ever come back for
                    # this task. Do not linger as an orphan.
                    self._log.warning("the agent's work dir is gone; shutting down",
                                      socket=self.socket_path)
                    self._on_message(executor_pb2.AgentToExecutor(
                        shutdown=executor_pb2.AgentToExecutor.Shutdown()))
                    return
                self._log.debug("agent unreachable", error=str(e), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            self._writer = writer
            backoff = BACKOFF_MIN
            writer.write(framing.encode(executor_pb2.ExecutorMessage(hello=self._hello())))
            for message in list(self.pending.values()):
                writer.write(framing.encode(message))
            # Routine at start; worth an operator's attention when it is a
            # reconnection (the agent restarted).
            (self._log.info if self.first_attempt.is_set() else self._log.debug)(
                "connected to the agent", resent=len(self.pending))
            self.first_attempt.set()
            try:
                await writer.drain()
                while True:
                    message = await framing.read(reader, executor_pb2.AgentToExecutor)
                    if message is None:
                        break
                    if message.WhichOneof("message") == "ack":
                        self.pending.pop(message.ack.uuid, None)
                        self.acked.add(message.ack.uuid)
                        self.ack_event.set()
                    else:
                        self._on_message(message)
            except (OSError, framing.FrameError) as e:
                self._log.warning("agent connection broken", error=str(e))
            if self._writer is writer:
                self._close()
            self._log.info("agent connection closed; reconnecting")
            await asyncio.sleep(BACKOFF_MIN)
