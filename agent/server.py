"""The agent process: registers with the master, launches executors, relays updates.

    master ◀──Connect stream──▶ agent ◀──Unix socket (executor.proto)──▶ executor
                                  │
                                  └── Agent API (gRPC): task logs, state

One asyncio loop. The agent dials the master and reconnects with backoff and
jitter when the stream breaks; executors live in their own sessions and keep
their tasks running whatever happens to the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from prometheus_client import Counter, Gauge

from juggler.agent import checkpoint
from juggler.agent.standby_stream import STANDBY_DELAY, StandbyStream, outgoing, standby_delay
from juggler.agent.status_updates import FIRST_RETRY, StatusUpdateManager
from juggler.common import batching, framing, logs, servers, task_states
from juggler.common.leader import LeaderFollower, backoff, from_standby, leader_of
from juggler.common.resources import Resources
from juggler.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    common_pb2,
    executor_pb2,
)

log = logs.get("juggler.agent")
S = common_pb2.TaskState

LAUNCHED = Counter("juggler_agent_tasks_launched_total", "Executors started")
UPDATES = Counter("juggler_agent_status_updates_total", "Status updates sent to the master",
                  ["state"])
RUNNING = Gauge("juggler_agent_tasks_active", "Tasks not yet terminal on this agent")
CONNECTED = Gauge("juggler_agent_master_connected", "1 while the master stream is up")


@dataclass
class AgentConfig:
    master: str
    work_dir: Path
    resources: Resources
    host: str = "0.0.0.0"
    port: int = 5051
    advertise_ip: str = ""
    hostname: str = ""
    metrics_port: int = 5056
    status_update_retry: float = FIRST_RETRY
    standby_delay: float = STANDBY_DELAY  # agent/standby_stream.py
    cgroup_root: str = "juggler"
    # Images (images/): registries spoken to over plain http (loopback
    # ones always are), and a Docker config.json with registry credentials.
    insecure_registries: tuple[str, ...] = ()
    registry_config: str = ""
    # Start executors by forking a pre-started zygote (agent/launcher.py)
    # rather than a fresh interpreter each.
    launcher: bool = True


@dataclass
class AgentTask:
    framework: common_pb2.FrameworkInfo
    info: common_pb2.TaskInfo
    sandbox: Path
    state: int = S.TASK_STAGING
    process: asyncio.subprocess.Process | None = None
    writer: asyncio.StreamWriter | None = None
    kill: agent_pb2.MasterMessage.KillTask | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    terminal_acked: bool = False
    watcher: asyncio.Task[None] | None = None
    # The task's pid 1 in the host's pid namespace (from the executor's hello;
    # 0 until it runs): exec enters its namespaces.
    container_pid: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.framework.id, self.info.task_id)


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
        self.agent_id = ""
        self.tasks: dict[tuple[str, str], AgentTask] = {}
        self.updates = StatusUpdateManager(first_retry=config.status_update_retry)
        self.hostname = config.hostname or socket.gethostname()
        self.address = ""
        self.socket_path = self.work_dir / "agent.sock"
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
        self.server: grpc.aio.Server | None = None
        self._unix: asyncio.AbstractServer | None = None
        self.metrics_port = 0
        from juggler.agent.image_tasks import ImageTasks
        self.images = ImageTasks(self)
        self.launcher: Any = None  # agent/launcher.py's Launcher when config.launcher
        # Counted when scraped, not on every update (O(tasks) each: quadratic
        # when a thousand tasks start at once).
        RUNNING.set_function(lambda: sum(
            1 for t in self.tasks.values() if not task_states.is_terminal(t.state)))

    # -- life cycle ----------------------------------------------------------
    async def start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        id_file = self.work_dir / "agent_id"
        if id_file.exists():
            self.agent_id = id_file.read_text().strip()
        if self.socket_path.exists():
            self.socket_path.unlink()
        self._recover()
        self.images.recover()
        if self.config.launcher:
            from juggler.agent.launcher import Launcher

            self.launcher = Launcher(self.work_dir / "launcher.sock",
                                     self.work_dir / "launcher.log")
            await self.launcher.start()
        self._unix = await asyncio.start_unix_server(self._executor_connection,
                                                     path=str(self.socket_path))
        server = servers.new_server()
        from juggler.agent.api import AgentServicer

        agent_pb2_grpc.add_AgentServicer_to_server(AgentServicer(self), server)
        await servers.add_health_and_reflection(
            server, [agent_pb2.DESCRIPTOR.services_by_name["Agent"].full_name])
        port = server.add_insecure_port(f"{self.config.host}:{self.config.port}")
        if port == 0:
            raise OSError(f"cannot listen on {self.config.host}:{self.config.port}")
        await server.start()
        self.server = server
        ip = self.config.advertise_ip or (
            self.config.host if self.config.host not in ("0.0.0.0", "")
            else _local_ip_towards(self.config.master.split(",")[0]))
        self.address = f"{ip}:{port}"
        if self.config.metrics_port >= 0:
            from juggler.common import metrics
            self.metrics_port = metrics.serve(self.config.host, self.config.metrics_port)
        self._bg = [asyncio.create_task(self._master_loop()),
                    asyncio.create_task(self._update_loop())]
        log.info("agent started", address=self.address, work_dir=str(self.work_dir),
                 resources=str(self.config.resources), metrics_port=self.metrics_port)

    def _recover(self) -> None:
        """Find the tasks of a previous run of this agent (design.md: executors
        outlive their agent) and carry on with them."""
        now = time.monotonic()
        for rec in checkpoint.recover(self.work_dir):
            task = AgentTask(framework=rec.spec.framework, info=rec.spec.task,
                             sandbox=rec.sandbox, state=rec.state)
            self.tasks[task.key] = task
            for status in rec.pending:
                self.updates.add(status, now)
            tlog = log.bind(framework_id=task.framework.id, task_id=task.info.task_id)
            if rec.executor_pid is not None:
                tlog.info("recovered a running executor", pid=rec.executor_pid,
                          state=task_states.name(task.state))
                task.watcher = asyncio.create_task(self._watch_pid(task, rec.executor_pid))
                continue
            task.finished.set()
            self._destroy_cgroup(rec.spec.cgroup)
            if not task_states.is_terminal(task.state):
                tlog.warning("the executor died while the agent was down")
                self._agent_update(task.framework.id, task.info.task_id, S.TASK_FAILED,
                                   common_pb2.REASON_EXECUTOR_TERMINATED,
                                   "the executor exited while the agent was down")
            elif not rec.pending:
                checkpoint.mark_done(rec.sandbox)
                task.terminal_acked = True

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

    async def _watch_pid(self, task: AgentTask, pid: int) -> None:
        """Wait for an executor that is not our child (recovered) to exit."""
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
        self._executor_gone(task, None)

    def _executor_gone(self, task: AgentTask, code: int | None) -> None:
        if task.info.container.image:
            self.images.release(task.key)
        if not task_states.is_terminal(task.state):
            log.warning("executor exited before its task ended", task_id=task.info.task_id,
                        exit_code=code)
            tail = _tail(task.sandbox / "executor.log")
            how = f"with status {code}" if code is not None else ""
            self._agent_update(task.framework.id, task.info.task_id, S.TASK_FAILED,
                               common_pb2.REASON_EXECUTOR_TERMINATED,
                               f"the executor exited {how} before its task ended".replace(
                                   "  ", " ") + (f": {tail}" if tail else ""))
            self._destroy_cgroup(self.cgroup_of(*task.key))
        task.finished.set()

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
        if self.server is not None:
            await self.server.stop(grace=0.5)

    async def kill_all_tasks(self, timeout: float = 15.0) -> None:
        """Kill every task (used by `juggler up` on shutdown) and wait for them."""
        for task in list(self.tasks.values()):
            if not task_states.is_terminal(task.state):
                await self._kill(task, agent_pb2.MasterMessage.KillTask(
                    framework_id=task.framework.id, task_id=task.info.task_id,
                    kill_policy=task.info.kill_policy))
        waits = [t.finished.wait() for t in self.tasks.values() if t.watcher is not None]
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
            finally:
                registered = self._registered.is_set()
                CONNECTED.set(0)
                self._outbox = None
                self._registered.clear()
            await asyncio.sleep(follower.ended(time.monotonic(), answered=answered,
                                               leader=leader, registered=registered))

    def _register_message(self) -> agent_pb2.AgentMessage:
        info = common_pb2.AgentInfo(id=self.agent_id, hostname=self.hostname,
                                    resources=self.config.resources.to_proto(),
                                    address=self.address)
        if not self.agent_id:
            return agent_pb2.AgentMessage(register=agent_pb2.AgentMessage.Register(
                agent=info, version="0.1.0"))
        rr = agent_pb2.AgentMessage.Reregister(agent=info, version="0.1.0")
        for task in self.tasks.values():
            if task.terminal_acked:
                continue
            rr.running.append(agent_pb2.AgentMessage.RunningTask(task=task.info,
                                                                 framework=task.framework))
            rr.tasks.append(common_pb2.TaskStatus(task_id=task.info.task_id, state=task.state,
                                                  framework_id=task.framework.id,
                                                  agent_id=self.agent_id))
        return agent_pb2.AgentMessage(reregister=rr)

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
            self.agent_id = msg.registered.agent_id
            if self._follower is not None:
                self._follower.follow_succession(msg.registered.masters)
            (self.work_dir / "agent_id").write_text(self.agent_id)
            self._outbox = outbox
            CONNECTED.set(1)
            self._registered.set()
            self.updates.resend_all(time.monotonic())
            self._wake_updates.set()
            log.info("registered with master", master=address, agent_id=self.agent_id)
            await self._stand_by(address)
        elif kind == "run_task":
            if msg.run_task.task.container.image:  # pulled beside the stream, then launched
                self.images.launch(msg.run_task.framework, msg.run_task.task)
            else:
                await self._launch(msg.run_task.framework, msg.run_task.task)
        elif kind == "kill_task":
            task = self.tasks.get((msg.kill_task.framework_id, msg.kill_task.task_id))
            if task is None and self.images.kill((msg.kill_task.framework_id,
                                                  msg.kill_task.task_id)):
                pass
            elif task is None:
                # The master thinks it runs here but it does not: tell it so.
                self._agent_update(msg.kill_task.framework_id, msg.kill_task.task_id,
                                   S.TASK_LOST, common_pb2.REASON_TASK_UNKNOWN,
                                   "the agent has no such task")
            else:
                await self._kill(task, msg.kill_task)
        elif kind == "acknowledgement":
            ack = msg.acknowledgement
            if self.updates.acknowledge(ack.framework_id, ack.task_id, ack.uuid,
                                        time.monotonic()):
                acked = self.tasks.get((ack.framework_id, ack.task_id))
                if acked is not None:
                    checkpoint.append_ack(acked.sandbox, ack.uuid)
                self._wake_updates.set()
                self._maybe_release(ack.framework_id, ack.task_id)
        elif kind == "heartbeat":
            outbox.put_nowait(agent_pb2.AgentMessage(heartbeat=agent_pb2.AgentMessage.Heartbeat()))
        elif kind == "shutdown":
            # The master declared this agent GONE: its tasks were reported gone, so
            # kill them, forget the old id and register as a new agent.
            log.error("master says this agent is gone; killing its tasks and registering "
                      "afresh", reason=msg.shutdown.message)
            await self.kill_all_tasks()
            self.tasks.clear()
            self.updates = StatusUpdateManager(first_retry=self.config.status_update_retry)
            self.agent_id = ""
            (self.work_dir / "agent_id").unlink(missing_ok=True)

    # -- status updates ----------------------------------------------------------
    def _record(self, status: common_pb2.TaskStatus) -> None:
        """Take an update: checkpoint it, then queue it for the master."""
        task = self.tasks.get((status.framework_id, status.task_id))
        if task is not None:
            checkpoint.append_update(task.sandbox, status)
            if not task_states.is_terminal(task.state):
                task.state = status.state
        if self.updates.add(status, time.monotonic()):
            self._wake_updates.set()

    def _agent_update(self, framework_id: str, task_id: str, state: int, reason: int,
                      message: str, exit_code: int | None = None) -> None:
        status = common_pb2.TaskStatus(
            task_id=task_id, framework_id=framework_id, agent_id=self.agent_id, state=state,
            reason=reason, message=message, source=common_pb2.SOURCE_AGENT,
            uuid=uuid.uuid4().bytes, timestamp=time.time())
        if exit_code is not None:
            status.exit_code = exit_code
        self._record(status)

    async def _update_loop(self) -> None:
        while True:
            outbox = self._outbox
            if outbox is not None:
                for status in self.updates.due(time.monotonic()):
                    UPDATES.labels(state=task_states.name(status.state)).inc()
                    outbox.put_nowait(agent_pb2.AgentMessage(
                        status_update=agent_pb2.AgentMessage.StatusUpdate(status=status)))
            nxt = self.updates.next_due()
            timeout = 1.0 if nxt is None else max(0.0, min(1.0, nxt - time.monotonic()))
            self._wake_updates.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_updates.wait(), timeout)

    def _maybe_release(self, framework_id: str, task_id: str) -> None:
        """A terminal task whose updates are all acknowledged: let its executor go."""
        task = self.tasks.get((framework_id, task_id))
        if task is None or not task_states.is_terminal(task.state):
            return
        if self.updates.pending(framework_id, task_id) == 0:
            task.terminal_acked = True
            checkpoint.mark_done(task.sandbox)
            if task.writer is not None:
                self._send_executor(task, executor_pb2.AgentToExecutor(
                    shutdown=executor_pb2.AgentToExecutor.Shutdown()))

    # -- executors ---------------------------------------------------------------
    def cgroup_of(self, framework_id: str, task_id: str) -> str:
        return f"{self.config.cgroup_root}/{framework_id}.{task_id}"

    def sandbox_of(self, framework_id: str, task_id: str) -> Path:
        return self.work_dir / "frameworks" / framework_id / "tasks" / task_id

    async def _launch(self, framework: common_pb2.FrameworkInfo,
                      info: common_pb2.TaskInfo,
                      image: tuple[common_pb2.TaskInfo, list[str], str] | None = None) -> None:
        """`image`: for a task naming an image (images/tasks.py), the task with the
        image's config resolved into its command, the layers (top first), the id."""
        key = (framework.id, info.task_id)
        tlog = log.bind(framework_id=framework.id, task_id=info.task_id)
        existing = self.tasks.get(key)
        if existing is not None and not task_states.is_terminal(existing.state):
            tlog.warning("task already running here; launch ignored")
            return
        sandbox = self.sandbox_of(*key)
        if sandbox.exists():  # a reused task id: keep the old run's files apart
            sandbox.rename(sandbox.with_name(f"{info.task_id}.{int(time.time() * 1000)}"))
        sandbox.mkdir(parents=True)
        task = AgentTask(framework=framework, info=info, sandbox=sandbox)
        self.tasks[key] = task
        spec = executor_pb2.ExecutorSpec(
            framework=framework, task=info if image is None else image[0],
            agent_id=self.agent_id,
            agent_socket=str(self.socket_path),
            cgroup=self.cgroup_of(*key))
        if image is not None:
            spec.layers.extend(image[1])
            spec.image_id = image[2]
        checkpoint.write_spec(sandbox, spec)
        if self.launcher is not None:
            from juggler.agent.launcher import LauncherUnavailable

            try:
                pid = await self.launcher.spawn(sandbox)
            except LauncherUnavailable as e:
                tlog.warning("executor launcher unavailable; starting a fresh executor",
                             error=str(e))
            else:
                # Not our child (double-forked): watched through a pidfd, as
                # a recovered executor is.
                checkpoint.write_pid(sandbox, pid)
                LAUNCHED.inc()
                tlog.info("executor started", pid=pid, sandbox=str(sandbox), launcher=True)
                task.watcher = asyncio.create_task(self._watch_pid(task, pid))
                return
        logfile = open(sandbox / "executor.log", "ab")  # noqa: SIM115
        try:
            task.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "juggler.executor", "--sandbox", str(sandbox),
                stdin=asyncio.subprocess.DEVNULL, stdout=logfile, stderr=logfile,
                start_new_session=True, cwd=str(sandbox))
        except OSError as e:
            tlog.error("executor failed to start", error=str(e))
            self._agent_update(*key, S.TASK_FAILED, common_pb2.REASON_CONTAINER_LAUNCH_FAILED,
                               f"the executor failed to start: {e}")
            task.finished.set()
            return
        finally:
            logfile.close()
        checkpoint.write_pid(sandbox, task.process.pid)
        LAUNCHED.inc()
        tlog.info("executor started", pid=task.process.pid, sandbox=str(sandbox))
        task.watcher = asyncio.create_task(self._watch_executor(task))

    async def _watch_executor(self, task: AgentTask) -> None:
        assert task.process is not None
        code = await task.process.wait()
        self._executor_gone(task, code)

    async def _kill(self, task: AgentTask, kill: agent_pb2.MasterMessage.KillTask) -> None:
        task.kill = kill
        if task.writer is not None:
            self._send_executor(task, executor_pb2.AgentToExecutor(
                kill=executor_pb2.AgentToExecutor.Kill(kill_policy=kill.kill_policy)))
        # Otherwise it is sent when the executor says hello.

    def _send_executor(self, task: AgentTask, message: executor_pb2.AgentToExecutor) -> None:
        if task.writer is not None and not task.writer.is_closing():
            task.writer.write(framing.encode(message))

    async def _executor_connection(self, reader: asyncio.StreamReader,
                                   writer: asyncio.StreamWriter) -> None:
        task: AgentTask | None = None
        try:
            while True:
                msg = await framing.read(reader, executor_pb2.ExecutorMessage)
                if msg is None:
                    return
                kind = msg.WhichOneof("message")
                if kind == "hello":
                    task = self.tasks.get((msg.hello.framework_id, msg.hello.task_id))
                    if task is None:
                        # Not ours (any more): its task was reported gone. Stop it, as
                        # Mesos's agent shuts down executors it does not know.
                        log.warning("unknown executor said hello; shutting it down",
                                    task_id=msg.hello.task_id)
                        writer.write(framing.encode(executor_pb2.AgentToExecutor(
                            shutdown=executor_pb2.AgentToExecutor.Shutdown())))
                        await writer.drain()
                        return
                    task.writer = writer
                    task.container_pid = msg.hello.container_pid
                    if task.kill is not None:
                        await self._kill(task, task.kill)
                    if task.terminal_acked:
                        self._send_executor(task, executor_pb2.AgentToExecutor(
                            shutdown=executor_pb2.AgentToExecutor.Shutdown()))
                elif kind == "update" and task is not None:
                    status = msg.update.status
                    status.agent_id = self.agent_id
                    self._record(status)
                    writer.write(framing.encode(executor_pb2.AgentToExecutor(
                        ack=executor_pb2.AgentToExecutor.Ack(uuid=status.uuid))))
                    await writer.drain()
        except (framing.FrameError, ConnectionError) as e:
            log.warning("executor connection failed", error=str(e))
        finally:
            if task is not None and task.writer is writer:
                task.writer = None
            writer.close()

    # -- state for the Agent API -------------------------------------------------
    def find_task(self, task_id: str, framework_id: str = "") -> AgentTask | None:
        if framework_id:
            return self.tasks.get((framework_id, task_id))
        for (_, tid), task in self.tasks.items():
            if tid == task_id:
                return task
        return None

    def find_sandbox(self, task_id: str, framework_id: str = "") -> Path | None:
        task = self.find_task(task_id, framework_id)
        if task is not None:
            return task.sandbox
        root = self.work_dir / "frameworks"
        pattern = f"{framework_id or '*'}/tasks/{task_id}"
        found = sorted(root.glob(pattern), key=lambda p: p.stat().st_mtime)
        return found[-1] if found else None


def _tail(path: Path, limit: int = 400) -> str:
    try:
        data = path.read_bytes()[-limit:]
    except OSError:
        return ""
    lines = [ln for ln in data.decode(errors="replace").splitlines() if ln.strip()]
    return lines[-1] if lines else ""
