"""The agent's pure core: its tasks, their executors and status updates.

As dask's WorkerState.handle_stimulus: `handle(event) -> commands`,
synchronous, no I/O, time from an injected clock and uuids from an injected
source. The shell (agent/server.py) turns the world into events
(agent/events.py) and carries out the commands (agent/commands.py); everything
the agent decides is here:

- a task to launch: pull its image first (PULLING) or start its executor;
  refused (TASK_FAILED) when it names a writable layer another live task of
  its framework uses here (one task mounts a layer at a time);
- a signal for a task (Agent.Signal): passed to its executor;
- a task over a limit the agent enforces (ev.LimitTask, agent/port_watch.py):
  killed at once, its end reported as TASK_FAILED with the limit's reason;
- a kill: held for the executor until it can take it, a pull cancelled, or
  TASK_LOST for a task the agent does not have;
- an executor's hello, update (checkpointed, then acknowledged to it), exit
  (TASK_FAILED if its task had not ended, its cgroup removed);
- what it finds at start: executors alive go on, dead ones fail their task;
- registration: what a re-registration reports; the status updates due for
  the master, re-sent until acknowledged (agent/status_updates.py), in order
  per task; an executor released once its task ended and all is acknowledged;
- a master that says this agent is GONE: kill everything, forget it, register
  as a new agent.

Each task's executor moves through the EXECUTOR lifecycle (agent/executors.py);
each task's state through the task table (common/task_states.py) in `_task_move`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from juggler.agent import commands as c
from juggler.agent import events as ev
from juggler.agent.executors import EXECUTOR
from juggler.agent.status_updates import FIRST_RETRY, StatusUpdateManager
from juggler.common import task_states
from juggler.common.clock import Clock
from juggler.common.enums import plain
from juggler.common.lifecycle import Step, new_story
from juggler.v1 import agent_pb2, common_pb2, executor_pb2

S = task_states.S
E = plain(agent_pb2.ExecutorState)
Key = tuple[str, str]
VERSION = "0.1.0"


@dataclass
class AgentTask:
    """A task on this agent. `info` is the task as its framework sent it;
    `spec` what its executor was started with (the image's config resolved,
    the layers), once it was."""

    framework: common_pb2.FrameworkInfo
    info: common_pb2.TaskInfo
    # The latest state recorded (only _task_move changes it).
    state: int = S.TASK_STAGING
    # The executor's lifecycle (EXECUTOR; only EXECUTOR.move/begin change it).
    executor: int = E.EXECUTOR_STATE_UNSPECIFIED
    story: object = field(default_factory=new_story)
    spec: executor_pb2.ExecutorSpec | None = None
    sandbox: Path | None = None
    # A kill from the master, held for the executor until it can take it.
    kill: agent_pb2.MasterMessage.KillTask | None = None
    # (reason, message) of a limit the agent killed it for (ev.LimitTask): its
    # terminal update says so, whatever its executor reports.
    limitation: tuple[int, str] | None = None
    # A RunTask reusing this task's id, waiting for this executor to exit.
    relaunch: tuple[common_pb2.FrameworkInfo, common_pb2.TaskInfo] | None = None
    terminal_acked: bool = False
    # The task's pid 1 in the host's pid namespace (from the executor's hello).
    container_pid: int = 0
    # Seconds since the epoch when the agent got it (0: unknown).
    launched_time: float = 0.0

    @property
    def key(self) -> Key:
        return (self.framework.id, self.info.task_id)

    @property
    def exited(self) -> bool:
        return self.executor == E.EXECUTOR_EXITED

    @property
    def cgroup(self) -> str:
        """Its cgroup, as its executor was started with it ("" before)."""
        return self.spec.cgroup if self.spec is not None else ""


class AgentState:
    """One agent's tasks. `socket_path` is what executors dial (written into
    their spec), `cgroup_root` the parent of the tasks' cgroups,
    `first_retry` the first re-send interval of an unacknowledged update
    (seconds; Mesos's 10)."""

    def __init__(self, clock: Clock, *, hostname: str, resources: list[common_pb2.Resource],
                 attributes: dict[str, str] | None = None, socket_path: str = "",
                 cgroup_root: str = "juggler", first_retry: float = FIRST_RETRY,
                 new_uuid: Callable[[], bytes]) -> None:
        self.clock = clock
        self.hostname = hostname
        self.resources = list(resources)
        self.attributes = dict(attributes or {})
        self.address = ""
        self.metrics_address = ""  # host:port of its /metrics ("" when disabled)
        self.socket_path = socket_path
        self.cgroup_root = cgroup_root
        self.first_retry = first_retry
        self.new_uuid = new_uuid
        self.agent_id = ""
        self.connected = False
        self.tasks: dict[Key, AgentTask] = {}
        self.updates = StatusUpdateManager(first_retry=first_retry)
        self._handlers: dict[type, Callable[..., list[c.Command]]] = {
            ev.Started: self._started, ev.FromMaster: self._from_master,
            ev.MasterLost: self._master_lost, ev.SandboxMade: self._sandbox_made,
            ev.ExecutorFailedToStart: self._executor_failed_to_start,
            ev.ExecutorHello: self._executor_hello, ev.ExecutorUpdate: self._executor_update,
            ev.ExecutorDisconnected: self._executor_disconnected,
            ev.ExecutorExited: self._executor_exited, ev.ImagePulling: self._image_pulling,
            ev.ImageReady: self._image_ready, ev.ImageFailed: self._image_failed,
            ev.SignalTask: self._signal_task, ev.LimitTask: self._limit_task,
            ev.Tick: self._tick,
        }

    def handle(self, *events: ev.Event) -> list[c.Command]:
        """Every event in order; the commands for all of them, in order."""
        out: list[c.Command] = []
        for event in events:
            out += self._handlers[type(event)](event)
        return out

    # -- queries ----------------------------------------------------------------
    def executor_unwanted(self, key: Key) -> bool:
        """Whether an executor speaking for `key` is to shut down rather than
        be refused and left to retry: this agent knows no such task, or saw
        its executor end (Mesos's agent shuts down executors it does not
        know). A task whose executor is still to start is not one."""
        task = self.tasks.get(key)
        return task is None or task.exited

    def cgroup_of(self, key: Key) -> str:
        """The cgroup a task launched now gets (a task already started keeps
        the one in its spec, whatever --cgroup-root is now: AgentTask.cgroup)."""
        return f"{self.cgroup_root}/{key[0]}.{key[1]}"

    def registration(self) -> agent_pb2.AgentMessage:
        """The first message of a stream to the master: register (no id yet) or
        re-register with every task not yet done with (its latest state; for
        one that ended, the update the master gets next)."""
        info = common_pb2.AgentInfo(id=self.agent_id, hostname=self.hostname,
                                    resources=self.resources, address=self.address,
                                    attributes=self.attributes,
                                    metrics_address=self.metrics_address)
        if not self.agent_id:
            return agent_pb2.AgentMessage(register=agent_pb2.AgentMessage.Register(
                agent=info, version=VERSION))
        rr = agent_pb2.AgentMessage.Reregister(agent=info, version=VERSION)
        for task in self.tasks.values():
            if task.terminal_acked:
                continue
            running = agent_pb2.AgentMessage.RunningTask(
                task=task.info, framework=task.framework, launched_time=task.launched_time)
            head = self.updates.head(*task.key)
            if head is not None and task_states.is_terminal(task.state):
                # The update the master gets next: a new leader holds the ended
                # task with it (master/reregistration.py).
                running.next_update.CopyFrom(head)
            rr.running.append(running)
            status = common_pb2.TaskStatus(task_id=task.info.task_id, state=task.state,
                                           framework_id=task.framework.id,
                                           agent_id=self.agent_id,
                                           source=common_pb2.SOURCE_AGENT,
                                           timestamp=self.clock.time())
            if task.container_pid and not task_states.is_terminal(task.state):
                status.pid = task.container_pid  # a new leader learns it too
            rr.tasks.append(status)
        return agent_pb2.AgentMessage(reregister=rr)

    def next_due(self) -> float | None:
        """When (clock.now() seconds) an update is next due; None: none queued."""
        return self.updates.next_due()

    def find(self, task_id: str, framework_id: str = "") -> AgentTask | None:
        if framework_id:
            return self.tasks.get((framework_id, task_id))
        return next((t for (_, tid), t in self.tasks.items() if tid == task_id), None)

    def layer_user(self, framework_id: str, name: str) -> AgentTask | None:
        """The live (not terminal) task of `framework_id` that uses the
        writable layer `name`, if one does. A task that ended holds its layer
        no more: its container's processes, and the overlay mount in their
        mount namespace, are gone before its executor reports the end."""
        return next((t for t in self.tasks.values()
                     if t.framework.id == framework_id
                     and t.info.container.writable_layer == name
                     and not task_states.is_terminal(t.state)), None)

    def executor_views(self) -> list[agent_pb2.ExecutorView]:
        return [agent_pb2.ExecutorView(framework_id=t.framework.id, task_id=t.info.task_id,
                                       state=t.executor, kill_requested=t.kill is not None)
                for t in self.tasks.values()]

    def validate_state(self) -> None:
        """Invariants; tests call this after every step."""
        for key, task in self.tasks.items():
            assert task.key == key
            assert task.executor in EXECUTOR.table, (key, task.executor)
            if task.terminal_acked:
                assert task_states.is_terminal(task.state) and self.updates.pending(*key) == 0
            if task.executor == E.EXECUTOR_PULLING:
                assert task.spec is None and task.sandbox is None
            if task.executor in (E.EXECUTOR_CONNECTED, E.EXECUTOR_DISCONNECTED):
                assert task.spec is not None and task.sandbox is not None

    # -- the one way each state changes --------------------------------------------
    def _executor_move(self, task: AgentTask, new: int, why: str) -> None:
        EXECUTOR.move(task, f"{task.framework.id}/{task.info.task_id}", new, why,
                      self.clock.time())

    def _task_move(self, task: AgentTask, state: int) -> bool:
        """Record the task's new state if its table allows it (the master judges
        every update anyway: an illegal one is still passed on)."""
        if not task_states.TASK.allows(task.state, state):
            return False
        task.state = state
        return True

    # -- updates -----------------------------------------------------------------
    def _update(self, key: Key, state: int, reason: int, message: str,
                exit_code: int | None = None) -> list[c.Command]:
        """An update the agent makes itself (source AGENT)."""
        status = common_pb2.TaskStatus(
            task_id=key[1], framework_id=key[0], agent_id=self.agent_id, state=state,
            reason=reason, message=message, source=common_pb2.SOURCE_AGENT,
            uuid=self.new_uuid(), timestamp=self.clock.time())
        if exit_code is not None:
            status.exit_code = exit_code
        return self._record(key, status)

    def _record(self, key: Key, status: common_pb2.TaskStatus) -> list[c.Command]:
        """Take an update: checkpoint it (when the task has a sandbox), then
        queue it for the master. When the task has ended but an earlier update
        still waits for its acknowledgement, that one goes again at once,
        carrying the new latest state: the master learns of the end (frees its
        resources, finds a drained agent DOWN) while the framework is away."""
        out: list[c.Command] = []
        task = self.tasks.get(key)
        ended = False
        if task is not None:
            if task.sandbox is not None:
                out.append(c.CheckpointUpdate(task.sandbox, status))
            was_terminal = task_states.is_terminal(task.state)
            ended = self._task_move(task, status.state) and not was_terminal and \
                task_states.is_terminal(task.state)
        if not self.updates.add(status, self.clock.now()):
            return out
        head = self.updates.head(*key)
        if ended and self.connected and head is not None and head.uuid != status.uuid:
            out.append(c.ToMaster(agent_pb2.AgentMessage(
                status_update=agent_pb2.AgentMessage.StatusUpdate(
                    status=head, latest_state=status.state))))
        return out + self._tick(ev.Tick())

    def _tick(self, _: ev.Tick) -> list[c.Command]:
        if not self.connected:
            return []
        out: list[c.Command] = []
        for status in self.updates.due(self.clock.now()):
            task = self.tasks.get((status.framework_id, status.task_id))
            out.append(c.ToMaster(agent_pb2.AgentMessage(
                status_update=agent_pb2.AgentMessage.StatusUpdate(
                    status=status, latest_state=task.state if task else status.state))))
        return out

    def _maybe_release(self, task: AgentTask) -> list[c.Command]:
        """A terminal task whose updates are all acknowledged: its executor may go."""
        if task.terminal_acked or not task_states.is_terminal(task.state):
            return []
        if self.updates.pending(*task.key) != 0:
            return []
        task.terminal_acked = True
        out: list[c.Command] = [c.MarkDone(task.sandbox)] if task.sandbox is not None else []
        if task.executor == E.EXECUTOR_CONNECTED:
            out.append(c.ToExecutor(task.key, _shutdown()))
        return out + self._maybe_forget(task)

    def _maybe_forget(self, task: AgentTask) -> list[c.Command]:
        """A task whose end is acknowledged and whose executor is gone is done
        with: the agent forgets it (its sandbox stays, for its logs), and starts
        a task that waited to reuse its id."""
        if not (task.terminal_acked and task.exited):
            return []
        key = task.key
        del self.tasks[key]
        self.updates.forget(*key)
        out: list[c.Command] = [c.Forget(key)]
        if task.relaunch is not None:
            out += self._run_task(*task.relaunch)
        return out

    # -- the agent's start -----------------------------------------------------------
    def _started(self, event: ev.Started) -> list[c.Command]:
        """Carry on with the tasks of a previous run (design.md: executors outlive
        their agent)."""
        self.agent_id = event.agent_id
        out: list[c.Command] = []
        now = self.clock.now()
        for rec in event.recovered:
            task = AgentTask(framework=rec.spec.framework, info=rec.spec.task, spec=rec.spec,
                             sandbox=rec.sandbox,
                             launched_time=min((u.timestamp for u in rec.updates),
                                               default=0.0))
            key = task.key
            self.tasks[key] = task
            pending = [u for u in rec.updates if u.uuid not in rec.acked]
            for status in rec.updates:
                self._task_move(task, status.state)
            for status in pending:
                self.updates.add(status, now)
            if rec.executor_alive:
                EXECUTOR.begin(task, E.EXECUTOR_DISCONNECTED,
                               "found running when the agent started", self.clock.time())
                continue
            EXECUTOR.begin(task, E.EXECUTOR_EXITED, "found dead when the agent started",
                           self.clock.time())
            out.append(c.DestroyCgroup(task.cgroup or self.cgroup_of(key)))
            if not task_states.is_terminal(task.state):
                out.append(c.Log("warning", "the executor died while the agent was down",
                                 (("task_id", key[1]),)))
                out += self._update(key, S.TASK_FAILED, common_pb2.REASON_EXECUTOR_TERMINATED,
                                    "the executor exited while the agent was down")
            else:
                out += self._maybe_release(task)
        return out

    # -- the master --------------------------------------------------------------------
    def _master_lost(self, _: ev.MasterLost) -> list[c.Command]:
        self.connected = False
        return []

    def _from_master(self, event: ev.FromMaster) -> list[c.Command]:
        msg = event.message
        kind = msg.WhichOneof("message")
        if kind == "registered":
            return self._registered(msg.registered)
        if kind == "run_task":
            return self._run_task(msg.run_task.framework, msg.run_task.task)
        if kind == "kill_task":
            return self._kill_task(msg.kill_task)
        if kind == "acknowledgement":
            return self._acknowledged(msg.acknowledgement)
        if kind == "heartbeat":
            return [c.ToMaster(agent_pb2.AgentMessage(
                heartbeat=agent_pb2.AgentMessage.Heartbeat()))]
        if kind == "shutdown":
            return self._shutdown(msg.shutdown.message)
        return [c.Log("warning", "unexpected message from the master", (("kind", str(kind)),))]

    def _registered(self, registered: agent_pb2.MasterMessage.Registered) -> list[c.Command]:
        out: list[c.Command] = []
        if registered.agent_id != self.agent_id:
            self.agent_id = registered.agent_id
            out.append(c.SaveAgentId(self.agent_id))
        self.connected = True
        self.updates.resend_all(self.clock.now())
        return out + self._tick(ev.Tick())

    def _run_task(self, framework: common_pb2.FrameworkInfo,
                  info: common_pb2.TaskInfo) -> list[c.Command]:
        key = (framework.id, info.task_id)
        existing = self.tasks.get(key)
        if existing is not None and not task_states.is_terminal(existing.state):
            return [c.Log("warning", "the task runs here already; launch ignored",
                          (("task_id", info.task_id),))]
        if existing is not None and not existing.exited:
            # The id is reused while the old task's executor is still going (it
            # was just told to): the new one starts when the old one is gone, so
            # nothing of the two is ever mixed up.
            existing.relaunch = (framework, info)
            return [c.Log("info", "the task id is reused; waiting for the old executor",
                          (("task_id", info.task_id),))]
        # (A task id reused once the old task ended: its updates still pending
        # go first, in the same stream.)
        layer = info.container.writable_layer
        holder = self.layer_user(framework.id, layer) if layer else None
        task = AgentTask(framework=framework, info=info, launched_time=self.clock.time())
        self.tasks[key] = task
        if holder is not None:
            EXECUTOR.begin(task, E.EXECUTOR_EXITED, f"writable layer {layer!r} in use",
                           self.clock.time())
            return self._update(
                key, S.TASK_FAILED, common_pb2.REASON_CONTAINER_LAUNCH_FAILED,
                f"writable layer {layer!r} is in use by task {holder.info.task_id!r} "
                f"({task_states.name(holder.state)}) on this agent: a writable layer is "
                "mounted by one task at a time")
        if info.container.image:
            EXECUTOR.begin(task, E.EXECUTOR_PULLING, "its image is to be pulled",
                           self.clock.time())
            return [c.PullImage(key, framework, info)]
        EXECUTOR.begin(task, E.EXECUTOR_LAUNCHING, "launched", self.clock.time())
        task.spec = self._spec(task, info)
        return [c.StartExecutor(key, task.spec)]

    def _spec(self, task: AgentTask, info: common_pb2.TaskInfo,
              layers: Iterable[str] = (), image_id: str = "") -> executor_pb2.ExecutorSpec:
        return executor_pb2.ExecutorSpec(
            framework=task.framework, task=info, agent_id=self.agent_id,
            agent_socket=self.socket_path, cgroup=self.cgroup_of(task.key),
            layers=list(layers), image_id=image_id)

    def _kill_task(self, kill: agent_pb2.MasterMessage.KillTask) -> list[c.Command]:
        key = (kill.framework_id, kill.task_id)
        task = self.tasks.get(key)
        if task is None:
            # The master thinks it runs here but it does not: tell it so.
            return self._update(key, S.TASK_LOST, common_pb2.REASON_TASK_UNKNOWN,
                                "the agent has no such task")
        if task_states.is_terminal(task.state):
            return []  # its terminal update is on its way
        if task.executor == E.EXECUTOR_PULLING:
            self._executor_move(task, E.EXECUTOR_EXITED, "killed while its image was pulled")
            return [c.CancelPull(key),
                    *self._update(key, S.TASK_KILLED,
                                  common_pb2.REASON_TASK_KILLED_DURING_LAUNCH,
                                  "Task killed while its image was being pulled")]
        task.kill = kill
        if task.executor == E.EXECUTOR_CONNECTED:
            return [c.ToExecutor(key, _kill_message(kill))]
        return []  # sent when the executor says hello

    def _signal_task(self, event: ev.SignalTask) -> list[c.Command]:
        """Agent.Signal checked the task runs; its executor sends the signal
        to PID 1. An executor not connected now misses it (the API said so)."""
        task = self.tasks.get(event.key)
        if task is None or task.executor != E.EXECUTOR_CONNECTED:
            return [c.Log("warning", "signal for a task whose executor is not connected; "
                          "dropped", (("task_id", event.key[1]),))]
        return [c.ToExecutor(event.key, executor_pb2.AgentToExecutor(
            signal=executor_pb2.AgentToExecutor.Signal(signal=event.signal)))]

    def _limit_task(self, event: ev.LimitTask) -> list[c.Command]:
        """Kill a task over a limit at once (SIGKILL, no grace: as Mesos destroys a
        container whose isolator raised a limitation); its executor's terminal
        update becomes TASK_FAILED with the limit's reason and message."""
        task = self.tasks.get(event.key)
        if (task is None or task.exited or task.executor == E.EXECUTOR_PULLING
                or task_states.is_terminal(task.state) or task.limitation is not None):
            return []
        task.limitation = (event.reason, event.message)
        task.kill = agent_pb2.MasterMessage.KillTask(
            framework_id=event.key[0], task_id=event.key[1],
            kill_policy=common_pb2.KillPolicy(grace_period_seconds=0))
        out: list[c.Command] = [c.Log("warning", "killing a task over a limit",
                                      (("task_id", event.key[1]), ("why", event.message)))]
        if task.executor == E.EXECUTOR_CONNECTED:
            out.append(c.ToExecutor(event.key, _kill_message(task.kill)))
        return out

    def _acknowledged(self, ack: agent_pb2.MasterMessage.Acknowledgement) -> list[c.Command]:
        key = (ack.framework_id, ack.task_id)
        if not self.updates.acknowledge(ack.framework_id, ack.task_id, ack.uuid,
                                        self.clock.now()):
            return []
        out: list[c.Command] = []
        task = self.tasks.get(key)
        if task is not None and task.sandbox is not None:
            out.append(c.CheckpointAck(task.sandbox, ack.uuid))
        out += self._tick(ev.Tick())
        if task is not None:
            out += self._maybe_release(task)
        return out

    def _shutdown(self, why: str) -> list[c.Command]:
        """The master declared this agent GONE and reported its tasks gone: kill
        them, forget them and the id, and register as a new agent."""
        out: list[c.Command] = [c.Log("error", "the master says this agent is gone; killing "
                                      "its tasks and registering afresh", (("reason", why),))]
        for key, task in sorted(self.tasks.items()):
            if task.executor == E.EXECUTOR_PULLING:
                out.append(c.CancelPull(key))
            elif not task.exited:
                # Shutdown kills at once: the master has reported the task gone. An
                # executor not connected now is refused when it says hello.
                out.append(c.ToExecutor(key, _shutdown()))
            if task.sandbox is not None:
                out.append(c.MarkDone(task.sandbox))
        self.tasks.clear()
        resent = self.updates.resent  # a counter for metrics: it goes on
        self.updates = StatusUpdateManager(first_retry=self.first_retry)
        self.updates.resent = resent
        self.agent_id = ""
        self.connected = False
        return [*out, c.SaveAgentId("")]

    # -- executors -------------------------------------------------------------------
    def _sandbox_made(self, event: ev.SandboxMade) -> list[c.Command]:
        task = self.tasks.get(event.key)
        if task is not None:
            task.sandbox = event.sandbox
        return []

    def _executor_failed_to_start(self, event: ev.ExecutorFailedToStart) -> list[c.Command]:
        task = self.tasks.get(event.key)
        if task is None or task.exited:
            return []
        self._executor_move(task, E.EXECUTOR_EXITED, f"failed to start: {event.error}")
        return [*self._release_image(task),
                *self._update(event.key, S.TASK_FAILED, common_pb2.REASON_CONTAINER_LAUNCH_FAILED,
                              f"the executor failed to start: {event.error}")]

    def _executor_hello(self, event: ev.ExecutorHello) -> list[c.Command]:
        task = self.tasks.get(event.key)
        if task is None or task.exited:
            # Not ours (any more): its task was reported gone. Stop it, as Mesos's
            # agent shuts down executors it does not know.
            return [c.Log("warning", "unknown executor said hello; shutting it down",
                          (("task_id", event.key[1]),)),
                    c.ToExecutor(event.key, _shutdown()), c.CloseExecutor(event.key)]
        if task.executor == E.EXECUTOR_CONNECTED:  # a new connection (the old one broke)
            self._executor_move(task, E.EXECUTOR_DISCONNECTED, "connected again")
        self._executor_move(task, E.EXECUTOR_CONNECTED, "said hello")
        task.container_pid = event.container_pid
        out: list[c.Command] = []
        if task.kill is not None:
            out.append(c.ToExecutor(event.key, _kill_message(task.kill)))
        if task.terminal_acked:
            out.append(c.ToExecutor(event.key, _shutdown()))
        return out

    def _executor_update(self, event: ev.ExecutorUpdate) -> list[c.Command]:
        task = self.tasks.get(event.key)
        if task is None:
            return []
        status = common_pb2.TaskStatus()
        status.CopyFrom(event.status)
        status.agent_id = self.agent_id
        if task.limitation is not None and task_states.is_terminal(status.state):
            status.state = S.TASK_FAILED
            status.reason, status.message = task.limitation
        # Checkpointed before the executor is told the agent holds it.
        return [*self._record(event.key, status),
                c.ToExecutor(event.key, executor_pb2.AgentToExecutor(
                    ack=executor_pb2.AgentToExecutor.Ack(uuid=status.uuid)))]

    def _executor_disconnected(self, event: ev.ExecutorDisconnected) -> list[c.Command]:
        task = self.tasks.get(event.key)
        if task is not None and task.executor == E.EXECUTOR_CONNECTED:
            self._executor_move(task, E.EXECUTOR_DISCONNECTED, "its connection ended")
        return []

    def _executor_exited(self, event: ev.ExecutorExited) -> list[c.Command]:
        task = self.tasks.get(event.key)
        if task is None or task.exited:
            return []
        how = f" with status {event.code}" if event.code is not None else ""
        self._executor_move(task, E.EXECUTOR_EXITED, f"its process exited{how}")
        out = self._release_image(task)
        if not task_states.is_terminal(task.state):
            out.append(c.Log("warning", "executor exited before its task ended",
                             (("task_id", event.key[1]), ("exit_code", str(event.code)))))
            tail = f": {event.log_tail}" if event.log_tail else ""
            reason, message = task.limitation or (
                common_pb2.REASON_EXECUTOR_TERMINATED,
                f"the executor exited{how} before its task ended{tail}")
            out += self._update(event.key, S.TASK_FAILED, reason, message)
            if task.cgroup:
                out.append(c.DestroyCgroup(task.cgroup))
        return out + self._maybe_forget(task)

    def _release_image(self, task: AgentTask) -> list[c.Command]:
        return [c.ReleaseImage(task.key)] if task.info.container.image and task.spec else []

    # -- images ----------------------------------------------------------------------
    def _image_pulling(self, event: ev.ImagePulling) -> list[c.Command]:
        task = self.tasks.get(event.key)
        if task is None or task.executor != E.EXECUTOR_PULLING:
            return []
        return self._update(event.key, S.TASK_STARTING, common_pb2.REASON_UNSPECIFIED,
                            f"pulling image {task.info.container.image}")

    def _image_ready(self, event: ev.ImageReady) -> list[c.Command]:
        task = self.tasks.get(event.key)
        if task is None or task.executor != E.EXECUTOR_PULLING:
            return [c.ReleaseImage(event.key)]  # killed meanwhile: nothing holds it
        self._executor_move(task, E.EXECUTOR_LAUNCHING, f"image {event.image_id} ready")
        task.spec = self._spec(task, event.task, event.layers, event.image_id)
        return [c.StartExecutor(event.key, task.spec)]

    def _image_failed(self, event: ev.ImageFailed) -> list[c.Command]:
        task = self.tasks.get(event.key)
        if task is None or task.executor != E.EXECUTOR_PULLING:
            return []
        self._executor_move(task, E.EXECUTOR_EXITED, "its image could not be had")
        return self._update(event.key, S.TASK_FAILED, common_pb2.REASON_CONTAINER_LAUNCH_FAILED,
                            f"cannot get image {task.info.container.image}: {event.error}")


def _kill_message(kill: agent_pb2.MasterMessage.KillTask) -> executor_pb2.AgentToExecutor:
    return executor_pb2.AgentToExecutor(
        kill=executor_pb2.AgentToExecutor.Kill(kill_policy=kill.kill_policy))


def _shutdown() -> executor_pb2.AgentToExecutor:
    return executor_pb2.AgentToExecutor(shutdown=executor_pb2.AgentToExecutor.Shutdown())


__all__ = ["AgentState", "AgentTask", "Step"]
