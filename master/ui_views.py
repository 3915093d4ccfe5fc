"""What the master's web UI shows (master/http.py, master/ui/): pure functions
from the Operator API's GetStateResponse, and from an apps service's REST
answers, to the JSON the UI's pages render.

Shapes (every time in seconds since the epoch; cpus in cores, mem and disk
in MiB, ports as a count of ports):

    state_json(...) -> {
      "master": {"self", "leader", "is_leader", "masters": [address...],
                 "answered_by": the master whose state this is (the leader)},
      "resources": {"total"|"used"|"offered": {"cpus", "mem", "disk", "ports"}},
      "agents": [{"id", "hostname", "address", "state", "maintenance",
                  "total"|"used"|"offered": {...}, "metrics_url",
                  "registered_time", "last_seen_time", "attributes"}],
      "frameworks": [{"id", "name", "roles", "state", "active_tasks",
                      "tasks": {state: count}, "webui_url", "used", "offered",
                      "registered_time"}],
      "tasks": [{"id", "name", "framework_id", "framework_name", "agent_id",
                 "agent_hostname", "state", "reason", "message", "healthy",
                 "launched_time", "updated_time", "completed", "logs_url"}]}

    apps_json(url, apps_answer, deployments_answer) -> {
      "url", "apps": [{"id", "instances", "running", "staged", "healthy",
                       "unhealthy", "deployments": [id...], "version"}],
      "deployments": [{"id", "apps": [id...], "step", "steps",
                       "actions": ["scale /web", ...]}]}

Names are the Operator API's enum names without their prefix (ACTIVE,
RUNNING, COMMAND_EXITED), as `juggler` prints them. A link the UI renders
is either this master's own (/api/...) or an http(s) URL: any other scheme a
framework registers as its webui_url (javascript:, data:) is dropped here.
Cluster resources, as Mesos's overview shows them, count every agent that is
not GONE.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from juggler.common import task_states
from juggler.common.resources import Resources
from juggler.v1 import common_pb2, operator_pb2

LOG_TAIL = 200  # lines of a task's output its logs link asks for


def amounts(resources: Iterable[common_pb2.Resource]) -> dict[str, float]:
    """{"cpus", "mem", "disk", "ports"}: cores, MiB, MiB, a count of ports."""
    r = Resources.from_proto(resources)
    return {"cpus": r.get("cpus"), "mem": r.get("mem"), "disk": r.get("disk"),
            "ports": float(r.ports.count())}


def _add(a: dict[str, float], b: Mapping[str, float]) -> dict[str, float]:
    return {k: round(a.get(k, 0.0) + b.get(k, 0.0), 3) for k in (*a, *b)}


def web_url(url: str) -> str:
    """`url` when it is http(s), else "" (nothing else may become a link)."""
    return url if url.lower().startswith(("http://", "https://")) else ""


def logs_url(task_id: str, framework_id: str, stream: str = "stdout",
             tail: int = LOG_TAIL) -> str:
    """This master's link to a task's output (GET /api/tasks/{id}/logs)."""
    query = urlencode({"framework": framework_id, "stream": stream, "tail": tail})
    return f"/api/tasks/{quote(task_id, safe='')}/logs?{query}"


def agent_json(a: operator_pb2.AgentView) -> dict[str, Any]:
    metrics = a.info.metrics_address
    return {
        "id": a.info.id, "hostname": a.info.hostname, "address": a.info.address,
        "state": operator_pb2.AgentState.Name(a.state).removeprefix("AGENT_"),
        "maintenance": operator_pb2.MaintenanceState.Name(a.maintenance)
        .removeprefix("MAINTENANCE_"),
        "total": amounts(a.total), "used": amounts(a.allocated), "offered": amounts(a.offered),
        "metrics_url": f"http://{metrics}/metrics" if metrics else "",
        "registered_time": a.registered_time, "last_seen_time": a.last_seen_time,
        "attributes": dict(sorted(a.info.attributes.items())),
    }


def task_json(t: operator_pb2.TaskView, framework_names: Mapping[str, str],
              completed: bool) -> dict[str, Any]:
    status = t.status
    return {
        "id": t.info.task_id, "name": t.info.name, "framework_id": t.framework_id,
        "framework_name": framework_names.get(t.framework_id, ""),
        "agent_id": t.agent_id, "agent_hostname": t.agent_hostname,
        "state": task_states.name(t.state).removeprefix("TASK_"),
        "reason": (common_pb2.Reason.Name(status.reason).removeprefix("REASON_")
                   if status.reason else ""),
        "message": status.message,
        "healthy": status.healthy if status.HasField("healthy") else None,
        "launched_time": t.launched_time, "updated_time": status.timestamp,
        "completed": completed,
        "logs_url": logs_url(t.info.task_id, t.framework_id) if t.agent_address else "",
    }


def framework_json(f: operator_pb2.FrameworkView,
                   tasks: Sequence[operator_pb2.TaskView]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for t in tasks:
        if t.framework_id == f.info.id:
            name = task_states.name(t.state).removeprefix("TASK_")
            counts[name] = counts.get(name, 0) + 1
    return {
        "id": f.info.id, "name": f.info.name, "roles": list(f.info.roles) or ["*"],
        "state": operator_pb2.FrameworkState.Name(f.state).removeprefix("FRAMEWORK_"),
        "active_tasks": f.active_tasks, "tasks": dict(sorted(counts.items())),
        "webui_url": web_url(f.info.webui_url),
        "used": amounts(f.allocated), "offered": amounts(f.offered),
        "registered_time": f.registered_time,
    }


def state_json(state: operator_pb2.GetStateResponse, *, self_address: str,
               masters: Sequence[str]) -> dict[str, Any]:
    """The UI's /api/state from a GetStateResponse (this master's own, or the
    leader's when this one stands by: `self_address` says which answers)."""
    names = {f.info.id: f.info.name for f in state.frameworks}
    zero = {"cpus": 0.0, "mem": 0.0, "disk": 0.0, "ports": 0.0}
    total, used, offered = dict(zero), dict(zero), dict(zero)
    agents = []
    for a in state.agents:
        row = agent_json(a)
        agents.append(row)
        if a.state != operator_pb2.AGENT_GONE:
            total, used, offered = (_add(total, row["total"]), _add(used, row["used"]),
                                    _add(offered, row["offered"]))
    tasks = [task_json(t, names, False) for t in state.tasks]
    tasks += [task_json(t, names, True) for t in reversed(state.completed_tasks)]
    leader = state.leader
    return {
        "master": {"self": self_address, "leader": leader.address,
                   "is_leader": leader.is_leader and leader.self == self_address,
                   "masters": list(masters) or [leader.self], "answered_by": leader.self},
        "resources": {"total": total, "used": used, "offered": offered},
        "agents": sorted(agents, key=lambda r: (r["hostname"], r["id"])),
        "frameworks": [framework_json(f, [*state.tasks, *state.completed_tasks])
                       for f in state.frameworks],
        "tasks": tasks,
    }


def apps_json(url: str, apps: Any, deployments: Any) -> dict[str, Any]:
    """An apps service's apps and running deployments from its answers to
    GET /v2/apps?embed=apps.counts ({"apps": [...]}) and GET /v2/deployments
    ([...]), as Marathon's UI lists them; each deployment's "instances" is
    [{"app", "running", "wanted"}] for its affected apps still defined.
    Raises ValueError when an answer is not of that shape."""
    if not isinstance(apps, dict) or not isinstance(apps.get("apps"), list) \
            or not isinstance(deployments, list):
        raise ValueError("not the answers of a Marathon-style REST API")
    rows = [{
        "id": str(a.get("id", "")), "instances": a.get("instances", 0),
        "running": a.get("tasksRunning", 0), "staged": a.get("tasksStaged", 0),
        "healthy": a.get("tasksHealthy", 0), "unhealthy": a.get("tasksUnhealthy", 0),
        "deployments": [str(d.get("id", "")) for d in a.get("deployments", [])],
        "version": str(a.get("version", "")),
    } for a in apps["apps"]]
    by_id = {r["id"]: r for r in rows}
    plans = [{
        "id": str(d.get("id", "")), "apps": [str(x) for x in d.get("affectedApps", [])],
        "step": d.get("currentStep", 0), "steps": d.get("totalSteps", 0),
        "actions": [f"{a.get('action', '')} {a.get('app', '')}".strip()
                    for a in d.get("currentActions", [])],
        # What a scale or restart is waiting for: each affected app still
        # defined, its running instances of those it wants (/v2/apps counts).
        "instances": [{"app": x, "running": by_id[x]["running"],
                       "wanted": by_id[x]["instances"]}
                      for x in map(str, d.get("affectedApps", [])) if x in by_id],
    } for d in deployments]
    return {"url": url, "apps": sorted(rows, key=lambda r: r["id"]), "deployments": plans}
