"""The master's state as the Operator API shows it (operator.proto views).

Read-only functions of MasterState: what each agent, framework, task and role
holds, its lifecycle state and story, and the desired state (kill_requested,
maintenance) beside the observed one. Secret environment values show as
"<secret>" (common/secrets.py).
"""

from __future__ import annotations

from collections.abc import Iterable

from juggler.common import secrets, task_states
from juggler.common.lifecycle import Lifecycle, Step
from juggler.common.resources import Resources
from juggler.master.entries import AgentEntry, FrameworkEntry, TaskEntry
from juggler.master.lifecycles import AGENT, FRAMEWORK, MAINTENANCE
from juggler.master.state import MasterState
from juggler.v1 import operator_pb2


def task_view(state: MasterState, task: TaskEntry) -> operator_pb2.TaskView:
    agent = state.agents.get(task.agent_id)
    # A kill asked for and not yet done: once the task ended, it is done.
    killing = not task_states.is_terminal(task.state) and (
        task.kill is not None or state.kill_wanted(task) is not None)
    return operator_pb2.TaskView(
        info=secrets.task(task.info), framework_id=task.framework_id, agent_id=task.agent_id,
        state=task.state, status=task.status, history=task.history,
        launched_time=task.launched_time,
        agent_hostname=agent.info.hostname if agent else "",
        agent_address=agent.info.address if agent else "",
        kill_requested=killing)


def tasks_view(state: MasterState, include_completed: bool) -> operator_pb2.GetTasksResponse:
    """Tasks that have not ended; with `include_completed`, the ended ones too
    (those still waiting for an acknowledgement, then the completed)."""
    live = [t for t in state.tasks.values() if not task_states.is_terminal(t.state)]
    response = operator_pb2.GetTasksResponse(tasks=[task_view(state, t) for t in live])
    if include_completed:
        ended = [t for t in state.tasks.values() if task_states.is_terminal(t.state)]
        response.completed_tasks.extend(task_view(state, t)
                                        for t in [*state.completed_tasks, *ended])
    return response


def _story(steps: Iterable[Step], *lifecycles: Lifecycle) -> list[operator_pb2.Transition]:
    by_kind = {life.kind: life for life in lifecycles}
    return [operator_pb2.Transition(
        source="" if step.source is None else by_kind[step.kind].name(step.source),
        target=by_kind[step.kind].name(step.target), stimulus=step.stimulus, time=step.at)
        for step in steps]


def agent_view(state: MasterState, agent: AgentEntry,
               stories: bool = False) -> operator_pb2.AgentView:
    view = operator_pb2.AgentView(
        info=agent.info, state=agent.state, maintenance=agent.maintenance,
        total=agent.total.to_proto(), allocated=state.allocated_on(agent).to_proto(),
        offered=state.offered_on(agent).to_proto(), registered_time=agent.registered_time,
        last_seen_time=agent.last_seen_time, unreachable_time=agent.unreachable_time)
    if stories:
        view.story.extend(_story(agent.story, AGENT, MAINTENANCE))
    return view


def framework_view(state: MasterState, fw: FrameworkEntry,
                   stories: bool = False) -> operator_pb2.FrameworkView:
    allocated = Resources()
    for tid in fw.tasks:
        t = state.tasks[(fw.info.id, tid)]
        if not t.resources_recovered:
            allocated = allocated + t.resources
    offered = Resources()
    for oid in fw.offers:
        offered = offered + state.offers[oid].resources
    view = operator_pb2.FrameworkView(
        info=fw.info, connected=fw.connected, state=fw.state,
        registered_time=fw.registered_time,
        allocated=allocated.to_proto(), offered=offered.to_proto(),
        active_tasks=sum(1 for tid in fw.tasks
                         if not task_states.is_terminal(state.tasks[(fw.info.id, tid)].state)))
    if stories:
        view.story.extend(_story(fw.story, FRAMEWORK))
    return view


def frameworks_view(state: MasterState,
                    stories: bool = False) -> list[operator_pb2.FrameworkView]:
    """Frameworks not torn down, then torn-down ones whose tasks are still
    being killed."""
    return ([framework_view(state, f, stories) for f in state.frameworks.values()]
            + [framework_view(state, f, stories) for f in state.torn_down.values() if f.tasks])


def state_view(state: MasterState, leader: operator_pb2.GetLeaderResponse,
               stories: bool = False) -> operator_pb2.GetStateResponse:
    """GetState's answer: every agent, the frameworks (frameworks_view), the
    tasks and the completed ones (tasks_view), and `leader`."""
    tasks = tasks_view(state, True)
    return operator_pb2.GetStateResponse(
        agents=[agent_view(state, a, stories) for a in state.agents.values()],
        frameworks=frameworks_view(state, stories), tasks=tasks.tasks,
        completed_tasks=tasks.completed_tasks, leader=leader)


def roles_view(state: MasterState) -> operator_pb2.GetRolesResponse:
    names = set(state.roles.configs)
    members: dict[str, list[str]] = {}
    for fw in state.frameworks.values():
        for role in fw.info.roles:
            members.setdefault(role, []).append(fw.info.id)
            names.add(role)
    held: dict[str, Resources] = {}
    offered: dict[str, Resources] = {}
    for t in state.tasks.values():
        if not t.resources_recovered:
            held[t.role] = held.get(t.role, Resources()) + t.resources
            names.add(t.role)
    for o in state.offers.values():
        offered[o.role] = offered.get(o.role, Resources()) + o.resources
    return operator_pb2.GetRolesResponse(roles=[
        operator_pb2.RoleView(
            role=role, weight=state.roles.weight(role), quota=state.roles.quota(role),
            allocated=held.get(role, Resources()).to_proto(),
            offered=offered.get(role, Resources()).to_proto(),
            frameworks=sorted(members.get(role, [])))
        for role in sorted(names)])
