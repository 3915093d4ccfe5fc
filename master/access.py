"""The master's access decisions: which rule each call of its services needs.

The servicers (master/server.py) call these before handing a call to
MasterState, so a refused call changes nothing. They read MasterState (a
framework's principal, an offer's role, an agent's hostname) and never change
it; the rules themselves are common/access_rules.py's, applied through
common/access.py's AccessControl (which logs and counts every refusal). Each
function raises access.Denied for a refusal; servicers answer it
PERMISSION_DENIED with its message.

Where a call names something the master does not know (an unknown framework,
offer or agent), the check of that object is skipped and MasterState answers
NOT_FOUND as it does without rules.

Framework ownership (the contract of issue 18): a scheduler call on a framework
whose principal is not the caller's is refused — counted under the action
label "framework_owner" — except Kill and Teardown, which the rules
kill_tasks / teardown_frameworks may allow with the framework's principal as
object. As every check, ownership is enforced only once rules are on.
"""

from __future__ import annotations

from collections.abc import Iterable

from juggler.common.access import DENIED, AccessControl, Denied, log
from juggler.master.state import DEFAULT_ROLE, MasterState
from juggler.v1 import common_pb2, scheduler_pb2

# Every RPC of the master's services → the access rule(s) deciding it. The
# servicers follow it; tests/unit/test_access_coverage.py fails on an RPC
# missing here, so no new one is served unguarded.
DECISIONS: dict[str, str] = {
    "juggler.v1.Scheduler/Subscribe": "register_frameworks per role; the framework's "
                                      "principal is the caller's",
    "juggler.v1.Scheduler/Accept": "framework owner; run_tasks (user), run_host_network, "
                                   "run_host_filesystem, write_host_filesystem (role) per task",
    "juggler.v1.Scheduler/Decline": "framework owner",
    "juggler.v1.Scheduler/Revive": "framework owner",
    "juggler.v1.Scheduler/Suppress": "framework owner",
    "juggler.v1.Scheduler/Kill": "framework owner, else kill_tasks (framework principal)",
    "juggler.v1.Scheduler/Acknowledge": "framework owner",
    "juggler.v1.Scheduler/Reconcile": "framework owner",
    "juggler.v1.Scheduler/Teardown": "framework owner, else teardown_frameworks "
                                     "(framework principal)",
    "juggler.v1.AgentChannel/Connect": "register_agents (hostname); a known agent id "
                                       "only by the principal that registered it",
    "juggler.v1.Operator/GetState": "view_cluster",
    "juggler.v1.Operator/GetAgents": "view_cluster",
    "juggler.v1.Operator/GetFrameworks": "view_cluster",
    "juggler.v1.Operator/GetTasks": "view_cluster",
    "juggler.v1.Operator/GetLeader": "view_cluster",
    "juggler.v1.Operator/GetRoles": "view_cluster",
    "juggler.v1.Operator/DrainAgent": "drain_agents (hostname)",
    "juggler.v1.Operator/UpAgent": "drain_agents (hostname)",
    "juggler.v1.Operator/UpdateWeights": "update_weights per role",
    "juggler.v1.Operator/UpdateQuota": "update_quotas (role)",
}


def refuse(action: str, principal: str | None, obj: str | None, rule: str,
           message: str) -> Denied:
    """A refusal decided here rather than by a rule entry: logged and
    counted as AccessControl.check's are."""
    DENIED.labels(action=action).inc()
    log.warning("access denied", action=action, principal=principal, object=obj, rule=rule)
    return Denied(action, principal, obj, rule, message)


def subscribe(access: AccessControl, state: MasterState, principal: str | None,
              info: common_pb2.FrameworkInfo) -> None:
    """Subscribe: sets info.principal to the caller's ("" without one).
    Denied: info names another non-empty principal; (rules on) the id is of a
    framework of another principal; a role register_frameworks refuses.

    A framework that subscribed without a principal (before TLS was turned
    on: its registry record has none) is adopted by a caller with a
    principal that re-subscribes with its id only when teardown_frameworks
    allows that caller on the empty principal "" (a rule whose
    framework_principals is {"type": "ANY"} or {"values": ["*"]}: explicit,
    as taking a framework over is tearing its owner's hold down), and
    register_frameworks its roles. So turning security on does not lock a
    running framework (the apps service) out, and anyone allowed to
    subscribe cannot take it over with its id (shown by /v2/info)."""
    caller = principal or ""
    if info.principal and info.principal != caller:
        who = f"principal {caller!r}" if caller else "no principal (no client certificate)"
        raise refuse("register_frameworks", principal, info.principal, "principal",
                     f"permission denied: the framework names principal {info.principal!r} "
                     f"but the caller has {who} (rule principal)")
    if access.enabled and info.id:
        fw = state.frameworks.get(info.id) or state.torn_down.get(info.id)
        if fw is not None and fw.info.principal and fw.info.principal != caller:
            raise _not_owner(principal, info.id, fw.info.principal)
        if fw is not None and not fw.info.principal and caller:
            access.require("teardown_frameworks", principal, "")
    for role in info.roles or [DEFAULT_ROLE]:
        access.require("register_frameworks", principal, role)
    info.principal = caller


def framework_call(access: AccessControl, state: MasterState, principal: str | None,
                   framework_id: str, other_action: str | None = None) -> None:
    """A scheduler call on `framework_id`: the caller must be its principal,
    else `other_action` (kill_tasks, teardown_frameworks) must allow the
    caller on the framework's principal. Denied otherwise (rules on only)."""
    if not access.enabled:
        return
    fw = state.frameworks.get(framework_id) or state.torn_down.get(framework_id)
    if fw is None or fw.info.principal == (principal or ""):
        return
    if other_action is None:
        raise _not_owner(principal, framework_id, fw.info.principal)
    access.require(other_action, principal, fw.info.principal)


def _not_owner(principal: str | None, framework_id: str, owner: str) -> Denied:
    who = f"principal {principal!r}" if principal else "a caller without a principal"
    whose = (f"is principal {owner!r}'s" if owner
             else "was subscribed without a principal")
    return refuse("framework_owner", principal, owner, "framework principal",
                  f"permission denied: framework {framework_id} {whose}, not {who}'s "
                  "(rule framework principal)")


def task_user(task: common_pb2.TaskInfo, framework: common_pb2.FrameworkInfo) -> str:
    """Who the task runs as, as run_tasks sees it: command.user (USER or
    USER:GROUP as written: "alice" does not allow "alice:root", "0" is not
    "root") or the framework's user, else "root"."""
    return task.command.user or framework.user or "root"


def accept(access: AccessControl, state: MasterState, principal: str | None,
           framework_id: str, offer_ids: Iterable[str],
           operations: Iterable[scheduler_pb2.Operation]) -> None:
    """Accept: the framework's owner, then for every launched task run_tasks
    (its user), and by the offers' role run_host_network (NETWORK_HOST),
    run_host_filesystem (no rootfs and no image), write_host_filesystem
    (container.writable_host_filesystem). Denied at the first refusal: the
    whole Accept is refused and nothing is applied."""
    if not access.enabled:
        return
    framework_call(access, state, principal, framework_id)
    fw = state.frameworks.get(framework_id)
    if fw is None:
        return  # MasterState answers NOT_FOUND
    offer = next((state.offers.get(o) for o in offer_ids if o in state.offers), None)
    role = offer.role if offer is not None else (fw.info.roles or [DEFAULT_ROLE])[0]
    for op in operations:
        if op.WhichOneof("operation") != "launch":
            continue  # MasterState refuses it
        for task in op.launch.tasks:
            access.require("run_tasks", principal, task_user(task, fw.info))
            container = task.container
            if container.network == common_pb2.NETWORK_HOST:
                access.require("run_host_network", principal, role)
            if not container.rootfs and not container.image:
                access.require("run_host_filesystem", principal, role)
            if container.writable_host_filesystem:
                access.require("write_host_filesystem", principal, role)


def agent_connect(access: AccessControl, state: MasterState, principal: str | None,
                  agent: common_pb2.AgentInfo) -> None:
    """AgentChannel.Connect (register or re-register): register_agents on the
    hostname; with rules on, an agent id the master knows, registered by
    another principal, is refused ("agent principal"): one agent cannot take
    over another's id. Sets agent.principal to the caller's ("" without one).
    Denied otherwise."""
    access.require("register_agents", principal, agent.hostname)
    caller = principal or ""
    known = state.agents.get(agent.id) if agent.id else None
    if (access.enabled and known is not None and known.info.principal
            and known.info.principal != caller):
        who = f"principal {caller!r}" if caller else "a caller without a principal"
        raise refuse("register_agents", principal, agent.hostname, "agent principal",
                     f"permission denied: agent {agent.id} was registered by principal "
                     f"{known.info.principal!r}, not by {who} (rule agent principal)")
    agent.principal = caller


def agent_hostname(state: MasterState, agent_id: str) -> str | None:
    """The hostname of a known agent (drain_agents' object); None if unknown."""
    agent = state.agents.get(agent_id)
    return agent.info.hostname if agent is not None else None
