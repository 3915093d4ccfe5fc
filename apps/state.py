"""The apps service's pure core: requests, offers, status updates and ticks in,
commands out (commands.py). No I/O; time from an injected Clock, ids from an
injected source (design.md rules 1 and 3). The analogue of the master's
allocator for apps: it decides which instances to launch where, which to kill,
and when a deployment moves on, fails or is rolled back.

What it keeps, per app (`App`): the definition it drives toward now
(`current`: what Marathon calls the app), the last one a deployment finished
with (`last_good`, where an automatic revert goes), its instances, and its
launch queue (backoff, offers seen and why they were declined). Per
deployment, the plan (plan.py) and the step it is at.

Convergence, for every app at every decision (the same rule whether a
deployment runs or not, so a restart never differs from a steady state):

- instances whose config version is the current one are "new", the others
  "old"; without old ones the app scales: launch the missing (after the
  backoff), kill the extra (killSelection);
- with old ones it rolls (plan.roll): never below the minimum healthy, never
  above the maximum live; a new instance counts as healthy only after
  `minHealthySeconds` of health;
- a task that ends without being asked to (failed, finished, lost, killed by
  its health check) is replaced after the app's backoff delay
  (backoffSeconds × backoffFactor^(failures−1), at most maxLaunchDelaySeconds),
  which resets on a new config version;
- an unreachable instance stops counting after unreachableStrategy's
  inactiveAfterSeconds (a replacement is launched); if it comes back, the
  extra one is killed by killSelection.

Store keys (values JSON; the shell writes them, the core says what):

    apps/<app id>                 {"version", "configVersion", "lastGood": [v, cv] | null,
                                   "versionInfo", "failures"}
    versions/<app id>@<version>   the definition as Marathon renders it
    instances/<instance id>       Instance.record()
    deployments/<deployment id>   Deployment.record()
    framework_id                  the framework id to fail over to
"""

from __future__ import annotations

import random
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from juggler.apps import plan as planning
from juggler.apps import ports
from juggler.apps.commands import (
    AppsError,
    Command,
    Decline,
    Emit,
    Kill,
    Launch,
    Persist,
    Revive,
    Suppress,
)
from juggler.apps.constraints import Placement, unmatched
from juggler.apps.definition import AppDefinition, InvalidDefinition, render_app
from juggler.apps.instances import TERMINAL, Instance, S, instance_id_prefix, kill_order
from juggler.apps.plan import DEPLOYMENT, Action, D, Deployment, Versioned
from juggler.apps.tasks import check_tasks, task_for
from juggler.apps.views import ip_addresses_json, iso, plan_json, step_json
from juggler.common.clock import Clock
from juggler.common.lifecycle import Step
from juggler.common.resources import Resources
from juggler.v1 import common_pb2

# Offers an app remembers for "why is my app waiting" (Marathon keeps the
# last 10 unused offers per run spec in its launch queue statistics).
OFFERS_KEPT = 10
# Seconds an offer is refused when nothing is waiting, and when it did not
# fit what is waiting (Marathon's declineOfferDuration is 120 s).
REFUSE_IDLE = 120.0
# Ended deployments remembered for GET /v2/deployments/{id}.
ENDED_KEPT = 100
REFUSE_UNFIT = 5.0
# While something waits for offers, Revive again this often (seconds). One
# Revive is one message: a master failover, a refusal filter that reached the
# master just after it, or a call cut off can each leave offers filtered for
# REFUSE_IDLE while a run waits. Marathon repeats its revives for the same
# reason (--revive_offers_repetitions, --min_revive_offers_interval 5000 ms).
REVIVE_AGAIN = 5.0

TASK_STATE_NAMES = {s: common_pb2.TaskState.Name(s) for s in common_pb2.TaskState.values()}


@dataclass(eq=False)
class Waiting:
    """An app's launch-queue statistics (Marathon's /v2/queue)."""

    since: float | None = None            # epoch seconds it began waiting
    processed: int = 0
    unused: int = 0
    last_unused_at: float | None = None
    reasons: Counter[str] = field(default_factory=Counter)
    last_offers: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=OFFERS_KEPT))


@dataclass(eq=False)
class App:
    current: Versioned
    last_good: Versioned | None = None
    versions: list[str] = field(default_factory=list)
    last_scaling_at: str = ""
    instances: dict[str, Instance] = field(default_factory=dict)
    failures: int = 0
    delay_until: float = 0.0       # monotonic: no launch before
    last_failure: dict[str, Any] | None = None
    stopping: bool = False         # a StopApplication step runs: no instance wanted
    waiting: Waiting = field(default_factory=Waiting)
    to_launch: int = 0             # at the last decision: instances to launch now

    @property
    def id(self) -> str:
        return self.current.app.id

    @property
    def has_checks(self) -> bool:
        return bool(self.current.app.health_checks)

    @property
    def wanted(self) -> int:
        return 0 if self.stopping else self.current.app.instances

    def record(self) -> dict[str, Any]:
        lg = self.last_good
        return {"version": self.current.version, "configVersion": self.current.config_version,
                "lastGood": None if lg is None else [lg.version, lg.config_version],
                "lastScalingAt": self.last_scaling_at, "failures": self.failures}


@dataclass(frozen=True)
class Counts:
    """An app's instances by kind, for one decision."""

    new_live: list[Instance]
    new_healthy: int
    old_live: list[Instance]
    old_healthy: int
    old_unhealthy: int   # known not to serve (old_live − healthy − unhealthy: not known yet)
    dying: int      # asked to die, not yet ended: they still hold their agent's resources


_NOT_THERE = frozenset({S.TASK_UNKNOWN, S.TASK_GONE, S.TASK_GONE_BY_OPERATOR})


def not_running_answer(status: common_pb2.TaskStatus) -> bool:
    """A reconciliation's answer that the task does not run and how it ended
    is not known (master/reconciliation.py): TASK_UNKNOWN, or TASK_GONE (its
    agent is back without it) or TASK_GONE_BY_OPERATOR (its agent is gone for
    good) with REASON_RECONCILIATION."""
    return status.state == S.TASK_UNKNOWN or (
        status.reason == common_pb2.REASON_RECONCILIATION and status.state in _NOT_THERE)


class AppsState:
    """The core. Every public method returns the commands to carry out (also
    left in nothing: the caller owns them) or raises AppsError, changing
    nothing, when a request is refused."""

    def __init__(self, clock: Clock, new_id: Callable[[], str], *,
                 framework_role: str = "*", rng: random.Random | None = None) -> None:
        self.clock = clock
        self.new_id = new_id
        self.rng = rng or random.Random()   # host ports "any" (apps/ports.py)
        self.role = framework_role
        self.apps: dict[str, App] = {}
        self.deployments: dict[str, Deployment] = {}
        self.instances: dict[str, Instance] = {}
        # Whether the master was told to suppress offers: None when it was told
        # nothing yet (a new subscription: the next decision says either way).
        self.suppressed: bool | None = None
        self.revived_at = float("-inf")   # clock.now() of the last Revive sent
        self.reconciling = False   # until the master answered: decline every offer
        self._last_version = 0.0
        # Offers an app with instances to launch could not use, by reason, ever.
        self.declined: Counter[str] = Counter()
        # The last ENDED_KEPT deployments that ended, by id: what became of them
        # (GET /v2/deployments/{id}, a juggler extension).
        self.ended: OrderedDict[str, dict[str, Any]] = OrderedDict()
        # Whether another core of the same framework (the containers') wants
        # offers: then offers are not suppressed when no app waits.
        self.others_want: Callable[[], bool] = lambda: False
        # Instances whose Kill the master did not take (it was away or failing
        # over): the next tick sends it again.
        self._kills_failed: set[str] = set()
        self._out: list[Command] = []

    # -- helpers --------------------------------------------------------------
    def _emit(self, event_type: str, **body: Any) -> None:
        self._out.append(Emit(event_type, body))

    def _persist(self, writes: dict[str, Any]) -> None:
        self._out.append(Persist(writes))

    def _take(self) -> list[Command]:
        out, self._out = self._out, []
        return out

    def new_version(self) -> str:
        """A version id: the clock's time, strictly later than the last one."""
        t = max(self.clock.time(), self._last_version + 0.001)
        self._last_version = t
        return iso(t)

    def locked_by(self, app_ids: Iterable[str]) -> list[Deployment]:
        ids = set(app_ids)
        return [d for d in self.deployments.values()
                if d.state == D.IN_PROGRESS and ids & set(d.target)]

    def app(self, app_id: str) -> App:
        """Raises AppsError 404 when there is no such app."""
        a = self.apps.get(app_id)
        if a is None:
            raise AppsError(404, f"App '{app_id}' does not exist")
        return a

    def known(self, app_id: str) -> bool:
        return app_id in self.apps

    # -- requests ---------------------------------------------------------------
    def deploy(self, targets: Mapping[str, AppDefinition | None], *, force: bool = False,
               restart: Iterable[str] = (), config_versions: Mapping[str, str] | None = None,
               ) -> tuple[Deployment, list[Command]]:
        """Start a deployment taking each app of `targets` to its definition
        (None: remove it). `restart`: apps to restart even when their
        definition is unchanged (POST /v2/apps/{id}/restart).

        Raises AppsError 404 when removing an app that does not exist, 409
        when an app is locked by a running deployment and not `force`
        (body names the deployments), 422 (InvalidDefinition) for a
        dependency that is missing or cyclic, or a definition whose tasks the
        master's task check would refuse. Nothing changes then. With
        `force` the running deployments of those apps are cancelled (no
        rollback) and this one takes over. `config_versions` (for reverts)
        names the config version an app's target keeps, so that instances
        already running that definition stay."""
        restart = set(restart)
        for app_id, t in targets.items():
            if t is None and app_id not in self.apps:
                raise AppsError(404, f"App '{app_id}' does not exist")
        locks = self.locked_by(targets)
        if locks and not force:
            raise AppsError(409, "App is locked by one or more deployments. Override with "
                            "the option '?force=true'. View details at "
                            "'/v2/deployments/<DEPLOYMENT_ID>'.",
                            deployments=[{"id": d.id} for d in locks])
        version = self.new_version()
        original: dict[str, Versioned | None] = {}
        target: dict[str, Versioned | None] = {}
        used = ports.used_service_ports(
            a.current.app for app_id, a in self.apps.items() if app_id not in targets)
        for app_id, definition in targets.items():
            a = self.apps.get(app_id)
            original[app_id] = a.current if a is not None else None
            if definition is None:
                target[app_id] = None
                continue
            # Raises InvalidDefinition (422) for a service port of another app.
            definition = ports.assign_service_ports(
                definition, a.current.app if a is not None else None, used)
            used.update(ports.used_service_ports([definition]))
            config_version = version
            if a is not None and app_id not in restart and \
                    a.current.app.without_instances() == definition.without_instances():
                config_version = a.current.config_version
            if config_versions and app_id in config_versions:
                config_version = config_versions[app_id]
            target[app_id] = Versioned(definition, version, config_version)
            check_tasks(target[app_id])  # raises InvalidDefinition (422)
        self._check_ids(target)  # raises InvalidDefinition
        steps = planning.plan(original, target, self.known)  # raises InvalidDefinition
        for d in locks:
            self._end(d, D.CANCELLED, "cancelled: a forced deployment took over its apps")
        deployment = Deployment(id=self.new_id(), version=version, original=original,
                                target=target, steps=steps, started_at=self.clock.time(),
                                deadline=self.clock.now() + self._deadline_for(target))
        DEPLOYMENT.begin(deployment, D.IN_PROGRESS, "requested", self.clock.time())
        self.deployments[deployment.id] = deployment
        # Versions of the definitions, so that GET …/versions/{v} and a later
        # rollback find them; an app new to the service appears at once
        # (Marathon lists it with 0 instances until its step starts).
        writes: dict[str, Any] = {}
        for app_id, t in target.items():
            if t is None:
                continue
            a = self.apps.get(app_id)
            if a is not None and planning.action_for(original[app_id], t) is None:
                a.current = t  # unchanged: nothing to do but carry the new version
            writes[f"versions/{app_id}@{t.version}"] = render_app(t.app)
            if app_id not in self.apps:
                self.apps[app_id] = App(current=replace(t, app=replace(t.app, instances=0)),
                                        versions=[], last_scaling_at=t.version)
            self.apps[app_id].versions.append(t.version)
        writes[f"deployments/{deployment.id}"] = deployment.record()
        for app_id in target:
            if app_id in self.apps:
                writes[f"apps/{app_id}"] = self.apps[app_id].record()
        self._persist(writes)
        self._emit("deployment_info", plan=plan_json(deployment),
                   currentStep=step_json(deployment))
        self._start_step(deployment)
        self._advance()
        self._offers_wanted()
        return deployment, self._take()

    def _check_ids(self, target: Mapping[str, Versioned | None]) -> None:
        """Refuse an app whose id is also a group (another app lives under
        it) or lies under another app: Marathon's "Groups and Applications
        may not have the same identifier" (422)."""
        staying = {a for a in self.apps if target.get(a, True) is not None} | {
            a for a, t in target.items() if t is not None}
        groups: dict[str, list[str]] = {}   # every group that holds an app, and its apps
        for a in staying:
            parts = a.split("/")
            for n in range(2, len(parts)):
                groups.setdefault("/".join(parts[:n]), []).append(a)
        errors = []
        for app_id, t in sorted(target.items()):
            if t is None:
                continue
            inside = sorted(groups.get(app_id, ()))
            if inside:
                errors.append(f"{app_id} is a group (of {', '.join(inside)}): Groups and "
                              f"Applications may not have the same identifier")
            parts = app_id.split("/")
            above = [g for g in ("/".join(parts[:n]) for n in range(2, len(parts)))
                     if g in staying]
            if above:
                errors.append(f"{app_id} lies under the app {above[0]}: an app cannot hold "
                              f"apps or groups")
        if errors:
            raise InvalidDefinition([{"path": "/id", "errors": errors}])

    def _deadline_for(self, target: Mapping[str, Versioned | None]) -> float:
        return max((t.app.upgrade_strategy.progress_deadline_seconds
                    for t in target.values() if t is not None), default=600.0)

    def cancel(self, deployment_id: str, *, force: bool = False) -> tuple[Deployment | None,
                                                                             list[Command]]:
        """DELETE /v2/deployments/{id}: without `force`, cancel it and start a
        deployment back to its original definitions (returned); with
        `force`, just stop it where it is (returns None). AppsError 404 for an
        unknown or finished deployment."""
        d = self.deployments.get(deployment_id)
        if d is None or d.state != D.IN_PROGRESS:
            raise AppsError(404, f"DeploymentPlan {deployment_id} does not exist")
        self._end(d, D.CANCELLED, "cancelled" + (" (forced)" if force else ", rolled back"))
        rollback = None
        if not force:
            rollback = self._revert(d, "rollback of a cancelled deployment")
            if rollback is not None:
                self.ended[d.id]["rollback"] = rollback.id
        self._advance()
        self._offers_wanted()
        return rollback, self._take()

    def kill_instances(self, instance_ids: Iterable[str], *, scale: bool = False,
                       wipe: bool = False) -> tuple[list[Instance], Deployment | None,
                                                    list[Command]]:
        """POST /v2/tasks/delete, DELETE /v2/apps/{id}/tasks[/{task}]: kill these
        instances (unknown ids are skipped). With `scale` the apps' instance
        counts go down by as many (a deployment, returned); otherwise the
        instances are replaced. `wipe` forgets them at once (Marathon's wipe
        for resident tasks: here the record is dropped when the kill is
        sent)."""
        killed = [self.instances[i] for i in instance_ids if i in self.instances]
        deployment = None
        if scale and killed:
            by_app = Counter(i.app_id for i in killed)
            targets = {}
            for app_id, n in by_app.items():
                a = self.apps.get(app_id)
                if a is not None:
                    targets[app_id] = replace(a.current.app,
                                              instances=max(0, a.current.app.instances - n))
            # Mark the kills first: the scale-down then has nothing left to pick.
            for inst in killed:
                self._kill(inst, "killed by request (scale)")
            deployment, cmds = self.deploy(targets, force=True)
            self._out.extend(cmds)
        else:
            for inst in killed:
                self._kill(inst, "killed by request")
        if wipe:
            for inst in killed:
                self._forget(inst)
        self._advance()
        self._offers_wanted()
        return killed, deployment, self._take()

    def reset_delay(self, app_id: str) -> list[Command]:
        """DELETE /v2/queue/{id}/delay. AppsError 404 for an unknown app."""
        a = self.app(app_id)
        a.failures, a.delay_until = 0, 0.0
        self._offers_wanted()
        return self._take()

    # -- recovery ---------------------------------------------------------------
    def recover(self, apps: Mapping[str, tuple[Versioned, Versioned | None, list[str], str, int]],
                instances: Iterable[Instance],
                deployments: Iterable[Deployment]) -> None:
        """Rebuild from the store: apps as (current, last good, versions, last
        scaling, failures), instances, in-progress deployments (their step
        resumes). Call before any other method; then `reconciling` is True
        until `reconciled()`."""
        for app_id, (current, last_good, versions, scaling, failures) in apps.items():
            self.apps[app_id] = App(current=current, last_good=last_good, versions=versions,
                                    last_scaling_at=scaling, failures=failures)
        for inst in instances:
            a = self.apps.get(inst.app_id)
            self.instances[inst.id] = inst
            if a is not None:
                a.instances[inst.id] = inst
        for d in deployments:
            self.deployments[d.id] = d
            d.deadline = self.clock.now() + self._deadline_for(d.target)
            for action in d.current_actions:
                if action.action == planning.STOP and action.app_id in self.apps:
                    self.apps[action.app_id].stopping = True
        self.reconciling = True

    def reconciled(self, states: Mapping[str, common_pb2.TaskStatus]) -> list[Command]:
        """The master's answers about the instances the store knows
        (explicit reconciliation): an instance the master says does not run
        (`not_running_answer`: never launched, or its agent is back without it,
        or gone for good) is dropped and replaced, and counts as no failure.
        One it did not answer for is kept as it was: a new master leader
        answers only once the instance's agent is back (and then sends its
        state). Ends the reconciling phase."""
        for inst in list(self.instances.values()):
            status = states.get(inst.id)
            if status is None:
                continue
            self._answer(inst, status)
        # A kill recovered from the store may never have reached the master
        # (the previous leader died or lost it before, or its call failed):
        # it is sent again (a Kill is idempotent at the master).
        self._send_kills_again(list(self.instances))
        for inst in list(self.instances.values()):
            if inst.app_id not in self.apps and inst.live:
                # Its app was removed while the service was away mid-removal.
                self._kill(inst, "its app no longer exists")
        self.reconciling = False
        self._advance()
        self._offers_wanted()
        return self._take()

    # -- the master's events -------------------------------------------------------
    def on_update(self, status: common_pb2.TaskStatus) -> list[Command]:
        """A status update. An update about a task the service does not know
        that is still live is an orphan (launched by an earlier life of the
        service whose record was lost): it is killed."""
        return self.on_updates([status])

    def on_updates(self, statuses: Iterable[common_pb2.TaskStatus]) -> list[Command]:
        """Several status updates, in order, then one decision: the same
        result as one on_update each, for a fraction of the work when
        thousands arrive together."""
        touched: dict[str, App] = {}
        for status in statuses:
            inst = self.instances.get(status.task_id)
            if inst is None:
                if status.state not in TERMINAL and status.state != common_pb2.TASK_UNKNOWN:
                    self._out.append(Kill(status.task_id, status.agent_id))
                    self._emit("unknown_instance_terminated_event", instanceId=status.task_id,
                               runSpecId="", condition="Killed")
                continue
            self._answer(inst, status)  # maybe a periodic reconciliation's (service.py)
            a = self.apps.get(inst.app_id)
            if a is not None:
                touched[a.id] = a
        if touched:
            self._advance()
            self._offers_wanted(touched.values())
        return self._take()

    def on_offers(self, offers: Iterable[common_pb2.Offer]) -> list[Command]:
        """Offers: launch what is waiting where it fits (resources, role,
        constraints), decline the rest, and remember per waiting app why each
        offer did not fit."""
        declined: list[str] = []
        fits_nothing: list[str] = []
        waiting = [] if self.reconciling else self._waiting_apps()
        if self.reconciling:
            # Not an answer about these agents: back soon (a Revive at the
            # end of reconciliation brings them back at once anyway).
            self._out.append(Decline([o.id for o in offers], REFUSE_UNFIT))
            return self._take()
        now_epoch = self.clock.time()
        launched: dict[str, App] = {}
        for offer in offers:
            tasks: list[common_pb2.TaskInfo] = []
            if waiting:
                available = Resources.from_proto(offer.resources)
                where = Placement(offer.hostname, dict(offer.attributes))
                for a, need in waiting:
                    if need[0] <= 0:
                        continue
                    placed = 0
                    while need[0] > 0:
                        reasons, why = self._misfit(a, offer, available, where)
                        if reasons:
                            if placed == 0:
                                self._note_unused(a, offer, reasons, why, now_epoch)
                            break
                        task = self._launch(a, offer, where, available)
                        available = available - Resources.from_proto(task.resources)
                        tasks.append(task)
                        need[0] -= 1
                        placed += 1
                    if placed:
                        a.waiting.processed += 1
                        launched[a.id] = a
                waiting = [(a, n) for a, n in waiting if n[0] > 0]
            if tasks:
                self._out.append(Launch(offer.id, tasks))
            elif waiting:
                fits_nothing.append(offer.id)
            else:
                declined.append(offer.id)
        if fits_nothing:
            self._out.append(Decline(fits_nothing, REFUSE_UNFIT))
        if declined:
            self._out.append(Decline(declined, REFUSE_IDLE))
        # _waiting_apps decided for every app that may launch; only those that
        # did launch changed since (apps in backoff are decided by tick()).
        self._offers_wanted(launched.values())
        return self._take()

    def kill_failed(self, task_id: str) -> None:
        """The master did not take the Kill of instance `task_id` (a failover,
        a lost connection): the next tick sends it again."""
        self._kills_failed.add(task_id)

    def resend_kills(self) -> list[Command]:
        """The Kill of every live instance whose kill was asked for, again (a
        new master leader may not know of it)."""
        self._send_kills_again(list(self.instances))
        return self._take()

    def _send_kills_again(self, task_ids: Iterable[str]) -> None:
        for iid in task_ids:
            self._kills_failed.discard(iid)
            inst = self.instances.get(iid)
            if inst is None or not inst.live or not inst.kill_requested:
                continue
            a = self.apps.get(inst.app_id)
            grace = None if a is None else a.current.app.task_kill_grace_period_seconds
            self._out.append(Kill(inst.id, inst.agent_id, grace))

    def tick(self) -> list[Command]:
        """Time passed: backoff delays end, unreachable instances turn
        inactive, minHealthySeconds pass, deadlines expire; Kills the master
        did not take are sent again."""
        if self._kills_failed:
            self._send_kills_again(sorted(self._kills_failed))
        self._advance()
        self._offers_wanted()
        return self._take()

    # -- status updates ---------------------------------------------------------------
    def _answer(self, inst: Instance, status: common_pb2.TaskStatus) -> None:
        """A status of `inst` from an update or a reconciliation: an answer
        that it does not run (`not_running_answer`) drops it, with no failure
        counted; anything else is observed."""
        if not_running_answer(status):
            self._drop(inst, f"the master says it does not run ({status.message})")
        else:
            self._observe(inst, status)

    def _observe(self, inst: Instance, status: common_pb2.TaskStatus) -> None:
        at = self.clock.time()
        was_healthy = inst.healthy
        healthy = status.healthy if status.HasField("healthy") else None
        exit_code = status.exit_code if status.HasField("exit_code") else None
        started = inst.started_at
        if status.reason == common_pb2.REASON_RECONCILIATION and status.state == inst.state \
                and healthy in (None, was_healthy):
            return   # a reconciliation's answer that changes nothing: no event
        if not inst.observe(status.state, healthy, status.message, at, exit_code):
            return
        if started is None and inst.started_at is not None and inst.id in self.instances:
            self._persist({f"instances/{inst.id}": inst.record()})  # its age survives a restart
        a = self.apps.get(inst.app_id)
        if addresses := list(status.ip_addresses):  # its CNI network's (NETWORK_BRIDGE)
            inst.ip_addresses = addresses
        self._emit("status_update_event", slaveId=inst.agent_id, taskId=inst.id,
                   taskStatus=TASK_STATE_NAMES.get(status.state, str(status.state)),
                   message=status.message, appId=inst.app_id, host=inst.hostname,
                   ports=list(inst.ports), ipAddresses=ip_addresses_json(inst),
                   version=inst.version)
        if healthy is not None and healthy != was_healthy:
            self._emit("health_status_changed_event", appId=inst.app_id, taskId=inst.id,
                       instanceId=inst.id, version=inst.version, alive=healthy)
        if status.state not in TERMINAL:
            return
        self._forget(inst)
        if a is None or inst.kill_requested:
            return
        # Ended by itself: a failure, whatever its state (an app's tasks are
        # meant to run for good), so the next launch waits out the backoff.
        d = a.current.app
        a.failures += 1
        delay = min(d.backoff_seconds * d.backoff_factor ** (a.failures - 1),
                    d.max_launch_delay_seconds)
        a.delay_until = self.clock.now() + delay
        a.last_failure = {"appId": a.id, "host": inst.hostname, "message": status.message,
                          "state": TASK_STATE_NAMES.get(status.state, ""), "taskId": inst.id,
                          "timestamp": iso(at), "version": inst.version,
                          "slaveId": inst.agent_id}
        self._persist({f"apps/{a.id}": a.record()})

    def _forget(self, inst: Instance) -> None:
        self.instances.pop(inst.id, None)
        a = self.apps.get(inst.app_id)
        if a is not None:
            a.instances.pop(inst.id, None)
        self._persist({f"instances/{inst.id}": None})

    def unreachable_tasks(self) -> dict[str, str]:
        """Task id → agent id of the instances last seen UNREACHABLE: what
        the service asks the master about again now and then (service.py), as
        a master that does not hold such a task (after a failover) tells
        nothing when its agent comes back without it."""
        return {i.id: i.agent_id for i in self.instances.values()
                if i.state == S.TASK_UNREACHABLE}

    def _drop(self, inst: Instance, why: str) -> None:
        inst.story.append(Step(self.clock.time(), "task", inst.state, S.TASK_LOST, why))
        self._forget(inst)

    def _kill(self, inst: Instance, why: str) -> None:
        if inst.request_kill(why):
            grace = None
            a = self.apps.get(inst.app_id)
            if a is not None:
                grace = a.current.app.task_kill_grace_period_seconds
            self._persist({f"instances/{inst.id}": inst.record()})
            self._out.append(Kill(inst.id, inst.agent_id, grace))

    # -- convergence ----------------------------------------------------------------------
    def _counts(self, a: App) -> Counts:
        now, d = self.clock.time(), a.current.app
        min_healthy_s = d.upgrade_strategy.min_healthy_seconds
        inactive = d.unreachable_strategy.inactive_after_seconds \
            if d.unreachable_strategy.enabled else None
        new_live, old_live, new_healthy, old_healthy, old_unhealthy, dying = [], [], 0, 0, 0, 0
        for inst in a.instances.values():
            if not inst.live:
                continue
            if inst.state == S.TASK_UNREACHABLE and inactive is not None and \
                    inst.unreachable_since is not None and now - inst.unreachable_since >= inactive:
                continue
            if inst.kill_requested:
                dying += 1
                continue
            if inst.version == a.current.config_version:
                new_live.append(inst)
                if inst.is_healthy() and inst.healthy_for(now) >= min_healthy_s:
                    new_healthy += 1
            else:
                old_live.append(inst)
                old_healthy += inst.is_healthy()
                old_unhealthy += inst.is_unhealthy()
        return Counts(new_live, new_healthy, old_live, old_healthy, old_unhealthy, dying)

    def _plan_app(self, a: App) -> tuple[int, list[tuple[Instance, str]]]:
        """How many instances to launch now, and which to kill (with why)."""
        c = self._counts(a)
        d = a.current.app
        if a.stopping:
            return 0, [(i, "app removed") for i in c.old_live + c.new_live]
        if not c.old_live:
            extra = len(c.new_live) - a.wanted
            if extra <= 0:
                return a.wanted - len(c.new_live), []
            kills = kill_order(c.new_live, d.kill_selection)[:extra]
            return 0, [(i, "scaled down") for i in kills]
        r = planning.roll(a.wanted, d.upgrade_strategy, new_live=len(c.new_live),
                          new_healthy=c.new_healthy, old_live=len(c.old_live),
                          old_healthy=c.old_healthy, old_unhealthy=c.old_unhealthy,
                          dying=c.dying)
        if not r.kill:
            return r.launch, []
        kills = kill_order(c.old_live, d.kill_selection)[:r.kill]
        return r.launch, [(i, f"replaced by version {a.current.version}") for i in kills]

    def _decide(self, a: App) -> int:
        """Kill what must go now; return how many instances to launch now
        (kept in `a.to_launch`), and note when the app began waiting."""
        launch, kills = self._plan_app(a)
        for inst, why in kills:
            self._kill(inst, why)
        a.to_launch = launch
        if launch > 0:
            if a.waiting.since is None:
                a.waiting.since = self.clock.time()
        elif a.waiting.since is not None:
            a.waiting = Waiting()
        return launch

    def waiting_count(self, a: App) -> int:
        """Instances of `a` waiting to be launched (no side effect)."""
        return self._plan_app(a)[0]

    def _waiting_apps(self) -> list[tuple[App, list[int]]]:
        now = self.clock.now()
        out = []
        for a in sorted(self.apps.values(), key=lambda a: a.id):
            if a.delay_until > now:
                continue
            n = self._decide(a)
            if n > 0:
                out.append((a, [n]))
        return out

    def _offers_wanted(self, apps: Iterable[App] | None = None) -> None:
        """Decide for `apps` (every app when None): kill what must go, count
        what to launch. Then revive when something can be launched now,
        suppress when nothing can; record when apps started waiting."""
        now = self.clock.now()
        for a in self.apps.values() if apps is None else apps:
            if a.id in self.apps:
                self._decide(a)
        wants = any(a.to_launch > 0 and a.delay_until <= now for a in self.apps.values()) \
            or self.others_want()
        if self.reconciling:
            return
        if wants and (self.suppressed is not False or now >= self.revived_at + REVIVE_AGAIN):
            # Revive also clears the filters of offers declined meanwhile
            # (while reconciling, or when nothing was waiting); sent again
            # every REVIVE_AGAIN while anything waits.
            self.revived()
            self._out.append(Revive())
        elif not wants and self.suppressed is not True:
            self.suppressed = True
            self._out.append(Suppress())

    def revived(self) -> None:
        """A Revive goes to the master now (this core's, or another's of the
        same framework): offers are not suppressed, and the next one is due
        REVIVE_AGAIN from now while anything waits."""
        self.suppressed = False
        self.revived_at = self.clock.now()

    def next_wakeup(self) -> float | None:
        """The monotonic time at which a backoff delay ends (the shell calls
        tick() then), None when none is pending."""
        now = self.clock.now()
        ends = [a.delay_until for a in self.apps.values() if a.delay_until > now]
        return min(ends) if ends else None

    # -- placement ----------------------------------------------------------------------
    def _misfit(self, a: App, offer: common_pb2.Offer, available: Resources,
                where: Placement) -> tuple[list[str], str]:
        """Why `offer` cannot take one more instance of `a`: (Marathon's
        reason names, a sentence); ([], "") when it can."""
        d = a.current.app
        reasons, why = [], []
        roles = d.accepted_resource_roles or ((d.role,) if d.role else ())
        if roles and "*" not in roles and offer.role not in roles:
            reasons.append("UnfulfilledRole")
            why.append(f"offer's role {offer.role!r} is not one of {', '.join(roles)}")
        for name, amount, reason in (("cpus", d.cpus, "InsufficientCpus"),
                                     ("mem", d.mem, "InsufficientMemory"),
                                     ("disk", d.disk, "InsufficientDisk")):
            have = available.get(name)
            if have + 1e-9 < amount:
                reasons.append(reason)
                why.append(f"{name}: needs {amount:g}, offer has {have:g}")
        if no_ports := ports.ports_misfit(d, available.ports):
            reasons.append("InsufficientPorts")
            why.append(no_ports)
        if d.constraints:
            # Marathon counts the instances of the current config only, first
            # placed first (apps/constraints.py).
            placed = [Placement(i.hostname, i.attributes) for i in sorted(
                a.instances.values(), key=lambda i: i.staged_at)
                if i.live and not i.kill_requested and i.version == a.current.config_version]
            bad = unmatched(d.constraints, where, placed)
            if bad is not None:
                reasons.append("UnfulfilledConstraint")
                why.append(f"constraint {bad} unmatched")
        return reasons, "; ".join(why)

    def _note_unused(self, a: App, offer: common_pb2.Offer, reasons: list[str], why: str,
                     at: float) -> None:
        w = a.waiting
        w.processed += 1
        w.unused += 1
        w.last_unused_at = at
        for r in reasons:
            w.reasons[r] += 1
            self.declined[r] += 1
        w.last_offers.append({"offer": offer, "timestamp": at, "reason": reasons, "juggler": why})

    def _launch(self, a: App, offer: common_pb2.Offer, where: Placement,
                available: Resources) -> common_pb2.TaskInfo:
        """Launch one instance on `offer`, which `_misfit` found it fits;
        `available`: what is left of the offer (its host ports are chosen
        there, so that tasks launched from one offer never share one)."""
        instance_id = instance_id_prefix(a.id) + self.new_id()
        host_ports = ports.pick_host_ports(a.current.app, available.ports, self.rng)
        inst = Instance(id=instance_id, app_id=a.id, version=a.current.config_version,
                        agent_id=offer.agent_id, hostname=offer.hostname,
                        attributes=dict(where.attributes), staged_at=self.clock.time(),
                        checked=a.has_checks, ports=host_ports,
                        service_ports=ports.service_ports(a.current.app))
        inst.story.append(Step(inst.staged_at, "task", None, S.TASK_STAGING,
                                        f"launched on {offer.hostname}"))
        self.instances[instance_id] = inst
        a.instances[instance_id] = inst
        self._persist({f"instances/{instance_id}": inst.record()})
        return task_for(a.current, instance_id, offer, host_ports)

    # -- deployments -------------------------------------------------------------------------
    def _start_step(self, d: Deployment) -> None:
        """Make the current step's targets the apps' current definitions."""
        for action in d.current_actions:
            t = d.target[action.app_id]
            a = self.apps.get(action.app_id)
            if action.action == planning.STOP:
                if a is not None:
                    a.stopping = True
                continue
            assert t is not None
            if a is None:
                a = self.apps[action.app_id] = App(current=t, versions=[t.version])
            if t.config_version != a.current.config_version:
                a.failures, a.delay_until = 0, 0.0     # a new version resets the backoff
            if t.app.instances != a.current.app.instances:
                a.last_scaling_at = t.version
            a.current = t
            a.stopping = False
            self._persist({f"apps/{a.id}": a.record()})

    def _converged(self, action: Action, now_epoch: float) -> tuple[bool, int]:
        """Whether the step's action is done, and its progress (healthy new
        instances: the deadline restarts when it grows)."""
        a = self.apps.get(action.app_id)
        if action.action == planning.STOP:
            return (a is None or not any(i.live for i in a.instances.values())), 0
        if a is None:
            return True, 0
        c = self._counts(a)
        done = not c.old_live and not c.dying and len(c.new_live) == a.wanted and \
            c.new_healthy >= a.wanted
        return done, c.new_healthy

    def _advance(self) -> None:
        """Move every deployment as far as it can: steps done, deadlines."""
        now, now_epoch = self.clock.now(), self.clock.time()
        for d in list(self.deployments.values()):
            if d.state != D.IN_PROGRESS:
                continue
            while d.state == D.IN_PROGRESS:
                results = [self._converged(x, now_epoch) for x in d.current_actions]
                progress = sum(p for _, p in results)
                if progress > d.progress:
                    d.progress = progress
                    d.deadline = now + self._deadline_for(d.target)
                if not all(done for done, _ in results):
                    break
                for x in d.current_actions:
                    if x.action == planning.STOP:
                        self._remove_app(x.app_id)
                self._emit("deployment_step_success", plan=plan_json(d),
                           currentStep=step_json(d))
                d.step += 1
                d.progress = -1
                if d.step >= len(d.steps):
                    self._succeed(d)
                    break
                self._persist({f"deployments/{d.id}": d.record()})
                self._start_step(d)
            if d.state == D.IN_PROGRESS and now > d.deadline:
                self._fail(d)
        self._expunge()
        # Apps whose kills are all done and that no deployment stops any more.
        for a in list(self.apps.values()):
            if a.stopping and not a.instances and not self.locked_by([a.id]):
                self._remove_app(a.id)

    def _expunge(self) -> None:
        """Unreachable instances past their app's expungeAfterSeconds are
        forgotten, and killed should they ever come back (Marathon's expunge;
        the master keeps the kill until the agent is back)."""
        now = self.clock.time()
        for inst in list(self.instances.values()):
            if inst.state != S.TASK_UNREACHABLE or inst.unreachable_since is None:
                continue
            a = self.apps.get(inst.app_id)
            u = a.current.app.unreachable_strategy if a is not None else None
            if u is not None and u.enabled and now - inst.unreachable_since >= \
                    u.expunge_after_seconds:
                self._kill(inst, "unreachable for longer than expungeAfterSeconds")
                self._forget(inst)

    def _record_end(self, d: Deployment) -> None:
        self.ended[d.id] = {"id": d.id, "version": d.version, "affectedApps": d.affected_apps,
                            "state": D(d.state).name, "reason": d.reason, "rollback": None,
                            "endedAt": iso(self.clock.time())}
        while len(self.ended) > ENDED_KEPT:
            self.ended.popitem(last=False)

    def _succeed(self, d: Deployment) -> None:
        writes: dict[str, Any] = {f"deployments/{d.id}": None}
        for app_id, t in d.target.items():
            a = self.apps.get(app_id)
            if t is not None and a is not None:
                a.last_good = a.current
                writes[f"apps/{app_id}"] = a.record()
        DEPLOYMENT.move(d, d.id, D.SUCCEEDED, "every step done", self.clock.time())
        del self.deployments[d.id]
        self._record_end(d)
        self._persist(writes)
        self._emit("deployment_success", id=d.id, plan=plan_json(d))

    def _end(self, d: Deployment, state: D, why: str) -> None:
        DEPLOYMENT.move(d, d.id, state, why, self.clock.time())
        d.reason = why
        del self.deployments[d.id]
        self._record_end(d)
        self._persist({f"deployments/{d.id}": None})
        self._emit("deployment_failed", id=d.id, plan=plan_json(d), reason=why)

    def _fail(self, d: Deployment) -> None:
        deadline = self._deadline_for(d.target)
        why = (f"no progress for {deadline:g} s (progressDeadlineSeconds): the new instances "
               f"did not turn healthy")
        self._end(d, D.FAILED, why)
        revert = {a: t for a, t in d.target.items()
                  if t is not None and t.app.upgrade_strategy.auto_revert}
        if revert:
            rollback = self._revert(d, "automatic revert after a failed deployment",
                                    only=set(revert))
            if rollback is not None:
                self.ended[d.id]["rollback"] = rollback.id

    def _revert(self, d: Deployment, why: str, only: set[str] | None = None) -> Deployment | None:
        """Deploy the apps of `d` back to what they ran before it: the last
        version that deployed (for an app that had none: removed when `d`
        created it, as Marathon's rollback does)."""
        targets: dict[str, AppDefinition | None] = {}
        keep_config: dict[str, Versioned] = {}
        for app_id in d.target:
            if only is not None and app_id not in only:
                continue
            a = self.apps.get(app_id)
            original = d.original.get(app_id)
            back = a.last_good if a is not None and a.last_good is not None else original
            if back is None:
                if a is not None and only is None:
                    targets[app_id] = None
                continue
            targets[app_id] = back.app
            keep_config[app_id] = back
        if not targets:
            return None
        # The reverted definition runs with the config version its instances
        # already carry: the old instances are kept, the failed ones go.
        try:
            rollback, cmds = self.deploy(
                targets, force=True,
                config_versions={k: v.config_version for k, v in keep_config.items()})
        except (AppsError, InvalidDefinition):
            return None
        self._out.extend(cmds)
        rollback.rollback_of = d.id
        log_reason = why
        self._persist({f"deployments/{rollback.id}": rollback.record()})
        self._emit("deployment_info", plan=plan_json(rollback),
                   currentStep=step_json(rollback), reason=log_reason)
        return rollback

    def _remove_app(self, app_id: str) -> None:
        a = self.apps.pop(app_id, None)
        if a is None:
            return
        writes: dict[str, Any] = {f"apps/{app_id}": None}
        for v in a.versions:
            writes[f"versions/{app_id}@{v}"] = None
        self._persist(writes)
        self._emit("app_terminated_event", appId=app_id)
