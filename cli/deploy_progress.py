"""Following a deployment of the apps service until it is done or failed.

`Watch.observe` is pure: given what the service answered at one moment (its
deployments, the watched apps, its launch queue) it says how far the
deployment is, one line an app, and whether it is over. `follow` is the thin
loop around it (poll, show, sleep), with the clock and the sleep injected so
that tests never wait; `Display` draws the lines, rewritten in place on a
terminal, printed when they change otherwise. A line says why an app waits
(its queue entry) and, once its instances have failed since the deployment
started, the last failure's message.

The service restarting (killed, `juggler up` starts it again within seconds)
is waited out: `follow` retries a poll that found no service, or a 503, for
UNREACHABLE_SECONDS, saying so once, before giving up.

How a deployment's end is judged (the service speaks Marathon's REST API,
which has no "failed" state to poll — a deployment simply leaves
GET /v2/deployments — so the verdict is read from the apps it leaves behind):

- while the deployment is listed, it is in progress; its `affectedApps` are
  the apps watched (before it is first seen, the apps the command named);
- once it is gone, every watched app must be at the version the deployment
  was created with (the `version` of the answer to PUT/POST/PATCH/DELETE).
  An app at another version was rolled back (juggler's autoRevert, or a
  cancel) or replaced by a newer deployment: FAILED. A removed app (`rm`, or
  one the deployment was seen stopping) must be gone (404); an app that
  should exist and is gone: FAILED;
- at the right version, it must also run its instances: `tasksHealthy` (or
  `tasksRunning` when it has no health checks) ≥ `instances`. The service ends
  a deployment only then, so this normally holds at once; if it does not hold
  within SETTLE_SECONDS of the deployment's end (an instance died since):
  FAILED, with the counts.
- a deployment that ended with its apps elsewhere (rolled back, cancelled)
  is told with the service's record of its end (GET /v2/deployments/{id},
  juggler's): its state, the reason and the rollback's id (`explain`); an
  older service without it (404) leaves the verdict read from the apps.

  Lifecycle:   DEPLOYING ──(gone, right versions)──▶ SETTLING ──(counts met)──▶ SUCCEEDED
                   │                                     │
                   └──(gone, wrong version / app gone)───┴──(SETTLE_SECONDS)──▶ FAILED
                   (DEPLOYING ──(counts met at once)──▶ SUCCEEDED)
"""

from __future__ import annotations

import datetime
import enum
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

STOP = "StopApplication"  # the action of a deployment step that removes an app
SETTLE_SECONDS = 30.0  # after the deployment's end, how long instances may take to be counted
UNREACHABLE_SECONDS = 30.0  # how long following waits out a service that does not answer
UNREACHABLE = "apps service unreachable; retrying…"
FAILURE_WIDTH = 72  # a task failure's message in a progress line, at most


class Phase(enum.Enum):
    DEPLOYING = "deploying"
    SETTLING = "settling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def over(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED)


@dataclass(frozen=True)
class Status:
    """One observation: the phase, a line per watched app, and (FAILED) why:
    "deployment X {verdict}: {reason}". `unreached`: FAILED because the
    deployment ended with its apps not where it was taking them, which the
    service's record of its end can explain (`explain`)."""

    phase: Phase
    lines: tuple[str, ...]
    reason: str = ""
    unreached: bool = False
    verdict: str = "failed"


def same_version(a: str | None, b: str | None) -> bool:
    """Marathon versions are ISO-8601 times; compare them as times when both
    parse ("…Z" and "…+00:00" are the same version), else as strings."""
    if a is None or b is None:
        return a == b
    try:
        return datetime.datetime.fromisoformat(a) == datetime.datetime.fromisoformat(b)
    except ValueError:
        return a == b


def _time(stamp: Any) -> datetime.datetime | None:
    """An ISO-8601 time (one without a zone is UTC, as the service's are)."""
    try:
        t = datetime.datetime.fromisoformat(str(stamp))
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=datetime.UTC)


def clip(text: str, width: int) -> str:
    """`text` on one line, at most `width` characters ("…" where cut)."""
    one = " ".join(text.split())
    return one if len(one) <= width else one[: width - 1] + "…"


def short_id(app_id: str) -> str:
    """"/web" → "web", "/prod/web" → "prod/web": how an app is named in progress lines."""
    return app_id.lstrip("/") or "/"


def wanted_healthy(app: Mapping[str, Any]) -> tuple[int, int, str]:
    """(counted, wanted, word): healthy instances when the app has health
    checks, running ones when it has none (Marathon counts every running task
    of such an app as healthy enough)."""
    wanted = int(app.get("instances") or 0)
    if app.get("healthChecks"):
        return int(app.get("tasksHealthy") or 0), wanted, "healthy"
    return int(app.get("tasksRunning") or 0), wanted, "running"


def counts(app: Mapping[str, Any]) -> str:
    """"2/3 running, 1/3 healthy, 1 staged, 1 unhealthy" (zeros left out)."""
    wanted = int(app.get("instances") or 0)
    text = f"{int(app.get('tasksRunning') or 0)}/{wanted} running"
    if app.get("healthChecks"):
        text += f", {int(app.get('tasksHealthy') or 0)}/{wanted} healthy"
    for key, word in (("tasksStaged", "staged"), ("tasksUnhealthy", "unhealthy")):
        if app.get(key):
            text += f", {int(app[key])} {word}"
    return text


def waiting_reason(entry: Mapping[str, Any] | None) -> str:
    """Why the app's next instance is not launched, from its queue entry: the
    newest unused offer's reason (juggler's sentence when given), or its
    backoff delay."""
    if not entry:
        return ""
    offers = entry.get("lastUnusedOffers") or []
    if offers:
        last = max(offers, key=lambda o: str(o.get("timestamp") or ""))
        return offer_reason(last)
    delay = entry.get("delay") or {}
    left = delay.get("timeLeftSeconds")
    if left:
        return f"backoff, next launch in {left}s"
    return ""


def recent_failure(app: Mapping[str, Any] | None, since: str | None) -> str:
    """The app's last task failure (`lastTaskFailure`, GET /v2/apps/{id}
    ?embed=apps.lastTaskFailure), shortened, when it happened at or after
    `since` (the deployment's version: when it started); "" otherwise.
    The reason a waiting app's instances keep failing (an image that cannot
    be pulled, a command that exits) is there, not in its queue entry."""
    failure = (app or {}).get("lastTaskFailure")
    if not failure:
        return ""
    at, start = _time(failure.get("timestamp")), _time(since)
    if at is None or start is None or at < start:
        return ""
    return clip(str(failure.get("message") or failure.get("state") or "?"), FAILURE_WIDTH)


def explain(status: Status, record: Mapping[str, Any] | None) -> Status:
    """A FAILED `status` whose apps the deployment did not reach, told with
    the service's record of the deployment's end (GET /v2/deployments/{id}):
    its state, its reason and the deployment that rolled it back. Unchanged
    without a record (an older service, or one that forgot it) or when the
    record does not say why (it succeeded, and a newer deployment replaced
    its apps since)."""
    state = str((record or {}).get("state") or "")
    if not status.unreached or record is None or state not in ("FAILED", "CANCELLED"):
        return status
    reason = str(record.get("reason") or "no reason given")
    rollback = record.get("rollback")
    if rollback:
        # "cancelled, rolled back" + " by deployment R"; else "…; rolled back by deployment R"
        joint = " by" if reason.endswith("rolled back") else "; rolled back by"
        reason += f"{joint} deployment {rollback}"
    return replace(status, reason=reason, verdict=state.lower())


def offer_reason(unused: Mapping[str, Any]) -> str:
    """An unused offer's reason: juggler's sentence if the service gave one, else
    Marathon's reason codes ("InsufficientCpus, UnfulfilledConstraint")."""
    return str(unused.get("juggler") or ", ".join(unused.get("reason") or []) or "unknown")


@dataclass
class Watch:
    """What is followed: the deployment `deployment_id`, created at `version`,
    of the apps `app_ids` (`removing`: apps being deleted)."""

    deployment_id: str
    version: str | None
    app_ids: tuple[str, ...]
    removing: bool = False
    affected: tuple[str, ...] = ()
    stopped: set[str] = field(default_factory=set)  # apps seen in a StopApplication action
    ended_at: float | None = None  # when the deployment was first seen gone
    history: list[Phase] = field(default_factory=list)

    def watched(self) -> list[str]:
        """The apps to fetch for the next observation."""
        return list(self.affected or self.app_ids)

    def observe(self, now: float, deployments: Sequence[Mapping[str, Any]],
                apps: Mapping[str, Mapping[str, Any] | None],
                queue: Sequence[Mapping[str, Any]] = ()) -> Status:
        """The deployment's status from one poll: `deployments` as GET
        /v2/deployments lists them, `apps` each watched app (None: 404),
        `queue` GET /v2/queue's entries."""
        status = self._observe(now, deployments, apps, queue)
        self.history.append(status.phase)
        return status

    def _observe(self, now: float, deployments: Sequence[Mapping[str, Any]],
                 apps: Mapping[str, Mapping[str, Any] | None],
                 queue: Sequence[Mapping[str, Any]]) -> Status:
        mine = next((d for d in deployments if d.get("id") == self.deployment_id), None)
        waiting = {str((e.get("app") or {}).get("id")): e for e in queue}
        if mine is not None:
            self.affected = tuple(mine.get("affectedApps") or ()) or self.affected
            step = f"step {mine.get('currentStep', 0)}/{mine.get('totalSteps', 0)}"
            actions = {a.get("app"): a.get("action") for a in mine.get("currentActions") or []}
            self.stopped |= {a for a, action in actions.items() if action == STOP}
            since = self.version or mine.get("version")
            lines = []
            for app_id in self.watched():
                app = apps.get(app_id)
                action = actions.get(app_id)
                if self.removing or app_id in self.stopped:
                    # A stopping app wants 0 instances: its "n/0 running" says nothing.
                    left = int(app.get("tasksRunning") or 0) if app else 0
                    what = "removing" + (f", {left} running" if left else "")
                else:
                    what = (counts(app) if app else "…" if app_id not in apps
                            else "not created yet")
                line = f"{short_id(app_id)}: {what}, {step}" + (f" ({action})" if action else "")
                why = waiting_reason(waiting.get(app_id))
                failed = recent_failure(app, since)
                lines.append(line + (f" — waiting: {why}" if why else "")
                             + (f" — last failure: {failed}" if failed else ""))
            return Status(Phase.DEPLOYING, tuple(lines))

        if self.ended_at is None:
            self.ended_at = now
        lines, failures, short = [], [], []
        for app_id in self.watched():
            app = apps.get(app_id)
            name = short_id(app_id)
            if self.removing or app_id in self.stopped:
                lines.append(f"{name}: removed" if app is None else f"{name}: {counts(app)}")
                if app is not None:
                    failures.append(f"{app_id} still exists after its removal ended "
                                    "(the removal failed or was cancelled)")
                continue
            if app is None:
                lines.append(f"{name}: gone")
                failures.append(f"{app_id} does not exist any more (the deployment was "
                                "rolled back or the app removed)")
                continue
            lines.append(f"{name}: {counts(app)}")
            if self.version is not None and not same_version(app.get("version"), self.version):
                failures.append(f"{app_id} is at version {app.get('version')}, not "
                                f"{self.version}: the deployment failed and was rolled back, "
                                "or a newer deployment replaced it")
                continue
            got, wanted, word = wanted_healthy(app)
            if got < wanted:
                short.append(f"{app_id}: {got}/{wanted} {word}")
        if failures:
            return Status(Phase.FAILED, tuple(lines), "; ".join(failures), unreached=True)
        if not short:
            return Status(Phase.SUCCEEDED, tuple(lines))
        if now - self.ended_at >= SETTLE_SECONDS:
            return Status(Phase.FAILED, tuple(lines),
                          f"the deployment ended but, {SETTLE_SECONDS:g}s later, only "
                          + ", ".join(short))
        return Status(Phase.SETTLING, tuple(lines))


class Display:
    """Progress lines on `out`: redrawn in place on a terminal (as `juggler
    pull`'s bars), else printed whenever one of them changes."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out if out is not None else sys.stderr
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())
        self.drawn = 0
        self.shown: dict[int, str] = {}

    def show(self, lines: Sequence[str]) -> None:
        if self.tty:
            if self.drawn:
                self.out.write(f"\x1b[{self.drawn}A")
            for line in lines:
                self.out.write(f"\x1b[2K{line}\n")
            for _ in range(self.drawn - len(lines)):  # fewer lines than last time
                self.out.write("\x1b[2K\n")
            self.drawn = max(self.drawn, len(lines))
        else:
            for i, line in enumerate(lines):
                if self.shown.get(i) != line:
                    self.out.write(line + "\n")
                    self.shown[i] = line
        self.out.flush()

    def note(self, line: str) -> None:
        """A line said once, below the progress lines; the next ones are
        drawn (printed in full) after it."""
        self.out.write(("\x1b[2K" if self.tty else "") + line + "\n")
        self.out.flush()
        self.drawn = 0
        self.shown = {}


Poll = Callable[[list[str]], tuple[list[dict[str, Any]], dict[str, dict[str, Any] | None],
                                   list[dict[str, Any]]]]


def _never(e: Exception) -> bool:
    return False


def follow(watch: Watch, poll: Poll, display: Display, *, timeout: float | None,
           interval: float = 1.0, clock: Callable[[], float] = time.monotonic,
           sleep: Callable[[float], None] = time.sleep,
           lookup: Callable[[str], Mapping[str, Any] | None] | None = None,
           transient: Callable[[Exception], bool] = _never) -> tuple[Status, bool]:
    """Poll until the deployment is over or `timeout` seconds have passed.
    `poll(app_ids)` answers (deployments, apps by id, queue); an error it
    raises that is `transient` (the service is restarting) is retried for
    UNREACHABLE_SECONDS, then raised. `lookup(deployment_id)` answers the
    service's record of a deployment (None: unknown), read to `explain` a
    deployment that ended with its apps elsewhere. Returns the last status and
    whether the wait timed out."""
    start = clock()
    down_since: float | None = None
    while True:
        try:
            deployments, apps, queue = poll(watch.watched())
        except Exception as e:
            if not transient(e):
                raise
            now = clock()
            if down_since is None:
                down_since = now
                display.note(UNREACHABLE)
            if now - down_since >= UNREACHABLE_SECONDS or (
                    timeout is not None and now - start >= timeout):
                raise
            sleep(interval)
            continue
        down_since = None
        status = watch.observe(clock(), deployments, apps, queue)
        if status.phase is Phase.FAILED and status.unreached and lookup is not None:
            status = explain(status, lookup(watch.deployment_id))
        display.show(status.lines)
        if status.phase.over:
            return status, False
        if timeout is not None and clock() - start >= timeout:
            return status, True
        sleep(interval)
