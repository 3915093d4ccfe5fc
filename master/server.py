"""The master process: gRPC servicers around the pure MasterState.

Every servicer method turns a call into an event for MasterState, then carries
out the returned commands (queue a message on an agent's stream, an event on a
framework's stream, a registry write). One asyncio loop; MasterState is only
touched from it, so it needs no locks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from prometheus_client import Counter, Gauge, Histogram

from juggler.common import batching, logs, principals, servers, task_states
from juggler.common.access import AccessControl, Denied, install_sighup
from juggler.common.clock import SystemClock
from juggler.master import access as master_access
from juggler.master import metrics as operator_metrics
from juggler.master import views
from juggler.master.agent_book import ping_slice, ping_slices
from juggler.master.allocator import Allocator
from juggler.master.commands import (
    Allocate,
    CallError,
    CloseAgentStream,
    CloseStream,
    Code,
    Command,
    Log,
    Persist,
    ToAgent,
    ToFramework,
)
from juggler.master.leader_gate import LeaderGate
from juggler.master.state import AgentGone, MasterState, RegistrySnapshot
from juggler.store.interface import Store
from juggler.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    common_pb2,
    operator_pb2,
    operator_pb2_grpc,
    registry_pb2,
    scheduler_pb2,
    scheduler_pb2_grpc,
)

log = logs.get("juggler.master")

CALLS = Counter("juggler_master_calls_total",
                "Calls of the Scheduler and Operator APIs that act, by outcome",
                ["method", "code"])
OFFERS = Counter("juggler_master_offers_total", "Offers sent to frameworks")
UPDATES = Counter("juggler_master_status_updates_total", "Status updates from agents", ["state"])
LAUNCHED = Counter("juggler_master_tasks_launched_total", "Tasks sent to agents")
AGENTS = Gauge("juggler_master_agents", "Agents the master knows, by connectivity and "
               "maintenance", ["state", "maintenance"])
FRAMEWORKS = Gauge("juggler_master_frameworks", "Frameworks (torn-down ones while their "
                   "tasks are being killed)", ["state"])
TASKS = Gauge("juggler_master_tasks", "Tasks the master tracks", ["state"])
STANDBY_STREAMS = Gauge("juggler_master_standby_streams",
                        "Agent streams opened to this standby ahead of a failover")
ALLOCATION = Histogram("juggler_master_allocation_seconds", "Duration of an allocation cycle",
                       buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5))


MIN_TRIGGERED_GAP = 0.02  # seconds between event-triggered allocation cycles


@dataclass
class MasterConfig:
    host: str = "127.0.0.1"   # loopback unless told (cli/daemons.py: TLS or --insecure)
    port: int = 5050
    advertise: str = ""
    metrics_port: int = 5055
    allocation_interval: float = 1.0
    heartbeat_interval: float = 15.0
    offer_timeout: float | None = None
    agent_ping_timeout: float = 15.0
    max_agent_ping_timeouts: int = 5
    agent_gone_timeout: float = 7 * 86400.0
    # How long a new leader waits for admitted agents to re-register (Mesos: 10 min).
    agent_reregister_timeout: float = 600.0
    # High availability: masters elect a leader through etcd and keep the registry there.
    etcd: str = ""
    etcd_prefix: str = "/juggler/default/"
    etcd_ca: str | None = None
    etcd_cert: str | None = None
    etcd_key: str | None = None
    lease_ttl: int = 5
    # Access rules file (--acls; common/access.py); empty: every call allowed.
    acls: str = ""
    # Bearer tokens of the HTTP /api/* (--tokens; common/tokens.py); empty: none.
    tokens: str = ""


class _Close:
    def __init__(self, message: str) -> None:
        self.message = message


class Master:
    """One master. Without etcd it leads at once (embedded store); with etcd it
    campaigns, answers as a standby until elected, and sets `lost` when its
    leadership ends (the process then restarts itself as a standby)."""

    def __init__(self, config: MasterConfig, store: Store | None = None) -> None:
        self.config = config
        self.store: Any = store
        self.election: Any = None
        self._writer: Any = None
        self.acting = False
        self.lost = asyncio.Event()
        self.clock = SystemClock()
        self.state = MasterState(self.clock, Allocator(self.clock),
                                 heartbeat_interval=config.heartbeat_interval,
                                 offer_timeout=config.offer_timeout,
                                 agent_ping_timeout=config.agent_ping_timeout,
                                 max_agent_ping_timeouts=config.max_agent_ping_timeouts,
                                 agent_gone_timeout=config.agent_gone_timeout)
        self._frameworks: dict[str, tuple[str, asyncio.Queue[Any]]] = {}
        self._agents: dict[str, asyncio.Queue[Any]] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.server: grpc.aio.Server | None = None
        self.address = ""
        self.metrics_port = 0
        # Accept → first TASK_RUNNING, for juggler_master_task_launch_seconds.
        self.launches = operator_metrics.LaunchTimer()
        self._term_over = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._snapshot: operator_metrics.MasterSnapshot | None = None
        self.http: Any = None
        # RulesError for a bad file; reloaded on SIGHUP (cli/daemons.py).
        self.access = AccessControl.from_file(config.acls or None)

    @property
    def leading(self) -> bool:
        return self.acting and (self.election is None or self.election.is_leader)

    def leader_address(self) -> str | None:
        if self.leading:
            return self.address
        return self.election.leader() if self.election is not None else None

    # -- life cycle ----------------------------------------------------------
    async def start(self) -> str:
        # A standby holds the calls of clients that lost their leader for up to
        # two lease TTLs: a new leader is elected within one.
        self.gate = LeaderGate(lambda: self.leading, self.leader_address,
                               hold=2.0 * self.config.lease_ttl + 1.0 if self.config.etcd else 0.0,
                               address=lambda: self.address, reachable=_answers_health)
        gate = self.gate
        STANDBY_STREAMS.set_function(lambda: gate.standing_by)
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        operator_metrics.attach(lambda: self.leading, self.metrics_snapshot)
        server = servers.new_server([self.gate])
        scheduler_pb2_grpc.add_SchedulerServicer_to_server(SchedulerServicer(self), server)
        agent_pb2_grpc.add_AgentChannelServicer_to_server(AgentChannelServicer(self), server)
        operator_pb2_grpc.add_OperatorServicer_to_server(OperatorServicer(self), server)
        await servers.add_health_and_reflection(server, [
            scheduler_pb2.DESCRIPTOR.services_by_name["Scheduler"].full_name,
            agent_pb2.DESCRIPTOR.services_by_name["AgentChannel"].full_name,
            operator_pb2.DESCRIPTOR.services_by_name["Operator"].full_name,
        ])
        port = servers.listen(server, self.config.host, self.config.port)
        await server.start()
        self.server = server
        host = self.config.host if self.config.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        self.address = self.config.advertise or f"{host}:{port}"
        self.state.address = self.address
        if self.config.metrics_port >= 0:
            # /metrics, the web UI and Prometheus service discovery (master/http.py).
            from juggler.master.http import MasterHttp
            self.http = MasterHttp(self)
            self.metrics_port = await self.http.start(self.config.host, self.config.metrics_port)
        reloads = [self.access.reload] if self.access.enabled else []
        if getattr(self.http, "tokens", None) is not None:
            reloads.append(self.http.tokens.reload)
        if reloads:  # SIGHUP: the rules and tokens files are read again
            try:
                install_sighup(*reloads)
            except (RuntimeError, ValueError) as e:  # not the main thread (in-process tests)
                log.warning("SIGHUP will not reload the rules", error=str(e))
        log.info("master started", address=self.address, metrics_port=self.metrics_port,
                 etcd=self.config.etcd or None)
        if self.config.etcd:
            from juggler.store.election_thread import ElectionThread
            from juggler.store.etcd import EtcdClient, EtcdStore

            def client() -> EtcdClient:
                return EtcdClient(self.config.etcd, ca_cert=self.config.etcd_ca,
                                  cert=self.config.etcd_cert, key=self.config.etcd_key)

            self.store = EtcdStore(client(), self.config.etcd_prefix + "registry/",
                                   owns_client=True)
            # The election runs on its own thread: a busy master must not starve
            # its lease keepalive. It also starts the lease reaper, which revokes
            # the lease the moment this process dies (store/election_thread.py).
            self.election = ElectionThread(
                client, self.config.etcd_prefix + "election/", self.address,
                self.config.lease_ttl, endpoints=self.config.etcd, ca_cert=self.config.etcd_ca,
                cert=self.config.etcd_cert, key=self.config.etcd_key)
            election = self.election
            self.state.succession = lambda: election.succession() or [self.address]
            self._tasks.append(asyncio.create_task(self._campaign()))
        else:
            try:
                await self._become_leader()
            except BaseException:
                await server.stop(grace=0)
                raise
        return self.address

    async def _campaign(self) -> None:
        """Campaign until elected (a standby whose etcd session ends, e.g. while etcd
        is down, starts a new one); once elected, lead until the term ends."""
        from juggler.store.interface import StoreError

        await self.election.campaign()
        try:
            await self._become_leader()
            await self.election.lost.wait()
            reason = self.election.lost_reason
        except StoreError as e:
            reason = str(e)
        except Exception as e:  # aetcd's own errors while etcd is unreachable
            reason = f"{type(e).__name__}: {e}"
        self.acting = False
        self._term_ended()
        log.error("leadership lost", reason=reason)
        self.lost.set()

    async def _become_leader(self) -> None:
        """Take over: rebuild from the registry, then start acting."""
        operator_metrics.ELECTIONS.inc()  # elected (or alone); a failed take-over ends the term
        registry = RegistrySnapshot(
            agents=await self._read_registry("agents/", operator_pb2.AgentView),
            frameworks=await self._read_registry("frameworks/", common_pb2.FrameworkInfo),
            torn_down=await self._read_registry("torn_down/", common_pb2.FrameworkInfo),
            kills=await self._read_registry("kills/", registry_pb2.KillRecord),
            roles=await self._read_registry("roles/", registry_pb2.RoleConfig))
        self.state.recover_registry(registry, self.config.agent_reregister_timeout)
        agents, frameworks = registry.agents, registry.frameworks
        if self.election is not None:
            from juggler.store.etcd import Batcher

            # Every registry write is fenced by this term's election key.
            self._writer = Batcher(self.store, self.election.fence())
        self.acting = True
        self._tasks += [asyncio.create_task(self._allocation_loop()),
                        asyncio.create_task(self._heartbeat_loop()),
                        asyncio.create_task(self._ping_loop()),
                        asyncio.create_task(self._tick_loop()),
                        asyncio.create_task(self._gauge_loop())]
        log.info("leading", address=self.address, agents=len(agents),
                 frameworks=len(frameworks))

    async def _read_registry(self, prefix: str, kind: Any) -> list[Any]:
        """Every record under `prefix`; one that does not parse stops the master
        with the key and where the registry is, rather than half a recovery."""
        from google.protobuf.message import DecodeError

        from juggler.store.interface import StoreError

        records = []
        for key, value in await self.store.range(prefix):
            try:
                records.append(kind.FromString(value))
            except DecodeError:
                where = (f"etcd prefix {self.config.etcd_prefix}registry/" if self.config.etcd
                         else str(getattr(self.store, "path", None) or "the embedded store"))
                raise StoreError(
                    f"the registry entry {key!r} is not a valid {kind.DESCRIPTOR.name} record "
                    f"(written by an incompatible version of juggler?): move the registry "
                    f"({where}) away to start afresh") from None
        return records

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self.http is not None:
            await self.http.stop()
        if self.server is not None:
            await self.server.stop(grace=1.0)
        if self._writer is not None:
            await self._writer.close(flush=self.leading)
        if self.election is not None:
            await self.election.close()
        if self.store is not None:
            await self.store.close()

    # -- carrying out commands ----------------------------------------------
    async def execute(self, commands: Iterable[Command]) -> None:
        for c in commands:
            if isinstance(c, ToFramework):
                entry = self._frameworks.get(c.framework_id)
                if entry is not None:
                    entry[1].put_nowait(c.event)
                    if c.event.WhichOneof("event") == "offers":
                        OFFERS.inc(len(c.event.offers.offers))
            elif isinstance(c, ToAgent):
                queue = self._agents.get(c.agent_id)
                if queue is not None:
                    queue.put_nowait(c.message)
                    if c.message.WhichOneof("message") == "run_task":
                        LAUNCHED.inc()
                if c.message.WhichOneof("message") == "run_task":
                    run = c.message.run_task
                    self.launches.sent((run.framework.id, run.task.task_id), self.clock.now())
                # An agent that is away re-registers and its updates are retried.
            elif isinstance(c, CloseStream):
                entry = self._frameworks.get(c.framework_id)
                if entry is not None and entry[0] == c.stream_id:
                    entry[1].put_nowait(_Close(c.message))
            elif isinstance(c, CloseAgentStream):
                queue = self._agents.get(c.agent_id)
                if queue is not None:
                    queue.put_nowait(_Close("the master hung up"))
            elif isinstance(c, Persist):
                await self._persist(c)
            elif isinstance(c, Allocate):
                self.trigger_allocation()
            elif isinstance(c, Log):
                getattr(log, c.level)(c.event, **dict(c.fields))

    async def _persist(self, c: Persist) -> None:
        writer = self._writer or self.store
        try:
            with operator_metrics.REGISTRY_WRITE.time():
                if c.value is None:
                    await writer.delete(c.key)
                else:
                    await writer.put(c.key, c.value)
        except Exception as e:
            from juggler.store.etcd import NotLeader

            # Whatever the registry holds now, it is not known to be this.
            self.state.persist_failed(c.key)
            if isinstance(e, NotLeader):
                # A deposed leader's write was refused: stop acting at once.
                log.error("registry write refused: no longer the leader", error=str(e))
                self.acting = False
                self._term_ended()
                self.lost.set()
            raise

    def trigger_allocation(self) -> None:
        self._wake.set()

    def _term_ended(self) -> None:
        """Count the end of this term once (juggler_master_leadership_lost_total)."""
        if not self._term_over:
            self._term_over = True
            operator_metrics.LEADERSHIP_LOST.inc()

    def metrics_snapshot(self, timeout: float = 5.0) -> operator_metrics.MasterSnapshot | None:
        """The state's snapshot for a scrape (master/metrics.py), None unless
        leading. Built on the loop: directly when called there, else handed to
        the loop and waited for up to `timeout` seconds (a loop that busy gets
        the previous snapshot shown)."""
        if not self.leading or self._loop is None:
            return None
        if threading.get_ident() == self._loop_thread:
            self._snapshot = operator_metrics.snapshot(self.state)
            return self._snapshot
        done: concurrent.futures.Future[operator_metrics.MasterSnapshot] = \
            concurrent.futures.Future()

        def build() -> None:
            try:
                done.set_result(operator_metrics.snapshot(self.state))
            except Exception as e:  # a bug: the scrape shows it
                done.set_exception(e)

        try:
            self._loop.call_soon_threadsafe(build)
            self._snapshot = done.result(timeout)
        except RuntimeError:  # the loop is closed: the master stopped
            return None
        except concurrent.futures.TimeoutError:
            log.warning("metrics: the loop did not answer in time; previous snapshot shown",
                        timeout=timeout)
        return self._snapshot

    async def _allocation_loop(self) -> None:
        """A cycle every allocation interval, and sooner when an event (a new
        agent or framework, resources coming back) asks for one. Triggered cycles
        are at least MIN_TRIGGERED_GAP apart: a framework accepting ten thousand
        offers one call at a time must not cause ten thousand full cycles."""
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.allocation_interval)
            self._wake.clear()
            started = loop.time()
            with ALLOCATION.time():
                commands = self.state.allocate()
            await self.execute(commands)
            took = loop.time() - started
            # Allocation gets at most about a third of the loop under a burst of
            # triggers (e.g. ten thousand agents re-registering after a failover).
            await asyncio.sleep(max(MIN_TRIGGERED_GAP, 2 * took))

    async def _tick_loop(self) -> None:
        """Timeouts: framework failover, offers, agent health."""
        period = max(0.05, min(1.0, self.config.agent_ping_timeout / 4))
        while True:
            await asyncio.sleep(period)
            commands = self.state.tick()
            if commands:
                await self.execute(commands)

    async def _gauge_loop(self) -> None:
        """Gauges are refreshed once a second, off the hot path (counting every
        task on every call cost more than the calls themselves)."""
        while True:
            self._update_gauges()
            self.launches.keep_only(self.state.tasks)
            await asyncio.sleep(1.0)

    async def _heartbeat_loop(self) -> None:
        beat = scheduler_pb2.Event(heartbeat=scheduler_pb2.Event.Heartbeat())
        while True:
            await asyncio.sleep(self.config.heartbeat_interval)
            for _, queue in self._frameworks.values():
                queue.put_nowait(beat)

    async def _ping_loop(self) -> None:
        """Ping every agent once per ping timeout; each answers with a heartbeat.

        The pings are spread over the timeout, a slice of the agents every
        PING_SLICE seconds (an agent's slice: agent_book.ping_slice), as Mesos pings
        each agent on its own timer: pinging every agent at once made a burst of
        a write and an answer per agent that held up every call and update
        behind it (150 ms at 1,000 agents: the p99 of Accept→RUNNING in
        benchmarks/master_throughput.py --rate 500)."""
        ping = agent_pb2.MasterMessage(heartbeat=agent_pb2.MasterMessage.Heartbeat())
        slices = ping_slices(self.config.agent_ping_timeout)
        slice_of: dict[str, int] = {}   # each agent's slice, hashed once (not per slice)
        while True:
            for i in range(slices):
                await asyncio.sleep(self.config.agent_ping_timeout / slices)
                for agent_id, queue in self._agents.items():
                    s = slice_of.get(agent_id)
                    if s is None:
                        s = slice_of[agent_id] = ping_slice(agent_id, slices)
                    if s == i:
                        queue.put_nowait(ping)
            slice_of = {a: s for a, s in slice_of.items() if a in self._agents}

    def _update_gauges(self) -> None:
        counts: dict[int, int] = {}
        for t in self.state.tasks.values():
            counts[t.state] = counts.get(t.state, 0) + 1
        TASKS.clear()
        for state, n in counts.items():
            TASKS.labels(state=task_states.name(state)).set(n)
        frameworks: dict[int, int] = {}
        for f in [*self.state.frameworks.values(), *self.state.torn_down.values()]:
            if f.connected or not f.tasks or f.info.id in self.state.frameworks:
                frameworks[f.state] = frameworks.get(f.state, 0) + 1
        FRAMEWORKS.clear()
        for state, n in frameworks.items():
            FRAMEWORKS.labels(state=operator_pb2.FrameworkState.Name(state)).set(n)
        agents: dict[tuple[int, int], int] = {}
        for a in self.state.agents.values():
            agents[(a.state, a.maintenance)] = agents.get((a.state, a.maintenance), 0) + 1
        AGENTS.clear()
        for (state, maintenance), n in agents.items():
            AGENTS.labels(state=operator_pb2.AgentState.Name(state),
                          maintenance=operator_pb2.MaintenanceState.Name(maintenance)).set(n)

    # -- streams -------------------------------------------------------------
    def open_framework_stream(self, framework_id: str, stream_id: str) -> asyncio.Queue[Any]:
        """The queue of a new subscription; the previous one's stream (a failover
        to a new scheduler instance) ends with an error event saying why."""
        old = self._frameworks.get(framework_id)
        if old is not None and old[0] != stream_id:
            old[1].put_nowait(_Close("framework failed over to a new subscription"))
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._frameworks[framework_id] = (stream_id, queue)
        return queue

    def close_framework_stream(self, framework_id: str, stream_id: str) -> None:
        entry = self._frameworks.get(framework_id)
        if entry is not None and entry[0] == stream_id:
            del self._frameworks[framework_id]

    def open_agent_stream(self, agent_id: str) -> asyncio.Queue[Any]:
        old = self._agents.get(agent_id)
        if old is not None:
            old.put_nowait(_Close("replaced by a new connection"))
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._agents[agent_id] = queue
        return queue

    def close_agent_stream(self, agent_id: str, queue: asyncio.Queue[Any]) -> bool:
        if self._agents.get(agent_id) is queue:
            del self._agents[agent_id]
            return True
        return False


async def _answers_health(address: str, timeout: float = 1.0) -> bool:
    """Whether the master at `address` answers a gRPC health check now."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with servers.channel(address) as channel:
        try:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                           timeout=timeout)
        except grpc.aio.AioRpcError:
            return False
    return True


async def _abort(context: grpc.aio.ServicerContext, method: str, e: CallError) -> None:
    CALLS.labels(method=method, code=e.code.name).inc()
    log.info("call refused", method=method, code=e.code.name, reason=e.message)
    await context.abort(grpc.StatusCode[e.code.name], e.message)


async def _guard(context: grpc.aio.ServicerContext, method: str, check: Any) -> bool:
    """Run the access check `check()` (master/access.py); a refusal ends the
    call PERMISSION_DENIED (counted in juggler_master_calls_total too) and
    answers False. Checks come before the core: a refused call changes nothing."""
    try:
        check()
    except Denied as e:
        await _abort(context, method, CallError(Code.PERMISSION_DENIED, e.message))
        return False
    return True


async def _call(m: Master, method: str, context: grpc.aio.ServicerContext, fn: Any,
                *args: Any, response: Any, guard: Any = None) -> Any:
    """Every call that acts: the access rules allow it (`guard`, see _guard),
    the core decides (or refuses: the right gRPC status, nothing applied), the
    master carries the commands out, and the outcome is counted in
    juggler_master_calls_total."""
    if guard is not None and not await _guard(context, method, guard):
        return response
    try:
        commands = fn(*args)
    except CallError as e:
        await _abort(context, method, e)
        return response
    CALLS.labels(method=method, code="OK").inc()
    await m.execute(commands)
    return response


class SchedulerServicer(scheduler_pb2_grpc.SchedulerServicer):
    def __init__(self, master: Master) -> None:
        self.m = master

    async def Subscribe(self, request: scheduler_pb2.SubscribeRequest,
                        context: grpc.aio.ServicerContext) -> AsyncIterator[scheduler_pb2.Event]:
        if not await _guard(context, "Subscribe", lambda: master_access.subscribe(
                self.m.access, self.m.state, principals.grpc_principal(context),
                request.framework)):
            return
        try:
            fid, sid, commands = self.m.state.subscribe(request.framework)
        except CallError as e:
            await _abort(context, "Subscribe", e)
            return
        CALLS.labels(method="Subscribe", code="OK").inc()
        flog = log.bind(framework_id=fid)
        flog.info("framework subscribed", name=request.framework.name)
        queue = self.m.open_framework_stream(fid, sid)
        try:
            await self.m.execute(commands)
            while True:
                item = await queue.get()
                if isinstance(item, _Close):
                    yield scheduler_pb2.Event(error=scheduler_pb2.Event.Error(message=item.message))
                    return
                yield item
        finally:
            self.m.close_framework_stream(fid, sid)
            await self.m.execute(self.m.state.framework_disconnected(fid, sid))
            flog.info("framework stream closed")

    async def _call(self, method: str, context: grpc.aio.ServicerContext, fn: Any,
                    framework_id: str, *args: Any, response: Any, other_action: str | None = None,
                    guard: Any = None) -> Any:
        """A call on `framework_id` (the first argument of `fn`): by its
        owner, else as `other_action` allows (master/access.py), else refused.
        Without rules nothing is checked (not even the caller's certificate read)."""
        if not self.m.access.enabled:
            guard = None
        elif guard is None:
            def owner() -> None:
                master_access.framework_call(self.m.access, self.m.state,
                                             principals.grpc_principal(context), framework_id,
                                             other_action)
            guard = owner
        return await _call(self.m, method, context, fn, framework_id, *args, response=response,
                           guard=guard)

    async def Accept(self, request: scheduler_pb2.AcceptRequest,
                     context: grpc.aio.ServicerContext) -> scheduler_pb2.AcceptResponse:
        filters = request.filters if request.HasField("filters") else None
        return await self._call(
            "Accept", context, self.m.state.accept, request.framework_id, request.stream_id,
            request.offer_ids, request.operations, filters,
            response=scheduler_pb2.AcceptResponse(),
            guard=lambda: master_access.accept(self.m.access, self.m.state,
                                               principals.grpc_principal(context),
                                               request.framework_id, request.offer_ids,
                                               request.operations))

    async def Decline(self, request: scheduler_pb2.DeclineRequest,
                      context: grpc.aio.ServicerContext) -> scheduler_pb2.DeclineResponse:
        filters = request.filters if request.HasField("filters") else None

        def decline(*args: Any) -> list[Command]:
            commands = self.m.state.decline(*args)  # CallError: nothing declined
            operator_metrics.OFFERS_DECLINED.inc(len(request.offer_ids))
            return commands

        return await self._call(
            "Decline", context, decline, request.framework_id, request.stream_id,
            request.offer_ids, filters, response=scheduler_pb2.DeclineResponse())

    async def Revive(self, request: scheduler_pb2.ReviveRequest,
                     context: grpc.aio.ServicerContext) -> scheduler_pb2.ReviveResponse:
        return await self._call("Revive", context, self.m.state.revive, request.framework_id,
                                request.stream_id, request.roles,
                                response=scheduler_pb2.ReviveResponse())

    async def Suppress(self, request: scheduler_pb2.SuppressRequest,
                       context: grpc.aio.ServicerContext) -> scheduler_pb2.SuppressResponse:
        return await self._call("Suppress", context, self.m.state.suppress, request.framework_id,
                                request.stream_id, request.roles,
                                response=scheduler_pb2.SuppressResponse())

    async def Kill(self, request: scheduler_pb2.KillRequest,
                   context: grpc.aio.ServicerContext) -> scheduler_pb2.KillResponse:
        policy = request.kill_policy if request.HasField("kill_policy") else None
        return await self._call("Kill", context, self.m.state.kill, request.framework_id,
                                request.stream_id, request.task_id, policy, request.agent_id,
                                response=scheduler_pb2.KillResponse(), other_action="kill_tasks")

    async def Acknowledge(self, request: scheduler_pb2.AcknowledgeRequest,
                          context: grpc.aio.ServicerContext) -> scheduler_pb2.AcknowledgeResponse:
        acks = [(a.agent_id, a.task_id, a.uuid) for a in request.acknowledgements]
        if request.task_id or not acks:  # the single one (checked even when empty)
            acks.insert(0, (request.agent_id, request.task_id, request.uuid))
        return await self._call("Acknowledge", context, self.m.state.acknowledge_many,
                                request.framework_id, request.stream_id, acks,
                                response=scheduler_pb2.AcknowledgeResponse())

    async def Reconcile(self, request: scheduler_pb2.ReconcileRequest,
                        context: grpc.aio.ServicerContext) -> scheduler_pb2.ReconcileResponse:
        return await self._call("Reconcile", context, self.m.state.reconcile,
                                request.framework_id, request.stream_id, request.tasks,
                                response=scheduler_pb2.ReconcileResponse())

    async def Teardown(self, request: scheduler_pb2.TeardownRequest,
                       context: grpc.aio.ServicerContext) -> scheduler_pb2.TeardownResponse:
        return await self._call("Teardown", context, self.m.state.teardown,
                                request.framework_id, request.stream_id,
                                response=scheduler_pb2.TeardownResponse(),
                                other_action="teardown_frameworks")


class AgentChannelServicer(agent_pb2_grpc.AgentChannelServicer):
    def __init__(self, master: Master) -> None:
        self.m = master

    async def Connect(self, request_iterator: AsyncIterator[agent_pb2.AgentMessage],
                      context: grpc.aio.ServicerContext) -> AsyncIterator[agent_pb2.MasterMessage]:
        first = await anext(request_iterator.__aiter__(), None)
        kind = first.WhichOneof("message") if first is not None else None
        if first is None or kind not in ("register", "reregister"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "the first message on an agent stream must be register/reregister")
            return
        agent = getattr(first, kind).agent
        if not await _guard(context, "Connect", lambda: master_access.agent_connect(
                self.m.access, self.m.state, principals.grpc_principal(context), agent)):
            return
        try:
            if kind == "register":
                agent_id, commands = self.m.state.register_agent(agent)
            else:
                rr = first.reregister
                agent_id, commands = self.m.state.reregister_agent(rr.agent, rr.tasks, rr.running)
        except AgentGone as e:
            # Tell it to kill its tasks (it then registers afresh), then hang up.
            log.warning("a gone agent came back; telling it to shut down", agent_id=e.agent_id)
            yield agent_pb2.MasterMessage(shutdown=agent_pb2.MasterMessage.Shutdown(
                message=e.message))
            return
        except CallError as e:
            log.warning("agent registration refused", agent_id=agent.id,
                        hostname=agent.hostname, code=e.code.name, reason=e.message)
            await context.abort(grpc.StatusCode[e.code.name], e.message)
            return
        except Exception as e:  # a bug: say so, loudly, on both sides
            log.exception("agent registration failed", agent_id=agent.id,
                          hostname=agent.hostname)
            await context.abort(grpc.StatusCode.INTERNAL,
                                f"the master failed to register the agent: {e!r}")
            return
        alog = log.bind(agent_id=agent_id)
        alog.info("agent registered", kind=kind, hostname=agent.hostname)
        queue = self.m.open_agent_stream(agent_id)
        try:
            await self.m.execute(commands)
        except BaseException:
            if self.m.close_agent_stream(agent_id, queue):
                await self.m.execute(self.m.state.agent_disconnected(agent_id))
            raise

        async def read() -> None:
            try:
                async for msg in request_iterator:
                    for one in batching.unpack(msg):
                        await self._handle(agent_id, one, alog)
            except Exception as e:  # the stream broke; the agent reconnects
                alog.info("agent stream read ended", error=str(e))
            finally:
                queue.put_nowait(_Close("agent closed its stream"))

        reader = asyncio.create_task(read())
        try:
            while True:
                items = batching.drain(queue, await queue.get())
                close = next((i for i, x in enumerate(items) if isinstance(x, _Close)), None)
                send = items if close is None else items[:close]
                if send:
                    yield batching.message(send, agent_pb2.MasterMessage)
                if close is not None:
                    return
        finally:
            reader.cancel()
            if self.m.close_agent_stream(agent_id, queue):
                await self.m.execute(self.m.state.agent_disconnected(agent_id))
                alog.info("agent disconnected")

    async def _handle(self, agent_id: str, msg: agent_pb2.AgentMessage, alog: Any) -> None:
        self.m.state.agent_seen(agent_id)
        kind = msg.WhichOneof("message")
        if kind == "status_update":
            status = msg.status_update.status
            UPDATES.labels(state=task_states.name(status.state)).inc()
            task = self.m.state.tasks.get((status.framework_id, status.task_id))
            ended = operator_metrics.ended_labels(
                status, task.history if task is not None and task.agent_id == agent_id
                else None)
            took = self.m.launches.update(
                (status.framework_id, status.task_id),
                (status.state, msg.status_update.latest_state or status.state),
                self.m.clock.now())
            if took is not None:
                operator_metrics.TASK_LAUNCH.observe(took)
            try:
                commands = self.m.state.status_update(agent_id, status,
                                                      msg.status_update.latest_state)
            except CallError as e:
                alog.warning("status update refused", error=e.message)
                return
            if ended is not None:
                operator_metrics.TASKS_ENDED.labels(*ended).inc()
            await self.m.execute(commands)
        elif kind == "heartbeat":
            pass
        else:
            alog.warning("unexpected agent message", kind=kind)


class OperatorServicer(operator_pb2_grpc.OperatorServicer):
    def __init__(self, master: Master) -> None:
        self.m = master

    async def _view(self, method: str, context: grpc.aio.ServicerContext) -> None:
        """view_cluster, which every Get* needs (ends the call when refused)."""
        await _guard(context, method, lambda: self.m.access.require(
            "view_cluster", principals.grpc_principal(context)))

    def _drain_guard(self, context: grpc.aio.ServicerContext, agent_id: str) -> Any:
        principal = principals.grpc_principal(context)

        def check() -> None:
            hostname = master_access.agent_hostname(self.m.state, agent_id)
            if hostname is not None:  # unknown: MasterState answers NOT_FOUND
                self.m.access.require("drain_agents", principal, hostname)
        return check

    def _leader(self) -> operator_pb2.GetLeaderResponse:
        return operator_pb2.GetLeaderResponse(address=self.m.leader_address() or "",
                                              self=self.m.address, is_leader=self.m.leading)

    async def GetState(self, request: operator_pb2.GetStateRequest,
                       context: grpc.aio.ServicerContext) -> operator_pb2.GetStateResponse:
        await self._view("GetState", context)
        return views.state_view(self.m.state, self._leader(), request.stories)

    async def GetAgents(self, request: operator_pb2.GetAgentsRequest,
                        context: grpc.aio.ServicerContext) -> operator_pb2.GetAgentsResponse:
        await self._view("GetAgents", context)
        st = self.m.state
        return operator_pb2.GetAgentsResponse(
            agents=[views.agent_view(st, a, request.stories) for a in st.agents.values()])

    async def GetFrameworks(self, request: operator_pb2.GetFrameworksRequest,
                            context: grpc.aio.ServicerContext,
                            ) -> operator_pb2.GetFrameworksResponse:
        await self._view("GetFrameworks", context)
        return operator_pb2.GetFrameworksResponse(
            frameworks=views.frameworks_view(self.m.state, request.stories))

    async def GetTasks(self, request: operator_pb2.GetTasksRequest,
                       context: grpc.aio.ServicerContext) -> operator_pb2.GetTasksResponse:
        await self._view("GetTasks", context)
        return views.tasks_view(self.m.state, request.include_completed)

    async def GetLeader(self, request: operator_pb2.GetLeaderRequest,
                        context: grpc.aio.ServicerContext) -> operator_pb2.GetLeaderResponse:
        await self._view("GetLeader", context)
        return self._leader()

    async def GetRoles(self, request: operator_pb2.GetRolesRequest,
                       context: grpc.aio.ServicerContext) -> operator_pb2.GetRolesResponse:
        await self._view("GetRoles", context)
        return views.roles_view(self.m.state)

    async def DrainAgent(self, request: operator_pb2.DrainAgentRequest,
                         context: grpc.aio.ServicerContext) -> operator_pb2.DrainAgentResponse:
        log.info("drain asked for", agent_id=request.agent_id)
        return await _call(self.m, "DrainAgent", context, self.m.state.drain_agent,
                           request.agent_id, response=operator_pb2.DrainAgentResponse(),
                           guard=self._drain_guard(context, request.agent_id))

    async def UpAgent(self, request: operator_pb2.UpAgentRequest,
                      context: grpc.aio.ServicerContext) -> operator_pb2.UpAgentResponse:
        log.info("end of maintenance asked for", agent_id=request.agent_id)
        return await _call(self.m, "UpAgent", context, self.m.state.up_agent,
                           request.agent_id, response=operator_pb2.UpAgentResponse(),
                           guard=self._drain_guard(context, request.agent_id))

    async def UpdateWeights(self, request: operator_pb2.UpdateWeightsRequest,
                            context: grpc.aio.ServicerContext,
                            ) -> operator_pb2.UpdateWeightsResponse:
        principal = principals.grpc_principal(context)
        return await _call(self.m, "UpdateWeights", context, self.m.state.roles.update_weights,
                           dict(request.weights), response=operator_pb2.UpdateWeightsResponse(),
                           guard=lambda: [self.m.access.require("update_weights", principal, r)
                                          for r in sorted(request.weights)])

    async def UpdateQuota(self, request: operator_pb2.UpdateQuotaRequest,
                          context: grpc.aio.ServicerContext) -> operator_pb2.UpdateQuotaResponse:
        return await _call(self.m, "UpdateQuota", context, self.m.state.roles.update_quota,
                           request.role, request.limit, request.remove,
                           response=operator_pb2.UpdateQuotaResponse(),
                           guard=lambda: self.m.access.require(
                               "update_quotas", principals.grpc_principal(context),
                               request.role))
