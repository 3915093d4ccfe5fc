"""Re-registration: an agent that has an id comes back, to this master or to
a new leader, with what it runs, and its report is reconciled with the
master's book (`Reregistration.reregister_agent`, a part of MasterState).

    the agent reports              the master
    ───────────────────────────    ────────────────────────────────────────────
    a task it knows and runs       its record follows the agent's latest state
    a task the master does not     adopted (a new leader since): tracked again,
      know                           with any kill asked for it meanwhile
    a task that ended, updates     held in its terminal state (no resources)
      still to send (next_update)    until they are acknowledged
    a task tracked on another      a stale copy: killed, its updates
      agent                          acknowledged here, never told
    nothing of a task the master   DROPPED (never started) or GONE
      has on it

Then everything desired is driven again: kills, maintenance, pending kills.
Pure, as the rest of MasterState (master/state.py): it returns commands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from juggler.common import task_states
from juggler.common.resources import ResourceError, Resources
from juggler.master.agent_book import AgentBook, agent_total, check_attributes
from juggler.master.allocator import Allocator
from juggler.master.commands import (
    Allocate,
    CallError,
    Code,
    Command,
    Log,
    Persist,
    kill_key,
    kill_on,
)
from juggler.master.entries import (
    DEFAULT_ROLE,
    A,
    AgentEntry,
    F,
    FrameworkEntry,
    M,
    S,
    TaskEntry,
)
from juggler.v1 import agent_pb2, common_pb2, registry_pb2

if TYPE_CHECKING:
    from collections import OrderedDict
    from collections.abc import Iterable

    from juggler.common.clock import Clock


class Reregistration:
    """MasterState's re-registration of agents (a mixin: it works on
    MasterState's book, whose attributes it names below, and calls its
    lifecycle and desired-state methods)."""

    clock: Clock
    allocator: Allocator
    agents: AgentBook
    frameworks: dict[str, FrameworkEntry]
    torn_down: OrderedDict[str, FrameworkEntry]
    tasks: dict[tuple[str, str], TaskEntry]
    pending_kills: dict[tuple[str, str, str], registry_pb2.KillRecord]
    stale: dict[tuple[str, str, str], tuple[str, Resources, common_pb2.KillPolicy]]

    def reregister_agent(self, info: common_pb2.AgentInfo,
                         statuses: Iterable[common_pb2.TaskStatus],
                         running: Iterable[agent_pb2.AgentMessage.RunningTask],
                         ) -> tuple[str, list[Command]]:
        """An agent that has an id comes back with what it runs.

        Its report is the truth about its tasks: tasks the master knows but the
        agent does not are DROPPED (never started) or GONE; tasks the agent
        runs that the master does not know (after a master restart) are
        adopted, and those that ended with updates still to send are held
        until their terminal update is acknowledged (the module docstring's
        table). A task whose id the master tracks on another agent (its
        framework reused the id while this agent was away) is a stale copy: it
        is killed and its updates are acknowledged by the master, never passed
        on. Then everything desired is driven again: each task that must end
        (kill_wanted) is sent its kill, after `registered`.

        Everything is checked before anything changes. Raises CallError
        INVALID_ARGUMENT (no id, bad resources or attributes, a task's
        resources that do not parse), FAILED_PRECONDITION when its tasks use
        more than the resources it registers with (it was restarted with less),
        AgentGone for a GONE agent."""
        total = agent_total(info)
        check_attributes(info)
        self.agents.refuse_gone(info.id)
        if not info.id:
            raise CallError(Code.INVALID_ARGUMENT, "re-registration without an agent id")
        statuses = list(statuses)
        running = list(running)
        latest = {(s.framework_id, s.task_id): s for s in statuses}
        # Tasks the agent still knows of. Terminal ones among them have an update
        # on its way (retried until acknowledged): they hold no resources any more.
        known = {(rt.framework.id, rt.task.task_id) for rt in running}
        reported: dict[tuple[str, str], tuple[agent_pb2.AgentMessage.RunningTask, str,
                                              Resources]] = {}
        ended: dict[tuple[str, str], tuple[agent_pb2.AgentMessage.RunningTask, str,
                                           Resources]] = {}
        used: dict[tuple[str, str], Resources] = {}
        for rt in running:
            key = (rt.framework.id, rt.task.task_id)
            st = latest.get(key)
            role = (rt.task.resources[0].role if rt.task.resources else "") or DEFAULT_ROLE
            try:
                res = Resources.from_proto(rt.task.resources)
            except ResourceError as e:
                raise CallError(Code.INVALID_ARGUMENT, f"task {rt.task.task_id} of agent "
                                f"{info.hostname}: {e}") from None
            if task_states.is_terminal(st.state if st is not None else S.TASK_STAGING):
                ended[key] = (rt, role, res)
                continue
            reported[key] = (rt, role, res)
            used[(key[0], role)] = used.get((key[0], role), Resources()) + res
        in_use = Resources()
        for r in used.values():
            in_use = in_use + r
        if sum(r.ports.count() for _, _, r in reported.values()) != in_use.ports.count():
            raise CallError(Code.FAILED_PRECONDITION,
                            f"agent {info.hostname} ({info.id}) reports tasks that share host "
                            f"ports ({shared_ports(reported.values())}): a port is one task's")
        if used and not total.contains(in_use):
            raise CallError(Code.FAILED_PRECONDITION,
                            f"agent {info.hostname} ({info.id}) registers {total.describe()} "
                            f"but its tasks use {in_use.describe()}: start it with at least "
                            "that much (--resources)")
        # -- nothing below can fail --
        commands: list[Command] = []
        agent = self.agents.get(info.id)
        if agent is None:
            agent = self.agents.admit(info, total, "re-registered, unknown to this master")
            back_from_unreachable = False
        else:
            # Offers made against the agent's old state are void.
            commands += self._rescind_agent_offers(agent)
            back_from_unreachable = agent.state == A.AGENT_UNREACHABLE
            why = {A.AGENT_ACTIVE: "re-registered over a new stream",
                   A.AGENT_UNREACHABLE: "re-registered after being unreachable"
                   }.get(agent.state, "re-registered")
            self.agents.move(agent, A.AGENT_ACTIVE, why)
            self.agents.seen(info.id)
        self.agents.back(agent)
        if self.allocator.has_agent(info.id):
            self.allocator.remove_agent(info.id)
        agent.info = info
        agent.total = total
        agent.unreachable_since = None
        agent.unreachable_time = 0.0
        # Tasks the master has on this agent that the agent no longer reports.
        for key in sorted(agent.tasks):
            task = self.tasks[key]
            if key in reported:
                continue
            if key in known or task_states.is_terminal(task.state):
                # It ended on the agent (its update is on its way): the record
                # says so from now on.
                st = latest.get(key)
                if (st is not None and not task_states.is_terminal(task.state)
                        and task_states.TASK.allows(task.state, st.state)):
                    commands += self._task_move(task, st.state, None)
                task.resources_recovered = True
                continue
            # Never started: STAGING, or only the master ever spoke of it (its
            # launch was lost on the way, then the agent went UNREACHABLE).
            if task.state == S.TASK_STAGING or all(
                    h.source == common_pb2.SOURCE_MASTER for h in task.history):
                commands += self._master_update(
                    task, S.TASK_DROPPED, common_pb2.REASON_AGENT_RESTARTED,
                    "the agent re-registered without the task: it never started")
            else:
                commands += self._master_update(
                    task, S.TASK_GONE, common_pb2.REASON_AGENT_RESTARTED,
                    "the agent re-registered without the task")
            task.resources_recovered = True
        # Tasks the agent reports: adopt the unknown ones, reconcile the rest.
        if self.stale:
            self._forget_stale(info.id)
        for key, (rt, role, res) in sorted(reported.items()):
            fid = rt.framework.id
            st = latest.get(key)
            task = self.tasks.get(key)
            if task is not None and task.agent_id != info.id and task.reported_ended:
                self._untrack(task)   # its update, when it comes, is a stale copy's
                task = None
            if task is not None and task.agent_id != info.id:
                commands += self._stale_copy(agent, rt, role, res)
                continue
            if task is None:
                task, adopted = self._adopt(agent, rt, st, role, res)
                commands += adopted
            elif (back_from_unreachable and st is not None and st.state != task.state
                    and task_states.TASK.allows(task.state, st.state)):
                # What the agent saw while it was away. A framework that is not
                # partition-aware was told LOST and has likely replaced the task:
                # it hears nothing more of it, and the task is killed below.
                commands += self._master_update(
                    task, st.state, common_pb2.REASON_RECONCILIATION,
                    "the agent is reachable again", tell=not task.told_end)
            elif (st is not None and st.state != task.state
                    and task_states.TASK.allows(task.state, st.state)):
                commands += self._task_move(task, st.state, None)  # its update follows
            if back_from_unreachable and task.told_end:
                commands += self._record_kill(task, task.kill or task.info.kill_policy)
            task.resources_recovered = False
        # Tasks that ended on the agent with updates still to send (the agent
        # names the next, `next_update`), unknown to this master (a new leader
        # since): held in their terminal state, holding no resources, told
        # from that next update on, until the terminal update is acknowledged,
        # so that a reconciliation meanwhile answers that they ended, not
        # TASK_GONE (Mesos's master adds an agent's terminal, unacknowledged
        # tasks from its re-registration too, with their status_update_uuid).
        # Not held: a copy of an id tracked elsewhere (left to its update:
        # _stale_update), one this master completed already (its
        # acknowledgement did not reach the agent), one of a framework this
        # master does not hold (its updates are acknowledged on arrival).
        for key, (rt, role, res) in sorted(ended.items()):
            if (rt.next_update.uuid and key not in self.tasks and key[0] in self.frameworks
                    and not self._completed(*key)):
                self._adopt(agent, rt, latest[key], role, res, ended=True)
        self.allocator.add_agent(info.id, total, used)
        if agent.maintenance != M.MAINTENANCE_NONE:
            self.allocator.deactivate_agent(info.id)
            if agent.maintenance == M.MAINTENANCE_DOWN and any(
                    self.tasks.get(k) is not None and self.tasks[k].agent_id == info.id
                    for k in reported):
                self.agents.set_maintenance(agent, M.MAINTENANCE_DRAINING,
                                            "it reported tasks while DOWN")
        commands += self._maybe_down(agent)
        commands += self._registered(agent)
        # Desired state, driven again now that the agent can hear it.
        for key in sorted(reported):
            task = self.tasks.get(key)
            if task is not None and task.agent_id == info.id:
                commands += self._drive_kill(task)
        for (agent_id, fid, tid), (_, _, policy) in sorted(self.stale.items()):
            if agent_id == info.id:
                commands.append(kill_on(agent_id, fid, tid, policy))
        if self.pending_kills:
            commands += self._drop_unreported_kills(agent)
        return info.id, [*commands, Allocate()]

    def _stale_copy(self, agent: AgentEntry, rt: agent_pb2.AgentMessage.RunningTask,
                    role: str, res: Resources) -> list[Command]:
        """A task the agent reports whose id this master tracks on another agent:
        its framework reused the id while this agent was away, so this copy is
        stale. It holds its resources until it ends; it is killed (Registered
        first, then the kill); its updates are acknowledged here."""
        fid, tid = rt.framework.id, rt.task.task_id
        self.stale[(agent.info.id, fid, tid)] = (role, res, rt.task.kill_policy)
        pkey = (fid, tid, agent.info.id)  # a Kill naming no agent waits for other copies
        if self.pending_kills.pop(pkey, None) is not None:  # it is killed anyway
            return [Persist(kill_key(*pkey), None), *self._log_stale(agent, fid, tid)]
        return self._log_stale(agent, fid, tid)

    def _log_stale(self, agent: AgentEntry, fid: str, tid: str) -> list[Command]:
        return [Log("warning", "a stale copy of a task came back; killing it",
                    (("agent_id", agent.info.id), ("framework_id", fid), ("task_id", tid),
                     ("tracked_on", self.tasks[(fid, tid)].agent_id)))]

    def _adopt(self, agent: AgentEntry, rt: agent_pb2.AgentMessage.RunningTask,
               st: common_pb2.TaskStatus | None, role: str, res: Resources, *,
               ended: bool = False) -> tuple[TaskEntry, list[Command]]:
        """A task an agent reports that this master did not know (it took over
        since): tracked again, with any kill asked for it meanwhile (its record
        now under the task's agent). `ended`: the task ended on the agent (`st`
        says in which state) and is told from `rt.next_update` on: its
        resources are free and a kill asked for it is done
        (_drop_unreported_kills removes its record)."""
        fid = rt.framework.id
        fw = self.frameworks.get(fid) or self.torn_down.get(fid)
        if fw is None:
            fw = self._add_framework(rt.framework, F.FRAMEWORK_DISCONNECTED,
                                     f"known from agent {agent.info.id}'s re-registration")
        elif not self.allocator.has_framework(fid):  # torn down, its tasks had ended
            self.allocator.add_framework(fid, fw.info.roles or [DEFAULT_ROLE])
            self.allocator.deactivate_framework(fid)
        launched = rt.launched_time or self.clock.time()
        state = st.state if st is not None else S.TASK_STAGING
        if ended:   # told from the update its agent sends next
            st = common_pb2.TaskStatus()
            st.CopyFrom(rt.next_update)   # not a part of the caller's message
        else:
            told = common_pb2.TaskStatus(task_id=rt.task.task_id, framework_id=fid,
                                         agent_id=agent.info.id, state=S.TASK_STAGING,
                                         source=common_pb2.SOURCE_AGENT)
            if st is not None:
                told.CopyFrom(st)   # the caller's is not changed
            # Its story starts when its agent got it (what `juggler ps` ages it by).
            told.timestamp = launched
            st = told
        task = TaskEntry(info=rt.task, framework_id=fid, agent_id=agent.info.id, role=role,
                         resources=res, launched_time=launched, state=state, status=st,
                         reported_ended=ended)
        task.history.append(st)
        self.tasks[(fid, rt.task.task_id)] = task
        fw.tasks.add(rt.task.task_id)
        agent.tasks.add((fid, rt.task.task_id))
        commands: list[Command] = []
        if ended:
            task.resources_recovered = True
            task.latest_uuid = st.uuid  # that update, when it comes, is not news
            return task, commands
        # A Kill naming no agent stays pending for other agents' copies (until
        # every agent is back: _drop_orphan_kills); one naming this agent is
        # taken up.
        for pkey in [(fid, rt.task.task_id, ""), (fid, rt.task.task_id, agent.info.id)]:
            pending = (self.pending_kills.get(pkey) if not pkey[2]
                       else self.pending_kills.pop(pkey, None))
            if pending is not None:
                if pkey[2]:
                    commands.append(Persist(kill_key(*pkey), None))
                commands += self._record_kill(task, pending.kill_policy
                                              if pending.HasField("kill_policy")
                                              else rt.task.kill_policy)
        return task, commands

    def _drop_unreported_kills(self, agent: AgentEntry) -> list[Command]:
        """Pending kills naming this agent that its registration did not take up
        (the tasks it brought back took theirs): the tasks are not there."""
        commands: list[Command] = []
        for key in sorted(self.pending_kills):
            if key[2] == agent.info.id:
                del self.pending_kills[key]
                commands.append(Persist(kill_key(*key), None))
        return commands


def shared_ports(reported: Iterable[tuple[object, str, Resources]]) -> str:
    """The ports two or more of `reported`'s resources hold, as "[8080]"."""
    seen = shared = Resources().ports
    for _, _, res in reported:
        shared = shared | (seen & res.ports)
        seen = seen | res.ports
    return str(shared)
