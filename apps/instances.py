"""An app's instance: one task the apps service launched for it. Pure, no I/O.

An instance's state is its task's state as the master reports it (observed),
moved through the task lifecycle (common/task_states.py TASK):

    (launch decided, record written) ─▶ STAGING ─▶ STARTING ─▶ RUNNING ─▶ terminal
                                           any live state ─▶ KILLING ─▶ terminal
                                           any live state ─▶ UNREACHABLE ─▶ back

and beside it what the service wants of it (desired): `kill_requested`, with
the reason, once the service decided to kill it (scale down, rolling restart,
app removed, an overdue unreachable instance replaced). A kill is kept (in the
record, so in the store) until a terminal update confirms it: the master
re-drives it to an agent that was away (issue "Nothing a user asks for is
lost"). `healthy` is the executor's last health report (None: unknown, or the
app has no health checks); `healthy_since` the clock time it last turned true.

`record()` / `from_record()` are the JSON kept in the store under
`instances/<instance id>`: what a restarted service needs to reconcile (which
app and config version, which agent, whether a kill was asked for); the state
itself is asked of the master again (reconciliation), never trusted from disk.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from juggler.common.lifecycle import Step, new_story
from juggler.common.task_states import ACTIVE, TASK, TERMINAL, S

__all__ = ["ACTIVE", "TERMINAL", "Instance", "S", "instance_id_prefix", "kill_order"]


def instance_id_prefix(app_id: str) -> str:
    """The task-id prefix of an app's instances, Marathon's: "/prod/web" →
    "prod_web." (task ids allow [A-Za-z0-9_.-] only)."""
    return app_id.strip("/").replace("/", "_") + "."


@dataclass(eq=False)
class Instance:
    """One task of an app. Times are the injected clock's epoch seconds
    (`Clock.time()`): they are shown to people and survive a restart."""

    id: str
    app_id: str
    version: str          # the app's config version this instance runs
    agent_id: str
    hostname: str
    attributes: dict[str, str]
    staged_at: float
    state: int = S.TASK_STAGING
    healthy: bool | None = None
    healthy_since: float | None = None
    started_at: float | None = None
    unreachable_since: float | None = None
    checked: bool = False      # its version has a health check (Instance.is_healthy)
    ports: list[int] = field(default_factory=list)   # the host ports it was given
    service_ports: list[int] = field(default_factory=list)  # its app's, at launch
    ip_addresses: list[str] = field(default_factory=list)   # TaskStatus.ip_addresses
    kill_requested: str = ""   # why the service asked for the kill; "" when it did not
    message: str = ""          # the last status update's message
    exit_code: int | None = None
    story: deque[Step] = field(default_factory=new_story)

    # -- what the core asks ---------------------------------------------------
    @property
    def live(self) -> bool:
        """Not ended: the task may still run (unreachable ones included)."""
        return self.state in ACTIVE

    @property
    def running(self) -> bool:
        return self.state == S.TASK_RUNNING

    def is_healthy(self) -> bool:
        """RUNNING, and healthy by its checks when its version has any
        (Marathon counts a running instance without checks as healthy). An
        instance is judged by its own version's checks, not the app's
        current ones: adding a check does not make the old instances
        unhealthy."""
        if self.state != S.TASK_RUNNING or self.kill_requested:
            return False
        return self.healthy is True if self.checked else True

    def is_unhealthy(self) -> bool:
        """Known not to serve: not running (yet), or its checks failing.
        (Health not reported yet, inside a grace period, is neither.)"""
        if self.state != S.TASK_RUNNING:
            return True
        return self.checked and self.healthy is False

    def healthy_for(self, now: float) -> float:
        """Seconds this instance has been healthy (0 when it is not)."""
        if not self.is_healthy():
            return 0.0
        since = self.healthy_since if self.checked else self.started_at
        return max(0.0, now - since) if since is not None else 0.0

    # -- how it changes -------------------------------------------------------
    def observe(self, state: int, healthy: bool | None, message: str, at: float,
                exit_code: int | None = None) -> bool:
        """A status update: moves the state through the task lifecycle, records
        health. Returns False (and changes nothing) for an update the table
        does not allow (a late duplicate: RUNNING after KILLED)."""
        if state != self.state:
            if not TASK.allows(self.state, state):
                return False
            TASK.move(self, self.id, state, message or TASK.name(state), at)
        if state == S.TASK_RUNNING and self.started_at is None:
            self.started_at = at
        if state == S.TASK_UNREACHABLE:
            if self.unreachable_since is None:
                self.unreachable_since = at
        else:
            self.unreachable_since = None
        if healthy is not None and healthy != self.healthy:
            self.healthy_since = at if healthy else None
        if healthy is not None:
            self.healthy = healthy
        if state in TERMINAL or state == S.TASK_KILLING:
            self.healthy_since = None
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code
        return True

    def request_kill(self, why: str) -> bool:
        """Record the wish to kill; False when it was already asked for."""
        if self.kill_requested:
            return False
        self.kill_requested = why
        return True

    # -- the store ------------------------------------------------------------
    def record(self) -> dict[str, Any]:
        return {"id": self.id, "appId": self.app_id, "version": self.version,
                "agentId": self.agent_id, "hostname": self.hostname,
                "attributes": self.attributes, "stagedAt": self.staged_at,
                "startedAt": self.started_at, "checked": self.checked, "ports": self.ports,
                "servicePorts": self.service_ports, "killRequested": self.kill_requested}

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> Instance:
        inst = cls(id=r["id"], app_id=r["appId"], version=r["version"], agent_id=r["agentId"],
                   hostname=r["hostname"], attributes=dict(r.get("attributes") or {}),
                   staged_at=float(r["stagedAt"]), started_at=r.get("startedAt"),
                   checked=bool(r.get("checked")), ports=list(r.get("ports") or []),
                   service_ports=list(r.get("servicePorts") or []),
                   kill_requested=r.get("killRequested") or "")
        inst.story.append(Step(inst.staged_at, "task", None, S.TASK_STAGING,
                               "recovered from the store"))
        return inst


def kill_order(instances: list[Instance], selection: str) -> list[Instance]:
    """The order in which to kill `instances` when there are too many:
    those known not to serve first, then those whose health is not known
    yet, the healthy last; within each, Marathon's killSelection:
    YOUNGEST_FIRST (latest staged first) or OLDEST_FIRST."""
    youngest = selection != "OLDEST_FIRST"
    return sorted(instances, key=lambda i: (not i.is_unhealthy(), i.is_healthy(),
                                            -i.staged_at if youngest else i.staged_at, i.id))
