"""The master's book-keeping: agents, frameworks, offers and tasks.

Pure and synchronous (design.md rule 1): every method takes an event (a call
from a framework, a message from an agent, the passing of time) and returns
the commands the shell must carry out. A refused call raises CallError before
anything is changed, so nothing is ever half-applied.

What a framework *wants* (TaskEntry.info, kill requested) is kept apart from
what an agent *observed* (TaskEntry.status, the latest status update).

Agents (registration, health, maintenance) are kept by the AgentBook mixin,
whose module shows their life cycle (agent_book.py).

Framework life cycle:

    (subscribe) ─▶ connected ◀─▶ disconnected ─▶ removed
                                  (failover_timeout passed, or Teardown)
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable

from juggler.common import ids, task_states
from juggler.common.clock import Clock
from juggler.common.resources import ResourceError, Resources
from juggler.master.agent_book import AgentBook, RecoveryHold
from juggler.master.allocator import Allocator
from juggler.master.commands import (
    CallError,
    CloseStream,
    Code,
    Command,
    Persist,
    ToAgent,
    ToFramework,
    ack_command,
    kill_command,
)
from juggler.master.entries import (
    COMPLETED_FRAMEWORKS_KEPT,
    COMPLETED_TASKS_KEPT,
    DEFAULT_REFUSE_SECONDS,
    DEFAULT_ROLE,
    A,
    AgentEntry,
    AgentGone,
    FrameworkEntry,
    OfferEntry,
    S,
    TaskEntry,
)
from juggler.v1 import agent_pb2, common_pb2, operator_pb2, scheduler_pb2

__all__ = ["AgentGone", "MasterState", "ack_command", "kill_command"]

class MasterState(AgentBook):
    def __init__(self, clock: Clock, allocator: Allocator, *, address: str = "",
                 heartbeat_interval: float = 15.0, offer_timeout: float | None = None,
                 agent_ping_timeout: float = 15.0, max_agent_ping_timeouts: int = 5,
                 agent_gone_timeout: float = 7 * 86400.0) -> None:
        self.clock = clock
        self.allocator = allocator
        self.address = address
        # Every master in the order they would lead, this one first (the server
        # reads it from the election; a single master has no other).
        self.succession: Callable[[], list[str]] = lambda: [self.address]
        self.heartbeat_interval = heartbeat_interval
        self.offer_timeout = offer_timeout
        self.agent_ping_timeout = agent_ping_timeout
        self.max_agent_ping_timeouts = max_agent_ping_timeouts
        self.agent_gone_timeout = agent_gone_timeout
        self.agents: dict[str, AgentEntry] = {}
        self.gone_agents: set[str] = set()
        self.frameworks: dict[str, FrameworkEntry] = {}
        self.completed_frameworks: deque[FrameworkEntry] = deque(maxlen=COMPLETED_FRAMEWORKS_KEPT)
        self.offers: dict[str, OfferEntry] = {}
        self.tasks: dict[tuple[str, str], TaskEntry] = {}
        self.completed_tasks: deque[TaskEntry] = deque(maxlen=COMPLETED_TASKS_KEPT)
        self._offer_seq = 0
        self._offer_prefix = ids.new()[:8]
        # After a failover (recover_registry): agents expected back, how many
        # are, and until when allocation waits for them (agent_book.py).
        self.recovery: RecoveryHold | None = None

    # ------------------------------------------------------------------
    # Frameworks
    # ------------------------------------------------------------------
    def subscribe(self, info: common_pb2.FrameworkInfo) -> tuple[str, str, list[Command]]:
        """A framework subscribes; returns (framework_id, stream_id, commands)."""
        _check_framework_info(info)
        info = common_pb2.FrameworkInfo().FromString(info.SerializeToString())
        if not info.roles:
            info.roles.append(DEFAULT_ROLE)
        commands: list[Command] = []
        now = self.clock.now()
        stream_id = ids.new()
        if info.id:
            fw = self.frameworks.get(info.id)
            if fw is None:
                if any(f.info.id == info.id for f in self.completed_frameworks):
                    raise CallError(Code.FAILED_PRECONDITION,
                                    f"framework {info.id} was removed; subscribe without an id")
                # Unknown id (e.g. the master restarted): admit it under that id.
                fw = self._add_framework(info, now)
            else:
                if fw.connected:
                    commands.append(CloseStream(fw.info.id, fw.stream_id,
                                                "framework failed over to a new subscription"))
                    # The new instance never saw the old one's offers (as Mesos does on
                    # failover): take them back, or their resources stay locked away.
                    commands += self._rescind_offers(fw, send=False)
                fw.info = info
                self.allocator.remove_framework(info.id)
                self.allocator.add_framework(info.id, info.roles)
        else:
            info.id = ids.new()
            fw = self._add_framework(info, now)
        fw.stream_id = stream_id
        fw.connected = True
        fw.disconnected_at = None
        self.allocator.activate_framework(info.id)
        commands.append(Persist(f"frameworks/{info.id}", info.SerializeToString()))
        event = scheduler_pb2.Event(subscribed=scheduler_pb2.Event.Subscribed(
            framework_id=info.id, stream_id=stream_id,
            heartbeat_interval_seconds=self.heartbeat_interval, master_address=self.address,
            masters=self.succession()))
        commands.append(ToFramework(info.id, event))
        # Re-deliver the latest unacknowledged update of each task (failover).
        for task_id in sorted(fw.tasks):
            task = self.tasks[(info.id, task_id)]
            if task.status is not None and task.latest_uuid:
                commands.append(ToFramework(info.id, _update_event(task.status)))
        return info.id, stream_id, commands

    def _add_framework(self, info: common_pb2.FrameworkInfo, now: float) -> FrameworkEntry:
        fw = FrameworkEntry(info=info, registered_time=self.clock.time())
        self.frameworks[info.id] = fw
        self.allocator.add_framework(info.id, info.roles)
        return fw

    def framework_disconnected(self, framework_id: str, stream_id: str) -> list[Command]:
        fw = self.frameworks.get(framework_id)
        if fw is None or fw.stream_id != stream_id or not fw.connected:
            return []
        fw.connected = False
        fw.disconnected_at = self.clock.now()
        self.allocator.deactivate_framework(framework_id)
        commands = self._rescind_offers(fw, send=False)
        if fw.info.failover_timeout <= 0:
            commands += self._remove_framework(fw, "framework disconnected")
        return commands

    def teardown(self, framework_id: str, stream_id: str) -> list[Command]:
        fw = self._framework(framework_id, stream_id)
        commands = self._remove_framework(fw, "framework was torn down")
        commands.append(CloseStream(framework_id, stream_id, "framework was torn down"))
        return commands

    def _remove_framework(self, fw: FrameworkEntry, why: str) -> list[Command]:
        fid = fw.info.id
        commands = self._rescind_offers(fw, send=False)
        for task_id in sorted(fw.tasks):
            task = self.tasks[(fid, task_id)]
            if not task_states.is_terminal(task.state):
                commands.append(kill_command(task))
            self._recover_task(task)
            self._complete_task(task)
        self.allocator.remove_framework(fid)
        del self.frameworks[fid]
        self.completed_frameworks.append(fw)
        commands.append(Persist(f"frameworks/{fid}", None))
        return commands

    def tick(self) -> list[Command]:
        """Time passed: failover timeouts, offer timeouts, agent health."""
        now = self.clock.now()
        commands: list[Command] = []
        for fw in list(self.frameworks.values()):
            if (not fw.connected and fw.disconnected_at is not None
                    and now >= fw.disconnected_at + fw.info.failover_timeout):
                commands += self._remove_framework(fw, "failover timeout passed")
        if self.offer_timeout is not None:
            for offer in sorted(self.offers.values(), key=lambda o: o.offer_id):
                if now >= offer.created + self.offer_timeout:
                    commands += self._rescind(offer)
        return commands + self._agent_health(now)

    def _rescind(self, offer: OfferEntry) -> list[Command]:
        fw = self.frameworks[offer.framework_id]
        self._use_offer(fw, offer)
        self.allocator.recover(offer.framework_id, offer.agent_id, offer.resources, offer.role)
        return [ToFramework(fw.info.id, scheduler_pb2.Event(
            rescind=scheduler_pb2.Event.Rescind(offer_id=offer.offer_id)))]

    def _master_update(self, task: TaskEntry, state: int, reason: int,
                       message: str) -> list[Command]:
        """A master-generated update (no uuid, never acknowledged).

        Frameworks that are not partition-aware see UNREACHABLE and GONE as LOST.
        The master's own record keeps the real state.
        """
        history = [h.state for h in task.history]
        task_states.check(task.info.task_id, task.state, state, history)
        status = common_pb2.TaskStatus(
            task_id=task.info.task_id, state=state, reason=reason, message=message,
            source=common_pb2.SOURCE_MASTER, agent_id=task.agent_id,
            framework_id=task.framework_id, timestamp=self.clock.time())
        task.state = state
        task.status = status
        task.latest_uuid = b""
        task.history.append(status)
        fw = self.frameworks.get(task.framework_id)
        if fw is None:
            return []
        sent = common_pb2.TaskStatus()
        sent.CopyFrom(status)
        aware = common_pb2.FrameworkInfo.PARTITION_AWARE in fw.info.capabilities
        if not aware and state in (S.TASK_UNREACHABLE, S.TASK_GONE, S.TASK_GONE_BY_OPERATOR):
            sent.state = S.TASK_LOST
        return [ToFramework(fw.info.id, _update_event(sent))]

    def _partition_aware(self, framework_id: str) -> bool:
        fw = self.frameworks.get(framework_id)
        return fw is not None and (
            common_pb2.FrameworkInfo.PARTITION_AWARE in fw.info.capabilities)

    def _framework(self, framework_id: str, stream_id: str) -> FrameworkEntry:
        if not framework_id:
            raise CallError(Code.INVALID_ARGUMENT, "framework_id is required")
        fw = self.frameworks.get(framework_id)
        if fw is None:
            raise CallError(Code.NOT_FOUND, f"framework {framework_id} is not subscribed")
        if not fw.connected or stream_id != fw.stream_id:
            raise CallError(Code.FAILED_PRECONDITION,
                            f"stream {stream_id!r} is not framework {framework_id}'s current "
                            "subscription; subscribe again")
        return fw

    # ------------------------------------------------------------------
    # Offers
    # ------------------------------------------------------------------
    def allocate(self) -> list[Command]:
        """Run one allocation cycle and turn its allocations into offers (none
        while a new leader waits for its agents: `allocation_held`)."""
        now = self.clock.now()
        if self.allocation_held(now):
            return []
        per_framework: dict[str, list[common_pb2.Offer]] = {}
        for a in self.allocator.allocate():
            fw = self.frameworks.get(a.framework_id)
            agent = self.agents.get(a.agent_id)
            if fw is None or agent is None:  # cannot happen: the allocator mirrors us
                raise AssertionError(f"allocation for unknown framework/agent: {a}")
            self._offer_seq += 1
            offer_id = f"{self._offer_prefix}-O{self._offer_seq}"
            self.offers[offer_id] = OfferEntry(offer_id, a.framework_id, a.agent_id, a.role,
                                               a.resources, now)
            fw.offers.add(offer_id)
            agent.offers.add(offer_id)
            per_framework.setdefault(a.framework_id, []).append(common_pb2.Offer(
                id=offer_id, framework_id=a.framework_id, agent_id=a.agent_id,
                hostname=agent.info.hostname, resources=a.resources.to_proto(a.role),
                role=a.role, agent_address=agent.info.address))
        return [ToFramework(fid, scheduler_pb2.Event(offers=scheduler_pb2.Event.Offers(offers=o)))
                for fid, o in per_framework.items()]

    def _rescind_offers(self, fw: FrameworkEntry, *, send: bool) -> list[Command]:
        """Take back every offer of `fw` (telling it only when `send`)."""
        commands: list[Command] = []
        for offer_id in sorted(fw.offers):
            rescind = self._rescind(self.offers[offer_id])
            if send:
                commands += rescind
        return commands

    def decline(self, framework_id: str, stream_id: str, offer_ids: Iterable[str],
                filters: common_pb2.Filters | None = None) -> list[Command]:
        fw = self._framework(framework_id, stream_id)
        offers = self._own_offers(fw, list(offer_ids), same_agent=False)
        refuse = _refuse_seconds(filters)
        for offer in offers:
            self._use_offer(fw, offer)
            self.allocator.recover(framework_id, offer.agent_id, offer.resources, offer.role,
                                   refuse_seconds=refuse)
        return []

    def _own_offers(self, fw: FrameworkEntry, offer_ids: list[str],
                    *, same_agent: bool) -> list[OfferEntry]:
        if not offer_ids:
            raise CallError(Code.INVALID_ARGUMENT, "no offer ids given")
        if len(set(offer_ids)) != len(offer_ids):
            raise CallError(Code.INVALID_ARGUMENT, "an offer id is given twice")
        offers = []
        for offer_id in offer_ids:
            offer = self.offers.get(offer_id)
            if offer is None:
                raise CallError(Code.NOT_FOUND, f"offer {offer_id!r} is not valid (unknown, "
                                "already used, declined or rescinded)")
            if offer.framework_id != fw.info.id:
                raise CallError(Code.PERMISSION_DENIED,
                                f"offer {offer_id} was made to another framework")
            offers.append(offer)
        if same_agent and len({o.agent_id for o in offers}) > 1:
            raise CallError(Code.INVALID_ARGUMENT, "offers of one Accept must be of one agent")
        return offers

    def _use_offer(self, fw: FrameworkEntry, offer: OfferEntry) -> None:
        del self.offers[offer.offer_id]
        fw.offers.discard(offer.offer_id)
        self._forget_agent_offer(offer)

    def _forget_agent_offer(self, offer: OfferEntry) -> None:
        agent = self.agents.get(offer.agent_id)
        if agent is not None:
            agent.offers.discard(offer.offer_id)

    def revive(self, framework_id: str, stream_id: str, roles: Iterable[str]) -> list[Command]:
        fw = self._framework(framework_id, stream_id)
        self.allocator.revive(framework_id, self._roles(fw, roles))
        return []

    def suppress(self, framework_id: str, stream_id: str, roles: Iterable[str]) -> list[Command]:
        fw = self._framework(framework_id, stream_id)
        self.allocator.suppress(framework_id, self._roles(fw, roles))
        return []

    @staticmethod
    def _roles(fw: FrameworkEntry, roles: Iterable[str]) -> list[str]:
        roles = list(roles)
        for role in roles:
            if role not in fw.info.roles:
                raise CallError(Code.INVALID_ARGUMENT,
                                f"role {role!r} is not one of the framework's roles "
                                f"{list(fw.info.roles)}")
        return roles

    # ------------------------------------------------------------------
    # Accept: validate everything, then apply everything.
    # ------------------------------------------------------------------
    def accept(self, framework_id: str, stream_id: str, offer_ids: Iterable[str],
               operations: Iterable[scheduler_pb2.Operation],
               filters: common_pb2.Filters | None = None) -> list[Command]:
        fw = self._framework(framework_id, stream_id)
        offers = self._own_offers(fw, list(offer_ids), same_agent=True)
        agent_id = offers[0].agent_id
        role = offers[0].role
        offered = Resources()
        for o in offers:
            if o.role != role:
                raise CallError(Code.INVALID_ARGUMENT, "offers of one Accept must be of one role")
            offered = offered + o.resources
        launches: list[tuple[common_pb2.TaskInfo, Resources]] = []
        seen: set[str] = set()
        for op in operations:
            if op.WhichOneof("operation") != "launch":
                raise CallError(Code.INVALID_ARGUMENT, "an operation has no launch")
            for task in op.launch.tasks:
                launches.append((task, self._check_task(fw, task, agent_id, seen)))
        refuse = _refuse_seconds(filters)
        needed = Resources()
        for _, r in launches:
            needed = needed + r
        if not offered.contains(needed):
            raise CallError(Code.INVALID_ARGUMENT,
                            f"the tasks need {needed.describe()} but the offers hold "
                            f"{offered.describe()}")
        # -- nothing below can fail --
        now = self.clock.time()
        commands: list[Command] = []
        for o in offers:
            self._use_offer(fw, o)
        agent = self.agents[agent_id]
        for task, resources in launches:
            info = common_pb2.TaskInfo()
            info.CopyFrom(task)
            info.agent_id = agent_id
            del info.resources[:]
            info.resources.extend(resources.to_proto(role))
            entry = TaskEntry(info=info, framework_id=framework_id, agent_id=agent_id, role=role,
                              resources=resources, launched_time=now)
            entry.status = common_pb2.TaskStatus(
                task_id=info.task_id, state=S.TASK_STAGING, source=common_pb2.SOURCE_MASTER,
                agent_id=agent_id, framework_id=framework_id, timestamp=now)
            entry.history.append(entry.status)
            self.tasks[(framework_id, info.task_id)] = entry
            fw.tasks.add(info.task_id)
            agent.tasks.add((framework_id, info.task_id))
            commands.append(ToAgent(agent_id, agent_pb2.MasterMessage(
                run_task=agent_pb2.MasterMessage.RunTask(framework=fw.info, task=info))))
        unused = offered - needed
        if not unused.is_empty():
            self.allocator.recover(framework_id, agent_id, unused, role,
                                   refuse_seconds=refuse)
        return commands

    def _check_task(self, fw: FrameworkEntry, task: common_pb2.TaskInfo, agent_id: str,
                    seen: set[str]) -> Resources:
        try:
            ids.check("task id", task.task_id)
        except ids.InvalidId as e:
            raise CallError(Code.INVALID_ARGUMENT, str(e)) from None
        tid = task.task_id
        if tid in seen or tid in fw.tasks:
            raise CallError(Code.INVALID_ARGUMENT,
                            f"task id {tid!r} is already used by another of the framework's tasks")
        seen.add(tid)
        if task.agent_id and task.agent_id != agent_id:
            raise CallError(Code.INVALID_ARGUMENT,
                            f"task {tid}: agent {task.agent_id} is not the offers' agent "
                            f"{agent_id}")
        try:
            resources = Resources.from_proto(task.resources)
        except ResourceError as e:
            raise CallError(Code.INVALID_ARGUMENT, f"task {tid}: {e}") from None
        if resources.get("cpus") <= 0 and resources.get("mem") <= 0:
            raise CallError(Code.INVALID_ARGUMENT, f"task {tid} asks for no cpus and no mem")
        if not task.command.argv and not task.container.image:
            raise CallError(Code.INVALID_ARGUMENT, f"task {tid} has no command (command.argv)")
        if task.container.image:
            # Checked here, pulled by the agent (images/); an image without
            # a command runs its own Entrypoint/Cmd.
            from juggler.images import reference

            if task.container.rootfs:
                raise CallError(Code.INVALID_ARGUMENT, f"task {tid}: give container.image or "
                                "container.rootfs, not both")
            try:
                reference.parse(task.container.image)
            except reference.ReferenceError as e:
                raise CallError(Code.INVALID_ARGUMENT, f"task {tid}: {e}") from None
        if task.HasField("health_check"):
            # The same checks the executor applies, so a bad check is refused here
            # rather than failing on the agent.
            from juggler.executor.health import HealthCheckError, policy_for

            try:
                policy_for(task)
            except HealthCheckError as e:
                raise CallError(Code.INVALID_ARGUMENT, str(e)) from None
        grace = task.kill_policy.grace_period_seconds
        if task.kill_policy.HasField("grace_period_seconds") and not (
                math.isfinite(grace) and grace >= 0):
            raise CallError(Code.INVALID_ARGUMENT,
                            f"task {tid}: grace_period_seconds must be a number >= 0")
        return resources

    # ------------------------------------------------------------------
    # Tasks
    # ------------------------------------------------------------------
    def kill(self, framework_id: str, stream_id: str, task_id: str,
             kill_policy: common_pb2.KillPolicy | None = None) -> list[Command]:
        self._framework(framework_id, stream_id)
        task = self.tasks.get((framework_id, task_id))
        if task is None:
            raise CallError(Code.NOT_FOUND, f"task {task_id!r} is not known to the master")
        if task_states.is_terminal(task.state):
            return []
        policy = kill_policy if kill_policy is not None and kill_policy.HasField(
            "grace_period_seconds") else task.info.kill_policy
        return [kill_command(task, policy)]

    def acknowledge(self, framework_id: str, stream_id: str, agent_id: str, task_id: str,
                    uuid: bytes) -> list[Command]:
        return self.acknowledge_many(framework_id, stream_id, [(agent_id, task_id, uuid)])

    def acknowledge_many(self, framework_id: str, stream_id: str,
                         acks: Iterable[tuple[str, str, bytes]]) -> list[Command]:
        """Several (agent_id, task_id, uuid) at once: every one is checked before
        any is applied, so a refused call changed nothing."""
        self._framework(framework_id, stream_id)
        acks = list(acks)
        for agent_id, task_id, uuid in acks:
            self._check_ack(framework_id, agent_id, task_id, uuid)
        commands: list[Command] = []
        for agent_id, task_id, uuid in acks:
            commands.extend(self._apply_ack(framework_id, agent_id, task_id, uuid))
        return commands

    def _check_ack(self, framework_id: str, agent_id: str, task_id: str, uuid: bytes) -> None:
        if not uuid:
            raise CallError(Code.INVALID_ARGUMENT, "uuid is required (updates from the master "
                            "carry none and must not be acknowledged)")
        task = self.tasks.get((framework_id, task_id))
        if task is None:
            if agent_id not in self.agents:
                raise CallError(Code.NOT_FOUND, f"task {task_id!r} is not known to the master "
                                f"and agent {agent_id!r} is not registered")
        elif agent_id and agent_id != task.agent_id:
            raise CallError(Code.INVALID_ARGUMENT,
                            f"task {task_id} runs on agent {task.agent_id}, not {agent_id}")

    def _apply_ack(self, framework_id: str, agent_id: str, task_id: str,
                   uuid: bytes) -> list[Command]:
        """A checked acknowledgement (an earlier one of the same call may have
        completed its task since: it is then passed on like any other)."""
        task = self.tasks.get((framework_id, task_id))
        if task is None:
            # A task the master does not track (it ended before this master took over,
            # or was completed): the update came from an agent, so pass the ack on.
            return ([ack_command(agent_id, framework_id, task_id, uuid)]
                    if agent_id in self.agents else [])
        commands: list[Command] = []
        if task.agent_id in self.agents:
            commands.append(ack_command(task.agent_id, framework_id, task_id, uuid))
        if uuid == task.latest_uuid and task_states.is_terminal(task.state):
            self._complete_task(task)
        return commands

    def reconcile(self, framework_id: str, stream_id: str,
                  tasks: Iterable[scheduler_pb2.ReconcileRequest.Task]) -> list[Command]:
        fw = self._framework(framework_id, stream_id)
        wanted = list(tasks)
        statuses: list[common_pb2.TaskStatus] = []
        now = self.clock.time()
        if not wanted:
            for task_id in sorted(fw.tasks):
                statuses.append(self._reconcile_status(self.tasks[(framework_id, task_id)], now))
        recovering = {a.info.id for a in self.agents.values()
                      if a.reregister_deadline is not None}
        for t in wanted:
            task = self.tasks.get((framework_id, t.task_id))
            if task is not None:
                statuses.append(self._reconcile_status(task, now))
            elif recovering and (not t.agent_id or t.agent_id in recovering):
                # Its agent may still bring it back (after a failover): say nothing
                # yet, as Mesos does; the framework asks again later.
                continue
            else:
                statuses.append(common_pb2.TaskStatus(
                    task_id=t.task_id, agent_id=t.agent_id, framework_id=framework_id,
                    state=S.TASK_UNKNOWN, reason=common_pb2.REASON_RECONCILIATION,
                    source=common_pb2.SOURCE_MASTER, timestamp=now,
                    message="the master knows of no such task"))
        return [ToFramework(framework_id, _update_event(s)) for s in statuses]

    @staticmethod
    def _reconcile_status(task: TaskEntry, now: float) -> common_pb2.TaskStatus:
        status = common_pb2.TaskStatus()
        if task.status is not None:
            status.CopyFrom(task.status)
        status.uuid = b""  # reconciliation answers are never acknowledged
        status.reason = common_pb2.REASON_RECONCILIATION
        status.source = common_pb2.SOURCE_MASTER
        status.timestamp = now
        return status

    def _recover_task(self, task: TaskEntry) -> None:
        if not task.resources_recovered:
            task.resources_recovered = True
            if task.agent_id in self.agents:
                self.allocator.recover(task.framework_id, task.agent_id, task.resources, task.role)

    def _complete_task(self, task: TaskEntry) -> None:
        key = (task.framework_id, task.info.task_id)
        if self.tasks.pop(key, None) is None:
            return
        fw = self.frameworks.get(task.framework_id)
        if fw is not None:
            fw.tasks.discard(task.info.task_id)
        agent = self.agents.get(task.agent_id)
        if agent is not None:
            agent.tasks.discard(key)
        self.completed_tasks.append(task)

    def status_update(self, agent_id: str, status: common_pb2.TaskStatus) -> list[Command]:
        """An update from an agent (carrying a uuid): apply it and relay it."""
        if agent_id not in self.agents:
            raise CallError(Code.FAILED_PRECONDITION, f"agent {agent_id} is not registered")
        fid = status.framework_id
        task = self.tasks.get((fid, status.task_id))
        ack = ack_command(agent_id, fid, status.task_id, status.uuid)
        if task is None:
            # Nobody can acknowledge it: the framework or the task is gone.
            if fid not in self.frameworks:
                return [ack]
            done = next((t for t in self.completed_tasks if t.framework_id == fid
                         and t.info.task_id == status.task_id), None)
            if done is not None:
                return [ack]
            return [ToFramework(fid, _update_event(status))]
        if status.uuid and status.uuid == task.latest_uuid:
            # A retry of an update the framework has not acknowledged yet.
            return [ToFramework(fid, _update_event(status))]
        history = [h.state for h in task.history]
        task_states.check(status.task_id, task.state, status.state, history)
        task.state = status.state
        task.status = status
        task.latest_uuid = status.uuid
        task.history.append(status)
        commands: list[Command] = []
        if task_states.is_terminal(status.state):
            self._recover_task(task)
            agent = self.agents[agent_id]
            if agent.maintenance == A.AGENT_DRAINING:
                self._maybe_down(agent)
                if agent.maintenance == A.AGENT_DOWN:
                    commands += self._persist_agent(agent)
        fw = self.frameworks.get(fid)
        if fw is None:
            return [*commands, ack]
        return [*commands, ToFramework(fid, _update_event(status))]

    # ------------------------------------------------------------------
    # Views for the Operator API
    # ------------------------------------------------------------------
    def task_view(self, task: TaskEntry) -> operator_pb2.TaskView:
        agent = self.agents.get(task.agent_id)
        return operator_pb2.TaskView(
            info=task.info, framework_id=task.framework_id, agent_id=task.agent_id,
            state=task.state, status=task.status, history=task.history,
            launched_time=task.launched_time,
            agent_hostname=agent.info.hostname if agent else "",
            agent_address=agent.info.address if agent else "")

    def _allocated_on(self, agent: AgentEntry) -> Resources:
        """What the agent's tasks hold (tasks whose resources were not recovered)."""
        allocated = Resources()
        for key in agent.tasks:
            t = self.tasks.get(key)
            if t is not None and not t.resources_recovered:
                allocated = allocated + t.resources
        return allocated

    def _offered_on(self, agent: AgentEntry) -> Resources:
        offered = Resources()
        for oid in agent.offers:
            offered = offered + self.offers[oid].resources
        return offered

    def agent_view(self, agent: AgentEntry) -> operator_pb2.AgentView:
        allocated, offered = self._allocated_on(agent), self._offered_on(agent)
        state = agent.state
        if agent.maintenance is not None and state == A.AGENT_ACTIVE:
            state = agent.maintenance
        return operator_pb2.AgentView(
            info=agent.info, state=state, total=agent.total.to_proto(),
            allocated=allocated.to_proto(), offered=offered.to_proto(),
            registered_time=agent.registered_time, last_seen_time=agent.last_seen_time)

    def framework_view(self, fw: FrameworkEntry) -> operator_pb2.FrameworkView:
        allocated = Resources()
        for tid in fw.tasks:
            t = self.tasks[(fw.info.id, tid)]
            if not t.resources_recovered:
                allocated = allocated + t.resources
        offered = Resources()
        for oid in fw.offers:
            offered = offered + self.offers[oid].resources
        return operator_pb2.FrameworkView(
            info=fw.info, connected=fw.connected, registered_time=fw.registered_time,
            allocated=allocated.to_proto(), offered=offered.to_proto(),
            active_tasks=sum(1 for tid in fw.tasks
                             if not task_states.is_terminal(self.tasks[(fw.info.id, tid)].state)))

    def validate_state(self) -> None:
        """Invariants; tests call this after every step."""
        for (fid, tid), task in self.tasks.items():
            assert task.info.task_id == tid and task.framework_id == fid
            fw = self.frameworks.get(fid)
            assert fw is None or tid in fw.tasks, f"task {tid} missing from framework {fid}"
            agent = self.agents.get(task.agent_id)
            assert agent is None or (fid, tid) in agent.tasks
        for oid, offer in self.offers.items():
            assert oid in self.frameworks[offer.framework_id].offers
            assert oid in self.agents[offer.agent_id].offers, f"offer {oid} not on its agent"
        assert sum(len(a.offers) for a in self.agents.values()) == len(self.offers)
        for agent in self.agents.values():
            assert all(key in self.tasks for key in agent.tasks)
            used = self._allocated_on(agent) + self._offered_on(agent)
            assert agent.total.contains(used), (
                f"agent {agent.info.id} over-committed: {used} of {agent.total}")
        self.allocator.validate_state()


def _update_event(status: common_pb2.TaskStatus) -> scheduler_pb2.Event:
    return scheduler_pb2.Event(update=scheduler_pb2.Event.Update(status=status))


def _refuse_seconds(filters: common_pb2.Filters | None) -> float:
    """The refusal filter of a Decline (or of an Accept's unused resources)."""
    if filters is None or not filters.HasField("refuse_seconds"):
        return DEFAULT_REFUSE_SECONDS
    value = filters.refuse_seconds
    if not math.isfinite(value) or value < 0:
        raise CallError(Code.INVALID_ARGUMENT, "filters.refuse_seconds must be a number >= 0")
    return value


def _check_framework_info(info: common_pb2.FrameworkInfo) -> None:
    if info.id:
        try:
            ids.check("framework id", info.id)
        except ids.InvalidId as e:
            raise CallError(Code.INVALID_ARGUMENT, str(e)) from None
    t = info.failover_timeout
    if not math.isfinite(t) or t < 0:
        raise CallError(Code.INVALID_ARGUMENT, "failover_timeout must be a number >= 0")
    for role in info.roles:
        if role != DEFAULT_ROLE:
            try:
                ids.check("role", role)
            except ids.InvalidId as e:
                raise CallError(Code.INVALID_ARGUMENT, str(e)) from None
    if len(set(info.roles)) != len(info.roles):
        raise CallError(Code.INVALID_ARGUMENT, "a role is listed twice")
