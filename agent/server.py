"""The agent process: registers with the master, launches executors, relays updates.

    master ◀──Connect stream──▶ agent ◀──Unix socket (executor.proto)──▶ executor
                                  │
                                  └── Agent API (gRPC): task logs, exec, attach, state

The shell around the pure AgentState (agent/state.py): it turns what happens
(a message from the master, an executor connecting, a process exiting, an
image pulled) into events for the core and carries out the commands the core
returns (agent/commands.py); it decides nothing about tasks itself. One asyncio
loop. The agent dials the master and reconnects with backoff and jitter when
the stream breaks; executors live in their own sessions and keep their tasks
running whatever happens to the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import stat
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from prometheus_client import Counter, Gauge

from juggler.agent import checkpoint, executor_link, writable_layers
from juggler.agent import commands as c
from juggler.agent import events as ev
from juggler.agent.networks import AgentNetworks, NetworkOptions
from juggler.agent.port_watch import DEFAULT_INTERVAL as DEFAULT_PORTS_WATCH
from juggler.agent.port_watch import PortWatch
from juggler.agent.standby_stream import STANDBY_DELAY, StandbyStream, outgoing, standby_delay
from juggler.agent.state import AgentState, AgentTask
from juggler.agent.status_updates import FIRST_RETRY
from juggler.common import batching, fdio, framing, ids, logs, sandbox_paths, servers, task_states
from juggler.common.access import AccessControl
from juggler.common.clock import SystemClock
from juggler.common.leader import LeaderFollower, backoff, from_standby, leader_of
from juggler.common.resources import Resources
from juggler.container.cni_config import CniError
from juggler.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    executor_pb2,
)

log = logs.get("juggler.agent")
S = task_states.S
Key = tuple[str, str]

LAUNCHED = Counter("juggler_agent_tasks_launched_total", "Executors started")
UPDATES = Counter("juggler_agent_status_updates_total", "Status updates sent to the master",
                  ["state"])
LINK_PID_WAIT = 10.0  # seconds a hello waits for its executor's pid (see _executor_link_allowed)
RUNNING = Gauge("juggler_agent_tasks_active", "Tasks not yet terminal on this agent")
CONNECTED = Gauge("juggler_agent_master_connected", "1 while the master stream is up")


@dataclass
class AgentConfig:
    master: str
    work_dir: Path
    resources: Resources
    host: str = "127.0.0.1"   # loopback unless told (cli/daemons.py: TLS or --insecure)
    port: int = 5051
    advertise_ip: str = ""
    hostname: str = ""
    # Operator-given attributes ("rack:r1;zone:a", common/attributes.py).
    attributes: dict[str, str] | None = None
    metrics_port: int = 5056
    status_update_retry: float = FIRST_RETRY
    standby_delay: float = STANDBY_DELAY  # agent/standby_stream.py
    cgroup_root: str = "juggler"
    # Images (images/): registries spoken to over plain http (loopback
    # ones always are), and a Docker config.json with registry credentials.
    insecure_registries: tuple[str, ...] = ()
    registry_config: str = ""
    # Docker Hub mirrors, tried in order before Hub (images/mirrors.py): URLs.
    registry_mirrors: tuple[str, ...] = ()
    # Start executors by forking a pre-started zygote (agent/launcher.py)
    # rather than a fresh interpreter each.
    launcher: bool = True
    # CNI networks (agent/networks.py): config dir, plugin dirs, built-in bridge.
    networks: NetworkOptions = field(default_factory=NetworkOptions)
    # Host-network tasks listening on ports they were not given are killed
    # (agent/port_watch.py): scan interval (seconds; 0 = off) and whether only
    # the agent's ports resource counts.
    ports_watch_interval: float = DEFAULT_PORTS_WATCH
    ports_agent_range_only: bool = True
    # Access rules file of the agent API (--acls; common/access.py); empty: all allowed.
    acls: str = ""
    # Paths hidden from host-filesystem tasks besides the agent's work dir,
    # TLS directories and /run/juggler (--hide-from-tasks; container/host_view.py).
    hide_from_tasks: tuple[str, ...] = ()


def _local_ip_towards(address: str) -> str:
    """The local address the kernel would use to reach `address` (no packet is sent)."""
    host = address.rsplit(":", 1)[0].strip("[]") or "127.0.0.1"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((socket.gethostbyname(host), 9))
            return str(s.getsockname()[0])
    except OSError:
        return "127.0.0.1"


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.work_dir = config.work_dir
        # In a directory of its own, 0700 (agent/executor_link.py).
        self.socket_path = self.work_dir / executor_link.SOCKET_DIR / executor_link.SOCKET_NAME
        # RulesError for a bad file; reloaded on SIGHUP (cli/daemons.py).
        self.access = AccessControl.from_file(config.acls or None)
        self.core = AgentState(
            SystemClock(), hostname=config.hostname or socket.gethostname(),
            resources=config.resources.to_proto(), attributes=config.attributes,
            socket_path=str(self.socket_path), cgroup_root=config.cgroup_root,
            first_retry=config.status_update_retry, new_uuid=lambda: uuid.uuid4().bytes)
        self._outbox: asyncio.Queue[agent_pb2.AgentMessage] | None = None
        self._registered = asyncio.Event()
        self._follower: LeaderFollower | None = None
        # The stream opened ahead of a failover to the master that would lead next
        # (agent/standby_stream.py): (that master, the leader) and the task that
        # opens it, and opens it again if it ends unused.
        self._standby: StandbyStream | None = None
        self._standby_target: tuple[str, str] | None = None
        self._standby_task: asyncio.Task[None] | None = None
        self._wake_updates = asyncio.Event()
        self._stopping = False
        self._ping = 15.0
        self._bg: list[asyncio.Task[Any]] = []
        self._purges: set[asyncio.Task[None]] = set()  # writable layers being deleted
        # Per task: the executor's connection, the task watching its process, and
        # an event set once the process is gone.
        self._writers: dict[Key, asyncio.StreamWriter] = {}
        self._watchers: dict[Key, asyncio.Task[None]] = {}
        self._exited: dict[Key, asyncio.Event] = {}
        # The pid of the executor this agent started (or recovered) for each
        # task: the only process whose hello is taken (agent/executor_link.py).
        self._executor_pids: dict[Key, int] = {}
        self._executor_pid_known = asyncio.Condition()
        self.server: grpc.aio.Server | None = None
        self._unix: asyncio.AbstractServer | None = None
        self.metrics_port = 0
        from juggler.agent.image_tasks import ImageTasks
        self.images = ImageTasks(self)
        self.networks = AgentNetworks(self.work_dir, config.networks)
        self.launcher: Any = None  # agent/launcher.py's Launcher when config.launcher
        self.launcher_fallbacks = 0  # executors started afresh: the launcher could not
        # Counted when scraped, not on every update (O(tasks) each: quadratic
        # when a thousand tasks start at once).
        RUNNING.set_function(lambda: sum(
            1 for t in self.tasks.values() if not task_states.is_terminal(t.state)))

    # -- what the rest of the agent reads -------------------------------------------
    @property
    def tasks(self) -> dict[Key, AgentTask]:
        return self.core.tasks

    @property
    def agent_id(self) -> str:
        return self.core.agent_id

    @property
    def hostname(self) -> str:
        return self.core.hostname

    @property
    def address(self) -> str:
        return self.core.address

    def cgroup_of(self, framework_id: str, task_id: str) -> str:
        return self.core.cgroup_of((framework_id, task_id))

    def sandbox_of(self, framework_id: str, task_id: str) -> Path:
        return self.work_dir / "frameworks" / framework_id / "tasks" / task_id

    def find_task(self, task_id: str, framework_id: str = "") -> AgentTask | None:
        return self.core.find(task_id, framework_id)

    def find_sandbox(self, task_id: str, framework_id: str = "") -> Path | None:
        task = self.find_task(task_id, framework_id)
        if task is not None and task.sandbox is not None:
            return task.sandbox
        try:   # ids only: a caller's "../x" or "*" must not reach the glob
            ids.check("task id", task_id)
            if framework_id:
                ids.check("framework id", framework_id)
        except ids.InvalidId:
            return None
        root = self.work_dir / "frameworks"
        pattern = f"{framework_id or '*'}/tasks/{task_id}"
        found = sorted(root.glob(pattern), key=lambda p: p.stat().st_mtime)
        return found[-1] if found else None

    async def finished(self, key: Key) -> None:
        """Wait until the task's executor is gone (now if it is not known)."""
        event = self._exited.get(key)
        if event is not None:
            await event.wait()

    # -- the core --------------------------------------------------------------------
    def handle(self, *events: ev.Event) -> None:
        """Hand events to the core and carry out what it decides, in order."""
        for command in self.core.handle(*events):
            self._carry_out(command)

    def _carry_out(self, command: c.Command) -> None:
        if isinstance(command, c.ToMaster):
            if self._outbox is not None:
                if command.message.HasField("status_update"):
                    UPDATES.labels(state=task_states.name(
                        command.message.status_update.status.state)).inc()
                self._outbox.put_nowait(command.message)
        elif isinstance(command, c.ToExecutor):
            writer = self._writers.get(command.key)
            if writer is not None and not writer.is_closing():
                writer.write(framing.encode(command.message))
        elif isinstance(command, c.CloseExecutor):
            writer = self._writers.pop(command.key, None)
            if writer is not None:
                writer.close()
        elif isinstance(command, c.CheckpointUpdate):
            checkpoint.append_update(command.sandbox, command.status)
        elif isinstance(command, c.CheckpointAck):
            checkpoint.append_ack(command.sandbox, command.uuid)
        elif isinstance(command, c.MarkDone):
            checkpoint.mark_done(command.sandbox)
        elif isinstance(command, c.StartExecutor):
            self._start_executor(command.key, command.spec)
        elif isinstance(command, c.PullImage):
            self.images.pull(command.key, command.task)
        elif isinstance(command, c.CancelPull):
            self.images.cancel(command.key)
        elif isinstance(command, c.ReleaseImage):
            self.images.release(command.key)
        elif isinstance(command, c.DestroyCgroup):
            self._destroy_cgroup(command.name)
        elif isinstance(command, c.Forget):
            self._writers.pop(command.key, None)
            self._watchers.pop(command.key, None)
            event = self._exited.pop(command.key, None)
            if event is not None:
                event.set()
        elif isinstance(command, c.SaveAgentId):
            id_file = self.work_dir / "agent_id"
            if command.agent_id:
                id_file.write_text(command.agent_id)
            else:
                id_file.unlink(missing_ok=True)
        elif isinstance(command, c.Log):
            getattr(log, command.level)(command.event, **dict(command.fields))
        self._wake_updates.set()

    # -- life cycle ----------------------------------------------------------
    async def start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        id_file = self.work_dir / "agent_id"
        agent_id = id_file.read_text().strip() if id_file.exists() else ""
        self._link_dir()
        self._recover(agent_id)
        self.images.recover()
        if self.config.launcher:
            from juggler.agent.launcher import Launcher

            self.launcher = Launcher(self.work_dir / "launcher.log", env=self._executor_env())
            await self.launcher.start()
        # Bound through its directory's fd: a work dir may be longer than
        # sun_path's 108 bytes allow (common/fdio.py).
        self._unix = await fdio.serve_unix(self._executor_connection, self.socket_path.parent,
                                           self.socket_path.name, 0o600)
        server = servers.new_server()
        from juggler.agent.api import AgentServicer

        agent_pb2_grpc.add_AgentServicer_to_server(AgentServicer(self), server)
        await servers.add_health_and_reflection(
            server, [agent_pb2.DESCRIPTOR.services_by_name["Agent"].full_name])
        port = servers.listen(server, self.config.host, self.config.port)
        await server.start()
        self.server = server
        ip = self.config.advertise_ip or (
            self.config.host if self.config.host not in ("0.0.0.0", "")
            else _local_ip_towards(self.config.master.split(",")[0]))
        self.core.address = f"{ip}:{port}"
        if self.config.metrics_port >= 0:
            from juggler.common import metrics
            self.metrics_port = metrics.serve(self.config.host, self.config.metrics_port)
            self.core.metrics_address = f"{ip}:{self.metrics_port}"  # told at registration
        self._attach_metrics()
        self._bg = [asyncio.create_task(self._master_loop()),
                    asyncio.create_task(self._update_loop()),
                    asyncio.create_task(self._purge_layers()),
                    # dead executors' CNI attachments torn down, live ones CHECKed
                    asyncio.create_task(asyncio.to_thread(self.networks.recover))]
        if self.config.ports_watch_interval > 0:
            self._bg.append(asyncio.create_task(PortWatch(
                self, self.config.ports_watch_interval, self.config.ports_agent_range_only).run()))
        log.info("agent started", address=self.address, work_dir=str(self.work_dir),
                 resources=str(self.config.resources), metrics_port=self.metrics_port)

    def _attach_metrics(self) -> None:
        """agent/metrics.py's collector reads this agent's core on the scraping
        thread: a number each, and a copy of the tasks' table taken at once."""
        from juggler.agent import metrics as agent_metrics

        def updates() -> tuple[int, int]:
            manager = self.core.updates
            return manager.pending_total, manager.resent

        def tasks() -> list[agent_metrics.TaskCgroup]:
            return [agent_metrics.TaskCgroup(t.info.task_id, t.framework.id, t.cgroup)
                    for t in list(self.core.tasks.values()) if not t.exited and t.cgroup]

        agent_metrics.attach(updates, tasks)

    def _recover(self, agent_id: str) -> None:
        """Find the tasks of a previous run of this agent (design.md: executors
        outlive their agent); the core decides what becomes of each."""
        records = checkpoint.recover(self.work_dir)
        self.handle(ev.Started(agent_id, tuple(
            ev.Recovered(sandbox=rec.sandbox, spec=rec.spec, updates=rec.updates,
                         acked=frozenset(rec.acked),
                         executor_alive=rec.executor_pid is not None)
            for rec in records)))
        for rec in records:
            key = (rec.spec.framework.id, rec.spec.task.task_id)
            self._exited[key] = asyncio.Event()
            if rec.executor_pid is None:
                self._exited[key].set()
                continue
            log.info("recovered a running executor", pid=rec.executor_pid,
                     framework_id=key[0], task_id=key[1])
            self._executor_pids[key] = rec.executor_pid
            self._watchers[key] = asyncio.create_task(self._watch_pid(key, rec.executor_pid))

    async def _purge_layers(self, doomed: Path | None = None) -> None:
        """Delete a removed writable layer (agent/writable_layers.py), or what
        removals a crash interrupted left, beside the loop."""
        try:
            await asyncio.to_thread(writable_layers.purge, self.work_dir, doomed)
        except OSError as e:
            log.warning("could not delete a removed writable layer", error=str(e),
                        path=str(doomed or self.work_dir / writable_layers.LAYERS))

    def remove_writable_layer(self, framework_id: str, name: str) -> asyncio.Task[None] | None:
        """Take the layer away from its name now (a launch from here on gets a
        new one) and delete it beside the loop: the deletion's task, None when
        there was no such layer. The caller checked no live task uses it.
        Raises OSError when it cannot be moved."""
        doomed = writable_layers.take_away(self.work_dir, framework_id, name)
        if doomed is None:
            return None
        log.info("writable layer removed", framework_id=framework_id, layer=name)
        purge = asyncio.create_task(self._purge_layers(doomed))
        self._purges.add(purge)  # the loop holds tasks weakly
        purge.add_done_callback(self._purges.discard)
        return purge

    @staticmethod
    def _destroy_cgroup(name: str) -> None:
        if not name:
            return
        try:
            from juggler.container.cgroups import open_cgroup

            cgroup = open_cgroup(name)
            if cgroup.exists():
                cgroup.destroy()
        except OSError as e:
            log.warning("could not remove a dead executor's cgroup", cgroup=name, error=str(e))

    async def stop(self) -> None:
        """Stop the agent; executors and their tasks keep running."""
        self._stopping = True
        for t in self._bg:
            t.cancel()
        await self._drop_standby()
        if self._unix is not None:
            self._unix.close()
        if self.launcher is not None:
            await self.launcher.stop()
        # The bridge pool's entries are the agent's, not a task's (agent/network_pool.py).
        await asyncio.to_thread(self.networks.close)
        if self.server is not None:
            await self.server.stop(grace=0.5)

    async def kill_all_tasks(self, timeout: float = 15.0) -> None:
        """Kill every task (used by `juggler up` on shutdown, and SIGUSR1), each
        with its own kill policy, and wait for their executors to end."""
        for key, task in list(self.tasks.items()):
            if not task_states.is_terminal(task.state):
                self.handle(ev.FromMaster(agent_pb2.MasterMessage(
                    kill_task=agent_pb2.MasterMessage.KillTask(
                        framework_id=key[0], task_id=key[1],
                        kill_policy=task.info.kill_policy))))
        waits = [self.finished(key) for key in self.tasks]
        if waits:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits), timeout)

    # -- the master stream -----------------------------------------------------
    async def _master_loop(self) -> None:
        """Stay connected to the leading master, whichever it is (common/leader.py
        LeaderFollower decides where to dial next and when)."""
        follower = self._follower = LeaderFollower(self.config.master)
        while not self._stopping:
            address = follower.address
            leader = None
            answered = True  # a session that ended cleanly: that master hung up
            standby = await self._take_standby(address)
            try:
                await self._session(address, follower.metadata(), standby)
            except (grpc.aio.AioRpcError, OSError) as e:
                code = e.code().name if isinstance(e, grpc.aio.AioRpcError) else type(e).__name__
                leader = leader_of(e) if isinstance(e, grpc.aio.AioRpcError) else None
                answered = isinstance(e, grpc.aio.AioRpcError) and from_standby(e)
                log.info("master connection lost", master=address, code=code, leader=leader)
                if (isinstance(e, grpc.aio.AioRpcError)
                        and e.code() == grpc.StatusCode.PERMISSION_DENIED):
                    # The access rules (register_agents): say which, loudly.
                    log.error("the master refused this agent", master=address,
                              reason=e.details())
            finally:
                registered = self._registered.is_set()
                CONNECTED.set(0)
                self._outbox = None
                self._registered.clear()
                self.handle(ev.MasterLost())
            await asyncio.sleep(follower.ended(time.monotonic(), answered=answered,
                                               leader=leader, registered=registered))

    def _register_message(self) -> agent_pb2.AgentMessage:
        return self.core.registration()

    async def _session(self, address: str, metadata: tuple[tuple[str, str], ...] = (),
                       standby: StandbyStream | None = None) -> None:
        """One Connect stream with `address`: dialled now, or the stream opened to it
        ahead of a failover (`standby`), whose first message this sends."""
        if standby is not None:
            log.info("re-registering over the stream opened ahead of the failover",
                     master=address, lost=standby.leader)
            outbox, channel, call = standby.outbox, standby.channel, standby.call
        else:
            outbox = asyncio.Queue()
            channel = servers.channel(address)
            # A frozen master (SIGSTOPped: its kernel accepts the connection,
            # nothing answers) is passed over in a second, when there is
            # another to dial; a connection that froze later is closed by the
            # keepalive within about 4 s (common/servers.py).
            others = self._follower is not None and len(self._follower.masters) > 1
            if others and not await servers.connects(channel):
                await channel.close()
                raise ConnectionError(f"no answer from the master at {address} within "
                                      f"{servers.CONNECT_SECONDS:g} s")
            call = agent_pb2_grpc.AgentChannelStub(channel).Connect(outgoing(outbox),
                                                                    metadata=metadata)
        outbox.put_nowait(self._register_message())
        try:
            while True:
                # The master pings at least every `ping` seconds: silence for
                # three of them means it is gone, so find it (or another) again.
                msg = await asyncio.wait_for(call.read(), max(1.0, 3 * self._ping))
                if msg is grpc.aio.EOF:
                    return
                for one in batching.unpack(msg):
                    await self._on_master_message(one, outbox, address)
        except TimeoutError:
            log.warning("master silent; reconnecting", master=address)
        finally:
            call.cancel()
            await channel.close()

    # -- the stream opened ahead of a failover -----------------------------------
    async def _stand_by(self, leader: str) -> None:
        """Have a stream open to the master that would lead after `leader`, soon."""
        successor = self._follower.successor() if self._follower is not None else None
        if self._standby_target == (successor, leader):
            return
        await self._drop_standby()
        if successor is None or self._stopping:
            return
        self._standby_target = (successor, leader)
        self._standby_task = asyncio.create_task(self._keep_standby(successor, leader))

    async def _keep_standby(self, address: str, leader: str) -> None:
        """Open the stream a while after registering, not at once: right after a
        failover every agent registers at the same moment, and the new leader and
        the next master need those seconds for the re-registrations. Open it again
        if it ends unused (its master restarted)."""
        await asyncio.sleep(standby_delay(self.config.standby_delay))
        attempt = 0
        while True:
            standby = self._standby = StandbyStream(address, leader)
            log.info("standing by with the master that would lead next", master=address,
                     leader=leader)
            code = await standby.ended()
            self._standby = None
            await standby.close()
            attempt += 1
            log.info("the stream opened ahead of a failover ended; opening it again",
                     master=address, code=code.name)
            await asyncio.sleep(backoff(attempt, base=0.5, cap=10.0))

    async def _take_standby(self, address: str) -> StandbyStream | None:
        """The standby stream to `address`, now to be used (any other is closed)."""
        standby = self._standby
        usable = standby is not None and standby.address == address and not standby.call.done()
        if usable:
            self._standby = None  # kept open: _drop_standby closes only what is left
        await self._drop_standby()
        return standby if usable else None

    async def _drop_standby(self) -> None:
        self._standby_target = None
        if self._standby_task is not None:
            self._standby_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._standby_task
            self._standby_task = None
        standby, self._standby = self._standby, None
        if standby is not None:
            await standby.close()

    async def _on_master_message(self, msg: agent_pb2.MasterMessage,
                                 outbox: asyncio.Queue[agent_pb2.AgentMessage],
                                 address: str) -> None:
        kind = msg.WhichOneof("message")
        if kind == "registered":
            self._ping = msg.registered.heartbeat_interval_seconds or 15.0
            if self._follower is not None:
                self._follower.follow_succession(msg.registered.masters)
            self._outbox = outbox
            CONNECTED.set(1)
            self._registered.set()
            self.handle(ev.FromMaster(msg))
            log.info("registered with master", master=address, agent_id=self.agent_id)
            await self._stand_by(address)
        elif kind == "heartbeat":
            outbox.put_nowait(agent_pb2.AgentMessage(heartbeat=agent_pb2.AgentMessage.Heartbeat()))
        else:
            self.handle(ev.FromMaster(msg))

    async def _update_loop(self) -> None:
        """Status updates whose (re)send time has come go to the master."""
        while True:
            if self._outbox is not None:
                self.handle(ev.Tick())
            nxt = self.core.next_due()
            timeout = 1.0 if nxt is None else max(0.0, min(1.0, nxt - time.monotonic()))
            self._wake_updates.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_updates.wait(), timeout)

    # -- executors ---------------------------------------------------------------
    def _start_executor(self, key: Key, spec: executor_pb2.ExecutorSpec) -> None:
        """Make the sandbox and write the spec (now: the executor may connect as
        soon as it runs), then start it beside the loop."""
        tlog = log.bind(framework_id=key[0], task_id=key[1])
        sandbox = self.sandbox_of(*key)
        try:
            if sandbox.exists() or checkpoint.meta_dir(sandbox).exists():
                # A reused task id: keep the old run's files (and its lock) apart.
                checkpoint.rename(sandbox, f"{key[1]}.{int(time.time() * 1000)}")
            sandbox.mkdir(parents=True)
            if spec.task.container.writable_layer:
                writable_layers.attach(self.work_dir, sandbox, key[0],
                                       spec.task.container.writable_layer)
            checkpoint.write_spec(sandbox, spec)
        except (OSError, ValueError) as e:  # ValueError: not a sandbox path (sandbox_paths)
            tlog.error("cannot make the task's sandbox", error=str(e))
            self.handle(ev.ExecutorFailedToStart(key, f"cannot make its sandbox: {e}"))
            return
        try:
            plan = self.networks.plan_for(spec.task)
            if plan is not None:
                # ADD starts now, while the executor starts; the executor adopts it.
                self.networks.begin(plan, spec.task, sandbox).write(sandbox)
        except (OSError, ValueError, CniError) as e:  # NetworkError: an unknown network
            tlog.error("cannot plan the task's network", error=str(e))
            self.handle(ev.ExecutorFailedToStart(key, str(e)))
            return
        self._exited[key] = asyncio.Event()
        self.handle(ev.SandboxMade(key, sandbox))
        self._watchers[key] = asyncio.create_task(self._spawn(key, sandbox, tlog))

    def _executor_env(self) -> dict[str, str]:
        """What every executor gets in its environment: the paths its
        host-filesystem tasks must not see (container/host_view.py), and this
        agent's work dir: an executor takes only a sandbox of it
        (common/sandbox_paths.py)."""
        from juggler.common import tls
        from juggler.container import host_view

        cfg = tls.current()
        key = str(Path(cfg.key).resolve()) if cfg else ""
        return {**host_view.hide_env(host_view.agent_hidden(
            str(self.work_dir.resolve()), key,
            [str(Path(p).resolve()) for p in self.config.hide_from_tasks])),
            sandbox_paths.WORK_ENV: str(self.work_dir.resolve())}

    async def _spawn(self, key: Key, sandbox: Path, tlog: Any) -> None:
        if self.launcher is not None:
            from juggler.agent.launcher import LauncherUnavailable

            try:
                pid = await self.launcher.spawn(sandbox)
            except LauncherUnavailable as e:
                self.launcher_fallbacks += 1
                tlog.warning("executor launcher unavailable; starting a fresh executor",
                             error=str(e))
            else:
                # Not our child (double-forked): watched through a pidfd, as
                # a recovered executor is.
                checkpoint.write_pid(sandbox, pid)
                await self._executor_started(key, pid)
                LAUNCHED.inc()
                tlog.info("executor started", pid=pid, sandbox=str(sandbox), launcher=True)
                await self._watch_pid(key, pid)
                return
        logfile = open(sandbox / "executor.log", "ab")  # noqa: SIM115
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "juggler.executor", "--sandbox", str(sandbox),
                stdin=asyncio.subprocess.DEVNULL, stdout=logfile, stderr=logfile,
                start_new_session=True, cwd=str(sandbox),
                env={**os.environ, **self._executor_env()})
        except OSError as e:
            tlog.error("executor failed to start", error=str(e))
            self._clean_networks(key)
            self.handle(ev.ExecutorFailedToStart(key, str(e)))
            self._exited[key].set()
            return
        finally:
            logfile.close()
        checkpoint.write_pid(sandbox, process.pid)
        await self._executor_started(key, process.pid)
        LAUNCHED.inc()
        tlog.info("executor started", pid=process.pid, sandbox=str(sandbox))
        code = await process.wait()
        if code == sandbox_paths.EXIT_ANOTHER_EXECUTOR:
            # The launcher forked an executor before it failed to answer: that
            # one runs the task and holds its lock. Watched as a recovered one.
            holder = await asyncio.to_thread(checkpoint.holder_or_give_up, sandbox)
            if holder is not None:
                with contextlib.suppress(OSError):
                    checkpoint.write_pid(sandbox, holder)
                await self._executor_started(key, holder)
                tlog.info("the launcher's executor runs the task after all", pid=holder)
                await self._watch_pid(key, holder)
                return
        self._executor_gone(key, code)

    async def _watch_pid(self, key: Key, pid: int) -> None:
        """Wait for an executor that is not our child (forked by the launcher, or
        recovered) to exit."""
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            fd = -1
        if fd >= 0:
            loop = asyncio.get_running_loop()
            exited = loop.create_future()
            loop.add_reader(fd, lambda: exited.done() or exited.set_result(None))
            try:
                await exited
            finally:
                loop.remove_reader(fd)
                os.close(fd)
        self._executor_gone(key, None)

    def _executor_gone(self, key: Key, code: int | None) -> None:
        self._executor_pids.pop(key, None)
        self._clean_networks(key)
        task = self.tasks.get(key)
        if task is not None and task.sandbox is not None:
            # An executor its launcher forked too late (the agent fell back to
            # its own) must not run the task after this one ended.
            checkpoint.give_up(task.sandbox)
        tail = _tail(task.sandbox / "executor.log") if task and task.sandbox else ""
        self.handle(ev.ExecutorExited(key, code, tail))
        event = self._exited.get(key)
        if event is not None:
            event.set()

    def _clean_networks(self, key: Key) -> None:
        """A dead executor's CNI attachment (or the one it never adopted) is
        torn down beside the loop (agent/networks.py)."""
        task = self.tasks.get(key)
        if task_uses_cni(task):
            assert task is not None
            sweep = asyncio.create_task(asyncio.to_thread(self.networks.clean_dead,
                                                          task.sandbox))
            self._purges.add(sweep)  # held until done, as the layer purges
            sweep.add_done_callback(self._purges.discard)

    def _link_dir(self) -> None:
        """The executor socket's directory, 0700; executors started by an
        agent that had its socket at <work dir>/agent.sock find this one
        through a link there."""
        link_dir = self.socket_path.parent
        link_dir.mkdir(mode=0o700, exist_ok=True)
        os.chmod(link_dir, 0o700)
        if self.socket_path.is_socket():   # a previous life's: bound again at start
            self.socket_path.unlink()
        legacy = self.work_dir / "agent.sock"
        if legacy.is_socket() or legacy.is_symlink():
            legacy.unlink()
        if not legacy.exists():
            legacy.symlink_to(self.socket_path.relative_to(self.work_dir))

    async def _executor_started(self, key: Key, pid: int) -> None:
        async with self._executor_pid_known:
            self._executor_pids[key] = pid
            self._executor_pid_known.notify_all()

    async def _executor_link_allowed(self, writer: asyncio.StreamWriter, claimed: Key,
                                     hello_pid: int) -> bool:
        """Whether this connection is the executor this agent started for the
        task `claimed` names (agent/executor_link.py); refusals are logged
        and counted. A hello may come before the launcher's answer gave the
        pid: it waits for that (at most LINK_PID_WAIT s) while a start of an
        executor for that task is under way."""
        peer = executor_link.peer_credentials(writer.get_extra_info("socket"))
        if claimed not in self._executor_pids and claimed in self._watchers:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(LINK_PID_WAIT), self._executor_pid_known:
                    await self._executor_pid_known.wait_for(
                        lambda: claimed in self._executor_pids
                        or self._watchers.get(claimed) is None
                        or self._watchers[claimed].done())
        why = executor_link.refusal(peer, os.geteuid(), hello_pid,
                                    self._executor_pids.get(claimed))
        if why is None:
            return True
        executor_link.REFUSED.inc()
        # An executor of a task given up (one that outlived an agent that
        # never recorded it) is told to stop, or it would call again forever;
        # it is the only process such a message reaches.
        unwanted = self.core.executor_unwanted(claimed)
        log.warning("executor link refused", peer_pid=peer.pid if peer else None,
                    peer_uid=peer.uid if peer else None, framework_id=claimed[0],
                    task_id=claimed[1], claimed_pid=hello_pid, reason=why,
                    told_to_shut_down=unwanted)
        if unwanted:
            writer.write(framing.encode(executor_pb2.AgentToExecutor(
                shutdown=executor_pb2.AgentToExecutor.Shutdown())))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        return False

    async def _executor_connection(self, reader: asyncio.StreamReader,
                                   writer: asyncio.StreamWriter) -> None:
        key: Key | None = None
        try:
            while True:
                msg = await framing.read(reader, executor_pb2.ExecutorMessage)
                if msg is None:
                    return
                kind = msg.WhichOneof("message")
                if kind == "hello":
                    claimed = (msg.hello.framework_id, msg.hello.task_id)
                    if key is None and not await self._executor_link_allowed(
                            writer, claimed, msg.hello.pid):
                        return
                    if key is not None and claimed != key:
                        return  # one connection speaks for one task
                    key = claimed
                    self._writers[key] = writer
                    self.handle(ev.ExecutorHello(key, msg.hello.container_pid))
                    if writer.is_closing():  # refused: the core hung up on it
                        return
                elif kind == "update" and key is not None:
                    self.handle(ev.ExecutorUpdate(key, msg.update.status))
                    await writer.drain()
        except (framing.FrameError, ConnectionError) as e:
            log.warning("executor connection failed", error=str(e))
        finally:
            if key is not None and self._writers.get(key) is writer:
                del self._writers[key]
                self.handle(ev.ExecutorDisconnected(key))
            writer.close()


def task_uses_cni(task: AgentTask | None) -> bool:
    return task is not None and task.sandbox is not None and (
        task.sandbox / "network.json").exists()


def _tail(path: Path, limit: int = 400) -> str:
    """The executor log's last line when it says why the executor died (a
    traceback's last line, or a JSON log record of level error/critical: its
    message); "" otherwise (an executor killed by a signal logged nothing
    about it: its last record is an ordinary one, no explanation). The file
    is in the sandbox, which the task can write: only a regular file is read,
    never through a link, and only its end."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return ""
        data = os.pread(fd, limit, max(0, st.st_size - limit))
    except OSError:
        return ""
    finally:
        os.close(fd)
    lines = [ln for ln in data.decode(errors="replace").splitlines() if ln.strip()]
    if not lines:
        return ""
    try:
        record = json.loads(lines[-1])
    except ValueError:
        return lines[-1]
    if not isinstance(record, dict):
        return lines[-1]
    if record.get("level") in ("error", "critical", "exception"):
        return str(record.get("event") or record.get("message") or "")
    return ""
