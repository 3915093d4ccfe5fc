"""A framework for tests: juggler.sdk.Framework plus an inbox of its events."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from juggler.common import task_states
from juggler.common.resources import Resources
from juggler.sdk import Framework, FrameworkError
from juggler.v1 import common_pb2

S = common_pb2.TaskState
# For a launch, a kill, a reconnection: seconds, many more on a loaded machine.
DEADLINE = 60.0


def run(coro_fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro_fn(), 240))  # each wait inside has its own deadline


def task(task_id: str, cpus: float, mem: float, *argv: str) -> common_pb2.TaskInfo:
    t = common_pb2.TaskInfo(task_id=task_id, name=task_id,
                            resources=Resources({"cpus": cpus, "mem": mem}).to_proto(),
                            command=common_pb2.CommandInfo(argv=list(argv)))
    t.kill_policy.grace_period_seconds = 0.5
    return t


class Client:
    """A framework plus an inbox of its events."""

    def __init__(self, master: object, name: str, *, failover_timeout: float = 0.0,
                 partition_aware: bool = False, framework_id: str = "",
                 teardown: bool = True, roles: tuple[str, ...] = ()) -> None:
        address = master if isinstance(master, str) else master.master  # type: ignore[attr-defined]
        info = common_pb2.FrameworkInfo(name=name, user="root", id=framework_id,
                                        failover_timeout=failover_timeout, roles=roles)
        if partition_aware:
            info.capabilities.append(common_pb2.FrameworkInfo.PARTITION_AWARE)
        self.fw = Framework(address, info)
        self.teardown = teardown
        self.auto_ack = True
        self.error: BaseException | None = None
        self.rescinded: list[str] = []
        self.offers: asyncio.Queue[common_pb2.Offer] = asyncio.Queue()
        self.updates: asyncio.Queue[common_pb2.TaskStatus] = asyncio.Queue()
        self.history: dict[str, list[common_pb2.TaskStatus]] = {}
        self.changed = asyncio.Condition()
        self._pump: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Client:
        await self.fw.subscribe()
        self._pump = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.teardown:
            with contextlib.suppress(FrameworkError):
                await self.fw.teardown()
        if self._pump:
            self._pump.cancel()
        await self.fw.close()

    async def _read(self) -> None:
        try:
            await self._read_events()
        except BaseException as e:
            self.error = e
            raise

    def _check(self) -> None:
        if self.error is not None:
            raise AssertionError(f"the framework's event stream failed: {self.error!r}")

    async def _read_events(self) -> None:
        async for event in self.fw.events():
            kind = event.WhichOneof("event")
            if kind == "offers":
                for o in event.offers.offers:
                    self.offers.put_nowait(o)
            elif kind == "rescind":
                self.rescinded.append(event.rescind.offer_id)
            elif kind == "update":
                st = event.update.status
                if self.auto_ack:
                    # Around a master failover an ack can miss (the new leader does not
                    # know the task yet): the agent retries the update; ack it then.
                    with contextlib.suppress(FrameworkError):
                        await self.fw.acknowledge(st)
                self.updates.put_nowait(st)
                async with self.changed:
                    self.history.setdefault(st.task_id, []).append(st)
                    self.changed.notify_all()

    async def offer(self, fits: Resources) -> common_pb2.Offer:
        while True:
            self._check()
            try:
                o = await asyncio.wait_for(self.offers.get(), DEADLINE)
            except TimeoutError:
                self._check()
                raise
            if o.id in self.rescinded:
                continue
            if Resources.from_proto(o.resources).contains(fits):
                return o

    async def until(self, task_id: str, state: int,
                    timeout: float = DEADLINE) -> list[common_pb2.TaskStatus]:
        """Wait (updates are acknowledged as they come) until `task_id` reaches
        `state`: its updates so far. Fails at once if it ends in another state,
        and after `timeout` seconds, saying what it saw."""
        def seen() -> list[common_pb2.TaskStatus]:
            return self.history.get(task_id, [])

        def settled() -> bool:  # reached, or ended otherwise: waiting longer is useless
            return any(st.state == state or task_states.is_terminal(st.state) for st in seen())

        async with self.changed:
            try:
                await asyncio.wait_for(self.changed.wait_for(settled), timeout)
            except TimeoutError:
                self._check()
                raise AssertionError(f"{task_id} not {S.Name(state)} after {timeout} s; "
                                     f"it was {story(seen())}") from None
        updates = list(seen())
        terminal = [st for st in updates if task_states.is_terminal(st.state)]
        assert any(st.state == state for st in updates) and (
            not terminal or terminal[-1].state == state), \
            f"{task_id} did not end {S.Name(state)}: it was {story(updates)}"
        return updates


def story(updates: list[common_pb2.TaskStatus]) -> str:
    """A task's updates, for a failing test's message."""
    return "; ".join(f"{S.Name(st.state)} ({common_pb2.Reason.Name(st.reason)}"
                     + (f": {st.message}" if st.message else "") + ")"
                     for st in updates) or "never heard of"


