"""The apps service's state as Marathon's REST API shows it. Pure: objects in,
JSON-able dicts out, in Marathon's spelling (docs "Marathon REST API"), with
no key that Marathon's own clients do not know (the `marathon` PyPI client
builds its models with `cls(**json)` and refuses unknown keys); juggler's
additions go where that client keeps raw JSON (the queue's offers).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from juggler.apps import ports
from juggler.apps.definition import render_app
from juggler.apps.instances import Instance
from juggler.apps.plan import Deployment
from juggler.common.resources import Resources
from juggler.v1 import common_pb2

if TYPE_CHECKING:
    from juggler.apps.state import App, AppsState


def iso(epoch: float) -> str:
    """Marathon's timestamps and version ids: "2026-11-30T15:20:01.123Z"."""
    whole = int(epoch)
    ms = round((epoch - whole) * 1000)
    if ms == 1000:
        whole, ms = whole + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{ms:03d}Z"


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else iso(epoch)


def step_json(d: Deployment) -> dict[str, Any]:
    return {"actions": [{"action": a.action, "app": a.app_id} for a in d.current_actions]}


def _group(side: dict[str, Any], version: str) -> dict[str, Any]:
    apps = [render_app(v.app) | {"version": v.version} for v in side.values() if v is not None]
    return {"id": "/", "apps": sorted(apps, key=lambda a: a["id"]), "groups": [],
            "dependencies": [], "version": version}


def plan_json(d: Deployment) -> dict[str, Any]:
    """A deployment plan as Marathon's events carry it: id, version, steps,
    and the original and target states as root groups of the apps it
    changes."""
    return {"id": d.id, "version": d.version,
            "steps": [{"actions": [{"action": a.action, "app": a.app_id} for a in s]}
                      for s in d.steps],
            "original": _group(d.original, d.version),
            "target": _group(d.target, d.version)}


def deployment_json(d: Deployment) -> dict[str, Any]:
    """GET /v2/deployments entry. `currentStep` counts from 1 as Marathon's."""
    return {
        "id": d.id,
        "version": d.version,
        "affectedApps": d.affected_apps,
        "affectedPods": [],
        "steps": [{"actions": [{"action": a.action, "app": a.app_id} for a in s]}
                  for s in d.steps],
        "currentActions": [{"action": a.action, "app": a.app_id, "readinessCheckResults": []}
                           for a in d.current_actions],
        "currentStep": min(d.step + 1, len(d.steps)),
        "totalSteps": len(d.steps),
    }


def ip_addresses_json(inst: Instance) -> list[dict[str, str]]:
    """Marathon's task `ipAddresses`: the container's addresses on its
    network (TaskStatus.ip_addresses; none on host networking)."""
    return [{"ipAddress": ip, "protocol": "IPv6" if ":" in ip else "IPv4"}
            for ip in inst.ip_addresses]


def task_json(inst: Instance) -> dict[str, Any]:
    """A task as /v2/tasks and embed=apps.tasks show it: `host` the agent's
    hostname, `ports` its host ports, `servicePorts` its app's, `ipAddresses`
    (its health results when its version has a check)."""
    out: dict[str, Any] = {
        "id": inst.id,
        "appId": inst.app_id,
        "host": inst.hostname,
        "slaveId": inst.agent_id,
        "state": common_pb2.TaskState.Name(inst.state),
        "stagedAt": _iso(inst.staged_at),
        "startedAt": _iso(inst.started_at),
        "version": inst.version,
        "ports": list(inst.ports),
        "servicePorts": list(inst.service_ports),
        "ipAddresses": ip_addresses_json(inst),
        "healthCheckResults": [],
    }
    if inst.checked and inst.healthy is not None:
        out["healthCheckResults"] = [{
            "alive": bool(inst.healthy), "consecutiveFailures": 0,
            "firstSuccess": _iso(inst.healthy_since), "lastFailure": None,
            "lastSuccess": _iso(inst.healthy_since) if inst.healthy else None,
            "lastFailureCause": None if inst.healthy else inst.message,
            "taskId": inst.id, "instanceId": inst.id}]
    return out


def task_counts(a: App) -> tuple[int, int, int, int]:
    """(staged, running, healthy, unhealthy) instances of `a`, as Marathon's
    tasksStaged/tasksRunning/tasksHealthy/tasksUnhealthy: healthy and
    unhealthy count only running instances whose health checks have passed /
    failed, so an app without health checks has 0 of each."""
    staged = running = healthy = unhealthy = 0
    for inst in a.instances.values():
        if inst.state in (common_pb2.TASK_STAGING, common_pb2.TASK_STARTING):
            staged += 1
        elif inst.state == common_pb2.TASK_RUNNING:
            running += 1
            if inst.checked and inst.healthy is True:
                healthy += 1
            elif inst.checked and inst.healthy is False:
                unhealthy += 1
    return staged, running, healthy, unhealthy


def app_json(state: AppsState, a: App, *, embed_tasks: bool = False,
             embed_failures: bool = False) -> dict[str, Any]:
    """GET /v2/apps/{id}'s "app": the definition, its version and counts."""
    out = render_app(a.current.app)
    if ports.host_networking(a.current.app):
        # Marathon's read-only `ports`: the service ports (host networking
        # only, so that a client sending the app back does not give `ports`
        # to an app on a container network, where they are refused).
        out["ports"] = ports.service_ports(a.current.app)
    if a.stopping:
        out["instances"] = 0
    staged, running, healthy, unhealthy = task_counts(a)
    out.update({
        "version": a.current.version,
        "versionInfo": {"lastScalingAt": a.last_scaling_at or a.current.version,
                        "lastConfigChangeAt": a.current.config_version},
        "tasksStaged": staged,
        "tasksRunning": running,
        "tasksHealthy": healthy,
        "tasksUnhealthy": unhealthy,
        "deployments": [{"id": d.id} for d in state.locked_by([a.id])],
    })
    if embed_tasks:
        out["tasks"] = [task_json(i)
                        for i in sorted(a.instances.values(), key=lambda i: i.staged_at)]
    if embed_failures and a.last_failure is not None:
        out["lastTaskFailure"] = a.last_failure
    return out


def _offer_json(offer: common_pb2.Offer) -> dict[str, Any]:
    r = Resources.from_proto(offer.resources)
    return {"id": offer.id, "agentId": offer.agent_id, "hostname": offer.hostname,
            "resources": [{"name": n, "scalar": r.get(n), "role": offer.role or "*"}
                          for n in ("cpus", "mem", "disk") if r.get(n)]
            + ([{"name": "ports", "ranges": [{"begin": b, "end": e} for b, e in r.ports.ranges],
                 "role": offer.role or "*"}] if r.ports else []),
            "attributes": [{"name": k, "text": v} for k, v in sorted(offer.attributes.items())]}


def queue_json(state: AppsState, *, embed_offers: bool = True) -> dict[str, Any]:
    """GET /v2/queue: every app with instances to launch, its backoff delay,
    and the last offers it saw with why each was not used (Marathon's
    reasons, and juggler's sentence under "juggler")."""
    now = state.clock.now()
    queue = []
    for a in sorted(state.apps.values(), key=lambda a: a.id):
        w = a.waiting
        if w.since is None:
            continue
        count = state.waiting_count(a)
        if count <= 0:
            continue
        left = max(0.0, a.delay_until - now)
        item: dict[str, Any] = {
            "count": count,
            "delay": {"timeLeftSeconds": round(left, 3), "overdue": left == 0.0},
            "since": _iso(w.since),
            "app": app_json(state, a),
            "processedOffersSummary": {
                "processedOffersCount": w.processed,
                "unusedOffersCount": w.unused,
                "lastUnusedOfferAt": _iso(w.last_unused_at),
                "rejectSummaryLastOffers": [
                    {"reason": r, "declined": n, "processed": w.processed}
                    for r, n in sorted(w.reasons.items())],
            },
        }
        if embed_offers:
            item["lastUnusedOffers"] = [
                {"offer": _offer_json(o["offer"]), "timestamp": _iso(o["timestamp"]),
                 "reason": o["reason"], "juggler": o["juggler"]} for o in w.last_offers]
        queue.append(item)
    return {"queue": queue}


def endpoints_text(apps: list[App]) -> str:
    """/v2/tasks and /v2/apps/{id}/tasks as text/plain: Marathon's
    load-balancer format (EndpointsHelper.appsToEndpointString), one line
    per app and service port, tab-separated and tab-terminated:
    "{app id with / → _}\t{service port}\t{host}:{host port}\t…\n" over the
    RUNNING tasks, addresses sorted; an app without service ports gives one
    line "{id}\t \t{host}\t…\n". A task without a host port at that index
    shows port 0 (Marathon's)."""
    lines = []
    for a in sorted(apps, key=lambda a: a.id):
        clean = "_".join(s for s in a.id.split("/") if s)
        running = [i for i in a.instances.values() if i.state == common_pb2.TASK_RUNNING]
        service = ports.service_ports(a.current.app)
        if not service:
            lines.append(f"{clean}\t \t" + "".join(
                f"{h}\t" for h in sorted(i.hostname for i in running)))
            continue
        for index, port in enumerate(service):
            at = ports.host_port_index(a.current.app, index)
            addresses = sorted(
                f"{i.hostname}:{i.ports[at] if at is not None and at < len(i.ports) else 0}"
                for i in running)
            lines.append(f"{clean}\t{port}\t" + "".join(f"{x}\t" for x in addresses))
    return "".join(line + "\n" for line in lines)
