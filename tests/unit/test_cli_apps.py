"""`juggler app …` and `juggler deployments` against a stand-in for the apps service.

`FakeApps` is a small aiohttp server, in a thread, that answers with
Marathon-shaped JSON the tests set, and records what it was sent: it stands in
for the real apps service (apps/, tested for real elsewhere; end-to-end tests
of these commands against it come with it). The tests check what the commands
send, what they print, their exit codes, file parsing, where the service's URL
comes from and how a followed deployment ends. Time is a fake clock advanced
by the injected sleep: no test waits.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from juggler.cli import address as addr
from juggler.cli import apps as apps_cli
from juggler.cli import deploy_progress as progress
from juggler.cli import main as cli_main

V1 = "2024-05-01T10:00:00.000Z"
V2 = "2024-05-01T11:00:00.000Z"


def app_json(an_id: str = "/web", *, instances: int = 3, running: int = 3, healthy: int = 3,
             version: str = V2, checks: bool = True, **more: Any) -> dict[str, Any]:
    """An app as GET /v2/apps/{id} answers it (the fields the CLI reads)."""
    return {"id": an_id, "instances": instances, "cpus": 0.5, "mem": 128, "disk": 0,
            "cmd": "python3 -m http.server", "version": version,
            "healthChecks": [{"protocol": "HTTP", "path": "/health", "portIndex": 0,
                              "intervalSeconds": 10, "maxConsecutiveFailures": 3}]
            if checks else [],
            "tasksRunning": running, "tasksHealthy": healthy if checks else 0,
            "tasksStaged": 0, "tasksUnhealthy": 0, "deployments": [], **more}


def deployment_json(dep_id: str = "d1", apps: tuple[str, ...] = ("/web",), step: int = 1,
                    action: str = "RestartApplication") -> dict[str, Any]:
    return {"id": dep_id, "version": V2, "affectedApps": list(apps),
            "steps": [{"actions": [{"action": action, "app": a} for a in apps]}],
            "currentActions": [{"action": action, "app": a} for a in apps],
            "currentStep": step, "totalSteps": 1}


class FakeApps:
    """The apps service's stand-in: `apps`, `deployments` and `queue` are what
    it lists, `ended` the deployments GET /v2/deployments/{id} knows as ended;
    `answers[(METHOD, path)]` = (status, body) overrides any route;
    `on_poll(n)` runs before the n-th (from 1) GET /v2/deployments answers,
    and answers instead when it returns (status, body)."""

    def __init__(self) -> None:
        self.apps: dict[str, dict[str, Any]] = {}
        self.deployments: list[dict[str, Any]] = []
        self.ended: dict[str, dict[str, Any]] = {}
        self.queue: list[dict[str, Any]] = []
        self.answers: dict[tuple[str, str], tuple[int, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, list[str]], Any]] = []
        self.on_poll: Callable[[int], tuple[int, Any] | None] | None = None
        self.polls = 0
        self.url = ""

    def sent(self, method: str | None = None) -> list[tuple[str, str, dict[str, list[str]], Any]]:
        """The requests received, the GETs left out unless `method` says GET."""
        return [r for r in self.requests
                if (r[0] == method if method else r[0] != "GET")]

    async def handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.text()) if request.can_read_body else None
        query = {k: request.query.getall(k) for k in request.query}
        self.requests.append((request.method, request.path, query, body))
        key = (request.method, request.path)
        if key in self.answers:
            status, answer = self.answers[key]
            return web.json_response(answer, status=status) if answer is not None \
                else web.Response(status=status)
        path = request.path
        if request.method == "GET":
            if path == "/v2/apps":
                return web.json_response({"apps": list(self.apps.values())})
            if path == "/v2/deployments":
                self.polls += 1
                override = self.on_poll(self.polls) if self.on_poll else None
                if override is not None:
                    return web.json_response(override[1], status=override[0])
                return web.json_response(self.deployments)
            if path.startswith("/v2/deployments/"):
                dep_id = path.removeprefix("/v2/deployments/")
                running = next((d for d in self.deployments if d["id"] == dep_id), None)
                if running is not None:
                    return web.json_response(running | {"state": "IN_PROGRESS"})
                if dep_id in self.ended:
                    return web.json_response(self.ended[dep_id])
                return web.json_response(
                    {"message": f"DeploymentPlan {dep_id} does not exist"}, status=404)
            if path == "/v2/queue":
                return web.json_response({"queue": self.queue})
            if path.startswith("/v2/apps/"):
                an_id = path.removeprefix("/v2/apps")
                if an_id in self.apps:
                    return web.json_response({"app": self.apps[an_id]})
                return web.json_response({"message": f"App '{an_id}' does not exist"},
                                         status=404)
        return web.json_response({"deploymentId": "d1", "version": V2})


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeApps]:
    """A FakeApps on a free port, named by $JUGGLER_APPS; the CLI's sleep
    advances a fake clock instead of waiting."""
    fake = FakeApps()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app)

    async def start() -> int:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    port = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    fake.url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("JUGGLER_APPS", fake.url)
    monkeypatch.setenv("JUGGLER_HOME", str(tmp_path / "home"))
    clock = FakeClock()
    monkeypatch.setattr(apps_cli, "CLOCK", clock)
    monkeypatch.setattr(apps_cli, "SLEEP", clock.sleep)
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 1.0)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli_main.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, name: str, obj: Any) -> str:
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return str(path)


# -- where the service is -------------------------------------------------------------


def test_the_url_comes_from_the_flag_then_the_environment_then_the_file(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JUGGLER_HOME", str(tmp_path))
    monkeypatch.delenv("JUGGLER_APPS", raising=False)
    assert addr.resolve_apps(None) == "http://127.0.0.1:8080"
    assert addr.write_apps("http://10.0.0.5:8080") == tmp_path / "apps"
    assert addr.resolve_apps(None) == "http://10.0.0.5:8080"
    monkeypatch.setenv("JUGGLER_APPS", "10.0.0.6:9090/")
    assert addr.resolve_apps(None) == "http://10.0.0.6:9090"
    assert addr.resolve_apps("https://apps.example:8443/") == "https://apps.example:8443"


def test_the_apps_flag_wins_and_may_come_before_the_subcommand(
        service: FakeApps, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("JUGGLER_APPS", "http://127.0.0.1:1")
    host_port = service.url.removeprefix("http://")
    assert run(["app", "--apps", host_port, "ls"], capsys)[0] == 0
    assert run(["app", "ls", "--apps", service.url], capsys)[0] == 0
    assert run(["deployments", "--apps", service.url, "rm", "x"], capsys)[0] == 1  # no such
    assert [r[1] for r in service.requests] == ["/v2/apps", "/v2/apps", "/v2/deployments"]


def test_no_service_exits_1_and_says_where_it_looked(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("JUGGLER_APPS", f"127.0.0.1:{port}")
    app = write(tmp_path, "web.json", {"id": "web", "cmd": "sleep 1"})
    for argv in (["app", "ls"], ["app", "deploy", app], ["deployments"]):
        code, _, err = run(argv, capsys)
        assert code == 1
        assert err.strip() == (f"juggler {' '.join(argv[:2]) if argv[0] == 'app' else argv[0]}: "
                               f"no apps service at http://127.0.0.1:{port} "
                               "(is `juggler up` running? --apps URL)")


# -- files ----------------------------------------------------------------------------


def test_an_app_file_json_or_yaml(tmp_path: Path) -> None:
    as_json = apps_cli.load_definition(write(tmp_path, "a.json", {"id": "web", "cmd": "x"}))
    as_yaml = apps_cli.load_definition(write(tmp_path, "a.yaml", "id: web\ncmd: x\n"))
    as_yml = apps_cli.load_definition(write(tmp_path, "a.txt", "id: web\ncmd: x\n"))
    for d in (as_json, as_yaml, as_yml):
        assert d == apps_cli.Definition("app", {"id": "/web", "cmd": "x"}, ("/web",))


def test_a_list_of_apps(tmp_path: Path) -> None:
    d = apps_cli.load_definition(write(tmp_path, "a.yml", "- id: web\n- id: /prod/db\n"))
    assert d.kind == "apps" and d.app_ids == ("/web", "/prod/db")


def test_a_group_resolves_relative_ids_under_its_groups(tmp_path: Path) -> None:
    text = ("id: /prod\napps:\n  - id: web\n  - id: /other/x\n"
            "groups:\n  - id: back\n    apps:\n      - id: db\n      - id: ../cache\n")
    d = apps_cli.load_definition(write(tmp_path, "g.yaml", text))
    assert d.kind == "group"
    assert d.app_ids == ("/prod/web", "/other/x", "/prod/back/db", "/prod/cache")
    assert apps_cli.definition_of({"apps": [{"id": "a"}]}).body["id"] == "/"


def test_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO('{"id": "/web", "instances": 2}'))
    assert apps_cli.load_definition("-").body == {"id": "/web", "instances": 2}


@pytest.mark.parametrize(("name", "text", "match"), [
    ("a.json", "{not json", "a.json: not valid JSON"),
    ("a.yaml", "id: [web", "a.yaml: not valid YAML"),
    ("a.txt", "id: [web", "a.txt: not valid JSON or YAML"),
    ("a.json", "", "not valid JSON"),
    ("a.yaml", "", "a.yaml is empty"),
    ("a.yaml", "just words", "not an app, a list of apps or a group"),
    ("a.json", "[]", "the list has no app"),
    ("a.json", '{"cmd": "sleep 1"}', 'the app has no "id"'),
    ("a.json", '{"id": "/"}', 'the app has no "id"'),
    ("a.json", '[{"id": "web"}, 3]', "item 2 is not an app object"),
    ("a.json", '{"id": "/g", "apps": {"id": "web"}}', '"apps" must be a list'),
    ("a.json", '{"id": "/g", "apps": [{"cmd": "x"}]}', 'every app needs an "id"'),
])
def test_bad_files_are_usage_errors(tmp_path: Path, name: str, text: str, match: str) -> None:
    with pytest.raises(apps_cli.UsageError, match=match):
        apps_cli.load_definition(write(tmp_path, name, text))


def test_a_bad_file_exits_2_before_anything_is_sent(
        service: FakeApps, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for path in (str(tmp_path / "missing.json"), write(tmp_path, "bad.json", "{"),
                 str(tmp_path)):
        code, out, err = run(["app", "deploy", path], capsys)
        assert code == 2 and not out
        assert err.startswith("juggler app deploy: ") and len(err.splitlines()) == 1, err
    assert "no such file" in run(["app", "deploy", str(tmp_path / "missing.json")], capsys)[2]
    assert service.requests == []


# -- deploy ---------------------------------------------------------------------------


def test_deploy_sends_the_app_and_follows_it_until_it_is_healthy(
        service: FakeApps, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    service.answers[("PUT", "/v2/apps/web")] = (200, {"deploymentId": "d1", "version": V2})

    def poll(n: int) -> None:
        service.deployments = [deployment_json()] if n < 3 else []
        running, healthy = {1: (1, 0), 2: (2, 1)}.get(n, (3, 3))
        service.apps["/web"] = app_json(running=running, healthy=healthy)

    service.on_poll = poll
    code, out, err = run(["app", "deploy", write(tmp_path, "web.json",
                                                  {"id": "web", "instances": 3})], capsys)
    assert code == 0, err
    [(method, path, query, body)] = service.sent()
    assert (method, path, query, body) == ("PUT", "/v2/apps/web", {},
                                           {"id": "/web", "instances": 3})
    assert out.splitlines() == [f"deployment d1 (version {V2})", f"deployed version {V2}"]
    assert err.splitlines() == [
        "web: 1/3 running, 0/3 healthy, step 1/1 (RestartApplication)",
        "web: 2/3 running, 1/3 healthy, step 1/1 (RestartApplication)",
        "web: 3/3 running, 3/3 healthy"]


def test_deploy_waits_for_the_counts_after_the_deployment_ends(
        service: FakeApps, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def poll(n: int) -> None:
        service.apps["/web"] = app_json(healthy=2 if n < 3 else 3)

    service.on_poll = poll
    code, _, err = run(["app", "deploy", write(tmp_path, "w.json", {"id": "/web"})], capsys)
    assert code == 0
    assert err.splitlines() == ["web: 3/3 running, 2/3 healthy", "web: 3/3 running, 3/3 healthy"]


def test_an_app_without_health_checks_needs_its_instances_running(
        service: FakeApps, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    service.apps["/web"] = app_json(checks=False)
    code, _, err = run(["app", "deploy", write(tmp_path, "w.json", {"id": "/web"})], capsys)
    assert code == 0 and err.strip() == "web: 3/3 running"


def test_a_rolled_back_deployment_fails(
        service: FakeApps, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def poll(n: int) -> None:
        service.deployments = [deployment_json()] if n == 1 else []
        service.apps["/web"] = app_json(version=V2 if n == 1 else V1, healthy=0)

    service.on_poll = poll
    code, out, err = run(["app", "deploy", write(tmp_path, "w.json", {"id": "/web"})], capsys)
    assert code == 1
    assert out.splitlines() == [f"deployment d1 (version {V2})"]
    assert err.splitlines()[-1] == (
        f"juggler app deploy: deployment d1 failed: /web is at version {V1}, not {V2}: the "
        "deployment failed and was rolled back, or a newer deployment replaced it")


def test_a_created_app_that_disappears_fails(
        service: FakeApps, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["app", "deploy", write(tmp_path, "w.json", {"id": "/web"})], capsys)
    assert code == 1
    assert "deployment d1 failed: /web does not exist any more" in err


DEADLINE = ("no progress for 20 s (progressDeadlineSeconds): the new instances did not "
            "turn healthy")


def ended(state: str, reason: str, rollback: str | None) -> dict[str, Any]:
    """A deployment's end as GET /v2/deployments/{id} answers it."""
    return {"id": "d1", "version": V2, "affectedApps": ["/web"], "state": state,
            "reason": reason, "rollback": rollback, "endedAt": "2024-05-01T11:00:25.000Z"}


@pytest.mark.parametrize(("record", "told"), [
    (ended("FAILED", DEADLINE, "r1"), f"failed: {DEADLINE}; rolled back by deployment r1"),
    (ended("FAILED", DEADLINE, None), f"failed: {DEADLINE}"),
    (ended("CANCELLED", "cancelled, rolled back", "r1"),
     "cancelled: cancelled, rolled back by deployment r1"),
])
def test_a_rolled_back_deployment_says_why_and_names_the_rollback(
        service: FakeApps, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        record: dict[str, Any], told: str) -> None:
    def poll(n: int) -> None:
        service.deployments = [deployment_json()] if n == 1 else []
        service.apps["/web"] = app_json(version=V2 if n == 1 else V1, healthy=0)

    service.on_poll = poll
    service.ended["d1"] = record
    code, _, err = run(["app", "deploy", write(tmp_path, "w.json", {"id": "/web"})], capsys)
    assert code == 1
    assert err.splitlines()[-1] == f"juggler app deploy: deployment d1 {told}"
    assert ("GET", "/v2/deployments/d1") in [(r[0], r[1]) for r in service.requests]


def test_a_created_app_removed_by_the_rollback_says_why(
        service: FakeApps, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    service.ended["d1"] = ended("FAILED", DEADLINE, "r1")
    code, _, err = run(["app", "deploy", write(tmp_path, "w.json", {"id": "/web"})], capsys)
    assert code == 1
    assert err.splitlines()[-1] == (f"juggler app deploy: deployment d1 failed: {DEADLINE}; "
                                    "rolled back by deployment r1")


def test_an_older_service_without_the_record_keeps_the_verdict_from_the_apps(
        service: FakeApps, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It routes only DELETE /v2/deployments/{id}: GET is 405 there (404 is
    test_a_rolled_back_deployment_fails)."""
    service.apps["/web"] = app_json(version=V1)
    service.answers[("GET", "/v2/deployments/d1")] = (
        405, {"message": "HTTP method GET is not supported by this URL"})
    code, _, err = run(["app", "deploy", write(tmp_path, "w.json", {"id": "/web"})], capsys)
    assert code == 1
    assert err.splitlines()[-1].endswith(f"/web is at version {V1}, not {V2}: the deployment "
                                         "failed and was rolled back, or a newer deployment "
                                         "replaced it")


def test_the_record_of_a_deployment_that_succeeded_keeps_the_verdict() -> None:
    """It succeeded and a newer deployment replaced its apps: the apps say so."""
    watch = progress.Watch("d1", V2, ("/web",))
    status = watch.observe(0.0, [], {"/web": app_json(version=V1)})
    assert status.unreached
    assert progress.explain(status, ended("SUCCEEDED", "every step done", None)) == status
    assert progress.explain(status, None) == status
    short = progress.Watch("d1", V2, ("/web",)).observe(0.0, [], {"/web": app_json(healthy=0)})
    assert progress.explain(short, ended("FAILED", DEADLINE, None)) == short, "not unreached"


def test_deploy_understands_a_201_with_the_app(
        service: FakeApps, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    service.answers[("PUT", "/v2/apps/web")] = (201, app_json(deployments=[{"id": "d7"}]))
    service.apps["/web"] = app_json()
    code, out, _ = run(["app", "deploy", "-d", write(tmp_path, "w.json", {"id": "web"})],
                       capsys)
    assert (code, out) == (0, "d7\n")


def test_detach_prints_the_deployment_id_and_polls_nothing(
        service: FakeApps, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["app", "deploy", "--detach", "--force",
                          write(tmp_path, "w.json", {"id": "web"})], capsys)
    assert (code, out, err) == (0, "d1\n", "")
    assert [(r[0], r[2]) for r in service.requests] == [("PUT", {"force": ["true"]})]


def test_a_list_is_put_on_v2_apps_and_a_group_on_v2_groups(
        service: FakeApps, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for an_id in ("/web", "/prod/web", "/prod/db"):
        service.apps[an_id] = app_json(an_id)
    listing = write(tmp_path, "l.json", [{"id": "web"}, {"id": "/prod/db"}])
    group = write(tmp_path, "g.yaml", "id: prod\napps:\n  - id: web\n  - id: db\n")
    assert run(["app", "deploy", listing], capsys)[0] == 0
    code, _, err = run(["app", "deploy", group], capsys)
    assert code == 0
    assert err.splitlines() == ["prod/web: 3/3 running, 3/3 healthy",
                                "prod/db: 3/3 running, 3/3 healthy"]
    [(m1, p1, _, b1), (m2, p2, _, b2)] = service.sent()
    assert (m1, p1, b1) == ("PUT", "/v2/apps", [{"id": "/web"}, {"id": "/prod/db"}])
    assert (m2, p2) == ("PUT", "/v2/groups")
    assert b2 == {"id": "prod", "apps": [{"id": "web"}, {"id": "db"}]}


def test_a_group_follows_the_apps_its_deployment_affects(
        service: FakeApps, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    service.apps["/prod/db"] = app_json("/prod/db", version=V1)  # unchanged: not affected
    service.apps["/prod/web"] = app_json("/prod/web")

    def poll(n: int) -> None:
        service.deployments = [deployment_json(apps=("/prod/web",))] if n == 1 else []

    service.on_poll = poll
    group = write(tmp_path, "g.json", {"id": "/prod", "apps": [{"id": "web"}, {"id": "db"}]})
    code, _, err = run(["app", "deploy", group], capsys)
    assert code == 0, err
    assert "prod/db" not in err


def test_the_progress_says_why_an_instance_waits(
        service: FakeApps, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reason = "constraint hostname:UNIQUE unmatched: an instance already runs on host-a"

    def poll(n: int) -> None:
        service.deployments = [deployment_json(action="StartApplication")] if n == 1 else []
        service.queue = [{"app": {"id": "/web"}, "count": 1, "lastUnusedOffers": [
            {"offer": {"hostname": "host-a"}, "timestamp": "2024-05-01T10:00:01Z",
             "reason": ["UnfulfilledConstraint"], "juggler": reason}]}] if n == 1 else []
        service.apps["/web"] = app_json(running=2 if n == 1 else 3, healthy=2 if n == 1 else 3)

    service.on_poll = poll
    code, _, err = run(["app", "deploy", write(tmp_path, "w.json", {"id": "/web"})], capsys)
    assert code == 0
    assert err.splitlines()[0] == ("web: 2/3 running, 2/3 healthy, step 1/1 (StartApplication)"
                                   f" — waiting: {reason}")


def test_the_progress_shows_the_last_failure_since_the_deployment_started(
        service: FakeApps, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pull = ("Failed to pull image registry.example/img:1: pull access denied for "
            "registry.example/img, repository does not exist or may require 'docker login'")

    def failure(at: str) -> dict[str, Any]:
        return {"message": pull, "state": "TASK_FAILED", "timestamp": at, "version": V2,
                "host": "host-a"}

    def poll(n: int) -> None:
        service.deployments = [deployment_json(action="StartApplication")] if n < 3 else []
        service.queue = [{"app": {"id": "/web"}, "count": 3,
                          "delay": {"timeLeftSeconds": 4, "overdue": False}}] if n < 3 else []
        before, since = "2024-05-01T10:59:59.000Z", "2024-05-01T11:00:05.000Z"
        service.apps["/web"] = app_json(running=0 if n < 3 else 3, healthy=0 if n < 3 else 3,
                                        lastTaskFailure=failure(before if n == 1 else since))

    service.on_poll = poll
    code, _, err = run(["app", "deploy", write(tmp_path, "w.json", {"id": "/web"})], capsys)
    assert code == 0
    head = "web: 0/3 running, 0/3 healthy, step 1/1 (StartApplication) — waiting: backoff, " \
           "next launch in 4s"
    assert err.splitlines()[:2] == [
        head,  # a failure from before the deployment is not its
        f"{head} — last failure: {pull[:progress.FAILURE_WIDTH - 1]}…"]


def test_timeout_exits_1_and_says_the_deployment_goes_on(
        service: FakeApps, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    service.deployments = [deployment_json()]
    service.apps["/web"] = app_json(running=1, healthy=0)
    code, _, err = run(["app", "deploy", "--timeout", "5",
                        write(tmp_path, "w.json", {"id": "/web"})], capsys)
    assert code == 1
    assert err.splitlines()[-1] == (
        "juggler app deploy: not done after 5s; deployment d1 goes on (`juggler deployments`;"
        " cancel it with `juggler deployments rm d1`)")
    assert 5 <= service.polls <= 7


def test_following_waits_out_a_service_that_restarts(
        service: FakeApps, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Killed and started again by `juggler up`: first no answer, then 503
    (a standby without a leader yet), then the deployment goes on."""
    refused = iter(range(3))
    real = apps_cli.AppsClient._call

    def call(self: apps_cli.AppsClient, base: str, method: str, path: str, *rest: Any) -> Any:
        if path == "/v2/deployments" and service.polls == 1 and next(refused, None) is not None:
            raise apps_cli.NoAppsService(base, "connection refused")
        return real(self, base, method, path, *rest)

    def poll(n: int) -> tuple[int, Any] | None:
        if n in (2, 3):
            return 503, {"message": "no leader"}
        service.deployments = [deployment_json()] if n < 5 else []
        service.apps["/web"] = app_json(running=1 if n < 5 else 3, healthy=0 if n < 5 else 3)
        return None

    monkeypatch.setattr(apps_cli.AppsClient, "_call", call)
    service.on_poll = poll
    code, out, err = run(["app", "deploy", write(tmp_path, "w.json", {"id": "/web"})], capsys)
    assert code == 0, err
    assert out.splitlines()[-1] == f"deployed version {V2}"
    line = "web: 1/3 running, 0/3 healthy, step 1/1 (RestartApplication)"
    assert err.splitlines() == [line, progress.UNREACHABLE, line, "web: 3/3 running, 3/3 healthy"]


def test_following_gives_up_on_a_service_gone_for_30s(
        service: FakeApps, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def poll(n: int) -> tuple[int, Any] | None:
        service.deployments = [deployment_json()]
        service.apps["/web"] = app_json(running=1, healthy=0)
        return (503, {"message": "no leader"}) if n > 1 else None

    service.on_poll = poll
    code, _, err = run(["app", "deploy", write(tmp_path, "w.json", {"id": "/web"})], capsys)
    assert code == 1
    assert err.splitlines()[-1] == "juggler app deploy: HTTP 503: no leader"
    assert err.splitlines().count(progress.UNREACHABLE) == 1
    assert 1 + progress.UNREACHABLE_SECONDS <= service.polls <= 3 + progress.UNREACHABLE_SECONDS


def test_following_does_not_retry_a_refusal(
        service: FakeApps, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    service.on_poll = lambda n: (500, {"message": "boom"})
    code, _, err = run(["app", "deploy", write(tmp_path, "w.json", {"id": "/web"})], capsys)
    assert code == 1 and service.polls == 1
    assert err.splitlines() == ["juggler app deploy: HTTP 500: boom"]


@pytest.mark.parametrize("argv", [["app", "deploy", "--timeout", "0", "f"],
                                  ["app", "scale", "web", "-1"],
                                  ["app", "scale", "web", "two"]])
def test_bad_flags_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli_main.main(argv)
    assert e.value.code == 2


# -- the service's refusals -----------------------------------------------------------


def test_a_locked_app_names_the_deployments_and_force(
        service: FakeApps, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    message = ("App is locked by one or more deployments. Override with the option "
               "'?force=true'. View details at '/v2/deployments/<DEPLOYMENT_ID>'.")
    service.answers[("PUT", "/v2/apps/web")] = (409, {
        "message": message, "deployments": [{"id": "d0"}, {"id": "d9"}]})
    code, out, err = run(["app", "deploy", write(tmp_path, "w.json", {"id": "/web"})], capsys)
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"juggler app deploy: {message}",
        "juggler app deploy: locked by deployment d0, d9; use --force to override "
        "(or wait: `juggler deployments`)"]


def test_an_invalid_app_prints_every_error_and_exits_2(
        service: FakeApps, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    service.answers[("PUT", "/v2/apps/web")] = (422, {
        "message": "Object is not valid",
        "details": [{"path": "/cpus", "errors": ["must be ≥ 0"]},
                    {"path": "/mem", "errors": ["must be ≥ 0", "must be a number"]}]})
    code, _, err = run(["app", "deploy", write(tmp_path, "w.json", {"id": "/web"})], capsys)
    assert code == 2
    assert err.splitlines() == ["juggler app deploy: Object is not valid", "  /cpus: must be ≥ 0",
                                "  /mem: must be ≥ 0", "  /mem: must be a number"]


@pytest.mark.parametrize("argv", [["app", "show", "nope"], ["app", "scale", "nope", "2"],
                                  ["app", "restart", "nope"], ["app", "rm", "nope"],
                                  ["app", "why", "nope"]])
def test_an_unknown_app_exits_1_with_the_services_message(
        service: FakeApps, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    for method in ("PATCH", "DELETE", "POST"):
        path = "/v2/apps/nope" + ("/restart" if method == "POST" else "")
        service.answers[(method, path)] = (404, {"message": "App '/nope' does not exist"})
    code, out, err = run(argv, capsys)
    assert (code, out) == (1, "")
    assert err == f"juggler {' '.join(argv[:2])}: App '/nope' does not exist\n"


def test_a_server_error_shows_the_status(
        service: FakeApps, capsys: pytest.CaptureFixture[str]) -> None:
    service.answers[("GET", "/v2/apps")] = (503, {"message": "no leader"})
    assert run(["app", "ls"], capsys)[1:] == ("", "juggler app ls: HTTP 503: no leader\n")


# -- the other commands ---------------------------------------------------------------


def test_ls_table_and_json(service: FakeApps, capsys: pytest.CaptureFixture[str]) -> None:
    service.apps = {
        "/web": app_json(running=2, healthy=1, deployments=[{"id": "d1"}]),
        "/db": app_json("/db", instances=1, running=1, checks=False,
                        container={"type": "DOCKER", "docker": {"image": "postgres:16"}}),
    }
    code, out, _ = run(["app", "ls"], capsys)
    assert code == 0
    assert out.splitlines() == [
        "ID    INSTANCES  HEALTHY  CPUS  MEM  IMAGE/CMD               DEPLOYMENTS",
        "/db   1/1        -        0.5   128  postgres:16             -",
        "/web  2/3        1/3      0.5   128  python3 -m http.server  d1"]
    [(_, _, query, _)] = service.requests
    assert "apps.counts" in query["embed"]
    code, out, _ = run(["app", "ls", "--format", "json"], capsys)
    assert json.loads(out) == list(service.apps.values())


def test_show_prints_the_definition_and_the_instances(
        service: FakeApps, capsys: pytest.CaptureFixture[str]) -> None:
    tasks = [
        {"id": "web.1", "host": "host-a", "slaveId": "a1", "state": "TASK_RUNNING",
         "startedAt": "2024-05-01T10:00:00Z", "version": V2,
         "healthCheckResults": [{"alive": True, "consecutiveFailures": 0}]},
        {"id": "web.2", "host": "host-b", "slaveId": "b1", "state": "TASK_RUNNING",
         "startedAt": "2024-05-01T10:00:00Z", "version": V1,
         "healthCheckResults": [{"alive": False, "consecutiveFailures": 2}]},
        {"id": "web.3", "host": "host-c", "slaveId": "c1", "state": "TASK_STAGING",
         "stagedAt": "2024-05-01T10:00:00Z", "version": V2, "healthCheckResults": []},
    ]
    service.apps["/web"] = app_json(running=2, healthy=1, tasks=tasks,
                                    constraints=[["hostname", "UNIQUE"]],
                                    lastTaskFailure={"state": "TASK_FAILED", "host": "host-d",
                                                     "timestamp": "2024-05-01T09:00:00Z",
                                                     "message": "exit status 1"})
    code, out, _ = run(["app", "show", "web"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "ID            /web"
    assert "INSTANCES     3 wanted: 2 running, 1 healthy" in lines
    assert "CONSTRAINTS   hostname:UNIQUE" in lines
    assert "HEALTH CHECK  HTTP /health port index 0, every 10s, 3 failures allowed" in lines
    assert any(line.startswith("LAST FAILURE  TASK_FAILED on host-d ")
               and line.endswith(": exit status 1") for line in lines)
    table = lines[lines.index("") + 1:]
    assert table[0].split() == ["TASK", "ID", "HOST", "AGENT", "STATE", "HEALTH", "STARTED",
                                "VERSION"]
    assert table[1].split()[:5] == ["web.1", "host-a", "a1", "RUNNING", "healthy"]
    assert "unhealthy (2 failures)" in table[2] and table[2].endswith(V1)
    assert "STAGING" in table[3] and "unknown" in table[3] and "staged" in table[3]
    [(_, path, query, _)] = service.requests
    assert path == "/v2/apps/web" and "apps.tasks" in query["embed"]


def test_show_counts_a_task_of_the_current_definition_current_after_a_scale() -> None:
    """A scale changes the app's version, not its definition's
    (versionInfo.lastConfigChangeAt), which is what its tasks carry."""
    tasks = [{"id": "web.1", "host": "a", "state": "TASK_RUNNING", "version": V1,
              "startedAt": V1},
             {"id": "web.2", "host": "b", "state": "TASK_RUNNING",
              "version": "2024-05-01T09:00:00.000Z", "startedAt": V1}]
    app = app_json(checks=False, tasks=tasks,
                   versionInfo={"lastScalingAt": V2, "lastConfigChangeAt": V1})
    rows = apps_cli.render_app(app, 0.0).splitlines()[-2:]
    assert rows[0].endswith("  current")
    assert rows[1].endswith("  2024-05-01T09:00:00.000Z")


def test_scale_restart_and_rm_send_their_calls_and_follow(
        service: FakeApps, capsys: pytest.CaptureFixture[str]) -> None:
    service.apps["/web"] = app_json()
    assert run(["app", "scale", "web", "3"], capsys)[0] == 0
    assert run(["app", "restart", "/web", "--force"], capsys)[0] == 0
    code, out, _ = run(["app", "rm", "web", "-d"], capsys)
    assert (code, out) == (0, "d1\n")
    assert [(m, p, q, b) for m, p, q, b in service.sent()] == [
        ("PATCH", "/v2/apps/web", {}, {"instances": 3}),
        ("POST", "/v2/apps/web/restart", {"force": ["true"]}, None),
        ("DELETE", "/v2/apps/web", {}, None)]


def test_rm_is_done_when_the_app_is_gone(
        service: FakeApps, capsys: pytest.CaptureFixture[str]) -> None:
    service.apps["/web"] = app_json()

    def poll(n: int) -> None:
        service.deployments = [deployment_json(action="StopApplication")] if n == 1 else []
        if n > 1:
            service.apps.clear()

    service.on_poll = poll
    code, out, err = run(["app", "rm", "web"], capsys)
    assert code == 0
    assert out.splitlines() == [f"deployment d1 (version {V2})", "removed"]
    assert err.splitlines() == [
        "web: removing, 3 running, step 1/1 (StopApplication)", "web: removed"]


def test_an_app_already_gone_is_removing_until_the_removal_ends(
        service: FakeApps, capsys: pytest.CaptureFixture[str]) -> None:
    service.deployments = [deployment_json(action="StopApplication")]

    def poll(n: int) -> None:
        if n > 1:
            service.deployments.clear()

    service.on_poll = poll
    code, _, err = run(["app", "rm", "web"], capsys)
    assert code == 0
    assert err.splitlines() == ["web: removing, step 1/1 (StopApplication)", "web: removed"]


def test_a_group_deployment_that_stops_an_app_expects_it_gone() -> None:
    """A group PUT removes the apps the group no longer names: seen in a
    StopApplication action, such an app is judged as `rm` judges it."""
    watch = progress.Watch("d1", V2, ("/prod/web",))
    listed = deployment_json(apps=("/prod/web", "/prod/old"))
    listed["currentActions"][1]["action"] = "StopApplication"
    status = watch.observe(0.0, [listed], {"/prod/web": app_json("/prod/web"),
                                           "/prod/old": app_json("/prod/old", instances=0,
                                                                 running=2)})
    assert status.lines[1] == "prod/old: removing, 2 running, step 1/1 (StopApplication)"
    status = watch.observe(1.0, [], {"/prod/web": app_json("/prod/web"), "/prod/old": None})
    assert status.phase is progress.Phase.SUCCEEDED
    assert status.lines == ("prod/web: 3/3 running, 3/3 healthy", "prod/old: removed")


def test_deployments_table_and_json(
        service: FakeApps, capsys: pytest.CaptureFixture[str]) -> None:
    service.deployments = [deployment_json("d1", ("/web", "/db"))]
    code, out, _ = run(["deployments"], capsys)
    assert code == 0
    actions = "RestartApplication /web, RestartApplication /db"
    assert out.splitlines() == [
        f"ID  APPS      STEP  {'CURRENT ACTIONS'.ljust(len(actions))}  VERSION",
        f"d1  /web,/db  1/1   {actions}  {V2}"]
    assert json.loads(run(["deployments", "--format", "json"], capsys)[1]) == service.deployments


def test_deployments_rm_rolls_back_or_stops(
        service: FakeApps, capsys: pytest.CaptureFixture[str]) -> None:
    service.deployments = [deployment_json("97c1-aaaa"), deployment_json("5b2e-bbbb")]
    service.answers[("DELETE", "/v2/deployments/97c1-aaaa")] = (
        200, {"deploymentId": "r1", "version": V2})
    service.answers[("DELETE", "/v2/deployments/5b2e-bbbb")] = (202, None)
    code, out, _ = run(["deployments", "rm", "97c1"], capsys)
    assert (code, out) == (0, f"deployment 97c1-aaaa cancelled; rolling back in deployment r1 "
                              f"(version {V2})\n")
    code, out, _ = run(["deployments", "rm", "5b2e-bbbb", "--force"], capsys)
    assert (code, out) == (0, "deployment 5b2e-bbbb stopped; its apps stay as they are now\n")
    assert [(m, p, q) for m, p, q, _ in service.sent()] == [
        ("DELETE", "/v2/deployments/97c1-aaaa", {}),
        ("DELETE", "/v2/deployments/5b2e-bbbb", {"force": ["true"]})]
    code, _, err = run(["deployments", "rm", "zz"], capsys)
    assert code == 1 and "no deployment zz" in err
    service.deployments.append(deployment_json("97c1-cccc"))
    code, _, err = run(["deployments", "rm", "97c1"], capsys)
    assert code == 2 and "names several deployments" in err


def test_why_groups_the_declined_offers_by_reason(
        service: FakeApps, capsys: pytest.CaptureFixture[str]) -> None:
    def unused(host: str, reasons: list[str], juggler: str | None = None) -> dict[str, Any]:
        u: dict[str, Any] = {"offer": {"id": "o", "agentId": f"{host}-id", "hostname": host,
                                       "resources": [], "attributes": []},
                             "timestamp": "2024-05-01T10:00:00Z", "reason": reasons}
        if juggler:
            u["juggler"] = juggler
        return u

    unique = "constraint hostname:UNIQUE unmatched: an instance already runs on host-a"
    service.queue = [{
        "app": {"id": "/web"}, "count": 2, "since": "2024-05-01T09:00:00Z",
        "delay": {"timeLeftSeconds": 12, "overdue": False},
        "processedOffersSummary": {
            "processedOffersCount": 5, "unusedOffersCount": 5,
            "lastUnusedOfferAt": "2024-05-01T10:00:00Z",
            "rejectSummaryLastOffers": [
                {"reason": "UnfulfilledRole", "declined": 0, "processed": 5},
                {"reason": "UnfulfilledConstraint", "declined": 2, "processed": 5},
                {"reason": "InsufficientCpus", "declined": 3, "processed": 3}]},
        "lastUnusedOffers": [unused("host-a", ["UnfulfilledConstraint"], unique),
                             unused("host-a", ["UnfulfilledConstraint"], unique),
                             unused("host-b", ["InsufficientCpus"]),
                             unused("host-c", ["InsufficientCpus"]),
                             unused("host-c", ["InsufficientCpus", "InsufficientMemory"])]}]
    code, out, _ = run(["app", "why", "web"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("/web: 2 instances waiting to launch, for ")
    assert lines[1:] == [
        "backoff: next launch attempt in 12s (launches failed before; the delay grows with "
        "each failure)",
        lines[2],
        "declined among the last offers: InsufficientCpus 3/3, UnfulfilledConstraint 2/5",
        "last unused offers, by reason:",
        "  2 × InsufficientCpus (host-b, host-c)",
        f"  2 × {unique} (host-a)",
        "  1 × InsufficientCpus, InsufficientMemory (host-c)"]
    assert lines[2].startswith("offers since then: 5 processed, 5 unused (last unused ")
    [(_, path, query, _), (_, app_path, app_query, _)] = service.requests
    assert (path, query) == ("/v2/queue", {"embed": ["lastUnusedOffers"]})
    assert app_path == "/v2/apps/web" and "apps.lastTaskFailure" in app_query["embed"]


def test_why_says_nothing_waiting(service: FakeApps, capsys: pytest.CaptureFixture[str]) -> None:
    service.apps["/web"] = app_json()
    service.queue = [{"app": {"id": "/other"}, "count": 1}]
    assert run(["app", "why", "web"], capsys)[:2] == (
        0, "/web: nothing waiting (3/3 running, 3/3 healthy)\n")


def test_why_with_no_offer_at_all_points_at_the_agents() -> None:
    text = apps_cli.render_why({"app": {"id": "/web"}, "count": 1,
                                "delay": {"timeLeftSeconds": 0, "overdue": True}}, 0.0)
    assert text.splitlines() == [
        "/web: 1 instance waiting to launch",
        "no backoff delay: waiting for an offer that fits (overdue)",
        "no offer received yet (are agents connected, with free resources? see "
        "`juggler agents`)"]


def test_why_in_backoff_says_offers_wait_for_it_and_shows_the_last_failure(
        service: FakeApps, capsys: pytest.CaptureFixture[str]) -> None:
    service.queue = [{"app": {"id": "/web"}, "count": 1,
                      "delay": {"timeLeftSeconds": 8, "overdue": False},
                      "processedOffersSummary": {"processedOffersCount": 0,
                                                 "unusedOffersCount": 0}}]
    service.apps["/web"] = app_json(lastTaskFailure={
        "state": "TASK_FAILED", "host": "host-a", "timestamp": "2024-05-01T10:00:00Z",
        "version": V2, "message": "Failed to pull image img:1:\n  not found"})
    code, out, _ = run(["app", "why", "web"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "/web: 1 instance waiting to launch"
    assert lines[1].startswith("backoff: next launch attempt in 8s")
    assert lines[2].startswith("last failure: TASK_FAILED on host-a ")
    assert lines[2].endswith(" ago: Failed to pull image img:1: not found")
    assert lines[3:] == [
        "offers since then: 0 processed, 0 unused",
        "no offer looked at: offers are not considered until the backoff ends"]


def test_app_alone_prints_its_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["app"], capsys)
    assert code == 2 and "deploy" in err and "why" in err


# -- the progress, without a service --------------------------------------------------


def test_a_watch_settles_then_fails_when_the_instances_never_come() -> None:
    watch = progress.Watch("d1", V2, ("/web",))
    short = {"/web": app_json(healthy=2)}
    assert watch.observe(0.0, [], short).phase is progress.Phase.SETTLING
    assert watch.observe(progress.SETTLE_SECONDS - 1, [], short).phase is progress.Phase.SETTLING
    status = watch.observe(progress.SETTLE_SECONDS, [], short)
    assert status.phase is progress.Phase.FAILED
    assert status.reason == "the deployment ended but, 30s later, only /web: 2/3 healthy"


def test_a_watch_compares_versions_as_times() -> None:
    watch = progress.Watch("d1", "2024-05-01T11:00:00.000Z", ("/web",))
    app = app_json(version="2024-05-01T11:00:00+00:00")
    assert watch.observe(0.0, [], {"/web": app}).phase is progress.Phase.SUCCEEDED
    assert progress.same_version("not a time", "not a time")
    assert not progress.same_version(None, V1)


def test_a_removal_that_leaves_the_app_fails() -> None:
    watch = progress.Watch("d1", V2, ("/web",), removing=True)
    status = watch.observe(0.0, [], {"/web": app_json()})
    assert status.phase is progress.Phase.FAILED and "still exists" in status.reason


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_lines_are_redrawn_in_place() -> None:
    out = Tty()
    display = progress.Display(out)
    display.show(["a: 1/3", "b: 0/1"])
    display.show(["a: 2/3"])
    assert out.getvalue() == ("\x1b[2Ka: 1/3\n\x1b[2Kb: 0/1\n"
                              "\x1b[2A\x1b[2Ka: 2/3\n\x1b[2K\n")


def test_elsewhere_a_line_is_printed_when_it_changes() -> None:
    out = io.StringIO()
    display = progress.Display(out)
    for lines in (["a: 1/3", "b: 0/1"], ["a: 1/3", "b: 1/1"], ["a: 1/3", "b: 1/1"]):
        display.show(lines)
    assert out.getvalue() == "a: 1/3\nb: 0/1\nb: 1/1\n"


def test_several_urls_the_first_that_answers_serves(
        service: FakeApps, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`juggler up --masters 3` writes every apps service's URL: one that is
    down, or a standby answering 503 (no leader yet), sends the call on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"  # nobody listens there
    service.apps["/web"] = app_json()
    monkeypatch.setenv("JUGGLER_APPS", f"{dead},{service.url}")
    code, out, _ = run(["app", "ls"], capsys)
    assert code == 0 and "/web" in out
    client = apps_cli.AppsClient(f"{dead}, {service.url}")
    assert client.call("GET", "/v2/apps")["apps"][0]["id"] == "/web"
    assert client.url == service.url, "later calls start where the last was answered"
    service.answers[("GET", "/v2/deployments")] = (503, {"message": "no leader"})
    with pytest.raises(apps_cli.ApiError) as e:
        apps_cli.AppsClient(service.url).call("GET", "/v2/deployments")
    assert e.value.status == 503, "one URL: its 503 is the answer"
    with pytest.raises(apps_cli.NoAppsService):
        apps_cli.AppsClient(dead).call("GET", "/v2/apps")
