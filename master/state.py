"""The master's book-keeping: agents, frameworks, offers and tasks.

Pure and synchronous (design.md rule 1): every method takes an event (a call
from a framework or an operator, a message from an agent, the passing of time)
and returns the commands the shell must carry out (master/commands.py). A
refused call raises CallError before anything is changed, so nothing is ever
half-applied. Ids come from the injected `new_id`, time from the injected clock.

Desired vs observed (design.md): a request that must outlive a disconnection is
recorded as desired state and re-driven until an agent's report confirms it,
never fired once as a message:

    request                   recorded as                        re-driven
    Kill                      TaskEntry.kill + registry kills/…  on every (re)registration
    Teardown, failover        framework TORN_DOWN + torn_down/…  of the task's agent, until
      timeout passed                                             the task is seen terminal
    DrainAgent / UpAgent      AgentEntry.maintenance, in the     on every (re)registration:
                              agent's registry record            no offers, tasks killed
    a GONE agent              its registry record                Shutdown whenever it returns

`kill_wanted(task)` is the one place that says whether a task must end.

Lifecycles: tasks (common/task_states.py), agents and frameworks
(master/lifecycles.py); every change goes through `_task_move`, AgentBook.move /
set_maintenance and `_framework_move`. Agents themselves are kept by the
AgentBook collaborator (agent_book.py); roles' weights and quotas by the
RoleBook (roles.py). An agent's re-registration, its report reconciled with
the book, is the Reregistration part (reregistration.py).
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from juggler.common import ids, task_check, task_states
from juggler.common.clock import Clock
from juggler.common.lifecycle import InvalidTransition
from juggler.common.resources import Resources
from juggler.master.agent_book import AgentBook, agent_total, check_attributes
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
    ack_command,
    kill_command,
    kill_key,
)
from juggler.master.entries import (
    COMPLETED_TASKS_KEPT,
    DEFAULT_REFUSE_SECONDS,
    DEFAULT_ROLE,
    TORN_DOWN_FRAMEWORKS_KEPT,
    A,
    AgentEntry,
    AgentGone,
    F,
    FrameworkEntry,
    M,
    OfferEntry,
    S,
    TaskEntry,
)
from juggler.master.lifecycles import FRAMEWORK
from juggler.master.reconciliation import PARTITION_STATES, AgentKnown, unknown_task_answer
from juggler.master.reregistration import Reregistration
from juggler.master.roles import RoleBook
from juggler.v1 import agent_pb2, common_pb2, operator_pb2, registry_pb2, scheduler_pb2

__all__ = ["AgentGone", "MasterState", "RegistrySnapshot", "ack_command", "kill_command"]


@dataclass
class RegistrySnapshot:
    """What a new leader reads from the registry (registry.proto lists the keys)."""

    agents: list[operator_pb2.AgentView] = field(default_factory=list)
    frameworks: list[common_pb2.FrameworkInfo] = field(default_factory=list)
    torn_down: list[common_pb2.FrameworkInfo] = field(default_factory=list)
    kills: list[registry_pb2.KillRecord] = field(default_factory=list)
    roles: list[registry_pb2.RoleConfig] = field(default_factory=list)


class MasterState(Reregistration):
    """The leading master's book. Times are seconds: `heartbeat_interval`
    between heartbeats to frameworks, `offer_timeout` before an unused offer is
    rescinded (None: never), agent health as AgentBook explains. `address` is
    this master's host:port (told to frameworks and agents); `new_id()` returns
    a fresh id for frameworks, streams, agents and offers (a uuid4 string by
    default; tests inject a counter).

    Every call that a framework makes (subscribe aside) raises CallError with
    the gRPC code to answer: INVALID_ARGUMENT without a framework_id; NOT_FOUND
    for a framework that is unknown or torn down; FAILED_PRECONDITION for a
    stream that is not its current subscription. Each method lists the errors
    it adds. A refused call changed nothing. Each returns the commands to carry
    out in order (master/commands.py).

    Frameworks: `frameworks` holds the SUBSCRIBED and DISCONNECTED ones,
    `torn_down` the TORN_DOWN ones (newest last, `torn_down_kept` of them once
    their tasks have ended; TORN_DOWN_FRAMEWORKS_KEPT by default). Tasks:
    `tasks` holds every task not yet completed — running, or ended with an
    update its framework has not acknowledged — and `completed_tasks` the last
    COMPLETED_TASKS_KEPT others; `stale` the copies of tasks whose ids are
    tracked on another agent, until they end.
    """

    def __init__(self, clock: Clock, allocator: Allocator, *, address: str = "",
                 heartbeat_interval: float = 15.0, offer_timeout: float | None = None,
                 agent_ping_timeout: float = 15.0, max_agent_ping_timeouts: int = 5,
                 agent_gone_timeout: float = 7 * 86400.0,
                 new_id: Callable[[], str] = ids.new,
                 torn_down_kept: int = TORN_DOWN_FRAMEWORKS_KEPT) -> None:
        self.clock = clock
        self.allocator = allocator
        self.address = address
        self.new_id = new_id
        self.torn_down_kept = torn_down_kept
        # Every master in the order they would lead, this one first (the server
        # reads it from the election; a single master has no other).
        self.succession: Callable[[], list[str]] = lambda: [self.address]
        self.heartbeat_interval = heartbeat_interval
        self.offer_timeout = offer_timeout
        self.agents = AgentBook(clock, ping_timeout=agent_ping_timeout,
                                max_ping_timeouts=max_agent_ping_timeouts,
                                gone_timeout=agent_gone_timeout)
        self.roles = RoleBook(allocator)
        self.frameworks: dict[str, FrameworkEntry] = {}
        self.torn_down: OrderedDict[str, FrameworkEntry] = OrderedDict()
        self.offers: dict[str, OfferEntry] = {}
        self.tasks: dict[tuple[str, str], TaskEntry] = {}
        self.completed_tasks: deque[TaskEntry] = deque(maxlen=COMPLETED_TASKS_KEPT)
        # Kills a new leader read from the registry for tasks no agent has
        # brought back yet, and Kills asked for such tasks since (or for older
        # copies of a tracked task's id that an agent not back yet may run).
        # Keyed (framework, task, agent); agent "" when the Kill named none:
        # it holds for every copy any such agent brings back, until all are back.
        self.pending_kills: dict[tuple[str, str, str], registry_pb2.KillRecord] = {}
        # Stale copies of tasks whose ids are tracked on another agent (a framework
        # reused the id while the copy's agent was away): (agent, framework,
        # task) → (role, resources, kill policy), held until the copy ends.
        self.stale: dict[tuple[str, str, str],
                         tuple[str, Resources, common_pb2.KillPolicy]] = {}
        self._offer_seq = 0
        self._offer_prefix = new_id()[:8]

    # ------------------------------------------------------------------
    # Desired state
    # ------------------------------------------------------------------
    def kill_wanted(self, task: TaskEntry) -> common_pb2.KillPolicy | None:
        """The kill policy to end `task` with, if anyone wants it ended: its
        framework's Kill, its framework torn down, its agent in maintenance."""
        if task_states.is_terminal(task.state):
            return None
        if task.kill is not None:
            return task.kill
        if task.framework_id not in self.frameworks:  # torn down
            return task.info.kill_policy
        agent = self.agents.get(task.agent_id)
        if agent is not None and agent.maintenance != M.MAINTENANCE_NONE:
            return task.info.kill_policy
        return None

    def _drive_kill(self, task: TaskEntry) -> list[Command]:
        """Send the kill `task` wants, if its agent can hear it now; otherwise
        it is sent when the agent registers again."""
        policy = self.kill_wanted(task)
        agent = self.agents.get(task.agent_id)
        if policy is None or agent is None or not agent.connected:
            return []
        return [kill_command(task, policy)]

    def _record_kill(self, task: TaskEntry, policy: common_pb2.KillPolicy) -> list[Command]:
        """Record that `task` must end (in the registry too, so that a new leader
        drives it as well; written again on every request, so a retried Kill
        repairs a write that failed); `_drive_kill` sends it."""
        task.kill = policy
        record = registry_pb2.KillRecord(
            framework_id=task.framework_id, task_id=task.info.task_id, agent_id=task.agent_id,
            kill_policy=policy, requested_time=self.clock.time())
        return [Persist(kill_key(task.framework_id, task.info.task_id, task.agent_id),
                        record.SerializeToString())]

    # ------------------------------------------------------------------
    # Lifecycles: the one way each state changes
    # ------------------------------------------------------------------
    def _framework_move(self, fw: FrameworkEntry, state: int, why: str) -> None:
        FRAMEWORK.move(fw, fw.info.id, state, why, self.clock.time())

    def _task_move(self, task: TaskEntry, state: int,
                   status: common_pb2.TaskStatus | None) -> list[Command]:
        """The one way a task's observed state changes: the move is checked
        against the task table (InvalidTransition with the history; nothing
        changed then), and `status`, the update that told of it if any, goes in
        the task's history. Reaching a terminal state fulfils any kill: its
        registry record goes."""
        if state != task.state:
            task_states.check(task.info.task_id, task.state, state,
                              [h.state for h in task.history])
        if status is not None:
            task.status = status
            task.history.append(status)
        ended = task_states.is_terminal(state) and not task_states.is_terminal(task.state)
        task.state = state
        if ended and task.kill is not None:
            return [Persist(kill_key(task.framework_id, task.info.task_id, task.agent_id),
                            None)]
        return []

    # ------------------------------------------------------------------
    # Frameworks
    # ------------------------------------------------------------------
    def subscribe(self, info: common_pb2.FrameworkInfo) -> tuple[str, str, list[Command]]:
        """A framework subscribes, or re-subscribes with its id; returns
        (framework_id, stream_id, commands). The commands end the previous
        subscription's stream (a failover), send `subscribed`, and re-deliver
        each task's latest unacknowledged update. `info.failover_timeout` is
        in seconds. Raises CallError: INVALID_ARGUMENT for a bad id or role, a
        role listed twice, or a failover_timeout that is not a number ≥ 0;
        FAILED_PRECONDITION for a torn-down framework's id."""
        _check_framework_info(info)
        info = common_pb2.FrameworkInfo().FromString(info.SerializeToString())
        if not info.roles:
            info.roles.append(DEFAULT_ROLE)
        if info.id in self.torn_down:
            raise CallError(Code.FAILED_PRECONDITION,
                            f"framework {info.id} was torn down; subscribe without an id")
        commands: list[Command] = []
        stream_id = self.new_id()
        fw = self.frameworks.get(info.id) if info.id else None
        if fw is None:
            why = ("subscribed" if not info.id else
                   "subscribed with an id this master did not know (after a failover)")
            info.id = info.id or self.new_id()
            fw = self._add_framework(info, F.FRAMEWORK_SUBSCRIBED, why)
        else:
            if fw.connected:
                commands.append(CloseStream(fw.info.id, fw.stream_id,
                                            "framework failed over to a new subscription"))
                # The new instance never saw the old one's offers (as Mesos does on
                # failover): take them back, or their resources stay locked away.
                commands += self._rescind_offers(fw, send=False)
                why = "failed over to a new subscription"
            else:
                why = "re-subscribed"
            fw.info = info
            self.allocator.remove_framework(info.id)
            self.allocator.add_framework(info.id, info.roles)
            self._framework_move(fw, F.FRAMEWORK_SUBSCRIBED, why)
        fw.stream_id = stream_id
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
                task.reported_ended = False   # told: it is this framework's task now
                commands.append(ToFramework(info.id, _update_event(task.status)))
        commands.append(Allocate())
        return info.id, stream_id, commands

    def _add_framework(self, info: common_pb2.FrameworkInfo, state: int,
                       why: str) -> FrameworkEntry:
        fw = FrameworkEntry(info=info, registered_time=self.clock.time())
        FRAMEWORK.begin(fw, state, why, self.clock.time())
        self.frameworks[info.id] = fw
        self.allocator.add_framework(info.id, info.roles or [DEFAULT_ROLE])
        if state != F.FRAMEWORK_SUBSCRIBED:
            fw.disconnected_at = self.clock.now()
            self.allocator.deactivate_framework(info.id)
        return fw

    def framework_disconnected(self, framework_id: str, stream_id: str) -> list[Command]:
        """The framework's subscription stream ended (nothing if a newer one
        replaced it). Its tasks run on for its failover timeout."""
        fw = self.frameworks.get(framework_id)
        if fw is None or fw.stream_id != stream_id or not fw.connected:
            return []
        self._framework_move(fw, F.FRAMEWORK_DISCONNECTED, "its subscription stream ended")
        fw.disconnected_at = self.clock.now()
        self.allocator.deactivate_framework(framework_id)
        commands = self._rescind_offers(fw, send=False)
        if fw.info.failover_timeout <= 0:
            commands += self._tear_down(fw, "it disconnected with no failover timeout")
        return [*commands, Allocate()]

    def teardown(self, framework_id: str, stream_id: str) -> list[Command]:
        """The framework asks to be torn down: its tasks are killed and its
        stream ends. Raises CallError as every framework call does."""
        fw = self._framework(framework_id, stream_id)
        commands = self._tear_down(fw, "a Teardown call")
        commands.append(CloseStream(framework_id, stream_id, "framework was torn down"))
        return commands

    def _tear_down(self, fw: FrameworkEntry, why: str) -> list[Command]:
        """TORN_DOWN: no more offers; every task it has is to be killed (desired
        state, re-driven until each is seen terminal); its id is refused from
        now on, by this leader and the next (torn_down/ in the registry)."""
        fid = fw.info.id
        self._framework_move(fw, F.FRAMEWORK_TORN_DOWN, why)
        commands = self._rescind_offers(fw, send=False)
        self.allocator.deactivate_framework(fid)
        del self.frameworks[fid]
        self.torn_down[fid] = fw
        # torn_down/ first: a leader that takes over between the two writes
        # must find the framework torn down, not forgotten.
        commands += [Persist(f"torn_down/{fid}", fw.info.SerializeToString()),
                     Persist(f"frameworks/{fid}", None)]
        for task_id in sorted(fw.tasks):
            task = self.tasks[(fid, task_id)]
            if task_states.is_terminal(task.state):
                # Nobody will acknowledge its last update now: the master does.
                commands += self._ack_in_place_of_framework(task)
            else:
                commands += self._drive_kill(task)
        self._forget_framework_if_done(fw)
        commands += self._evict_torn_down()
        return [*commands, Allocate()]

    def _ack_in_place_of_framework(self, task: TaskEntry) -> list[Command]:
        """Acknowledge, in place of its framework (torn down, or told the task
        ended already), the task's latest update; once that is its terminal
        one, the task is complete."""
        commands: list[Command] = []
        agent = self.agents.get(task.agent_id)
        if task.latest_uuid and agent is not None and agent.connected:
            commands.append(ack_command(task.agent_id, task.framework_id, task.info.task_id,
                                        task.latest_uuid))
        task.acked_uuid = task.latest_uuid
        if _told_the_end(task):
            self._complete_task(task)
        return commands

    def _forget_framework_if_done(self, fw: FrameworkEntry) -> None:
        """A torn-down framework whose last task has ended leaves the allocator."""
        if (fw.state == F.FRAMEWORK_TORN_DOWN and not fw.tasks
                and self.allocator.has_framework(fw.info.id)):
            self.allocator.remove_framework(fw.info.id)

    def _evict_torn_down(self) -> list[Command]:
        """Keep `torn_down_kept` torn-down frameworks whose tasks have
        all ended (those with tasks left are always kept, and so are those a
        new leader read from the registry while an agent that may hold tasks
        of them has not registered with it yet)."""
        commands: list[Command] = []
        settled = not self.agents.unsettled
        done = [fid for fid, fw in self.torn_down.items()
                if not fw.tasks and (settled or not fw.recovered)]
        for fid in done[:max(0, len(done) - self.torn_down_kept)]:
            del self.torn_down[fid]
            commands.append(Persist(f"torn_down/{fid}", None))
        return commands

    def tick(self) -> list[Command]:
        """Time passed (read from the clock): frameworks away beyond their
        failover timeout are torn down; offers older than offer_timeout are
        rescinded; agents silent too long become UNREACHABLE, unreachable too
        long GONE; pending kills nobody can fulfil any more are dropped.
        Returns the commands ([] when nothing happened; else ending with
        Allocate)."""
        now = self.clock.now()
        commands: list[Command] = []
        for fw in list(self.frameworks.values()):
            if (not fw.connected and fw.disconnected_at is not None
                    and now >= fw.disconnected_at + fw.info.failover_timeout):
                commands += self._tear_down(
                    fw, f"its failover timeout ({fw.info.failover_timeout:g} s) passed")
        if self.offer_timeout is not None:
            for offer in sorted(self.offers.values(), key=lambda o: o.offer_id):
                if now >= offer.created + self.offer_timeout:
                    commands += self._rescind(offer)
        for overdue in self.agents.overdue(now):
            if overdue.target == A.AGENT_UNREACHABLE:
                commands += self._agent_unreachable(overdue.agent, overdue.why)
            else:
                commands += self._agent_gone(overdue.agent, overdue.why)
        commands += self._drop_orphan_kills()
        return [*commands, Allocate()] if commands else []

    def _rescind(self, offer: OfferEntry) -> list[Command]:
        fw = self.frameworks.get(offer.framework_id) or self.torn_down[offer.framework_id]
        self._use_offer(fw, offer)
        self.allocator.recover(offer.framework_id, offer.agent_id, offer.resources, offer.role)
        return [ToFramework(fw.info.id, scheduler_pb2.Event(
            rescind=scheduler_pb2.Event.Rescind(offer_id=offer.offer_id)))]

    def _master_update(self, task: TaskEntry, state: int, reason: int,
                       message: str, *, tell: bool = True) -> list[Command]:
        """A master-generated update (no uuid, never acknowledged); sent to the
        framework unless `tell` is False. Frameworks that are not
        partition-aware see UNREACHABLE and GONE as LOST; the master's own
        record keeps the real state."""
        status = common_pb2.TaskStatus(
            task_id=task.info.task_id, state=state, reason=reason, message=message,
            source=common_pb2.SOURCE_MASTER, agent_id=task.agent_id,
            framework_id=task.framework_id, timestamp=self.clock.time())
        commands = self._task_move(task, state, status)
        task.latest_uuid = b""
        fw = self.frameworks.get(task.framework_id)
        if fw is None or not tell or task.told_end:
            return commands
        sent = common_pb2.TaskStatus()
        sent.CopyFrom(status)
        aware = common_pb2.FrameworkInfo.PARTITION_AWARE in fw.info.capabilities
        if not aware and state in PARTITION_STATES:
            sent.state = S.TASK_LOST
        if task_states.is_terminal(sent.state):
            task.told_end = True  # whatever follows, the framework hears no more of it
        return [*commands, ToFramework(fw.info.id, _update_event(sent))]

    def _partition_aware(self, framework_id: str) -> bool:
        fw = self.frameworks.get(framework_id) or self.torn_down.get(framework_id)
        return fw is not None and (
            common_pb2.FrameworkInfo.PARTITION_AWARE in fw.info.capabilities)

    def _framework(self, framework_id: str, stream_id: str) -> FrameworkEntry:
        """The calling framework, checked: CallError INVALID_ARGUMENT without an
        id, NOT_FOUND when unknown or torn down, FAILED_PRECONDITION for a
        stream that is not its current subscription."""
        if not framework_id:
            raise CallError(Code.INVALID_ARGUMENT, "framework_id is required")
        fw = self.frameworks.get(framework_id)
        if fw is None:
            why = " (it was torn down)" if framework_id in self.torn_down else ""
            raise CallError(Code.NOT_FOUND, f"framework {framework_id} is not subscribed{why}")
        if not fw.connected or stream_id != fw.stream_id:
            raise CallError(Code.FAILED_PRECONDITION,
                            f"stream {stream_id!r} is not framework {framework_id}'s current "
                            "subscription; subscribe again")
        return fw

    # ------------------------------------------------------------------
    # Offers
    # ------------------------------------------------------------------
    def allocate(self) -> list[Command]:
        """Run one allocation cycle and turn its allocations into offers: one
        ToFramework(offers) per framework that gets any, each offer one agent's
        resources in one role (none while a new leader waits for its agents:
        AgentBook.allocation_held). AssertionError if the allocator names a
        framework or agent the book does not hold (a bug: it mirrors the book)."""
        now = self.clock.now()
        if self.agents.allocation_held(now):
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
                role=a.role, agent_address=agent.info.address,
                attributes=agent.info.attributes))
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

    def _rescind_agent_offers(self, agent: AgentEntry) -> list[Command]:
        commands: list[Command] = []
        for offer_id in sorted(agent.offers):
            commands += self._rescind(self.offers[offer_id])
        return commands

    def decline(self, framework_id: str, stream_id: str, offer_ids: Iterable[str],
                filters: common_pb2.Filters | None = None) -> list[Command]:
        """The framework returns offers, refusing their resources on their agents
        for `filters.refuse_seconds` seconds (default 5). CallError:
        INVALID_ARGUMENT for no offer id, one given twice, or a refuse_seconds
        that is not a number ≥ 0; NOT_FOUND for an offer no longer valid;
        PERMISSION_DENIED for another framework's offer."""
        fw = self._framework(framework_id, stream_id)
        offers = self._own_offers(fw, list(offer_ids), same_agent=False)
        refuse = _refuse_seconds(filters)
        for offer in offers:
            self._use_offer(fw, offer)
            self.allocator.recover(framework_id, offer.agent_id, offer.resources, offer.role,
                                   refuse_seconds=refuse)
        return [Allocate()]

    def _own_offers(self, fw: FrameworkEntry, offer_ids: list[str],
                    *, same_agent: bool) -> list[OfferEntry]:
        """The framework's offers by id. CallError: INVALID_ARGUMENT for none, a
        duplicate, or (with same_agent) offers of several agents; NOT_FOUND for
        an offer that is not valid any more; PERMISSION_DENIED for another
        framework's offer."""
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
        agent = self.agents.get(offer.agent_id)
        if agent is not None:
            agent.offers.discard(offer.offer_id)

    def revive(self, framework_id: str, stream_id: str, roles: Iterable[str]) -> list[Command]:
        """Offers again in `roles` (all when empty), their filters cleared.
        CallError INVALID_ARGUMENT for a role that is not the framework's."""
        fw = self._framework(framework_id, stream_id)
        self.allocator.revive(framework_id, self._roles(fw, roles))
        return [Allocate()]

    def suppress(self, framework_id: str, stream_id: str, roles: Iterable[str]) -> list[Command]:
        """No offers in `roles` (all when empty) until Revive. CallError
        INVALID_ARGUMENT for a role that is not the framework's."""
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
        """Launch tasks on offers of one agent and one role; what the tasks do
        not use is declined with `filters`. Returns a RunTask for the agent per
        task, then Allocate. Nothing is launched unless everything is valid and
        fits. CallError: NOT_FOUND for an offer no longer valid;
        PERMISSION_DENIED for another framework's offer; INVALID_ARGUMENT for
        no offer id or one given twice, offers of several agents or roles, an
        operation that is not a launch, a task common/task_check.py refuses
        (the message names the task and the field), a task id the framework
        already uses (or used twice in the call), a task naming another agent,
        tasks needing more than the offers hold, or a bad refuse_seconds."""
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
        for task, r in launches:
            if needed.ports & r.ports:  # + unites ports: a port asked twice must not merge
                raise CallError(Code.INVALID_ARGUMENT,
                                f"task {task.task_id}: ports {needed.ports & r.ports} are "
                                "asked for by another task of the same Accept")
            needed = needed + r
        if not offered.contains(needed):
            missing = needed.ports - offered.ports
            raise CallError(Code.INVALID_ARGUMENT,
                            f"the tasks need {needed.describe()} but the offers hold "
                            f"{offered.describe() or 'nothing'}"
                            + (f"; ports {missing} are not in the offers" if missing else ""))
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
            commands += self._narrow_away_kill(framework_id, info.task_id)
            commands.append(ToAgent(agent_id, agent_pb2.MasterMessage(
                run_task=agent_pb2.MasterMessage.RunTask(framework=fw.info, task=info))))
        unused = offered - needed
        if not unused.is_empty():
            self.allocator.recover(framework_id, agent_id, unused, role,
                                   refuse_seconds=refuse)
        return [*commands, Allocate()]

    def _check_task(self, fw: FrameworkEntry, task: common_pb2.TaskInfo, agent_id: str,
                    seen: set[str]) -> Resources:
        """The task's resources, once the task is valid (_task_resources) and its
        id is free in the framework. CallError INVALID_ARGUMENT otherwise."""
        resources = _task_resources(task)
        tid = task.task_id
        if tid in seen or tid in fw.tasks:
            raise CallError(Code.INVALID_ARGUMENT,
                            f"task id {tid!r} is already used by another of the framework's tasks")
        seen.add(tid)
        if task.agent_id and task.agent_id != agent_id:
            raise CallError(Code.INVALID_ARGUMENT,
                            f"task {tid}: agent {task.agent_id} is not the offers' agent "
                            f"{agent_id}")
        return resources

    # ------------------------------------------------------------------
    # Tasks
    # ------------------------------------------------------------------
    def kill(self, framework_id: str, stream_id: str, task_id: str,
             kill_policy: common_pb2.KillPolicy | None = None,
             agent_id: str = "") -> list[Command]:
        """Kill a task, with `kill_policy` or the task's own. Accepted at once
        whatever the state of the task's agent: it is recorded (in the registry
        too) and sent each time the agent registers, until the task ends.

        A task this master does not know (yet) is accepted as well while an
        agent that may bring it back is away — `agent_id`'s agent, or after a
        failover any agent not back yet — and killed when it comes back.
        A Kill of a task it tracks also holds for the copies an agent not back
        yet may bring back (its framework reused the id across a failover):
        they are killed when they come back, even once the tracked copy ended.
        Raises CallError: as every framework call; NOT_FOUND for a task no
        agent can bring back; INVALID_ARGUMENT for a grace period that is not a
        number ≥ 0, or a signal that is none."""
        self._framework(framework_id, stream_id)
        if kill_policy is not None:
            if kill_policy.HasField("grace_period_seconds"):
                grace = kill_policy.grace_period_seconds
                if not (math.isfinite(grace) and grace >= 0):
                    raise CallError(Code.INVALID_ARGUMENT,
                                    "kill_policy.grace_period_seconds must be a number >= 0")
            if kill_policy.signal:
                try:
                    task_check.parse_signal(kill_policy.signal, "kill_policy.signal")
                except task_check.TaskError as e:
                    raise CallError(Code.INVALID_ARGUMENT, str(e)) from None
            if not kill_policy.HasField("grace_period_seconds") and not kill_policy.signal:
                kill_policy = None
        task = self.tasks.get((framework_id, task_id))
        if task is None:
            return self._kill_unknown(framework_id, task_id, kill_policy, agent_id)
        # Copies away: kept as a Kill naming no agent until every agent is back.
        away = (self._kill_unknown(framework_id, task_id, kill_policy, "")
                if self.agents.unsettled else [])
        if task_states.is_terminal(task.state):
            return away
        return [*away, *self._record_kill(task, kill_policy or task.info.kill_policy),
                *self._drive_kill(task)]

    def _kill_unknown(self, framework_id: str, task_id: str,
                      policy: common_pb2.KillPolicy | None, agent_id: str) -> list[Command]:
        """A Kill of a task this master does not track: kept for the agent that
        may bring it back (one of the registry's that has not registered with
        this leader yet: `agent_id`'s, or any when none is named)."""
        may = (agent_id in self.agents.unsettled if agent_id
               else bool(self.agents.unsettled))
        if not may:
            where = f" (agent {agent_id} does not run it)" if agent_id in self.agents else ""
            raise CallError(Code.NOT_FOUND,
                            f"task {task_id!r} is not known to the master{where}")
        record = registry_pb2.KillRecord(framework_id=framework_id, task_id=task_id,
                                         agent_id=agent_id, requested_time=self.clock.time())
        if policy is not None:
            record.kill_policy.CopyFrom(policy)
        self.pending_kills[(framework_id, task_id, agent_id)] = record
        return [Persist(kill_key(framework_id, task_id, agent_id),
                        record.SerializeToString())]

    def _narrow_away_kill(self, framework_id: str, task_id: str) -> list[Command]:
        """The id is launched again while a Kill naming no agent waits for its
        copies away: the new copy is a new task, not the one killed, so the
        Kill now names each agent not back yet (the new copy's agent is back:
        it made the offer), where only the old copies can be."""
        record = self.pending_kills.pop((framework_id, task_id, ""), None)
        if record is None:
            return []
        commands: list[Command] = []
        for agent_id in sorted(self.agents.unsettled):
            key = (framework_id, task_id, agent_id)
            if key not in self.pending_kills:
                narrowed = registry_pb2.KillRecord()
                narrowed.CopyFrom(record)
                narrowed.agent_id = agent_id
                self.pending_kills[key] = narrowed
                commands.append(Persist(kill_key(*key), narrowed.SerializeToString()))
        return [*commands, Persist(kill_key(framework_id, task_id, ""), None)]

    def _drop_orphan_kills(self) -> list[Command]:
        """Pending kills that no agent can fulfil any more: their agent is gone,
        or (for kills naming no agent) every agent of the registry has
        registered with this leader since."""
        commands: list[Command] = []
        for key in sorted(self.pending_kills):
            agent_id = key[2]
            if agent_id not in self.agents.unsettled if agent_id else not self.agents.unsettled:
                del self.pending_kills[key]
                commands.append(Persist(kill_key(*key), None))
        return commands

    def acknowledge(self, framework_id: str, stream_id: str, agent_id: str, task_id: str,
                    uuid: bytes) -> list[Command]:
        """One acknowledgement; see acknowledge_many."""
        return self.acknowledge_many(framework_id, stream_id, [(agent_id, task_id, uuid)])

    def acknowledge_many(self, framework_id: str, stream_id: str,
                         acks: Iterable[tuple[str, str, bytes]]) -> list[Command]:
        """Several (agent_id, task_id, uuid) at once: every one is checked before
        any is applied, so a refused call changed nothing. Each is passed on to
        the task's agent; acknowledging a task's terminal update completes it.
        CallError: INVALID_ARGUMENT without a uuid or naming the wrong agent;
        NOT_FOUND for an unknown task on an unknown agent."""
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
        if uuid == task.latest_uuid:
            task.acked_uuid = uuid
            if _told_the_end(task):
                self._complete_task(task)
        return commands

    def reconcile(self, framework_id: str, stream_id: str,
                  tasks: Iterable[scheduler_pb2.ReconcileRequest.Task]) -> list[Command]:
        """The latest state of the given tasks (every task of the framework when
        none is given), as one update event each, without uuid (not to be
        acknowledged). A task the master holds or completed is answered from
        its record (_reconcile_status); one it does not hold by what it knows
        of the named agent, as Mesos (master/reconciliation.py: TASK_GONE when
        that agent is registered without it, TASK_UNREACHABLE,
        TASK_GONE_BY_OPERATOR when it is gone for good, TASK_LOST for those
        three to a framework that is not partition-aware; nothing yet while
        it is awaited after a failover; TASK_UNKNOWN when none or an unknown
        one is named). Raises CallError as every framework call does."""
        fw = self._framework(framework_id, stream_id)
        wanted = list(tasks)
        statuses: list[common_pb2.TaskStatus] = []
        now = self.clock.time()
        aware = common_pb2.FrameworkInfo.PARTITION_AWARE in fw.info.capabilities
        if not wanted:
            for task_id in sorted(fw.tasks):
                statuses.append(self._reconcile_status(self.tasks[(framework_id, task_id)], now,
                                                        aware))
        completed: dict[str, TaskEntry] | None = None
        for t in wanted:
            task = self.tasks.get((framework_id, t.task_id))
            if task is None:
                if completed is None:   # built once, for the first task not held
                    completed = {c.info.task_id: c for c in self.completed_tasks
                                 if c.framework_id == framework_id}
                task = completed.get(t.task_id)
            if task is not None:
                statuses.append(self._reconcile_status(task, now, aware))
                continue
            answer = unknown_task_answer(self._agent_known(t.agent_id), aware)
            if answer is None:
                continue   # its agent may still bring it back: the framework asks again
            statuses.append(common_pb2.TaskStatus(
                task_id=t.task_id, agent_id=t.agent_id, framework_id=framework_id,
                state=answer[0], reason=common_pb2.REASON_RECONCILIATION,
                source=common_pb2.SOURCE_MASTER, timestamp=now, message=answer[1]))
        return [ToFramework(framework_id, _update_event(s)) for s in statuses]

    def _agent_known(self, agent_id: str) -> AgentKnown:
        """What the master knows of `agent_id`, for reconciling a task it does
        not hold (master/reconciliation.py). No agent named: awaited while any
        agent is (it may be any of them), else unknown."""
        if not agent_id:
            awaited = any(a.reregister_deadline is not None for a in self.agents.values())
            return AgentKnown.AWAITED if awaited else AgentKnown.UNKNOWN
        if agent_id in self.agents.gone:
            return AgentKnown.GONE
        agent = self.agents.get(agent_id)
        if agent is None:
            return AgentKnown.UNKNOWN
        if agent.reregister_deadline is not None:
            return AgentKnown.AWAITED
        if agent.state == A.AGENT_UNREACHABLE:
            return AgentKnown.UNREACHABLE
        return AgentKnown.REGISTERED   # a GONE agent is forgotten, but for its id (above)

    @staticmethod
    def _reconcile_status(task: TaskEntry, now: float, aware: bool) -> common_pb2.TaskStatus:
        """The answer for a task the master holds or completed: its latest
        state, in the words its framework hears (TASK_LOST for the partition
        states when it is not partition-aware, as _master_update tells it), a
        task of an agent gone for good as TASK_GONE_BY_OPERATOR
        (master/reconciliation.py: TASK_GONE would say its agent is back)."""
        status = common_pb2.TaskStatus()
        if task.status is not None:
            status.CopyFrom(task.status)
        status.state = task.state  # the latest, which an update on its way may not say yet
        if task.told_end and not task_states.is_terminal(task.state):
            status.state = S.TASK_LOST  # as its framework was told
        if status.state == S.TASK_GONE and status.reason == common_pb2.REASON_AGENT_REMOVED:
            status.state = S.TASK_GONE_BY_OPERATOR
        if not aware and status.state in PARTITION_STATES:
            status.state = S.TASK_LOST
        status.uuid = b""  # reconciliation answers are never acknowledged
        status.reason = common_pb2.REASON_RECONCILIATION
        status.source = common_pb2.SOURCE_MASTER
        status.timestamp = now
        return status

    def _recover_task(self, task: TaskEntry) -> None:
        if not task.resources_recovered:
            task.resources_recovered = True
            if self.allocator.has_agent(task.agent_id):
                self.allocator.recover(task.framework_id, task.agent_id, task.resources, task.role)

    def _completed(self, framework_id: str, task_id: str) -> bool:
        """Whether the task is among the completed ones kept."""
        return any(t.framework_id == framework_id and t.info.task_id == task_id
                   for t in self.completed_tasks)

    def _complete_task(self, task: TaskEntry) -> None:
        if self._untrack(task):
            self.completed_tasks.append(task)

    def _untrack(self, task: TaskEntry) -> bool:
        """Stop holding `task` (False: it was not held)."""
        key = (task.framework_id, task.info.task_id)
        if self.tasks.pop(key, None) is None:
            return False
        fw = self.frameworks.get(task.framework_id) or self.torn_down.get(task.framework_id)
        if fw is not None:
            fw.tasks.discard(task.info.task_id)
            self._forget_framework_if_done(fw)
        agent = self.agents.get(task.agent_id)
        if agent is not None:
            agent.tasks.discard(key)
        return True

    def status_update(self, agent_id: str, status: common_pb2.TaskStatus,
                      latest_state: int = S.TASK_STATE_UNSPECIFIED) -> list[Command]:
        """An update from an agent (carrying a uuid): apply it and relay it to
        the framework, or acknowledge it in the framework's place when nobody
        else will: its framework is torn down or unknown, was told the task
        ended already (TASK_LOST), or the update is of a stale copy of a task
        whose id the master tracks on another agent.

        `latest_state` is the task's latest state on the agent (unspecified:
        `status.state`); the master's record follows it, ahead of the updates
        still waiting their turn, so an ended task is known to have ended (its
        resources free, its drained agent DOWN) while its framework is away. A
        state the task's table does not allow is acknowledged (or the agent
        would retry it forever) and logged with the task's history; nothing
        else changes. CallError FAILED_PRECONDITION when the agent is not
        registered."""
        agent = self.agents.get(agent_id)
        if agent is None:
            raise CallError(Code.FAILED_PRECONDITION, f"agent {agent_id} is not registered")
        fid = status.framework_id
        task = self.tasks.get((fid, status.task_id))
        ack = ack_command(agent_id, fid, status.task_id, status.uuid)
        latest = latest_state or status.state
        if task is not None and task.agent_id != agent_id:
            return [ack, *self._stale_update(agent_id, fid, status.task_id, latest)]
        if task is None:
            # Nobody can acknowledge it: the framework or the task is gone.
            if fid not in self.frameworks:
                return [ack]
            if self._completed(fid, status.task_id):
                return [ack]
            return [ToFramework(fid, _update_event(status))]
        nobody_else = fid not in self.frameworks or task.told_end
        retry = bool(status.uuid) and status.uuid == task.latest_uuid
        was_terminal = task_states.is_terminal(task.state)
        try:
            # A retry's update is in the history already; its latest state may be new.
            commands = self._task_move(task, latest, None if retry else status)
        except InvalidTransition as e:
            return [ack, Log("error", "status update refused: not a legal transition",
                             (("agent_id", agent_id), ("task_id", status.task_id),
                              ("error", str(e))))]
        task.latest_uuid = status.uuid
        if task_states.is_terminal(latest) and not was_terminal:
            self._recover_task(task)
            commands += self._maybe_down(agent)
            commands.append(Allocate())
        if nobody_else:
            return [*commands, *self._ack_in_place_of_framework(task)]
        task.reported_ended = False   # told: it is the framework's task now
        return [*commands, ToFramework(fid, _update_event(status))]

    def _stale_update(self, agent_id: str, fid: str, tid: str, latest: int) -> list[Command]:
        """An update of a stale copy (acknowledged by the caller): once it has
        ended, its resources on its agent are free."""
        stale = self.stale.get((agent_id, fid, tid))
        if stale is not None and task_states.is_terminal(latest):
            del self.stale[(agent_id, fid, tid)]
            role, res, _ = stale
            if self.allocator.has_agent(agent_id):
                self.allocator.recover(fid, agent_id, res, role)
            return [Allocate()]
        return []

    def _forget_stale(self, agent_id: str) -> None:
        self.stale = {k: v for k, v in self.stale.items() if k[0] != agent_id}

    # ------------------------------------------------------------------
    # Agents: registration, health, maintenance
    # ------------------------------------------------------------------
    def register_agent(self, info: common_pb2.AgentInfo) -> tuple[str, list[Command]]:
        """A new agent (or one whose id the master has never seen). Raises
        CallError INVALID_ARGUMENT for bad resources or attributes, AgentGone
        for a GONE agent's id."""
        if info.id in self.agents:
            # The same agent again (its stream broke): treat as re-registration.
            return self.reregister_agent(info, [], [])
        total = agent_total(info)
        check_attributes(info)
        self.agents.refuse_gone(info.id)
        info = common_pb2.AgentInfo().FromString(info.SerializeToString())
        if not info.id:
            info.id = self.new_id()
        agent = self.agents.admit(info, total, "registered")
        self.allocator.add_agent(info.id, total)
        return info.id, [*self._registered(agent), Allocate()]

    def _registered(self, agent: AgentEntry) -> list[Command]:
        info = agent.info
        return [
            *self.agents.record(agent),
            ToAgent(info.id, agent_pb2.MasterMessage(registered=agent_pb2.MasterMessage.Registered(
                agent_id=info.id, heartbeat_interval_seconds=self.agents.ping_timeout,
                master_address=self.address, masters=self.succession()))),
        ]

    def agent_seen(self, agent_id: str) -> None:
        """Any message from the agent proves it alive."""
        self.agents.seen(agent_id)

    def agent_disconnected(self, agent_id: str) -> list[Command]:
        """The agent's stream ended; its tasks are assumed to run on."""
        agent = self.agents.get(agent_id)
        if agent is None or agent.state != A.AGENT_ACTIVE:
            return []
        self.agents.move(agent, A.AGENT_DISCONNECTED, "its stream ended")
        self.allocator.deactivate_agent(agent_id)
        return self._rescind_agent_offers(agent)

    def _agent_unreachable(self, agent: AgentEntry, why: str) -> list[Command]:
        """The agent missed its health checks: its resources leave the pool and its
        tasks are UNREACHABLE (LOST to frameworks that are not partition-aware)."""
        agent_id = agent.info.id
        commands = self._rescind_agent_offers(agent)
        self.agents.move(agent, A.AGENT_UNREACHABLE, why)
        agent.unreachable_since = self.clock.now()
        agent.unreachable_time = self.clock.time()
        agent.reregister_deadline = None
        self._forget_stale(agent_id)  # its resources left the pool with it
        commands.append(CloseAgentStream(agent_id))
        if self.allocator.has_agent(agent_id):
            self.allocator.remove_agent(agent_id)
        for key in sorted(agent.tasks):
            task = self.tasks[key]
            task.resources_recovered = True  # they left the pool with the agent
            if not task_states.is_terminal(task.state):
                commands += self._master_update(
                    task, S.TASK_UNREACHABLE, common_pb2.REASON_AGENT_UNREACHABLE,
                    f"agent {agent.info.hostname} ({agent_id}) is unreachable: {why}")
        return commands + self.agents.record(agent)

    def _agent_gone(self, agent: AgentEntry, why: str) -> list[Command]:
        """Unreachable too long: its tasks are GONE and it is forgotten, but for
        its id, which is told to shut down whenever it comes back."""
        agent_id = agent.info.id
        commands: list[Command] = []
        self.agents.move(agent, A.AGENT_GONE, why)
        for key in sorted(agent.tasks):
            task = self.tasks[key]
            if not task_states.is_terminal(task.state):
                commands += self._master_update(
                    task, S.TASK_GONE, common_pb2.REASON_AGENT_REMOVED,
                    f"agent {agent.info.hostname} ({agent_id}) is gone: {why}")
            self._complete_task(task)
        self.agents.forget(agent)
        self._forget_stale(agent_id)
        commands += self.agents.record(agent)
        return commands + self._drop_unreported_kills(agent)

    def drain_agent(self, agent_id: str) -> list[Command]:
        """Maintenance: no offers for the agent, every task of it killed (each
        with its own kill policy); DOWN once it runs nothing. Recorded in the
        registry whatever the agent's connectivity, and driven again each time
        it registers. Draining a draining or DOWN agent sends the kills again.
        CallError NOT_FOUND for an unknown agent, FAILED_PRECONDITION for a
        GONE one."""
        agent = self.agents.known(agent_id)
        commands: list[Command] = []
        if agent.maintenance == M.MAINTENANCE_NONE:
            self.agents.set_maintenance(agent, M.MAINTENANCE_DRAINING, "drained by an operator")
            if self.allocator.has_agent(agent_id):
                self.allocator.deactivate_agent(agent_id)
            commands += self._rescind_agent_offers(agent)
        for key in sorted(agent.tasks):
            commands += self._drive_kill(self.tasks[key])
        commands += self._maybe_down(agent, persist=False)
        return commands + self.agents.record(agent)

    def up_agent(self, agent_id: str) -> list[Command]:
        """Ends maintenance: the agent is offered again (once connected).
        CallError as drain_agent."""
        agent = self.agents.known(agent_id)
        if agent.maintenance != M.MAINTENANCE_NONE:
            self.agents.set_maintenance(agent, M.MAINTENANCE_NONE, "brought up by an operator")
            if agent.connected:
                self.allocator.activate_agent(agent_id)
        return [*self.agents.record(agent), Allocate()]

    def _maybe_down(self, agent: AgentEntry, *, persist: bool = True) -> list[Command]:
        """A draining agent that runs nothing any more is DOWN."""
        if agent.maintenance == M.MAINTENANCE_DRAINING and not any(
                not task_states.is_terminal(self.tasks[k].state) for k in agent.tasks):
            self.agents.set_maintenance(agent, M.MAINTENANCE_DOWN, "drained: it runs nothing")
            return self.agents.record(agent) if persist else []
        return []

    def persist_failed(self, key: str) -> None:
        """A registry write failed: what the registry holds for `key` is not known."""
        self.agents.persist_failed(key)

    # ------------------------------------------------------------------
    # A new leader
    # ------------------------------------------------------------------
    def recover_registry(self, registry: RegistrySnapshot, reregister_timeout: float) -> None:
        """A new leader starts from the registry (design.md: tasks are not stored;
        agents bring them back when they re-register).

        Admitted agents must re-register within `reregister_timeout` seconds or
        they are marked UNREACHABLE; frameworks are DISCONNECTED until they
        re-subscribe (their failover timeout counts from now); torn-down ones
        stay refused; kills and maintenance wait for their agents; roles get
        their weights and quotas back."""
        self.agents.recover(registry.agents, reregister_timeout)
        for info in registry.frameworks:
            if info.id not in self.frameworks:
                self._add_framework(info, F.FRAMEWORK_DISCONNECTED,
                                    "recovered from the registry: waiting for it to re-subscribe")
        for info in registry.torn_down:
            if info.id in self.torn_down:
                continue
            fw = FrameworkEntry(info=info, registered_time=self.clock.time(), recovered=True)
            FRAMEWORK.begin(fw, F.FRAMEWORK_TORN_DOWN, "torn down before the failover",
                            self.clock.time())
            self.torn_down[info.id] = fw
        for record in registry.kills:
            self.pending_kills[(record.framework_id, record.task_id, record.agent_id)] = record
        self.roles.recover(registry.roles)

    def validate_state(self) -> None:
        """Invariants; tests call this after every step (AssertionError names
        the broken one)."""
        for (fid, tid), task in self.tasks.items():
            assert task.info.task_id == tid and task.framework_id == fid
            fw = self.frameworks.get(fid) or self.torn_down.get(fid)
            assert fw is not None and tid in fw.tasks, f"task {tid} missing from framework {fid}"
            agent = self.agents.get(task.agent_id)
            assert agent is None or (fid, tid) in agent.tasks
            assert task.history, f"task {tid} has no history"
            assert not task.reported_ended or (task_states.is_terminal(task.state)
                                               and task.resources_recovered), tid
        for fid, fw in self.frameworks.items():
            assert fw.state in (F.FRAMEWORK_SUBSCRIBED, F.FRAMEWORK_DISCONNECTED), fid
            assert self.allocator.has_framework(fid)
        for fid, fw in self.torn_down.items():
            assert fw.state == F.FRAMEWORK_TORN_DOWN and fid not in self.frameworks
            assert not fw.offers
            assert not fw.tasks or self.allocator.has_framework(fid), fid
        for (aid, fid, tid) in self.stale:
            assert aid in self.agents, f"stale copy on unknown agent {aid}"
            tracked = self.tasks.get((fid, tid))
            assert tracked is None or tracked.agent_id != aid
        for oid, offer in self.offers.items():
            assert oid in self.frameworks[offer.framework_id].offers
            assert oid in self.agents[offer.agent_id].offers, f"offer {oid} not on its agent"
        assert sum(len(a.offers) for a in self.agents.values()) == len(self.offers)
        for agent in self.agents.values():
            assert all(key in self.tasks for key in agent.tasks)
            # Registered with this leader and not unreachable: in the allocator
            # (agents a new leader awaits join it when they re-register).
            if agent.state == A.AGENT_ACTIVE or (agent.state == A.AGENT_DISCONNECTED
                                                 and agent.reregister_deadline is None):
                assert self.allocator.has_agent(agent.info.id), f"{agent.info.id} not allocated"
            if agent.maintenance == M.MAINTENANCE_DOWN:
                assert not any(not task_states.is_terminal(self.tasks[k].state)
                               for k in agent.tasks), f"DOWN agent {agent.info.id} runs tasks"
            if agent.maintenance != M.MAINTENANCE_NONE:
                assert not agent.offers
            used = self.allocated_on(agent) + self.offered_on(agent)
            assert agent.total.contains(used), (
                f"agent {agent.info.id} over-committed: {used} of {agent.total}")
            # + unites ports: a port in two tasks or offers would hide in the union.
            holders = [*(t.resources.ports for k in agent.tasks
                         if (t := self.tasks.get(k)) is not None and not t.resources_recovered),
                       *(self.offers[oid].resources.ports for oid in agent.offers)]
            assert sum(p.count() for p in holders) == used.ports.count(), (
                f"agent {agent.info.id}: a port is held twice among {holders}")
        self.allocator.validate_state()

    # ------------------------------------------------------------------
    # What agents and frameworks hold (for views and invariants)
    # ------------------------------------------------------------------
    def allocated_on(self, agent: AgentEntry) -> Resources:
        """What the agent's tasks hold (tasks whose resources were not recovered)."""
        allocated = Resources()
        for key in agent.tasks:
            t = self.tasks.get(key)
            if t is not None and not t.resources_recovered:
                allocated = allocated + t.resources
        return allocated

    def offered_on(self, agent: AgentEntry) -> Resources:
        """What outstanding offers hold of the agent."""
        offered = Resources()
        for oid in agent.offers:
            offered = offered + self.offers[oid].resources
        return offered


def _told_the_end(task: TaskEntry) -> bool:
    """Whether the task's latest update (what its framework is being told) is
    its terminal one: acknowledging that one completes the task."""
    return task.status is not None and task_states.is_terminal(task.status.state)


def _update_event(status: common_pb2.TaskStatus) -> scheduler_pb2.Event:
    return scheduler_pb2.Event(update=scheduler_pb2.Event.Update(status=status))


def _refuse_seconds(filters: common_pb2.Filters | None) -> float:
    """The refusal filter of a Decline (or of an Accept's unused resources);
    CallError INVALID_ARGUMENT unless it is a number ≥ 0."""
    if filters is None or not filters.HasField("refuse_seconds"):
        return DEFAULT_REFUSE_SECONDS
    value = filters.refuse_seconds
    if not math.isfinite(value) or value < 0:
        raise CallError(Code.INVALID_ARGUMENT, "filters.refuse_seconds must be a number >= 0")
    return value


def _task_resources(task: common_pb2.TaskInfo) -> Resources:
    """The task's resources once common/task_check.py finds nothing wrong with it;
    CallError INVALID_ARGUMENT naming the field otherwise."""
    try:
        task_check.check(task)
    except task_check.TaskError as e:
        raise CallError(Code.INVALID_ARGUMENT, f"{e} (field {e.field})") from None
    return Resources.from_proto(task.resources)


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
