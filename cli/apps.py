"""`juggler app …` and `juggler deployments`: the apps service from the command line.

The apps service speaks Marathon's REST API (/v2/apps, /v2/deployments,
/v2/queue, …); these commands are a small synchronous client of it:

    juggler app deploy FILE|-     create or replace apps (an app, a list of apps, or a group
                                  with "apps"/"groups"; JSON or YAML), then follow the deployment
    juggler app ls                apps: instances, health, resources, deployments
    juggler app show ID           an app's definition, version and instances
    juggler app scale ID N        set an app's instance count, then follow the deployment
    juggler app restart ID        replace an app's instances, then follow the deployment
    juggler app rm ID             remove an app, then follow the deployment
    juggler app why ID            why an app's instances are not launched (the launch queue,
                                  its last task failure)
    juggler deployments [rm ID]   deployments in progress; cancel one

Where the service is: --apps URL, $JUGGLER_APPS, the file `juggler up` writes
($JUGGLER_HOME/apps), then http://127.0.0.1:8080 (cli/address.py). An id "web"
means "/web". Mutating commands take --force (override the deployments that
lock the app), -d/--detach (print the deployment id and return) and --timeout;
how a followed deployment is judged done or failed is cli/deploy_progress.py's
docstring.

Exit codes: 0 done; 1 the service is unreachable or refused (404, 409, …), a
deployment failed, or the wait timed out; 2 bad input: a file that cannot be
read or is not an app, a list of apps or a group, or the service's 422 ("Object
is not valid", each field's error on its own line).
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import ipaddress
import json
import posixpath
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from juggler.cli import address as addr
from juggler.cli import credentials
from juggler.cli import deploy_progress as progress
from juggler.cli.ps import age

# Injected into `follow` at call time, so that tests replace them (no real waits).
POLL_SECONDS = 1.0
CLOCK: Callable[[], float] = time.monotonic
SLEEP: Callable[[float], None] = time.sleep

APP_EMBEDS = ["apps.counts", "apps.deployments", "apps.lastTaskFailure"]


class UsageError(ValueError):
    """Bad input (exit 2); the message says what is wrong."""


class NoAppsService(Exception):
    def __init__(self, url: str, detail: str = "") -> None:
        why = f"{detail}; " if detail and detail != "connection refused" else ""
        super().__init__(f"no apps service at {url} ({why}is `juggler up` running? --apps URL)")


class ApiError(Exception):
    """A non-2xx answer: `status`, and `body` (the JSON object, or the text)."""

    def __init__(self, status: int, body: Any) -> None:
        self.status, self.body = status, body
        message = body.get("message") if isinstance(body, dict) else None
        self.message = str(message or body or http.client.responses.get(status, "error"))
        super().__init__(self.message)


# -- the HTTP client ----------------------------------------------------------------------


class AppsClient:
    """Marathon-style JSON over HTTP: `call` answers the decoded body (None when
    empty) or raises ApiError (the service refused) / NoAppsService (no answer).

    `url` may list several apps services, comma-separated (`juggler up
    --masters 3` runs one beside each master): a call goes to the first that
    answers, and one that cannot be reached, or answers 503 (a standby that
    knows no leader yet), sends it to the next. Any of them serves: standbys
    proxy to the leader."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.urls = [u.strip().rstrip("/") for u in url.split(",") if u.strip()] or [url]
        self.url, self.timeout = self.urls[0], timeout
        host = urllib.parse.urlsplit(self.url).hostname or ""
        # A loopback service is never reached through $http_proxy.
        handlers: list[urllib.request.BaseHandler] = \
            [urllib.request.ProxyHandler({})] if _loopback(host) else []
        self.opener = urllib.request.build_opener(*handlers, *credentials.https_handlers())

    def call(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
             body: Any = None) -> Any:
        failure: Exception | None = None
        for url in [self.url] + [u for u in self.urls if u != self.url]:
            try:
                answer = self._call(url, method, path, query, body)
            except NoAppsService as e:
                failure = e
                continue
            except ApiError as e:
                if e.status != 503 or len(self.urls) == 1:
                    raise
                failure = e
                continue
            self.url = url  # the next call starts where this one was answered
            return answer
        assert failure is not None
        raise failure

    def _call(self, base: str, method: str, path: str, query: Mapping[str, Any] | None,
              body: Any) -> Any:
        url = base + path
        if query:
            url += "?" + urllib.parse.urlencode(query, doseq=True)
        data = None if body is None else json.dumps(body, default=str).encode()
        request = urllib.request.Request(url, data=data, method=method, headers={
            "Accept": "application/json", "Content-Type": "application/json",
            **credentials.auth_headers()})
        try:
            with self.opener.open(request, timeout=self.timeout) as answer:
                raw = answer.read()
        except urllib.error.HTTPError as e:
            raise ApiError(e.code, _decode(e.read())) from None
        except urllib.error.URLError as e:
            raise NoAppsService(base, _tls_reason(base) or _reason(e.reason)) from None
        except (OSError, http.client.HTTPException) as e:
            raise NoAppsService(base, _tls_reason(base) or _reason(e)) from None
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise NoAppsService(base, "it answered something that is not JSON") from None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace").strip()


def _tls_reason(base: str) -> str:
    """What a probe of the service's address finds wrong with TLS ("" for
    nothing, or nothing listening: common/tls.py)."""
    from juggler.common import tls

    parts = urllib.parse.urlsplit(base)
    if not parts.hostname:
        return ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    why = tls.explain(f"{parts.hostname}:{port}")
    return "" if why.startswith("nothing answers") else why


def _reason(e: object) -> str:
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, TimeoutError):
        return "no answer in time"
    return str(getattr(e, "strerror", None) or e)


def app_id(text: str) -> str:
    """"web" → "/web", "/prod/web/" → "/prod/web"; UsageError for an empty id."""
    normal = _join("/", text.strip())
    if normal == "/":
        raise UsageError(f"{text!r} is not an app id (e.g. web or /prod/web)")
    return normal


def _join(base: str, raw: str) -> str:
    """`raw` as an absolute id, relative ids taken under the group `base`."""
    path = raw if raw.startswith("/") else base.rstrip("/") + "/" + raw
    path = posixpath.normpath("/" + path.lstrip("/"))
    return path.rstrip("/") or "/"


def app_path(an_id: str) -> str:
    return "/v2/apps" + urllib.parse.quote(an_id, safe="/")


def _force(force: bool) -> dict[str, str]:
    return {"force": "true"} if force else {}


# -- files: an app, a list of apps, or a group --------------------------------------------


@dataclass(frozen=True)
class Definition:
    """What a file asks for: `kind` "app", "apps" or "group", the JSON `body`
    to send, and the absolute ids of the apps it names."""

    kind: str
    body: Any
    app_ids: tuple[str, ...]


def load_definition(path: str) -> Definition:
    """The file `path` ("-": stdin), JSON or YAML, as a Definition; UsageError
    when it cannot be read or is not an app, a list of apps or a group."""
    name = "stdin" if path == "-" else path
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a text file (expected JSON or YAML)") from None
    except OSError as e:
        raise UsageError(f"{path}: {e.strerror or e}") from None
    return definition_of(parse_text(text, name, Path(path).suffix.lower()), name)


def parse_text(text: str, name: str, suffix: str = "") -> Any:
    """JSON for .json, YAML for .yaml/.yml, else JSON then YAML."""
    if suffix != ".yaml" and suffix != ".yml":
        try:
            return json.loads(text)
        except ValueError as e:
            if suffix == ".json":
                raise UsageError(f"{name}: not valid JSON: {e}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = "YAML" if suffix in (".yaml", ".yml") else "JSON or YAML"
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UsageError(f"{name}: not valid {what}: {problem}{where}") from None


def definition_of(obj: Any, name: str = "the file") -> Definition:
    """Which of Marathon's three shapes `obj` is: a list (apps, for PUT
    /v2/apps), an object with "apps" or "groups" (a group, for PUT /v2/groups),
    or any other object (an app, for PUT /v2/apps/{id})."""
    if obj is None:
        raise UsageError(f"{name} is empty")
    if isinstance(obj, list):
        if not obj:
            raise UsageError(f"{name}: the list has no app")
        apps = [_app(item, f"{name}: item {i}") for i, item in enumerate(obj, 1)]
        return Definition("apps", apps, tuple(a["id"] for a in apps))
    if not isinstance(obj, dict):
        raise UsageError(f"{name}: not an app, a list of apps or a group "
                         "(expected an object or a list)")
    if "apps" in obj or "groups" in obj:
        group = dict(obj)
        group.setdefault("id", "/")
        return Definition("group", group, tuple(_group_app_ids(group, "/", name)))
    app = _app(obj, name)
    return Definition("app", app, (app["id"],))


def _app(obj: Any, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise UsageError(f"{where} is not an app object (expected {{\"id\": ..., ...}})")
    raw = obj.get("id")
    if not isinstance(raw, str) or not raw.strip("/ "):
        raise UsageError(f'{where}: the app has no "id" (e.g. "id": "/web")')
    return {**obj, "id": app_id(raw)}


def _group_app_ids(group: Mapping[str, Any], base: str, name: str) -> list[str]:
    raw = group.get("id", base)
    if not isinstance(raw, str):
        raise UsageError(f'{name}: a group\'s "id" must be a string')
    gid = _join(base, raw)
    ids = []
    for key in ("apps", "groups"):
        if not isinstance(group.get(key, []), list):
            raise UsageError(f'{name}: group {gid}: "{key}" must be a list')
    for app in group.get("apps", []):
        if not isinstance(app, dict) or not isinstance(app.get("id"), str):
            raise UsageError(f'{name}: group {gid}: every app needs an "id"')
        ids.append(_join(gid, app["id"]))
    for sub in group.get("groups", []):
        if not isinstance(sub, dict):
            raise UsageError(f"{name}: group {gid}: every subgroup must be an object")
        ids.extend(_group_app_ids(sub, gid, name))
    return ids


# -- rendering ----------------------------------------------------------------------------


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def _clip(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _number(x: Any) -> str:
    try:
        return f"{float(x):g}"
    except (TypeError, ValueError):
        return "-"


def what_runs(app: Mapping[str, Any]) -> str:
    """The app's image, else its command, else its args."""
    image = ((app.get("container") or {}).get("docker") or {}).get("image")
    if image:
        return str(image)
    if app.get("cmd"):
        return str(app["cmd"])
    return " ".join(app.get("args") or []) or "-"


def _deployment_ids(app: Mapping[str, Any]) -> str:
    return ",".join(str(d.get("id")) for d in app.get("deployments") or []) or "-"


def render_apps(apps: Iterable[Mapping[str, Any]]) -> str:
    rows = [("ID", "INSTANCES", "HEALTHY", "CPUS", "MEM", "IMAGE/CMD", "DEPLOYMENTS")]
    for a in sorted(apps, key=lambda a: str(a.get("id"))):
        wanted = int(a.get("instances") or 0)
        healthy = f"{int(a.get('tasksHealthy') or 0)}/{wanted}" if a.get("healthChecks") else "-"
        rows.append((str(a.get("id")), f"{int(a.get('tasksRunning') or 0)}/{wanted}", healthy,
                     _number(a.get("cpus")), _number(a.get("mem")), _clip(what_runs(a)),
                     _deployment_ids(a)))
    return _table(rows)


def _when(stamp: Any) -> float | None:
    try:
        return datetime.datetime.fromisoformat(str(stamp)).timestamp()
    except ValueError:
        return None


def _ago(stamp: Any, now: float) -> str:
    t = _when(stamp) if stamp else None
    return "-" if t is None else age(now - t) + " ago"


def task_health(task: Mapping[str, Any], checked: bool) -> str:
    results = task.get("healthCheckResults") or []
    if not checked:
        return "-"
    if not results:
        return "unknown"
    bad = [r for r in results if not r.get("alive")]
    if not bad:
        return "healthy"
    failures = max(int(r.get("consecutiveFailures") or 0) for r in bad)
    return f"unhealthy ({failures} failures)" if failures else "unhealthy"


def health_check(check: Mapping[str, Any]) -> str:
    protocol = str(check.get("protocol") or "HTTP")
    if protocol.endswith("COMMAND"):
        what = f"{protocol} {((check.get('command') or {}).get('value')) or ''}".rstrip()
    else:
        where = (f"port {check['port']}" if check.get("port") is not None
                 else f"port index {check.get('portIndex', 0)}")
        path = f" {check.get('path') or '/'}" if protocol.rstrip("S").endswith("HTTP") else ""
        what = f"{protocol}{path} {where}"
    timing = [f"every {_number(check.get('intervalSeconds', 60))}s"]
    if check.get("maxConsecutiveFailures") is not None:
        timing.append(f"{check['maxConsecutiveFailures']} failures allowed")
    return f"{what}, {', '.join(timing)}"


def _instances_line(app: Mapping[str, Any]) -> str:
    """"3 wanted: 2 running, 1 healthy, 1 staged" (healthy only with health checks)."""
    parts = [f"{int(app.get('tasksRunning') or 0)} running"]
    if app.get("healthChecks"):
        parts.append(f"{int(app.get('tasksHealthy') or 0)} healthy")
    parts += [f"{int(app[k])} {word}" for k, word in (("tasksStaged", "staged"),
                                                       ("tasksUnhealthy", "unhealthy"))
              if app.get(k)]
    return f"{int(app.get('instances') or 0)} wanted: " + ", ".join(parts)


def failure_text(failure: Mapping[str, Any], now: float) -> str:
    """A lastTaskFailure: "TASK_FAILED on host-a 2m ago: the message"."""
    return (f"{failure.get('state', '?')} on {failure.get('host', '?')} "
            f"{_ago(failure.get('timestamp'), now)}: "
            f"{' '.join(str(failure.get('message') or '-').split())}")


def render_app(app: Mapping[str, Any], now: float) -> str:
    """An app's definition summary, then a row per instance."""
    info = app.get("versionInfo") or {}
    fields = [("ID", str(app.get("id"))),
              ("VERSION", str(app.get("version") or "-") + (
                  f" (scaled or restarted; definition of {info['lastConfigChangeAt']})"
                  if info.get("lastConfigChangeAt") and not progress.same_version(
                      info["lastConfigChangeAt"], app.get("version")) else "")),
              ("IMAGE/CMD", what_runs(app)),
              ("RESOURCES", f"cpus {_number(app.get('cpus'))}, mem {_number(app.get('mem'))} "
                            f"MiB, disk {_number(app.get('disk'))} MiB"),
              ("INSTANCES", _instances_line(app)),
              ("CONSTRAINTS", ", ".join(":".join(str(p) for p in c)
                                        for c in app.get("constraints") or []) or "-")]
    checks = app.get("healthChecks") or []
    fields += [("HEALTH CHECK", health_check(c)) for c in checks] or [("HEALTH CHECK", "-")]
    fields.append(("DEPLOYMENTS", _deployment_ids(app)))
    failure = app.get("lastTaskFailure")
    if failure:
        fields.append(("LAST FAILURE", failure_text(failure, now)))
    width = max(len(k) for k, _ in fields)
    lines = [f"{k.ljust(width)}  {v}" for k, v in fields]
    tasks = app.get("tasks") or []
    if not tasks:
        return "\n".join([*lines, "", "no instances"])
    rows = [("TASK ID", "HOST", "AGENT", "STATE", "HEALTH", "STARTED", "VERSION")]
    # Tasks carry the version of the definition they run (its config version):
    # a scale or a restart changes the app's `version`, not theirs.
    config = info.get("lastConfigChangeAt") or app.get("version")
    for t in sorted(tasks, key=lambda t: (str(t.get("host")), str(t.get("id")))):
        version = ("current" if progress.same_version(t.get("version"), config)
                   else str(t.get("version") or "-"))
        rows.append((str(t.get("id")), str(t.get("host") or "-"), str(t.get("slaveId") or "-"),
                     str(t.get("state") or "-").removeprefix("TASK_"),
                     task_health(t, bool(checks)),
                     _ago(t.get("startedAt"), now) if t.get("startedAt")
                     else "staged " + _ago(t.get("stagedAt"), now),
                     version))
    return "\n".join([*lines, "", _table(rows)])


def render_deployments(deployments: Iterable[Mapping[str, Any]]) -> str:
    rows = [("ID", "APPS", "STEP", "CURRENT ACTIONS", "VERSION")]
    for d in sorted(deployments, key=lambda d: str(d.get("version"))):
        actions = ", ".join(f"{a.get('action')} {a.get('app')}"
                            for a in d.get("currentActions") or []) or "-"
        rows.append((str(d.get("id")), ",".join(d.get("affectedApps") or []) or "-",
                     f"{d.get('currentStep', 0)}/{d.get('totalSteps', 0)}", actions,
                     str(d.get("version") or "-")))
    return _table(rows)


def render_why(entry: Mapping[str, Any], now: float,
               failure: Mapping[str, Any] | None = None) -> str:
    """An app's launch-queue entry: how many instances wait and since when, the
    backoff delay and the app's last task failure (`failure`, its
    lastTaskFailure: what the backoff follows), then the last offers that
    could not be used, grouped by reason (juggler's sentence when the service
    gives one), most frequent first."""
    app = entry.get("app") or {}
    count = int(entry.get("count") or 0)
    since = f", for {_ago(entry.get('since'), now).removesuffix(' ago')}" \
        if entry.get("since") else ""
    lines = [f"{app.get('id')}: {count} instance{'s' if count != 1 else ''} waiting to "
             f"launch{since}"]
    delay = entry.get("delay") or {}
    left = delay.get("timeLeftSeconds") or 0
    if left:
        lines.append(f"backoff: next launch attempt in {left}s (launches failed before; "
                     "the delay grows with each failure)")
    else:
        lines.append("no backoff delay: waiting for an offer that fits"
                     + (" (overdue)" if delay.get("overdue") else ""))
    if failure:
        lines.append("last failure: " + failure_text(failure, now))
    summary = entry.get("processedOffersSummary") or {}
    if summary:
        text = (f"offers since then: {summary.get('processedOffersCount', 0)} processed, "
                f"{summary.get('unusedOffersCount', 0)} unused")
        if summary.get("lastUnusedOfferAt"):
            text += f" (last unused {_ago(summary['lastUnusedOfferAt'], now)})"
        lines.append(text)
        declined = [r for r in summary.get("rejectSummaryLastOffers") or []
                    if r.get("declined")]
        if declined:
            lines.append("declined among the last offers: " + ", ".join(
                f"{r.get('reason')} {r.get('declined')}/{r.get('processed')}"
                for r in sorted(declined, key=lambda r: -int(r.get("declined") or 0))))
    unused = entry.get("lastUnusedOffers") or []
    if unused:
        groups: dict[str, list[str]] = defaultdict(list)
        for u in unused:
            offer = u.get("offer") or {}
            groups[progress.offer_reason(u)].append(
                str(offer.get("hostname") or offer.get("agentId") or "?"))
        lines.append("last unused offers, by reason:")
        for reason, hosts in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            lines.append(f"  {len(hosts)} × {reason} ({', '.join(sorted(set(hosts)))})")
    elif left and not summary.get("processedOffersCount"):
        lines.append("no offer looked at: offers are not considered until the backoff ends")
    elif not summary.get("processedOffersCount"):
        lines.append("no offer received yet (are agents connected, with free resources? "
                     "see `juggler agents`)")
    return "\n".join(lines)


# -- following a deployment ---------------------------------------------------------------


def deployment_of(answer: Any) -> tuple[str | None, str | None]:
    """(deployment id, version) from an answer: {"deploymentId", "version"}
    (PUT, PATCH, DELETE, restart) or an app with "deployments" (POST, 201)."""
    if not isinstance(answer, dict):
        return None, None
    if answer.get("deploymentId"):
        return str(answer["deploymentId"]), answer.get("version")
    deployments = answer.get("deployments") or []
    if deployments and isinstance(deployments[0], dict) and deployments[0].get("id"):
        return str(deployments[0]["id"]), answer.get("version")
    return None, answer.get("version")


def _poll(client: AppsClient) -> progress.Poll:
    def poll(app_ids: list[str]) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any] | None],
                                         list[dict[str, Any]]]:
        deployments = client.call("GET", "/v2/deployments") or []
        apps: dict[str, dict[str, Any] | None] = {}
        for an_id in app_ids:
            try:
                apps[an_id] = (client.call("GET", app_path(an_id),
                                           query={"embed": APP_EMBEDS}) or {}).get("app")
            except ApiError as e:
                if e.status != 404:
                    raise
                apps[an_id] = None
        try:
            queue = (client.call("GET", "/v2/queue", query={"embed": "lastUnusedOffers"})
                     or {}).get("queue") or []
        except ApiError:  # the queue only adds a "waiting: why" to the lines
            queue = []
        return deployments, apps, queue
    return poll


def _lookup(client: AppsClient) -> Callable[[str], dict[str, Any] | None]:
    """GET /v2/deployments/{id} (juggler's): the service's record of a
    deployment, None when it has none — an older service (404, or 405: it
    routes only DELETE there) or an error: the verdict stands without it."""
    def lookup(deployment: str) -> dict[str, Any] | None:
        try:
            answer = client.call("GET", "/v2/deployments/" + urllib.parse.quote(deployment,
                                                                                 safe=""))
        except (ApiError, NoAppsService):
            return None
        return answer if isinstance(answer, dict) else None
    return lookup


def _restarting(e: Exception) -> bool:
    """What following a deployment waits out: no service (killed, `juggler up`
    starts it again within seconds) or a 503 (a standby without a leader yet)."""
    return isinstance(e, NoAppsService) or (isinstance(e, ApiError) and e.status == 503)


def _started(args: argparse.Namespace, client: AppsClient, answer: Any,
             app_ids: tuple[str, ...], removing: bool = False) -> int:
    """After a mutating call: print the deployment, then follow it unless --detach."""
    deployment, version = deployment_of(answer)
    if deployment is None:
        print("nothing to deploy: the service started no deployment")
        return 0
    if args.detach:
        print(deployment)
        return 0
    print(f"deployment {deployment}" + (f" (version {version})" if version else ""))
    watch = progress.Watch(deployment, version, app_ids, removing=removing)
    try:
        status, timed_out = progress.follow(
            watch, _poll(client), progress.Display(sys.stderr), timeout=args.timeout,
            interval=POLL_SECONDS, clock=CLOCK, sleep=SLEEP, lookup=_lookup(client),
            transient=_restarting)
    except KeyboardInterrupt:
        print(f"juggler {args.command}: stopped following; deployment {deployment} goes on "
              "(`juggler deployments`)", file=sys.stderr)
        return 130
    if timed_out:
        print(f"juggler {args.command}: not done after {args.timeout:g}s; deployment "
              f"{deployment} goes on (`juggler deployments`; cancel it with "
              f"`juggler deployments rm {deployment}`)", file=sys.stderr)
        return 1
    if status.phase is progress.Phase.FAILED:
        print(f"juggler {args.command}: deployment {deployment} {status.verdict}: "
              f"{status.reason}", file=sys.stderr)
        return 1
    print("removed" if removing else "deployed" + (f" version {version}" if version else ""))
    return 0


# -- commands -----------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> AppsClient:
    return AppsClient(addr.resolve_apps(getattr(args, "apps", None)))


def _failed(command: str, e: Exception) -> int:
    """How every command reports an error; the exit code it returns."""
    say = f"juggler {command}: "
    if isinstance(e, UsageError | NoAppsService | addr.NotServed):
        print(say + str(e), file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1
    assert isinstance(e, ApiError)
    body = e.body if isinstance(e.body, dict) else {}
    if e.status == 422:
        lines = [say + e.message]
        for d in body.get("details") or []:
            for error in d.get("errors") or ["invalid"]:
                lines.append(f"  {d.get('path', '/')}: {error}")
        print("\n".join(lines), file=sys.stderr)
        return 2
    if e.status == 409:
        ids = ", ".join(str(d.get("id")) for d in body.get("deployments") or []) or "?"
        print(f"{say}{e.message}\n{say}locked by deployment {ids}; use --force to override "
              "(or wait: `juggler deployments`)", file=sys.stderr)
        return 1
    detail = e.message if e.status in (400, 404) else f"HTTP {e.status}: {e.message}"
    print(say + detail, file=sys.stderr)
    return 1


def _command(run: Callable[[argparse.Namespace, AppsClient], int]) -> Callable[
        [argparse.Namespace], int]:
    def main(args: argparse.Namespace) -> int:
        try:
            return run(args, _client(args))
        except (UsageError, NoAppsService, ApiError, addr.NotServed) as e:
            return _failed(args.command, e)
    main.__doc__ = run.__doc__
    return main


def _dump(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True))


@_command
def deploy_main(args: argparse.Namespace, client: AppsClient) -> int:
    """PUT the file's apps (PUT /v2/apps/{id}, PUT /v2/apps for a list, PUT
    /v2/groups for a group: each creates what is missing), then follow."""
    d = load_definition(args.file)
    if d.kind == "app":
        answer = client.call("PUT", app_path(d.body["id"]), query=_force(args.force), body=d.body)
    elif d.kind == "apps":
        answer = client.call("PUT", "/v2/apps", query=_force(args.force), body=d.body)
    else:
        answer = client.call("PUT", "/v2/groups", query=_force(args.force), body=d.body)
    return _started(args, client, answer, d.app_ids)


@_command
def ls_main(args: argparse.Namespace, client: AppsClient) -> int:
    apps = (client.call("GET", "/v2/apps", query={"embed": APP_EMBEDS}) or {}).get("apps") or []
    if args.format == "json":
        _dump(apps)
    else:
        print(render_apps(apps))
    return 0


@_command
def show_main(args: argparse.Namespace, client: AppsClient) -> int:
    answer = client.call("GET", app_path(app_id(args.id)),
                         query={"embed": ["apps.tasks", *APP_EMBEDS]}) or {}
    app = answer.get("app") or {}
    if args.format == "json":
        _dump(app)
    else:
        print(render_app(app, time.time()))
    return 0


@_command
def scale_main(args: argparse.Namespace, client: AppsClient) -> int:
    an_id = app_id(args.id)
    answer = client.call("PATCH", app_path(an_id), query=_force(args.force),
                         body={"instances": args.instances})
    return _started(args, client, answer, (an_id,))


@_command
def restart_main(args: argparse.Namespace, client: AppsClient) -> int:
    an_id = app_id(args.id)
    answer = client.call("POST", app_path(an_id) + "/restart", query=_force(args.force))
    return _started(args, client, answer, (an_id,))


@_command
def rm_main(args: argparse.Namespace, client: AppsClient) -> int:
    an_id = app_id(args.id)
    answer = client.call("DELETE", app_path(an_id), query=_force(args.force))
    return _started(args, client, answer, (an_id,), removing=True)


@_command
def why_main(args: argparse.Namespace, client: AppsClient) -> int:
    an_id = app_id(args.id)
    queue = (client.call("GET", "/v2/queue", query={"embed": "lastUnusedOffers"})
             or {}).get("queue") or []
    entry = next((e for e in queue if (e.get("app") or {}).get("id") == an_id), None)
    if args.format == "json":
        _dump(entry)
        return 0
    try:
        app = (client.call("GET", app_path(an_id), query={"embed": APP_EMBEDS}) or {}).get(
            "app") or {}
    except ApiError as e:
        if e.status != 404 or entry is None:
            raise
        app = {}  # removed since the queue answered
    if entry is None:
        print(f"{an_id}: nothing waiting ({progress.counts(app)})")
        return 0
    print(render_why(entry, time.time(), app.get("lastTaskFailure")))
    return 0


@_command
def deployments_main(args: argparse.Namespace, client: AppsClient) -> int:
    deployments = client.call("GET", "/v2/deployments") or []
    if args.format == "json":
        _dump(deployments)
    else:
        print(render_deployments(deployments))
    return 0


@_command
def deployment_rm_main(args: argparse.Namespace, client: AppsClient) -> int:
    """DELETE /v2/deployments/{id}: without --force the service rolls the
    deployment back (a new deployment); with --force it just stops it. An
    unambiguous prefix of the id is enough."""
    ids = [str(d.get("id")) for d in client.call("GET", "/v2/deployments") or []]
    matches = [i for i in ids if i == args.id] or [i for i in ids if i.startswith(args.id)]
    if not matches:
        raise ApiError(404, {"message": f"no deployment {args.id} (in progress: "
                                        f"{', '.join(ids) or 'none'})"})
    if len(matches) > 1:
        raise UsageError(f"{args.id!r} names several deployments: {', '.join(matches)}")
    answer = client.call("DELETE", "/v2/deployments/" + urllib.parse.quote(matches[0], safe=""),
                         query=_force(args.force))
    if args.force:
        print(f"deployment {matches[0]} stopped; its apps stay as they are now")
        return 0
    rollback, version = deployment_of(answer)
    print(f"deployment {matches[0]} cancelled; rolling back"
          + (f" in deployment {rollback}" if rollback else "")
          + (f" (version {version})" if version else ""))
    return 0


# -- the parsers --------------------------------------------------------------------------


def _instances(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the instance count cannot be negative")
    return n


def _seconds(text: str) -> float:
    try:
        s = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not s > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the timeout must be positive")
    return s


def add_parsers(sub: argparse._SubParsersAction) -> None:
    # --apps on every level, SUPPRESSed so that a subcommand's parser does not
    # overwrite a value given before it (`juggler app --apps URL ls`).
    url = argparse.ArgumentParser(add_help=False)
    url.add_argument("--apps", default=argparse.SUPPRESS, metavar="URL",
                     help="the apps service (default: $JUGGLER_APPS, what `up` wrote, "
                          "else http://127.0.0.1:8080)")
    fmt = argparse.ArgumentParser(add_help=False)
    fmt.add_argument("--format", choices=("table", "json"), default="table",
                     help="json: the service's JSON as it answered")
    follow = argparse.ArgumentParser(add_help=False)
    follow.add_argument("--force", action="store_true",
                        help="override the deployments that lock the app")
    follow.add_argument("-d", "--detach", action="store_true",
                        help="print the deployment id and return without following it")
    follow.add_argument("--timeout", type=_seconds, default=None, metavar="SECONDS",
                        help="stop following after that long (exit 1; the deployment goes on)")

    app = sub.add_parser("app", parents=[url], help="deploy and manage long-running apps",
                         description="Long-running apps on the apps service "
                                     "(Marathon's REST API). An id \"web\" means \"/web\".")
    app.set_defaults(func=lambda args: _usage(app))
    asub = app.add_subparsers(dest="app_command", metavar="COMMAND")

    def leaf(name: str, func: Callable[[argparse.Namespace], int], help: str,
             parents: list[argparse.ArgumentParser], description: str = "") -> (
            argparse.ArgumentParser):
        p = asub.add_parser(name, parents=[url, *parents], help=help,
                            description=description or help[0].upper() + help[1:] + ".")
        p.set_defaults(func=func, command=f"app {name}")
        return p

    p = leaf("deploy", deploy_main, "create or replace apps, then follow the deployment",
             [follow], "Create or replace apps from FILE (JSON or YAML; - for stdin): an app, "
             "a list of apps, or a group with \"apps\"/\"groups\". Then show the deployment's "
             "progress until it is done (exit 0) or failed (exit 1).")
    p.add_argument("file", metavar="FILE", help="app definition(s): .json, .yaml, or -")
    leaf("ls", ls_main, "list apps", [fmt])
    p = leaf("show", show_main, "an app's definition, version and instances", [fmt])
    p.add_argument("id", metavar="ID")
    p = leaf("scale", scale_main, "set an app's instance count", [follow])
    p.add_argument("id", metavar="ID")
    p.add_argument("instances", metavar="N", type=_instances)
    p = leaf("restart", restart_main, "replace an app's instances (rolling)", [follow])
    p.add_argument("id", metavar="ID")
    p = leaf("rm", rm_main, "remove an app and kill its instances", [follow])
    p.add_argument("id", metavar="ID")
    p = leaf("why", why_main, "why an app's instances are not launched", [fmt],
             "Why an app waits: how many instances wait to launch, its backoff delay, its "
             "last task failure, and the last offers that could not be used, grouped by "
             "reason.")
    p.add_argument("id", metavar="ID")

    d = sub.add_parser("deployments", parents=[url, fmt], help="list deployments in progress",
                       description="List the apps service's deployments in progress.")
    d.set_defaults(func=deployments_main, command="deployments")
    dsub = d.add_subparsers(dest="deployments_command", metavar="COMMAND")
    r = dsub.add_parser("rm", parents=[url], help="cancel a deployment",
                        description="Cancel a deployment: the service rolls it back (a new "
                                    "deployment to the previous versions); with --force it "
                                    "just stops, leaving the apps as they are.")
    r.add_argument("id", metavar="ID", help="the deployment's id (or an unambiguous prefix)")
    r.add_argument("--force", action="store_true", help="stop it without rolling back")
    r.set_defaults(func=deployment_rm_main, command="deployments rm")


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2
