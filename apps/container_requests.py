"""The containers' requests, as the apps service's shell carries them out
(the Docker Engine API, apps/docker_api.py, calls these). A mixin of
AppsService: each request asks the pure core (containers_state.py), carries
out its commands under the service's lock (store writes first), then waits,
where Docker's call waits, for the state it asked for:

    container_start    until the run is RUNNING (or ended: a run that never
                       started raises with its error)
    container_stop     until the run has ended
    container_restart  until the new run is RUNNING
    container_wait     Docker's conditions: not-running, next-exit, removed

Every method raises ContainerError (Docker's status and message) and changes
nothing when refused.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc

from juggler.apps import cluster
from juggler.apps.commands import Command, Signal
from juggler.apps.container_tasks import NETWORKING_FAILED, needed, ports_unavailable
from juggler.apps.containers import CS, Container, ContainerConfig, ContainerError
from juggler.common.resources import Resources
from juggler.v1 import agent_pb2, operator_pb2

if TYPE_CHECKING:
    from juggler.apps.containers_state import AgentPorts, ContainersState

START_SECONDS = 300.0     # a start waits this long for RUNNING (first pulls are slow)
STOP_MARGIN_SECONDS = 30.0   # past the stop timeout, for the kill to land
WAIT_CONDITIONS = ("not-running", "next-exit", "removed")


def _go_errno(message: str) -> str:
    """The executor's strerror texts as Go spells them ("no such file or
    directory", "permission denied"): the docker CLI reads those words in a
    start error to exit 127 or 126, as for Docker's own runc errors."""
    for text in ("No such file or directory", "Permission denied", "Is a directory"):
        message = message.replace(text, text.lower())
    return message


class ContainerRequests:
    containers: ContainersState
    framework_id: str
    config: Any
    _lock: asyncio.Lock
    _changes: asyncio.Event

    async def _execute(self, cmds: list[Command]) -> None:  # pragma: no cover - AppsService's
        raise NotImplementedError

    def _leading_or_refuse(self) -> None:
        if not getattr(self, "acting", False):
            raise ContainerError(503, "the apps service is not leading yet (it is starting, or "
                                      "a standby); try again in a moment")

    async def until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until `predicate()` holds, checked after every decision of the
        service; False when `timeout` seconds pass first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            left = deadline - loop.time()
            if left <= 0:
                return False
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changes.wait(), left)
        return True

    async def _apply(self, decide: Callable[[], Any]) -> Any:
        """Run a decision of the core under the lock and carry out its
        commands; `decide` returns (result, commands) or commands."""
        self._leading_or_refuse()
        async with self._lock:
            self._leading_or_refuse()   # again: it may have stopped acting meanwhile
            out = decide()
            result, cmds = out if isinstance(out, tuple) else (None, out)
            await self._execute(cmds)
        return result

    # -- requests -------------------------------------------------------------------
    async def container_create(self, config: ContainerConfig, name: str = "") -> Container:
        return await self._apply(lambda: self.containers.create(config, name))

    async def container_start(self, ref: str, timeout: float = START_SECONDS) -> bool:
        """Start; False when it runs already (Docker's 304). Raises
        ContainerError 404, 409 (dead, or its agent is gone or away), 500
        (the run ended before it started: its error)."""
        c = self.containers.find(ref)
        try:
            # One answer of the master's for every check (None: it cannot say
            # now, and the start waits for an offer instead of refusing).
            views = await self._agent_views() if c.status in (CS.CREATED, CS.EXITED) else None
            if views is not None:
                if c.agent_id:
                    self._check_agent(c, views)
                await self._check_ports(c, views)
                if not c.agent_id and c.status == CS.CREATED:
                    self._check_fits(c, views)
        except ContainerError:
            if c.config.auto_remove:   # as dockerd removes an --rm container it cannot start
                await self.container_remove(c.id, force=True)
            raise
        exits = c.exits
        started = await self._apply(lambda: self.containers.start(ref))
        if not started:
            return False
        # Decided once the run leaves STARTING: it runs (or ran and ended), or
        # it never started (its error), or the container went (--rm).
        await self.until(lambda: c.status != CS.STARTING or c.id not in self.containers.containers,
                         timeout)
        if c.status == CS.RUNNING or (c.exits > exits and c.status != CS.DEAD):
            return True   # it ran (and may have ended already, State.Error or not)
        given_up = ""
        if not c.launched and c.status == CS.STARTING and c.id in self.containers.containers:
            # Given up, as the client is told, so that it does not start later
            # by itself (a Docker start that failed does not).
            given_up = (f"container {c.name} did not start within {timeout:g} s (no agent "
                     f"offered {needed(c.config).describe()} for it; see `juggler agents`); "
                     "it was not started: start it again")
            await self._apply(lambda: self.containers.fail_start(c.id, given_up))
        if c.status == CS.RUNNING:
            return True
        if c.error and c.status != CS.STARTING:
            if c.error.startswith(NETWORKING_FAILED) or c.error == given_up:
                raise ContainerError(500, c.error)   # dockerd's words, or ours, as they are
            raise ContainerError(500, f"cannot start container {c.name}: {_go_errno(c.error)}")
        raise ContainerError(500, f"container {c.name} did not start within {timeout:g} s "
                                  "(its image may still be pulling; see `juggler tasks`); "
                                  "it starts when it can, or `docker rm -f` it")

    async def offer_agents(self) -> dict[str, AgentPorts] | None:
        """The agents' ports (agent id → (name, total, allocated)) from the
        master, for ContainersState.on_offers to fail the starts whose fixed
        host ports are allocated everywhere; None when no waiting run has
        fixed host ports, or the master cannot say now."""
        if not any(needed(c.config).ports for c in self.containers.waiting() if not c.launched):
            return None
        views = await self._agent_views()
        return None if views is None else _agent_ports(views)

    async def _agent_views(self) -> list[operator_pb2.AgentView] | None:
        """The master's agents; None when it cannot say now."""
        try:
            return list(await cluster.agents(self.config.master))
        except (cluster.ClusterUnavailable, grpc.aio.AioRpcError):
            return None

    def _check_agent(self, c: Container, views: list[operator_pb2.AgentView]) -> None:
        """A container that ran before starts on its agent only: refuse
        clearly when that agent is gone or cannot be reached now."""
        view = next((a for a in views if a.info.id == c.agent_id), None)
        where = c.hostname or c.agent_id
        if view is None or view.state == operator_pb2.AGENT_GONE:
            raise ContainerError(409, f"cannot start container {c.name}: its agent {where} is "
                                      "gone, and its writable layer with it; remove the "
                                      "container (docker rm) and run a new one")
        if view.state != operator_pb2.AGENT_ACTIVE:
            state = operator_pb2.AgentState.Name(view.state).removeprefix("AGENT_").lower()
            raise ContainerError(409, f"cannot start container {c.name}: its agent {where} is "
                                      f"{state}; its writable layer is there: try again once "
                                      "it is back (see `juggler agents`)")
        if view.maintenance != operator_pb2.MAINTENANCE_NONE:
            raise ContainerError(409, f"cannot start container {c.name}: its agent {where} is "
                                      "drained for maintenance (juggler undrain)")

    def _check_fits(self, c: Container, views: list[operator_pb2.AgentView]) -> None:
        """Refuse at once a container no agent could ever hold (its cpus or
        memory above every agent's total), rather than wait for an offer that
        never comes. With no agent registered yet, the start waits."""
        totals = [Resources.from_proto(a.total) for a in views
                  if a.state != operator_pb2.AGENT_GONE]
        need = needed(c.config)
        if totals and not any(t.contains(need) for t in totals):
            biggest = max(totals, key=lambda t: (t.get("mem"), t.get("cpus")))
            raise ContainerError(500, f"cannot start container {c.name}: no agent can ever fit "
                                      f"{need.describe()} (the largest has "
                                      f"{biggest.describe()})")

    async def _check_ports(self, c: Container, views: list[operator_pb2.AgentView]) -> None:
        """Fail at once, as Docker, a start whose fixed host ports are
        allocated on every agent it could run on (its own agent once it ran),
        or offered by none (published_ports.unavailable)."""
        if not needed(c.config).ports:
            return
        agents = [v for aid, v in _agent_ports(views).items()
                  if not c.agent_id or aid == c.agent_id]
        if why := ports_unavailable(c, agents):
            await self._apply(lambda: self.containers.refuse_start(c.id, why))
            raise ContainerError(500, why)

    async def container_stop(self, ref: str, timeout: float | None = None) -> bool:
        """Stop and wait until the run ended; False when it was not running
        (Docker's 304)."""
        c = self.containers.find(ref)
        exits = c.exits
        stopped = await self._apply(lambda: self.containers.stop(ref, timeout))
        if stopped:
            grace = timeout if timeout is not None else (c.config.stop_timeout or 10.0)
            await self.until(lambda: c.exits > exits or c.status not in
                             (CS.RUNNING, CS.STARTING, CS.RESTARTING), grace + STOP_MARGIN_SECONDS)
        return bool(stopped)

    async def container_restart(self, ref: str, timeout: float | None = None) -> None:
        c = self.containers.find(ref)
        generation = c.generation
        await self._apply(lambda: self.containers.restart(ref, timeout))
        grace = timeout if timeout is not None else (c.config.stop_timeout or 10.0)
        await self.until(lambda: (c.generation > generation and c.status == CS.RUNNING)
                         or (c.status in (CS.EXITED, CS.DEAD) and c.generation > generation),
                         grace + START_SECONDS)

    async def container_kill(self, ref: str, signal: str = "KILL") -> None:
        """`docker kill -s`. Raises ContainerError 404, 409 (not running), 400
        (a signal the agent does not know)."""
        self._leading_or_refuse()
        async with self._lock:
            cmds = self.containers.kill(ref, signal)
            await self._execute([c for c in cmds if not isinstance(c, Signal)])
        for cmd in cmds:
            if isinstance(cmd, Signal):
                try:
                    await cluster.agent_call(cmd.agent_address, "Signal", agent_pb2.SignalRequest(
                        task_id=cmd.task_id, framework_id=self.framework_id,
                        signal=cmd.signal))
                except grpc.aio.AioRpcError as e:
                    status = {grpc.StatusCode.INVALID_ARGUMENT: 400,
                              grpc.StatusCode.FAILED_PRECONDITION: 409,
                              grpc.StatusCode.NOT_FOUND: 409}.get(e.code(), 500)
                    raise ContainerError(status, f"Cannot kill container: {ref}: "
                                                 f"{e.details()}") from None

    async def container_remove(self, ref: str, force: bool = False) -> None:
        await self._apply(lambda: self.containers.remove(ref, force))

    async def container_rename(self, ref: str, new_name: str) -> None:
        await self._apply(lambda: self.containers.rename(ref, new_name))

    async def container_wait(self, ref: str, condition: str = "not-running") -> int:
        """Docker's wait: until the container is not running (at once when it
        is not), until its next exit, or until it is removed. Returns the
        exit code. Raises ContainerError 404, 400 (an unknown condition)."""
        if condition not in WAIT_CONDITIONS:
            raise ContainerError(400, f"invalid condition: {condition!r} (one of "
                                      f"{', '.join(WAIT_CONDITIONS)})")
        c = self.containers.find(ref)
        exits = c.exits
        state = self.containers

        def done() -> bool:
            if condition == "removed":
                return c.id not in state.containers
            if condition == "next-exit":
                return c.exits > exits or c.id not in state.containers
            return c.status in (CS.CREATED, CS.EXITED, CS.DEAD) or c.id not in state.containers

        await self.until(done, float("inf"))
        return state.removed.get(c.id, c.exit_code)


def _agent_ports(views: list[operator_pb2.AgentView]) -> dict[str, AgentPorts]:
    """agent id → (hostname, its total ports, the ports its tasks hold), for
    the agents not gone."""
    return {a.info.id: (a.info.hostname or a.info.id, Resources.from_proto(a.total).ports,
                        Resources.from_proto(a.allocated).ports)
            for a in views if a.state != operator_pb2.AGENT_GONE}
