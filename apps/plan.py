"""Deployments: the plan of steps from what runs to what is wanted, and the
arithmetic of rolling restarts. Pure, no I/O, time injected.

A deployment takes a set of apps from their `original` definitions to their
`target` ones (None on either side: the app does not exist there). Its plan,
as Marathon's DeploymentPlan:

    step 1: StopApplication for every app that goes (dependents first)
    step 2…: for each layer of the target's dependency order, one action an
             app that changes: StartApplication (new), ScaleApplication (only
             `instances` differs), RestartApplication (anything else differs)

A step is done when every app in it has converged (state.py decides that);
the next step starts then. Apps of a later step keep their original
definition until their step starts, so a dependency is up and healthy before
its dependents change.

Deployment lifecycle (Deployment.state):

    IN_PROGRESS → any terminal
    terminal: SUCCEEDED, FAILED, CANCELLED

FAILED: the progress deadline passed (Nomad's `progress_deadline`: no
instance of the target turned healthy for `progressDeadlineSeconds`);
CANCELLED: DELETE /v2/deployments/{id}, or a forced deployment of the same
apps took over. A failed or cancelled-with-rollback deployment is followed by
a new deployment back to the original definitions (Marathon's rollback).

Rolling restarts (Marathon's upgradeStrategy, docs "Upgrade Strategy"): with
N instances wanted, at least ceil(N × minimumHealthCapacity) healthy instances
at every moment and at most floor(N × (1 + maximumOverCapacity)) live ones;
when the two bounds are equal one instance more is allowed, or nothing could
move (Marathon does the same).
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from juggler.apps.definition import AppDefinition, InvalidDefinition, UpgradeStrategy
from juggler.common.lifecycle import Lifecycle, Step, new_story


class DeploymentState(enum.IntEnum):
    IN_PROGRESS = 1
    SUCCEEDED = 2
    FAILED = 3
    CANCELLED = 4


D = DeploymentState
DEPLOYMENT = Lifecycle("deployment", "state", {
    D.IN_PROGRESS: {D.SUCCEEDED, D.FAILED, D.CANCELLED},
    D.SUCCEEDED: set(), D.FAILED: set(), D.CANCELLED: set(),
}, lambda s: D(s).name)

START, SCALE, RESTART, STOP = ("StartApplication", "ScaleApplication", "RestartApplication",
                               "StopApplication")


@dataclass(frozen=True)
class Action:
    action: str   # START, SCALE, RESTART or STOP (Marathon's names)
    app_id: str


@dataclass(frozen=True)
class Versioned:
    """A definition with the version strings Marathon shows: `version` of this
    definition, `config_version` of its last change other than instances
    (versionInfo.lastConfigChangeAt; instances launched for it carry it)."""

    app: AppDefinition
    version: str
    config_version: str


@dataclass(eq=False)
class Deployment:
    id: str
    version: str
    original: dict[str, Versioned | None]
    target: dict[str, Versioned | None]
    steps: list[list[Action]]
    started_at: float          # epoch seconds (Clock.time)
    deadline: float            # monotonic seconds (Clock.now): fails when passed
    step: int = 0              # index of the current step
    state: int = D.IN_PROGRESS
    reason: str = ""
    rollback_of: str = ""      # the deployment this one reverts, if any
    progress: int = -1         # healthy new instances of the step when last counted
    story: deque[Step] = field(default_factory=new_story)

    @property
    def affected_apps(self) -> list[str]:
        return sorted(self.target)

    @property
    def current_actions(self) -> list[Action]:
        return self.steps[self.step] if self.step < len(self.steps) else []

    def record(self) -> dict[str, Any]:
        """What the store keeps (the definitions are kept by version elsewhere:
        `original`/`target` name app versions)."""
        def side(v: Versioned | None) -> list[str] | None:
            return None if v is None else [v.version, v.config_version]

        return {"id": self.id, "version": self.version, "startedAt": self.started_at,
                "step": self.step, "rollbackOf": self.rollback_of,
                "original": {k: side(v) for k, v in self.original.items()},
                "target": {k: side(v) for k, v in self.target.items()},
                "steps": [[[a.action, a.app_id] for a in s] for s in self.steps]}


def action_for(original: Versioned | None, target: Versioned | None) -> str | None:
    """The action that takes an app from `original` to `target`: RESTART
    when the config version changes (the definition changed in more than its
    instances, or a restart was asked for), SCALE when only the instances
    differ, None when nothing changes."""
    if target is None:
        return None if original is None else STOP
    if original is None:
        return START
    if original.config_version != target.config_version:
        return RESTART   # a changed definition, or a restart asked for
    return None if original.app == target.app else SCALE


def plan(original: Mapping[str, Versioned | None],
         target: Mapping[str, Versioned | None],
         known: Callable[[str], bool] = lambda app_id: False) -> list[list[Action]]:
    """The steps of a deployment (module docstring). `known(app_id)` says
    whether an app outside the deployment exists (a dependency on it is met).

    Raises InvalidDefinition (path "/dependencies") for a dependency on an app
    that exists nowhere, or a cycle among the apps deployed together."""
    steps: list[list[Action]] = []
    stops = [a for a in target if target[a] is None and original.get(a) is not None]
    if stops:
        steps.append([Action(STOP, a) for a in sorted(stops)])
    changing = {a: action_for(original.get(a), t) for a, t in target.items() if t is not None}
    wanted = {a: t for a, t in target.items() if t is not None}
    errors = []
    for app_id, t in sorted(wanted.items()):
        for dep in t.app.dependencies:
            if dep not in wanted and not known(dep) and not any(
                    w.startswith(dep.rstrip("/") + "/") for w in wanted):
                errors.append(f"{app_id} depends on {dep}, which does not exist")
    if errors:
        raise InvalidDefinition([{"path": "/dependencies", "errors": errors}])
    # Layers: an app comes after every app of this deployment it depends on
    # (a dependency on a group means every app under it).
    def deps(app_id: str) -> set[str]:
        out = set()
        for dep in wanted[app_id].app.dependencies:
            for other in wanted:
                if other == dep or other.startswith(dep.rstrip("/") + "/"):
                    out.add(other)
        out.discard(app_id)
        return out

    depth: dict[str, int] = {}
    visiting: set[str] = set()

    def layer(app_id: str, path: tuple[str, ...]) -> int:
        if app_id in depth:
            return depth[app_id]
        if app_id in visiting:
            cycle = " → ".join((*path[path.index(app_id):], app_id))
            raise InvalidDefinition([{"path": "/dependencies",
                                      "errors": [f"dependency cycle: {cycle}"]}])
        visiting.add(app_id)
        d = 1 + max((layer(x, (*path, app_id)) for x in deps(app_id)), default=-1)
        visiting.discard(app_id)
        depth[app_id] = d
        return d

    for app_id in wanted:
        layer(app_id, ())
    layers: dict[int, list[Action]] = {}
    for app_id in sorted(wanted, key=lambda a: (depth[a], a)):
        action = changing[app_id]
        if action is not None:
            layers.setdefault(depth[app_id], []).append(Action(action, app_id))
    steps.extend(layers[d] for d in sorted(layers))
    return steps


def bounds(instances: int, strategy: UpgradeStrategy) -> tuple[int, int]:
    """(minimum healthy, maximum live) during a rolling restart of
    `instances` (module docstring)."""
    min_healthy = math.ceil(instances * strategy.minimum_health_capacity - 1e-9)
    max_live = math.floor(instances * (1 + strategy.maximum_over_capacity) + 1e-9)
    if max_live <= min_healthy:
        max_live = min_healthy + 1
    return min_healthy, max_live


@dataclass(frozen=True)
class Roll:
    """One decision of a rolling restart: how many new instances to launch
    and how many old ones to kill now."""

    launch: int
    kill: int


def roll(wanted: int, strategy: UpgradeStrategy, *, new_live: int, new_healthy: int,
         old_live: int, old_healthy: int, old_unhealthy: int | None = None,
         dying: int = 0) -> Roll:
    """The next move of a rolling restart to `wanted` instances of a new
    version, given the live and healthy counts of new and old instances
    (healthy ⊆ live; a new one counts as healthy only after the strategy's
    minHealthySeconds). Never plans below the minimum healthy nor above the
    maximum live (`bounds`).

    Old instances known not to serve (`old_unhealthy`: not running, or
    failing their checks; all old ones that are not healthy when None) may
    always go; those whose health is not known yet (inside their grace
    period) are kept like healthy ones. With `wanted` healthy new instances
    every old one goes. `dying` instances (killed, not yet ended) count
    toward the maximum live, not toward the healthy: they still hold
    resources, and serve no more."""
    min_healthy, max_live = bounds(wanted, strategy)
    launch = max(0, min(wanted - new_live, max_live - (new_live + old_live + dying)))
    if new_healthy >= wanted:
        return Roll(launch=launch, kill=old_live)
    unhealthy = old_live - old_healthy if old_unhealthy is None else old_unhealthy
    serving = old_live - unhealthy          # healthy, or not known yet
    spare = max(0, old_healthy + new_healthy - min_healthy)
    return Roll(launch=launch, kill=unhealthy + min(serving, spare))
