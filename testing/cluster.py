"""An in-process cluster: the master's core and agents' cores in one process,
with fake executors, a fake registry and a fake clock.

    SimFramework ──calls──▶ MasterState ◀──AgentMessage── SimAgent (AgentState)
         ▲                      │ commands                      │ commands
         └──── events ──────────┴── MasterMessage ─────────────▶│──▶ FakeExecutor

Everything the real processes decide is decided here by the same pure code
(master/state.py, agent/state.py); only the shells are replaced: messages are
delivered by `settle()` until nothing is left to deliver, time passes only in
`advance()` (where the master pings its agents, as its ping loop does), a
registry is a dict, a checkpoint is a dict per agent, and an executor is a
FakeExecutor that says hello, reports RUNNING and obeys kills (a kill ends its
task KILLED after the grace period; a shutdown ends it at once).
Executors outlive their agent, as real ones do.

Faults a test can inject, none of which needs root or a wall clock:
- `agent.disconnect()` / `agent.cut()` (no reconnection until `heal()`) /
  `agent.reconnect()`: the agent's stream to the master;
- `agent.stop()` / `agent.start()` (a restart recovers from its checkpoint);
- `cluster.failover()`: a new master from the registry (every stream broken);
- `framework.disconnect()` / `framework.subscribe()`;
- `cluster.advance(seconds)`: timeouts (failover, agent health, grace periods).

The seam: no real processes, cgroups or network. The real-process tests
(tests/integration/) cover those; this one covers the decisions, fast.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

from juggler.agent import commands as ac
from juggler.agent import events as ev
from juggler.agent.state import AgentState
from juggler.common import task_states
from juggler.common.clock import FakeClock
from juggler.common.resources import Resources
from juggler.master import commands as mc
from juggler.master.agent_book import ping_slice, ping_slices
from juggler.master.allocator import Allocator
from juggler.master.state import MasterState, RegistrySnapshot
from juggler.v1 import (
    agent_pb2,
    common_pb2,
    executor_pb2,
    operator_pb2,
    registry_pb2,
    scheduler_pb2,
)

S = common_pb2.TaskState
Key = tuple[str, str]
DEFAULT_GRACE = 3.0



def sleep_task(task_id: str, grace: float = 0.0) -> common_pb2.TaskInfo:
    """A task for the simulated agents (0.5 CPU, 64 MB) whose kill policy
    gives it `grace` seconds between SIGTERM and SIGKILL."""
    info = common_pb2.TaskInfo(task_id=task_id, command=common_pb2.CommandInfo(argv=["sleep"]),
                               resources=Resources({"cpus": 0.5, "mem": 64}).to_proto())
    info.kill_policy.grace_period_seconds = grace
    return info


@dataclass
class SandboxRecord:
    """What a real agent keeps in a task's sandbox (agent/checkpoint.py)."""

    spec: executor_pb2.ExecutorSpec
    updates: list[common_pb2.TaskStatus] = field(default_factory=list)
    acked: set[bytes] = field(default_factory=set)
    done: bool = False


@dataclass
class FakeExecutor:
    """A task's executor: alive until its task ended and it was told to go (or
    told to shut down). It keeps every update until the agent acknowledges it
    and sends the unacknowledged ones again after reconnecting."""

    key: Key
    spec: executor_pb2.ExecutorSpec
    sandbox: Path
    alive: bool = True
    connected: bool = False
    state: int = S.TASK_STAGING
    unacked: list[common_pb2.TaskStatus] = field(default_factory=list)
    kill_at: float | None = None


class SimAgent:
    def __init__(self, cluster: Cluster, name: str, resources: Resources,
                 attributes: dict[str, str] | None = None) -> None:
        self.cluster = cluster
        self.name = name
        self.resources = resources
        self.attributes = attributes or {}
        self.core: AgentState | None = None
        self.agent_id = ""
        self.linked = False  # a registered stream to the master
        self.severed = False  # cut off: no reconnection until heal()
        self.sandboxes: dict[Path, SandboxRecord] = {}
        self.executors: dict[Key, FakeExecutor] = {}
        # Executors that start slowly say hello only when time passes (advance()):
        # their tasks stay STAGING meanwhile.
        self.slow_executors = False
        self._sandbox_seq = itertools.count()
        self.inbox: list[agent_pb2.MasterMessage] = []

    # -- process ---------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.core is not None

    def start(self) -> None:
        """Start (or restart) the agent: its core recovers from its checkpoint."""
        c = self.cluster
        self.core = AgentState(c.clock, hostname=self.name, resources=self.resources.to_proto(),
                               attributes=self.attributes, socket_path=f"/sim/{self.name}.sock",
                               cgroup_root=f"sim-{self.name}",
                               new_uuid=lambda: next(c.uuids))
        self.core.address = f"{self.name}:5051"
        recovered = tuple(
            ev.Recovered(sandbox=path, spec=rec.spec, updates=list(rec.updates),
                         acked=frozenset(rec.acked),
                         executor_alive=self._executor_at(path) is not None)
            for path, rec in self.sandboxes.items() if not rec.done)
        self._run(ev.Started(self.agent_id, recovered))
        for executor in self.executors.values():
            if executor.alive:
                self._connect_executor(executor)

    def stop(self) -> None:
        """The agent process ends (SIGTERM): its executors keep running."""
        if self.core is None:
            return
        if self.linked:
            self.cluster._agent_stream_ended(self)
        self.core = None
        self.linked = False
        for executor in self.executors.values():
            executor.connected = False

    # -- the stream ------------------------------------------------------------
    def disconnect(self) -> None:
        """The stream breaks; the agent dials again at the next settle()."""
        if self.linked:
            self.cluster._agent_stream_ended(self)

    def cut(self) -> None:
        """A partition: the stream breaks and cannot be made again until heal()."""
        self.severed = True
        self.disconnect()

    def reconnect(self) -> None:
        self.severed = False
        self.cluster._register(self)

    # -- executors -------------------------------------------------------------
    def _executor_at(self, sandbox: Path) -> FakeExecutor | None:
        return next((e for e in self.executors.values() if e.sandbox == sandbox and e.alive),
                    None)

    def _connect_executor(self, executor: FakeExecutor) -> None:
        if self.core is None or not executor.alive or executor.connected:
            return
        executor.connected = True
        self._run(ev.ExecutorHello(executor.key, container_pid=1000))
        if executor.state == S.TASK_STAGING:
            self.report(executor, S.TASK_RUNNING)
        for status in list(executor.unacked):
            self._run(ev.ExecutorUpdate(executor.key, status))

    def report(self, executor: FakeExecutor, state: int, reason: int = 0,
               message: str = "") -> None:
        """The executor reports a new state of its task."""
        status = common_pb2.TaskStatus(
            task_id=executor.key[1], framework_id=executor.key[0], state=state,
            reason=reason, message=message, source=common_pb2.SOURCE_EXECUTOR,
            uuid=next(self.cluster.uuids), timestamp=self.cluster.clock.time())
        executor.state = state
        executor.unacked.append(status)
        if executor.connected and self.core is not None:
            self._run(ev.ExecutorUpdate(executor.key, status))

    def finish(self, task_id: str, state: int = S.TASK_FINISHED) -> None:
        """The task ends by itself (its command exited)."""
        executor = next(e for e in self.executors.values() if e.key[1] == task_id and e.alive)
        self.report(executor, state, common_pb2.REASON_COMMAND_EXITED)

    def _exit(self, executor: FakeExecutor) -> None:
        executor.alive = False
        executor.connected = False
        if self.core is not None:
            self._run(ev.ExecutorExited(executor.key, code=0))

    def _to_executor(self, key: Key, message: executor_pb2.AgentToExecutor) -> None:
        executor = self.executors.get(key)
        if executor is None or not executor.alive or not executor.connected:
            return
        kind = message.WhichOneof("message")
        if kind == "ack":
            executor.unacked = [u for u in executor.unacked if u.uuid != message.ack.uuid]
        elif kind == "kill":
            if task_states.is_terminal(executor.state) or executor.kill_at is not None:
                return
            policy = message.kill.kill_policy
            grace = (policy.grace_period_seconds if policy.HasField("grace_period_seconds")
                     else DEFAULT_GRACE)
            self.report(executor, S.TASK_KILLING, common_pb2.REASON_TASK_KILLED)
            executor.kill_at = self.cluster.clock.now() + grace
            self.cluster._expire_kills()
        elif kind == "shutdown":
            if not task_states.is_terminal(executor.state):
                executor.state = S.TASK_KILLED  # killed at once; nobody waits for word of it
            self._exit(executor)

    # -- carrying out the core's commands ----------------------------------------
    def _run(self, *events: ev.Event) -> None:
        assert self.core is not None
        for command in self.core.handle(*events):
            self._carry_out(command)

    def _carry_out(self, command: ac.Command) -> None:
        if isinstance(command, ac.ToMaster):
            if self.linked:
                self.cluster._to_master(self, command.message)
        elif isinstance(command, ac.StartExecutor):
            sandbox = Path(f"/sim/{self.name}/{command.key[0]}/{command.key[1]}."
                           f"{next(self._sandbox_seq)}")
            self.sandboxes[sandbox] = SandboxRecord(spec=command.spec)
            self._run(ev.SandboxMade(command.key, sandbox))
            executor = FakeExecutor(command.key, command.spec, sandbox)
            self.executors[command.key] = executor
            if self.slow_executors:
                self.cluster._on_advance.append(lambda: self._connect_executor(executor))
            else:
                self.cluster._later.append(lambda: self._connect_executor(executor))
        elif isinstance(command, ac.PullImage):
            task = common_pb2.TaskInfo()
            task.CopyFrom(command.task)
            if not task.command.argv:
                task.command.argv.append("/bin/sh")
            self.cluster._later.append(lambda: self._run_if_up(ev.ImageReady(
                command.key, task, ("/sim/layer",), "sha256:sim")))
        elif isinstance(command, ac.ToExecutor):
            self._to_executor(command.key, command.message)
        elif isinstance(command, ac.CloseExecutor):
            executor = self.executors.get(command.key)
            if executor is not None:
                executor.connected = False
        elif isinstance(command, ac.CheckpointUpdate):
            self.sandboxes[command.sandbox].updates.append(command.status)
        elif isinstance(command, ac.CheckpointAck):
            self.sandboxes[command.sandbox].acked.add(command.uuid)
        elif isinstance(command, ac.MarkDone):
            self.sandboxes[command.sandbox].done = True
        elif isinstance(command, ac.SaveAgentId):
            self.agent_id = command.agent_id
        # CancelPull, ReleaseImage, DestroyCgroup, Log: nothing to do here.

    def _run_if_up(self, event: ev.Event) -> None:
        if self.core is not None:
            self._run(event)


class SimFramework:
    """A framework driving the master's core directly; it acknowledges every
    update it receives (as the SDK does) unless `auto_ack` is off."""

    def __init__(self, cluster: Cluster, name: str, *, failover_timeout: float = 60.0,
                 partition_aware: bool = False, auto_ack: bool = True,
                 roles: tuple[str, ...] = ()) -> None:
        self.cluster = cluster
        self.info = common_pb2.FrameworkInfo(name=name, failover_timeout=failover_timeout,
                                             roles=roles)
        if partition_aware:
            self.info.capabilities.append(common_pb2.FrameworkInfo.PARTITION_AWARE)
        self.auto_ack = auto_ack
        self.framework_id = ""
        self.stream_id = ""
        self.connected = False
        self.offers: dict[str, common_pb2.Offer] = {}
        self.updates: list[common_pb2.TaskStatus] = []
        self.errors: list[str] = []

    def subscribe(self) -> None:
        info = common_pb2.FrameworkInfo()
        info.CopyFrom(self.info)
        info.id = self.framework_id
        fid, sid, commands = self.cluster.master.subscribe(info)
        self.framework_id, self.stream_id, self.connected = fid, sid, True
        self.offers.clear()
        self.cluster._master_commands(commands)
        self.cluster.settle()

    def disconnect(self) -> None:
        if self.connected:
            self.connected = False
            self.offers.clear()
            self.cluster._master_commands(
                self.cluster.master.framework_disconnected(self.framework_id, self.stream_id))

    def call(self, method: str, *args: object) -> None:
        """A Scheduler API call on the master (raises CallError when refused)."""
        commands = getattr(self.cluster.master, method)(self.framework_id, self.stream_id, *args)
        self.cluster._master_commands(commands)
        self.cluster.settle()

    def launch(self, task: common_pb2.TaskInfo, agent: str | None = None) -> str:
        """Accept an offer (of `agent` if given) for `task`; returns the agent's name."""
        self.cluster.settle(allocate=True)
        needs = Resources.from_proto(task.resources)
        offer = next((o for o in self.offers.values()
                      if (agent is None or o.hostname == agent)
                      and Resources.from_proto(o.resources).contains(needs)), None)
        if offer is None:
            raise AssertionError(f"no offer for {self.info.name} (agent {agent})")
        del self.offers[offer.id]
        rest, self.offers = list(self.offers), {}
        if rest:
            self.call("decline", rest, common_pb2.Filters(refuse_seconds=0))
        self.call("accept", [offer.id], [scheduler_pb2.Operation(
            launch=scheduler_pb2.Operation.Launch(tasks=[task]))],
            common_pb2.Filters(refuse_seconds=0))
        return offer.hostname

    def decline_all(self, refuse_seconds: float) -> None:
        """Decline every offer held, not to be offered those agents again for
        `refuse_seconds`, as a framework with nothing to run does: the offers go
        round to the other frameworks."""
        held, self.offers = list(self.offers), {}
        if held:
            self.call("decline", held, common_pb2.Filters(refuse_seconds=refuse_seconds))

    def kill(self, task_id: str, grace: float | None = None, agent_id: str = "") -> None:
        policy = None
        if grace is not None:
            policy = common_pb2.KillPolicy(grace_period_seconds=grace)
        self.call("kill", task_id, policy, agent_id)

    def latest(self, task_id: str) -> int | None:
        """The latest state the framework was told of."""
        states = [u.state for u in self.updates if u.task_id == task_id]
        return states[-1] if states else None

    def _event(self, event: scheduler_pb2.Event) -> None:
        if not self.connected:
            return
        kind = event.WhichOneof("event")
        if kind == "offers":
            self.offers.update((o.id, o) for o in event.offers.offers)
        elif kind == "rescind":
            self.offers.pop(event.rescind.offer_id, None)
        elif kind == "update":
            status = event.update.status
            self.updates.append(status)
            if self.auto_ack and status.uuid:
                self.cluster._later.append(lambda: self._ack(status))
        elif kind == "error":
            self.errors.append(event.error.message)

    def _ack(self, status: common_pb2.TaskStatus) -> None:
        if not self.connected:
            return
        from juggler.master.commands import CallError, Code

        try:
            commands = self.cluster.master.acknowledge(self.framework_id, self.stream_id,
                                                       status.agent_id, status.task_id,
                                                       status.uuid)
        except CallError as e:
            # An update retried after the task completed, or a stream replaced
            # meanwhile, is refused, as with the real SDK; anything else is a bug.
            if e.code not in (Code.NOT_FOUND, Code.FAILED_PRECONDITION):
                self.errors.append(f"acknowledge {status.task_id}: {e.code.name} {e}")
            return
        self.cluster._master_commands(commands)


class Cluster:
    """A master, named agents and frameworks, all in this process."""

    def __init__(self, agents: dict[str, Resources] | list[str] | None = None, *,
                 agent_ping_timeout: float = 15.0, max_agent_ping_timeouts: int = 5,
                 agent_gone_timeout: float = 7 * 86400.0,
                 agent_reregister_timeout: float = 600.0, torn_down_kept: int = 100) -> None:
        self.clock = FakeClock()
        self.ids = (f"id{n:05d}" for n in itertools.count(1))
        self.uuids = (f"uuid{n}".encode() for n in itertools.count(1))
        self.registry: dict[str, bytes] = {}
        self.config = {"agent_ping_timeout": agent_ping_timeout,
                       "max_agent_ping_timeouts": max_agent_ping_timeouts,
                       "agent_gone_timeout": agent_gone_timeout,
                       "torn_down_kept": torn_down_kept}
        self.reregister_timeout = agent_reregister_timeout
        self.master = self._new_master()
        self._ping_origin = self.clock.now()  # when the master's ping loop started
        self._ping_slices_done = 0  # the slices of its pings sent so far
        self.frameworks: list[SimFramework] = []
        self.logs: list[mc.Log] = []
        self._later: list = []
        self._on_advance: list = []  # what waits for time to pass (slow executors)
        self._allocate = False
        if isinstance(agents, list):
            agents = {name: Resources({"cpus": 4, "mem": 4096}) for name in agents}
        self.agents: dict[str, SimAgent] = {
            name: SimAgent(self, name, res) for name, res in (agents or {}).items()}
        for agent in self.agents.values():
            agent.start()
            self._register(agent)
        self.settle()

    def _new_master(self) -> MasterState:
        return MasterState(self.clock, Allocator(self.clock), address="master:5050",
                           new_id=lambda: next(self.ids), **self.config)  # type: ignore[arg-type]

    # -- what a test drives -----------------------------------------------------
    def agent(self, name: str) -> SimAgent:
        return self.agents[name]

    def add_agent(self, name: str, resources: Resources | None = None,
                  attributes: dict[str, str] | None = None) -> SimAgent:
        agent = SimAgent(self, name, resources or Resources({"cpus": 4, "mem": 4096}),
                         attributes)
        self.agents[name] = agent
        agent.start()
        self._register(agent)
        self.settle()
        return agent

    def framework(self, name: str = "fw", **kw: object) -> SimFramework:
        fw = SimFramework(self, name, **kw)  # type: ignore[arg-type]
        self.frameworks.append(fw)
        fw.subscribe()
        return fw

    def operator(self, method: str, *args: object) -> None:
        """An Operator API call (drain_agent, up_agent, …) on the master's core."""
        self._master_commands(getattr(self.master, method)(*args))
        self.settle()

    def agent_id(self, name: str) -> str:
        return self.agents[name].agent_id

    def failover(self) -> None:
        """The leader dies; a new one starts from the registry. Every stream
        breaks: agents re-register, frameworks must subscribe again."""
        for agent in self.agents.values():
            agent.linked = False
            if agent.core is not None:
                agent._run(ev.MasterLost())
        for fw in self.frameworks:
            fw.connected = False
            fw.offers.clear()
        self.master = self._new_master()
        self._ping_origin, self._ping_slices_done = self.clock.now(), 0
        self.master.recover_registry(self._snapshot(), self.reregister_timeout)
        for agent in self.agents.values():
            if agent.running and not agent.severed:
                self._register(agent)
        self.settle()

    def advance(self, seconds: float, step: float = 1.0) -> None:
        """Time passes, in steps: the master's timeouts and pings, agents'
        retries and executors' grace periods each get their turn."""
        end = self.clock.now() + seconds
        while self.clock.now() < end:
            self.clock.advance(min(step, end - self.clock.now()))
            waiting, self._on_advance = self._on_advance, []
            for fn in waiting:
                fn()
            self._expire_kills()
            self._master_commands(self.master.tick())
            for agent in self.agents.values():
                if agent.core is not None:
                    agent._run(ev.Tick())
                    # A live agent whose stream broke dials again.
                    if not agent.linked and not agent.severed:
                        self._register(agent)
            self._ping_agents()
            self.settle()

    def heal(self) -> None:
        """Every fault repaired: agents running and linked, frameworks subscribed."""
        for agent in self.agents.values():
            agent.severed = False
            if not agent.running:
                agent.start()
            if not agent.linked:
                self._register(agent)
        for fw in self.frameworks:
            # Frameworks the master still has (not torn down: its id may be
            # forgotten once torn down long enough, and must not come back).
            if not fw.connected and fw.framework_id in self.master.frameworks:
                fw.subscribe()
        self.settle()

    def settle(self, allocate: bool = False) -> None:
        """Deliver everything until nothing is left to deliver."""
        self._allocate = self._allocate or allocate
        for _ in range(10_000):
            if self._later:
                work, self._later = self._later, []
                for fn in work:
                    fn()
                continue
            delivered = False
            for agent in self.agents.values():
                if agent.inbox and agent.core is not None and agent.linked:
                    inbox, agent.inbox = agent.inbox, []
                    for message in inbox:
                        agent._run(ev.FromMaster(message))
                    delivered = True
            if delivered:
                continue
            if self._allocate:
                self._allocate = False
                self._master_commands(self.master.allocate())
                continue
            return
        raise AssertionError("the cluster does not settle")

    # -- what tests check ---------------------------------------------------------
    def task(self, task_id: str, framework: SimFramework | None = None) -> int | None:
        """The master's state of a task (tracked or completed); None: unknown."""
        for (fid, tid), t in self.master.tasks.items():
            if tid == task_id and (framework is None or fid == framework.framework_id):
                return t.state
        done = [t for t in self.master.completed_tasks if t.info.task_id == task_id
                and (framework is None or t.framework_id == framework.framework_id)]
        return done[-1].state if done else None

    def executor_alive(self, task_id: str) -> bool:
        return any(e.alive for a in self.agents.values() for k, e in a.executors.items()
                   if k[1] == task_id)

    def agent_view(self, name: str) -> tuple[int, int]:
        """(connectivity, maintenance) of an agent at the master."""
        entry = self.master.agents[self.agents[name].agent_id]
        return entry.state, entry.maintenance

    def validate(self) -> None:
        self.master.validate_state()
        for agent in self.agents.values():
            if agent.core is not None:
                agent.core.validate_state()

    # -- plumbing -------------------------------------------------------------------
    def _snapshot(self) -> RegistrySnapshot:
        def records(prefix: str, kind: type) -> list:
            return [kind.FromString(v) for k, v in sorted(self.registry.items())
                    if k.startswith(prefix)]

        return RegistrySnapshot(
            agents=records("agents/", operator_pb2.AgentView),
            frameworks=records("frameworks/", common_pb2.FrameworkInfo),
            torn_down=records("torn_down/", common_pb2.FrameworkInfo),
            kills=records("kills/", registry_pb2.KillRecord),
            roles=records("roles/", registry_pb2.RoleConfig))

    def _register(self, agent: SimAgent) -> None:
        if agent.core is None or agent.severed:
            return
        if agent.linked:
            self._agent_stream_ended(agent)
        message = agent.core.registration()
        try:
            if message.HasField("register"):
                agent_id, commands = self.master.register_agent(message.register.agent)
            else:
                rr = message.reregister
                agent_id, commands = self.master.reregister_agent(rr.agent, rr.tasks,
                                                                  rr.running)
        except mc.CallError as e:
            from juggler.master.entries import AgentGone

            if isinstance(e, AgentGone):
                agent._run(ev.FromMaster(agent_pb2.MasterMessage(
                    shutdown=agent_pb2.MasterMessage.Shutdown(message=e.message))))
                self._later.append(lambda: self._register(agent))
                return
            raise
        agent.linked = True
        agent.agent_id = agent_id
        self._master_commands(commands)

    def _agent_stream_ended(self, agent: SimAgent) -> None:
        agent.linked = False
        agent.inbox.clear()
        if agent.core is not None:
            agent._run(ev.MasterLost())
        if agent.agent_id:
            self._master_commands(self.master.agent_disconnected(agent.agent_id))

    def _to_master(self, agent: SimAgent, message: agent_pb2.AgentMessage) -> None:
        kind = message.WhichOneof("message")
        self.master.agent_seen(agent.agent_id)
        if kind == "status_update":
            commands = self.master.status_update(agent.agent_id, message.status_update.status,
                                                 message.status_update.latest_state)
            self._later.append(lambda: self._master_commands(commands))

    def _master_commands(self, commands: list[mc.Command]) -> None:
        for command in commands:
            if isinstance(command, mc.ToAgent):
                agent = next((a for a in self.agents.values()
                              if a.agent_id == command.agent_id and a.linked), None)
                if agent is not None:
                    agent.inbox.append(command.message)
            elif isinstance(command, mc.ToFramework):
                fw = next((f for f in self.frameworks
                           if f.framework_id == command.framework_id), None)
                if fw is not None:
                    fw._event(command.event)
            elif isinstance(command, mc.CloseStream):
                fw = next((f for f in self.frameworks if f.framework_id == command.framework_id
                           and f.stream_id == command.stream_id), None)
                if fw is not None:
                    fw.connected = False
                    fw.offers.clear()
            elif isinstance(command, mc.CloseAgentStream):
                agent = next((a for a in self.agents.values()
                              if a.agent_id == command.agent_id and a.linked), None)
                if agent is not None:
                    agent.linked = False
                    agent.inbox.clear()
                    if agent.core is not None:
                        agent._run(ev.MasterLost())
            elif isinstance(command, mc.Persist):
                if command.value is None:
                    self.registry.pop(command.key, None)
                else:
                    self.registry[command.key] = command.value
            elif isinstance(command, mc.Allocate):
                self._allocate = True
            elif isinstance(command, mc.Log):
                self.logs.append(command)

    def _ping_agents(self) -> None:
        """The master's ping loop (master/server.py `_ping_loop`): every agent
        with a stream is pinged once per ping timeout, in its slice of it (a
        slice every PING_SLICE seconds; the agent's: agent_book.ping_slice).
        The agent's core answers with a heartbeat, which proves it alive. An
        agent cut off, stopped or between two streams is not pinged, falls
        silent and becomes UNREACHABLE in time, as a real one does."""
        timeout = float(self.config["agent_ping_timeout"])
        slices = ping_slices(timeout)
        due = int((self.clock.now() - self._ping_origin) * slices / timeout + 1e-9)
        passed = range(self._ping_slices_done, due)  # slice k pings the agents of k % slices
        if not passed:
            return
        self._ping_slices_done = due
        hit = {k % slices for k in passed} if len(passed) < slices else set(range(slices))
        for agent in self.agents.values():
            if (agent.linked and agent.core is not None
                    and ping_slice(agent.agent_id, slices) in hit):
                agent.inbox.append(agent_pb2.MasterMessage(
                    heartbeat=agent_pb2.MasterMessage.Heartbeat()))

    def _expire_kills(self) -> None:
        """Executors whose kill grace period is over end their task KILLED."""
        now = self.clock.now()
        for agent in self.agents.values():
            for executor in list(agent.executors.values()):
                if (executor.alive and executor.kill_at is not None and now >= executor.kill_at
                        and not task_states.is_terminal(executor.state)):
                    agent.report(executor, S.TASK_KILLED, common_pb2.REASON_TASK_KILLED)
