"""The apps service's REST API (apps/rest.py) over the real core (apps/state.py).

`CoreBackend` stands in for service.py's SDK/store shell, which is tested for
real elsewhere (a real master, agents and store): it owns an `AppsState` on a
FakeClock and carries the core's commands out itself — Persist into a dict,
Emit onto an EventBus (apps/events.py) — and plays the master and agents: a
launched task turns RUNNING and a killed one KILLED at once. Offers and the
passing of time are the test's (`settle()`), so deployments finish when a
test says so and stay running otherwise.

Two clients drive it: aiohttp's test client, for exact statuses and bodies,
and Marathon's own Python client (`marathon.MarathonClient`, blocking, in a
thread) against a server on 127.0.0.1 — the oracle for "existing Marathon
clients work": its models are built with cls(**json) and refuse keys they do
not know.
"""

from __future__ import annotations

import asyncio
import collections
import collections.abc
import contextlib
import functools
import itertools
import json
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from juggler.apps import rest
from juggler.apps.commands import Command, Emit, Kill, Launch, Persist
from juggler.apps.definition import AppDefinition
from juggler.apps.events import DROPPED_TYPE, EventBus, frame
from juggler.apps.instances import Instance
from juggler.apps.plan import Deployment
from juggler.apps.state import AppsState, iso
from juggler.common.clock import FakeClock
from juggler.common.resources import Resources
from juggler.v1 import common_pb2 as pb

marathon = pytest.importorskip("marathon")
from marathon import MarathonClient  # noqa: E402
from marathon.exceptions import ConflictError, MarathonHttpError, NotFoundError  # noqa: E402
from marathon.models import MarathonApp, MarathonGroup  # noqa: E402
from marathon.models.events import EventFactory  # noqa: E402


class CoreBackend:
    """rest.Backend over a real AppsState (module docstring)."""

    def __init__(self, *, leading: bool = True, leader: str | None = None,
                 queue_size: int = 10_000) -> None:
        self.clock = FakeClock()
        self._ids = itertools.count(1)
        self.state = AppsState(self.clock, self._new_id)
        self.store: dict[str, Any] = {}
        self.bus = EventBus(lambda: iso(self.clock.time()), maxsize=queue_size)
        self.leading = leading
        self.leader = leader            # the leader's URL, for a standby
        self.url = "http://127.0.0.1:8080"
        self.framework_id = "framework-1"
        self.run_launched = True        # launched tasks turn RUNNING at once
        self._offers = itertools.count(1)

    def _new_id(self) -> str:
        return f"00000000-0000-4000-8000-{next(self._ids):012d}"

    # -- rest.Backend ------------------------------------------------------------------
    def leader_url(self) -> str | None:
        return self.url if self.leading else self.leader

    def info(self) -> dict[str, Any]:
        return {"name": "juggler", "version": "0.0.test", "master": "127.0.0.1:5050",
                "store": "embedded", "frameworkName": "juggler-apps", "role": "*",
                "failoverTimeout": 604800.0}

    async def deploy(self, targets: dict[str, AppDefinition | None], force: bool = False,
                     restart: Iterable[str] = ()) -> Deployment:
        d, cmds = self.state.deploy(targets, force=force, restart=restart)
        self.apply(cmds)
        return d

    async def cancel(self, deployment_id: str, force: bool) -> Deployment | None:
        rollback, cmds = self.state.cancel(deployment_id, force=force)
        self.apply(cmds)
        return rollback

    async def kill_instances(self, ids: list[str], scale: bool,
                             wipe: bool) -> tuple[list[Instance], Deployment | None]:
        killed, d, cmds = self.state.kill_instances(ids, scale=scale, wipe=wipe)
        self.apply(cmds)
        return killed, d

    async def reset_delay(self, app_id: str) -> None:
        self.apply(self.state.reset_delay(app_id))

    async def get_version(self, app_id: str, version: str) -> dict[str, Any] | None:
        return self.store.get(f"versions/{app_id}@{version}")

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        return self.bus.subscribe()

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self.bus.unsubscribe(q)

    def emit(self, event_type: str, body: dict[str, Any]) -> None:
        self.bus.publish(event_type, body)

    def metrics(self) -> bytes:
        return f"juggler_apps_apps {len(self.state.apps)}\n".encode()

    # -- the shell's part ----------------------------------------------------------------
    def apply(self, cmds: list[Command]) -> None:
        follow: list[pb.TaskStatus] = []
        for c in cmds:
            if isinstance(c, Persist):
                for key, value in c.writes.items():
                    if value is None:
                        self.store.pop(key, None)
                    else:
                        self.store[key] = json.loads(json.dumps(value))
            elif isinstance(c, Emit):
                self.bus.publish(c.event_type, c.body)
            elif isinstance(c, Launch) and self.run_launched:
                follow += [pb.TaskStatus(task_id=t.task_id, agent_id=t.agent_id,
                                         state=pb.TASK_RUNNING) for t in c.tasks]
            elif isinstance(c, Kill):
                follow.append(pb.TaskStatus(task_id=c.task_id, agent_id=c.agent_id,
                                            state=pb.TASK_KILLED, message="killed"))
        for status in follow:
            self.apply(self.state.on_update(status))

    def offer(self, cpus: float = 8, mem: float = 8192, host: str = "host-1") -> None:
        n = next(self._offers)
        self.apply(self.state.on_offers([pb.Offer(
            id=f"offer-{n}", agent_id=f"agent-{host}", hostname=host,
            resources=Resources({"cpus": cpus, "mem": mem, "disk": 1000},
                                ports="[31000-32000]").to_proto())]))

    def settle(self, rounds: int = 20) -> None:
        """Offers and time (past minHealthySeconds) until no deployment runs."""
        for _ in range(rounds):
            self.offer()
            self.clock.advance(11)
            self.apply(self.state.tick())
            if not self.state.deployments:
                return
        raise AssertionError(f"deployments still running: {list(self.state.deployments)}")


def run(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """An async test, run on its own loop (no pytest-asyncio here)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))
    return wrapper


@contextlib.asynccontextmanager
async def rest_client(backend: CoreBackend | None = None,
                      **kw: Any) -> AsyncIterator[tuple[CoreBackend, TestClient]]:
    backend = backend or CoreBackend()
    async with TestClient(TestServer(rest.make_app(backend, **kw))) as client:
        yield backend, client


@contextlib.asynccontextmanager
async def served(backend: CoreBackend, **kw: Any) -> AsyncIterator[str]:
    """The API on a real socket (127.0.0.1, a free port); its URL."""
    runner, port = await rest.serve(backend, "127.0.0.1", 0, **kw)
    backend.url = f"http://127.0.0.1:{port}"
    try:
        yield backend.url
    finally:
        await runner.cleanup()


@pytest.fixture
def marathon_client_on_py311(monkeypatch: pytest.MonkeyPatch) -> None:
    """marathon 0.13's JSON encoder still names `collections.Iterable`, gone
    since Python 3.10: it fails on any nested model (a group with apps, an
    app with an upgradeStrategy). Give it back for the client's sake."""
    monkeypatch.setattr(collections, "Iterable", collections.abc.Iterable, raising=False)


WEB = {"id": "/prod/web", "cmd": "sleep 1000", "cpus": 0.1, "mem": 32, "instances": 2,
       "labels": {"tier": "frontend", "env": "prod"}}


async def post_app(client: TestClient, body: dict[str, Any], status: int = 201) -> Any:
    r = await client.post("/v2/apps", json=body)
    assert r.status == status, await r.text()
    return await r.json()


# -- the marathon client ---------------------------------------------------------------------------


@run
async def test_the_marathon_client_drives_an_app_through_its_life(
        marathon_client_on_py311: None) -> None:
    backend = CoreBackend()
    async with served(backend) as url:
        c = MarathonClient(url, timeout=5)

        async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(fn, *args, **kwargs)

        info = await call(c.get_info)
        assert (info.name, info.version, info.elected) == ("juggler", "0.0.test", True)
        assert info.framework_id == "framework-1"
        assert info.leader == url.removeprefix("http://")
        assert info.marathon_config.master == "127.0.0.1:5050"
        assert await call(c.get_leader) == {"leader": url.removeprefix("http://")}
        assert await call(c.ping) == b"pong"

        created = await call(c.create_app, "/prod/web",
                             MarathonApp(cmd="sleep 1000", cpus=0.1, mem=32, instances=2,
                                         labels={"tier": "frontend"}))
        assert created.id == "/prod/web" and created.instances == 2
        assert [d.id for d in created.deployments] == list(backend.state.deployments)
        deployments = await call(c.list_deployments)
        assert [d.affected_apps for d in deployments] == [["/prod/web"]]
        backend.settle()
        assert await call(c.list_deployments) == []

        apps = await call(c.list_apps, embed_tasks=True)
        assert [(a.id, a.tasks_running, len(a.tasks)) for a in apps] == [("/prod/web", 2, 2)]
        assert [a.id for a in await call(c.list_apps, label="tier==frontend")] == ["/prod/web"]
        assert await call(c.list_apps, label="tier==backend") == []
        app = await call(c.get_app, "/prod/web", embed_tasks=True)
        assert {t.state for t in app.tasks} == {"TASK_RUNNING"}
        assert app.version_info.last_config_change_at is not None

        scaled = await call(c.scale_app, "/prod/web", instances=3)
        assert set(scaled) == {"deploymentId", "version"}
        backend.settle()
        app = await call(c.get_app, "/prod/web", embed_tasks=True)
        assert (app.instances, app.tasks_running, app.cmd) == (3, 3, "sleep 1000")

        updated = await call(c.update_app, "/prod/web", MarathonApp(cmd="sleep 2000"))
        assert updated["deploymentId"] in backend.state.deployments
        backend.settle()
        app = await call(c.get_app, "/prod/web", embed_tasks=True)
        assert (app.instances, app.cmd, app.tasks_running) == (3, "sleep 2000", 3)
        assert {t.version for t in app.tasks} == {app.version}

        # (its effect: test_a_restart_replaces_every_instance)
        restarted = await call(c.restart_app, "/prod/web")
        assert set(restarted) == {"deploymentId", "version"}
        backend.settle()
        tasks = await call(c.list_tasks, "/prod/web")
        assert len(tasks) == 3

        versions = await call(c.list_versions, "/prod/web")
        assert versions == sorted(versions, reverse=True) and len(versions) == 4
        oldest = await call(c.get_version, "/prod/web", versions[-1])
        assert (oldest.cmd, oldest.instances) == ("sleep 1000", 2)

        victim = tasks[0].id
        assert await call(c.kill_given_tasks, [victim]) is True
        backend.settle()
        tasks = await call(c.list_tasks)
        assert len(tasks) == 3 and victim not in {t.id for t in tasks}
        killed = await call(c.kill_task, "/prod/web", tasks[0].id, scale=True)
        assert set(killed) == {"deploymentId", "version"}
        backend.settle()
        assert (await call(c.get_app, "/prod/web")).instances == 2

        # An app nothing can hold waits in the queue, with why.
        await call(c.create_app, "/big", MarathonApp(cmd="sleep 1", cpus=64, mem=32))
        backend.offer(cpus=4)
        queue = await call(c.list_queue, embed_last_unused_offers=True)
        assert [(q.app.id, q.count) for q in queue] == [("/big", 1)]
        assert queue[0].last_unused_offers[0]["reason"] == ["InsufficientCpus"]
        await call(c.reset_delay, "/big")
        [running] = await call(c.list_deployments)
        rollback = await call(c.delete_deployment, running.id)
        assert set(rollback) == {"deploymentId", "version"}
        backend.settle()
        assert [a.id for a in await call(c.list_apps)] == ["/prod/web"]

        gone = await call(c.delete_app, "/prod/web")
        assert set(gone) == {"deploymentId", "version"}
        backend.settle()
        assert await call(c.list_apps) == []
        with pytest.raises(NotFoundError):
            await call(c.get_app, "/prod/web")


@run
async def test_a_restart_replaces_every_instance() -> None:
    async with rest_client() as (backend, client):
        await post_app(client, WEB)
        backend.settle()
        before = {i.id for i in backend.state.instances.values()}
        r = await client.post("/v2/apps/prod/web/restart")
        assert r.status == 200
        assert (await r.json())["deploymentId"] in backend.state.deployments
        backend.settle()
        after = {i.id for i in backend.state.instances.values()}
        assert len(after) == 2 and not before & after


@run
async def test_the_marathon_client_refusals_are_its_own_errors(
        marathon_client_on_py311: None) -> None:
    backend = CoreBackend()
    async with served(backend) as url:
        c = MarathonClient(url, timeout=5)
        await asyncio.to_thread(c.create_app, "/web", MarathonApp(cmd="sleep 1"))
        with pytest.raises(ConflictError):    # exists
            await asyncio.to_thread(c.create_app, "/web", MarathonApp(cmd="sleep 1"))
        with pytest.raises(ConflictError):    # its deployment runs
            await asyncio.to_thread(c.scale_app, "/web", instances=2)
        assert await asyncio.to_thread(c.scale_app, "/web", instances=2, force=True)
        with pytest.raises(MarathonHttpError) as e:
            await asyncio.to_thread(c.create_app, "/bad", MarathonApp(cmd="x", cpus=-1))
        assert e.value.status_code == 422
        with pytest.raises(NotFoundError):
            await asyncio.to_thread(c.delete_deployment, "no-such-deployment")


@run
async def test_the_marathon_client_manages_groups(marathon_client_on_py311: None) -> None:
    backend = CoreBackend()
    async with served(backend) as url:
        c = MarathonClient(url, timeout=5)

        async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(fn, *args, **kwargs)

        group = MarathonGroup(id="/shop", apps=[
            MarathonApp(id="/shop/db", cmd="sleep 1"),
            MarathonApp(id="/shop/web", cmd="sleep 1", dependencies=["/shop/db"])],
            groups=[MarathonGroup(id="/shop/jobs", apps=[MarathonApp(id="/shop/jobs/mail",
                                                                     cmd="sleep 1")])])
        created = await call(c.create_group, group)
        assert set(created) == {"deploymentId", "version"}
        [d] = await call(c.list_deployments)
        assert [[a.app for a in s.actions] for s in d.steps] == [
            ["/shop/db", "/shop/jobs/mail"], ["/shop/web"]]
        backend.settle()
        assert [g.id for g in await call(c.list_groups)] == ["/shop"]  # the root's groups
        shop = await call(c.get_group, "/shop")
        assert [a.id for a in shop.apps] == ["/shop/db", "/shop/web"]
        assert [g.id for g in shop.groups] == ["/shop/jobs"]
        assert [a.id for a in shop.groups[0].apps] == ["/shop/jobs/mail"]

        scaled = await call(c.scale_group, "/shop", 2)
        assert set(scaled) == {"deploymentId", "version"}
        backend.settle()
        assert {a.id: a.instances for a in await call(c.list_apps)} == {
            "/shop/db": 2, "/shop/web": 2, "/shop/jobs/mail": 2}

        await call(c.update_group, "/shop",
                   MarathonGroup(id="/shop", apps=[MarathonApp(id="/shop/db", cmd="sleep 2")]))
        backend.settle()
        assert sorted(a.id for a in await call(c.list_apps)) == ["/shop/db", "/shop/jobs/mail"]

        await call(c.delete_group, "/shop")
        backend.settle()
        assert await call(c.list_apps) == []
        with pytest.raises(NotFoundError):
            await call(c.get_group, "/shop")


def _read_events(url: str, event_types: list[str], count: int,
                 out: list[Any], ready: threading.Event) -> None:
    c = MarathonClient(url, timeout=5)
    stream = c.event_stream(event_types=event_types)
    for event in stream:
        out.append(event)
        ready.set()
        if len(out) == count:
            break
    stream.close()


@run
async def test_the_marathon_client_reads_the_event_stream(
        marathon_client_on_py311: None) -> None:
    """The events of an app's creation, in order, parsed by the client's
    EventFactory (event types the client can parse: see the next test)."""
    backend = CoreBackend()
    async with served(backend) as url:
        events: list[Any] = []
        ready = threading.Event()
        kinds = ["event_stream_attached", "api_post_event", "status_update_event",
                 "deployment_success", "app_terminated_event"]
        reader = asyncio.create_task(asyncio.to_thread(_read_events, url, kinds, 10, events,
                                                       ready))
        await asyncio.to_thread(ready.wait, 5)     # attached: subscribed
        async with rest_client(backend) as (_, client):
            await post_app(client, {"id": "/web", "cmd": "sleep 1", "instances": 2})
            backend.settle()
            r = await client.delete("/v2/apps/web")
            assert r.status == 200
            backend.settle()
        await asyncio.wait_for(reader, 10)
    # api_post_event follows the deployment's start (a refused request emits
    # none); here the fake agents kill at once, so the removal is done first.
    assert [e.event_type for e in events] == [
        "event_stream_attached", "api_post_event", "status_update_event",
        "status_update_event", "deployment_success", "status_update_event",
        "status_update_event", "app_terminated_event", "deployment_success", "api_post_event"]
    assert [e.task_status for e in events if e.event_type == "status_update_event"] == [
        "TASK_RUNNING", "TASK_RUNNING", "TASK_KILLED", "TASK_KILLED"]
    post = events[1]
    assert (post.uri, post.app_definition["id"], post.app_definition["instances"]) == (
        "/v2/apps", "/web", 2)
    assert (events[2].app_id, events[7].app_id, events[9].uri) == ("/web", "/web", "/v2/apps/web")


def test_the_marathon_client_parses_deployment_events() -> None:
    backend = CoreBackend()
    q = backend.subscribe()
    asyncio.run(backend.deploy({"/web": AppDefinition(id="/web", cmd="sleep 1")}))
    infos = [e for e in (q.get_nowait() for _ in range(q.qsize()))
             if e["eventType"] == "deployment_info"]
    EventFactory().process(json.loads(frame(infos[0]).split(b"data: ", 1)[1]))


def test_every_other_event_the_core_emits_is_parsed_by_the_marathon_client() -> None:
    backend = CoreBackend()
    q = backend.subscribe()
    asyncio.run(backend.deploy({"/web": AppDefinition(id="/web", cmd="sleep 1",
                                                     instances=1)}))
    backend.settle()
    backend.apply(backend.state.on_update(pb.TaskStatus(
        task_id="web.stray", agent_id="agent-x", state=pb.TASK_RUNNING)))
    [inst] = backend.state.instances.values()
    backend.apply(backend.state.on_update(pb.TaskStatus(
        task_id=inst.id, agent_id=inst.agent_id, state=pb.TASK_RUNNING, healthy=True)))
    asyncio.run(backend.deploy({"/web": None}))
    backend.settle()
    seen = {}
    for event in (q.get_nowait() for _ in range(q.qsize())):
        data = json.loads(frame(event).split(b"data: ", 1)[1])
        seen[event["eventType"]] = EventFactory().process(data)
    assert set(seen) >= {"status_update_event", "unknown_instance_terminated_event",
                         "health_status_changed_event", "deployment_info",
                         "deployment_step_success", "deployment_success",
                         "app_terminated_event"}
    assert seen["app_terminated_event"].app_id == "/web"


# -- apps: statuses and bodies ---------------------------------------------------------------------


@run
async def test_creating_an_app_answers_201_with_the_app_and_its_deployment() -> None:
    async with rest_client() as (backend, client):
        r = await client.post("/v2/apps", json=WEB)
        body = await r.json()
        assert r.status == 201
        [d] = backend.state.deployments
        assert r.headers["Location"].endswith("/v2/apps/prod/web")
        assert r.headers["Marathon-Deployment-Id"] == d
        assert body["deployments"] == [{"id": d}]
        assert (body["id"], body["instances"], body["tasksRunning"]) == ("/prod/web", 2, 0)
        assert r.headers["X-Marathon-Leader"] == backend.url

        r = await client.post("/v2/apps", json=WEB)
        assert r.status == 409
        assert await r.json() == {"message": "An app with id [/prod/web] already exists."}


@run
async def test_a_definition_that_is_not_valid_is_422_and_bad_json_400() -> None:
    async with rest_client() as (_, client):
        r = await client.post("/v2/apps", json={"id": "/x", "cmd": "s", "cpus": -1})
        assert r.status == 422
        body = await r.json()
        assert body["message"] == "Object is not valid"
        assert [d["path"] for d in body["details"]] == ["/cpus"]
        r = await client.post("/v2/apps", json={"id": "/x/tasks", "cmd": "s"})
        assert r.status == 422 and (await r.json())["details"][0]["path"] == "/id"
        r = await client.post("/v2/apps", data=b"{not json", headers={
            "Content-Type": "application/json"})
        assert r.status == 400
        assert (await r.json())["message"] == "Invalid JSON"
        r = await client.post("/v2/apps", json=[WEB])
        assert r.status == 422


@run
async def test_an_unknown_app_is_404_with_marathons_message() -> None:
    async with rest_client() as (_, client):
        for method, path in (("GET", "/v2/apps/nope"), ("DELETE", "/v2/apps/prod/nope"),
                             ("GET", "/v2/apps/nope/tasks"), ("GET", "/v2/apps/nope/versions"),
                             ("POST", "/v2/apps/nope/restart"),
                             ("PATCH", "/v2/apps/nope")):
            r = await client.request(method, path, json={"cmd": "x"})
            assert r.status == 404, (method, path)
            name = "/prod/nope" if "prod" in path else "/nope"
            assert await r.json() == {"message": f"App '{name}' does not exist"}, path


@run
async def test_a_locked_app_is_409_naming_the_deployment_until_forced() -> None:
    async with rest_client() as (backend, client):
        await post_app(client, WEB)
        [d] = backend.state.deployments
        r = await client.put("/v2/apps/prod/web", json={"instances": 3})
        assert r.status == 409
        body = await r.json()
        assert body["deployments"] == [{"id": d}]
        assert body["message"].startswith("App is locked by one or more deployments.")
        r = await client.put("/v2/apps/prod/web?force=true", json={"instances": 3})
        assert r.status == 200
        body = await r.json()
        assert set(body) == {"deploymentId", "version"}
        assert list(backend.state.deployments) == [body["deploymentId"]]
        assert r.headers["Marathon-Deployment-Id"] == body["deploymentId"]


@run
async def test_put_patches_the_app_creates_a_missing_one_and_rolls_back_to_a_version() -> None:
    async with rest_client() as (backend, client):
        await post_app(client, WEB)
        backend.settle()
        r = await client.put("/v2/apps/prod/web", json={"cmd": "sleep 5"})
        assert r.status == 200
        backend.settle()
        r = await client.get("/v2/apps/prod/web")
        app = (await r.json())["app"]
        assert (app["cmd"], app["instances"], app["labels"]) == ("sleep 5", 2, WEB["labels"])
        assert app["tasksRunning"] == 2 and len(app["tasks"]) == 2

        # partialUpdate=false: the body is the whole definition.
        r = await client.put("/v2/apps/prod/web?partialUpdate=false", json={"cmd": "sleep 6"})
        assert r.status == 200
        backend.settle()
        app = (await (await client.get("/v2/apps/prod/web")).json())["app"]
        assert (app["cmd"], app["instances"], app["labels"]) == ("sleep 6", 1, {})

        versions = (await (await client.get("/v2/apps/prod/web/versions")).json())["versions"]
        r = await client.put("/v2/apps/prod/web", json={"version": versions[-1]})
        assert r.status == 200
        backend.settle()
        app = (await (await client.get("/v2/apps/prod/web")).json())["app"]
        assert (app["cmd"], app["instances"]) == ("sleep 1000", 2)
        r = await client.put("/v2/apps/prod/web", json={"version": "2001-01-01T00:00:00.000Z"})
        assert r.status == 404
        assert await r.json() == {"message": "App '/prod/web' does not exist in version "
                                             "2001-01-01T00:00:00.000Z"}

        r = await client.put("/v2/apps/prod/api", json={"cmd": "sleep 1", "id": "/ignored"})
        assert r.status == 201
        assert r.headers["Location"].endswith("/v2/apps/prod/api")
        assert backend.state.known("/prod/api") and not backend.state.known("/ignored")
        r = await client.patch("/v2/apps/prod/nope", json={"cmd": "sleep 1"})
        assert r.status == 404


@run
async def test_bulk_put_deploys_every_app_at_once() -> None:
    async with rest_client() as (backend, client):
        await post_app(client, WEB)
        backend.settle()
        r = await client.put("/v2/apps", json=[{"id": "/prod/web", "instances": 1},
                                               {"id": "/prod/api", "cmd": "sleep 1"}])
        assert r.status == 200
        d = backend.state.deployments[(await r.json())["deploymentId"]]
        assert d.affected_apps == ["/prod/api", "/prod/web"]
        backend.settle()
        r = await client.put("/v2/apps", json=[{"cmd": "no id"}])
        assert r.status == 422
        r = await client.patch("/v2/apps", json=[{"id": "/nope", "cmd": "x"}])
        assert r.status == 404


@run
async def test_app_lists_filter_by_id_cmd_and_label_and_embed_on_request() -> None:
    async with rest_client() as (backend, client):
        await post_app(client, WEB)
        await post_app(client, {"id": "/prod/db", "cmd": "postgres", "labels": {"tier": "db"}})
        await post_app(client, {"id": "/dev/web", "cmd": "sleep 1"})
        backend.settle()

        async def ids(query: str) -> list[str]:
            r = await client.get("/v2/apps" + query)
            assert r.status == 200, await r.text()
            return [a["id"] for a in (await r.json())["apps"]]

        assert await ids("") == ["/dev/web", "/prod/db", "/prod/web"]
        assert await ids("?id=PROD") == ["/prod/db", "/prod/web"]
        assert await ids("?cmd=postgres") == ["/prod/db"]
        assert await ids("?label=tier") == ["/prod/db", "/prod/web"]
        assert await ids("?label=tier!=db") == ["/prod/web"]
        assert await ids("?label=tier in (db, backend), env") == []
        assert await ids("?label=tier notin (db),env==prod") == ["/prod/web"]
        r = await client.get("/v2/apps?label=tier==")
        assert r.status == 422
        assert (await r.json())["message"].startswith("Can not parse label selector")

        apps = (await (await client.get("/v2/apps")).json())["apps"]
        assert all("tasks" not in a and "tasksRunning" in a for a in apps)
        apps = (await (await client.get("/v2/apps?embed=apps.tasks")).json())["apps"]
        assert [len(a["tasks"]) for a in apps] == [1, 1, 2]
        apps = (await (await client.get("/v2/apps?embed=app.failures")).json())["apps"]
        assert all("tasks" in a for a in apps)
        r = await client.get("/v2/apps/prod/*")
        assert [a["id"] for a in (await r.json())["*"]] == ["/prod/db", "/prod/web"]
        r = await client.get("/v2/apps/prod/*/tasks")
        assert len((await r.json())["tasks"]) == 3
        r = await client.get("/v2/apps/nope/*")
        assert r.status == 404
        assert await r.json() == {"message": "Group '/nope' does not exist"}


@run
async def test_suffixes_are_told_apart_from_app_ids() -> None:
    async with rest_client() as (backend, client):
        await post_app(client, WEB)
        backend.settle()
        tasks = (await (await client.get("/v2/apps/prod/web/tasks")).json())["tasks"]
        assert [t["appId"] for t in tasks] == ["/prod/web", "/prod/web"]
        versions = (await (await client.get("/v2/apps/prod/web/versions")).json())["versions"]
        r = await client.get(f"/v2/apps/prod/web/versions/{versions[0]}")
        assert (await r.json())["cmd"] == "sleep 1000"
        r = await client.get("/v2/apps/prod/web/versions/2001-01-01T00:00:00.000Z")
        assert r.status == 404

        r = await client.delete(f"/v2/apps/prod/web/tasks/{tasks[0]['id']}")
        assert r.status == 200
        assert (await r.json())["task"]["id"] == tasks[0]["id"]
        r = await client.delete("/v2/apps/prod/web/tasks/prod_web.nope")
        assert r.status == 404
        assert await r.json() == {"message": "Task 'prod_web.nope' does not exist"}
        r = await client.delete("/v2/apps/prod/web/tasks?scale=true&wipe=true")
        assert r.status == 400
        assert await r.json() == {"message": "You cannot use scale and wipe at the same time."}
        backend.settle()
        r = await client.delete("/v2/apps/prod/web/tasks?host=nowhere")
        assert (await r.json()) == {"tasks": []}
        r = await client.delete("/v2/apps/prod/web/tasks?host=host-1&scale=true")
        assert r.status == 200 and set(await r.json()) == {"deploymentId", "version"}
        backend.settle()
        assert backend.state.apps["/prod/web"].current.app.instances == 0

        r = await client.put("/v2/apps/prod/web/versions", json={})
        assert r.status == 405
        assert r.headers["Allow"] == "GET"
        r = await client.get("/v2/apps/prod/web/restart")
        assert r.status == 405
        r = await client.post("/v2/apps/prod/web/restart")
        assert r.status == 200
        r = await client.get("/v2/nothing-here")
        assert r.status == 404 and await r.json() == {"message": "URI not found"}
        r = await client.patch("/v2/tasks", json={})
        assert r.status == 405 and "message" in await r.json()


@run
async def test_deleting_an_app_cancels_its_deployment_unless_told_not_to() -> None:
    async with rest_client() as (backend, client):
        await post_app(client, WEB)
        r = await client.delete("/v2/apps/prod/web?force=false")
        assert r.status == 409
        r = await client.delete("/v2/apps/prod/web")     # force defaults to true
        assert r.status == 200
        backend.settle()
        assert not backend.state.known("/prod/web")


# -- deployments, tasks, queue ---------------------------------------------------------------------


@run
async def test_cancelling_a_deployment_rolls_back_or_with_force_just_stops() -> None:
    async with rest_client() as (backend, client):
        await post_app(client, WEB)
        backend.settle()
        await client.put("/v2/apps/prod/web", json={"cmd": "sleep 3"})
        [d] = await (await client.get("/v2/deployments")).json()
        assert (d["affectedApps"], d["currentStep"], d["totalSteps"]) == (["/prod/web"], 1, 1)
        assert d["steps"] == [{"actions": [{"action": "RestartApplication",
                                            "app": "/prod/web"}]}]
        r = await client.delete(f"/v2/deployments/{d['id']}")
        assert r.status == 200
        rollback = await r.json()
        assert set(rollback) == {"deploymentId", "version"}
        assert rollback["deploymentId"] != d["id"]
        backend.settle()    # (done already: the old instances are the rollback's)
        assert backend.state.apps["/prod/web"].current.app.cmd == "sleep 1000"

        await client.put("/v2/apps/prod/web", json={"cmd": "sleep 4"})
        [d] = await (await client.get("/v2/deployments")).json()
        r = await client.delete(f"/v2/deployments/{d['id']}?force=true")
        assert r.status == 202 and await r.read() == b""
        assert await (await client.get("/v2/deployments")).json() == []
        r = await client.delete(f"/v2/deployments/{d['id']}")
        assert r.status == 404
        assert await r.json() == {"message": f"DeploymentPlan {d['id']} does not exist"}


@run
async def test_a_deployment_is_read_while_it_runs_and_after_it_ended() -> None:
    """GET /v2/deployments/{id} (juggler's): the running entry with its state;
    once ended, the core's record of its end (AppsState.ended)."""
    async with rest_client() as (backend, client):
        await post_app(client, WEB)
        backend.settle()
        await client.put("/v2/apps/prod/web", json={"cmd": "sleep 3"})
        [listed] = await (await client.get("/v2/deployments")).json()
        r = await client.get(f"/v2/deployments/{listed['id']}")
        assert r.status == 200
        assert await r.json() == listed | {"state": "IN_PROGRESS"}

        rollback = await (await client.delete(f"/v2/deployments/{listed['id']}")).json()
        r = await client.get(f"/v2/deployments/{listed['id']}")
        assert r.status == 200
        ended = await r.json()
        assert ended == backend.state.ended[listed["id"]]
        assert (ended["state"], ended["rollback"]) == ("CANCELLED", rollback["deploymentId"])
        assert ended["affectedApps"] == ["/prod/web"]

        r = await client.get("/v2/deployments/no-such-id")
        assert r.status == 404
        assert await r.json() == {"message": "DeploymentPlan no-such-id does not exist"}


@run
async def test_tasks_show_ports_and_text_plain_gives_the_load_balancer_lines() -> None:
    async with rest_client() as (backend, client):
        await post_app(client, WEB)
        backend.settle()
        tasks = (await (await client.get("/v2/tasks")).json())["tasks"]
        service = (await (await client.get("/v2/apps/prod/web")).json())["app"]["ports"]
        assert len(service) == 1 and 10000 <= service[0] <= 20000
        assert all(len(t["ports"]) == 1 and t["servicePorts"] == service for t in tasks)
        lines = "".join(sorted(f"{t['host']}:{t['ports'][0]}\t" for t in tasks))
        for path in ("/v2/tasks", "/v2/apps/prod/web/tasks"):
            r = await client.get(path, headers={"Accept": "text/plain"})
            assert r.content_type == "text/plain"
            assert await r.text() == f"prod_web\t{service[0]}\t{lines}\n"


@run
async def test_tasks_list_filter_and_kill_by_id() -> None:
    async with rest_client() as (backend, client):
        await post_app(client, WEB)
        backend.settle()
        backend.run_launched = False
        await client.put("/v2/apps/prod/web", json={"instances": 3})
        backend.offer()
        tasks = (await (await client.get("/v2/tasks")).json())["tasks"]
        assert sorted(t["state"] for t in tasks) == ["TASK_RUNNING", "TASK_RUNNING",
                                                     "TASK_STAGING"]
        staging = (await (await client.get("/v2/tasks?status=staging")).json())["tasks"]
        running = (await (await client.get("/v2/tasks?status=running")).json())["tasks"]
        assert (len(staging), len(running)) == (1, 2)
        for key in ("id", "appId", "host", "slaveId", "stagedAt", "version"):
            assert running[0][key]

        r = await client.post("/v2/tasks/delete", json={"ids": [running[0]["id"], "x.y"]})
        assert r.status == 200
        assert [t["id"] for t in (await r.json())["tasks"]] == [running[0]["id"]]
        r = await client.post("/v2/tasks/delete?scale=true", json={"ids": [running[1]["id"]]})
        assert set(await r.json()) == {"deploymentId", "version"}
        r = await client.post("/v2/tasks/delete", json={"tasks": []})
        assert r.status == 400


@run
async def test_the_queue_says_why_an_app_waits_and_its_delay_can_be_reset() -> None:
    async with rest_client() as (backend, client):
        await post_app(client, {"id": "/big", "cmd": "sleep 1", "cpus": 64})
        backend.offer(cpus=4)
        [item] = (await (await client.get("/v2/queue")).json())["queue"]
        assert (item["app"]["id"], item["count"]) == ("/big", 1)
        assert "lastUnusedOffers" not in item
        summary = item["processedOffersSummary"]
        assert summary["rejectSummaryLastOffers"] == [
            {"reason": "InsufficientCpus", "declined": 1, "processed": 1}]
        [item] = (await (await client.get("/v2/queue?embed=lastUnusedOffers")).json())["queue"]
        assert item["lastUnusedOffers"][0]["reason"] == ["InsufficientCpus"]
        r = await client.delete("/v2/queue/big/delay")
        assert r.status == 204
        r = await client.delete("/v2/queue/nope/delay")
        assert r.status == 404


# -- groups ----------------------------------------------------------------------------------------


@run
async def test_groups_are_built_from_app_ids() -> None:
    async with rest_client() as (_, client):
        await post_app(client, WEB)
        await post_app(client, {"id": "/prod/jobs/mail", "cmd": "sleep 1"})
        await post_app(client, {"id": "/top", "cmd": "sleep 1"})
        root = await (await client.get("/v2/groups")).json()
        assert root["id"] == "/" and [a["id"] for a in root["apps"]] == ["/top"]
        [prod] = root["groups"]
        assert prod["id"] == "/prod" and [a["id"] for a in prod["apps"]] == ["/prod/web"]
        assert [g["id"] for g in prod["groups"]] == ["/prod/jobs"]
        r = await client.get("/v2/groups/prod/jobs")
        assert [a["id"] for a in (await r.json())["apps"]] == ["/prod/jobs/mail"]
        r = await client.get("/v2/groups/prod?embed=group.groups")
        body = await r.json()
        assert "apps" not in body and [g["id"] for g in body["groups"]] == ["/prod/jobs"]
        r = await client.get("/v2/groups/nope")
        assert r.status == 404
        assert await r.json() == {"message": "Group '/nope' does not exist"}


@run
async def test_a_group_put_removes_the_apps_it_does_not_name() -> None:
    async with rest_client() as (backend, client):
        r = await client.post("/v2/groups", json={"id": "shop", "apps": [
            {"id": "web", "cmd": "sleep 1"}, {"id": "db", "cmd": "sleep 1"}],
            "groups": [{"id": "jobs", "apps": [{"id": "mail", "cmd": "sleep 1"}]}]})
        assert r.status == 201, await r.text()
        assert r.headers["Location"].endswith("/v2/groups/shop")
        backend.settle()
        r = await client.post("/v2/groups", json={"id": "/shop"})
        assert r.status == 409
        assert await r.json() == {"message": "Group /shop is already created. Use PUT to "
                                             "change this group."}
        r = await client.post("/v2/groups", json={"id": "/shop/web"})
        assert r.status == 409
        assert await r.json() == {"message": "An app with the path /shop/web already exists."}

        # No "groups" key: the subgroups stay; "apps" names the group's own apps.
        r = await client.put("/v2/groups/shop", json={"apps": [{"id": "web", "cmd": "sleep 2"}]})
        assert r.status == 200
        backend.settle()
        assert sorted(backend.state.apps) == ["/shop/jobs/mail", "/shop/web"]
        r = await client.put("/v2/groups/shop", json={"groups": []})
        assert r.status == 200
        backend.settle()
        assert sorted(backend.state.apps) == ["/shop/web"]
        r = await client.put("/v2/groups/shop", json={"version": "2001-01-01T00:00:00.000Z"})
        assert r.status == 422
        r = await client.put("/v2/groups/shop", json={"scaleBy": 1.5})
        assert r.status == 200
        backend.settle()
        assert backend.state.apps["/shop/web"].current.app.instances == 2
        r = await client.delete("/v2/groups/nope")
        assert r.status == 404
        r = await client.delete("/v2/groups")
        assert r.status == 200
        backend.settle()
        assert backend.state.apps == {}


# -- info, leader, metrics -------------------------------------------------------------------------


@run
async def test_info_leader_ping_and_metrics() -> None:
    async with rest_client() as (_, client):
        info = await (await client.get("/v2/info")).json()
        assert info["name"] == "juggler" and info["elected"] is True
        assert info["leader"] == "127.0.0.1:8080"
        assert info["marathon_config"]["master"] == "127.0.0.1:5050"
        assert info["http_config"]["http_port"] == 8080
        assert info["zookeeper_config"] == {} and info["event_subscriber"] is None
        assert await (await client.get("/v2/leader")).json() == {"leader": "127.0.0.1:8080"}
        r = await client.get("/ping")
        assert await r.text() == "pong"
        r = await client.get("/metrics")
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert await r.text() == "juggler_apps_apps 0\n"


@run
async def test_a_standby_proxies_to_the_leader_and_answers_about_itself() -> None:
    leader = CoreBackend()
    async with served(leader) as leader_url:
        standby = CoreBackend(leading=False, leader=leader_url)
        standby.url = "http://127.0.0.1:8081"
        async with rest_client(standby, leader_hold=0.1) as (_, client):
            r = await client.post("/v2/apps", json=WEB)
            assert r.status == 201
            assert r.headers["Location"].startswith(leader_url)
            assert r.headers["Marathon-Deployment-Id"] in leader.state.deployments
            assert leader.state.known("/prod/web") and not standby.state.known("/prod/web")
            r = await client.get("/v2/apps/prod/web")
            assert (await r.json())["app"]["id"] == "/prod/web"
            r = await client.get("/v2/apps/nope")
            assert r.status == 404
            assert await r.json() == {"message": "App '/nope' does not exist"}
            info = await (await client.get("/v2/info")).json()
            assert info["elected"] is False
            assert info["leader"] == leader_url.removeprefix("http://")

            async with client.get("/v2/events?event_type=api_post_event",
                                  headers={"Accept": "text/event-stream"}) as events:
                assert events.headers["Content-Type"].startswith("text/event-stream")
                r = await client.put("/v2/apps/prod/web?force=true", json={"instances": 1})
                assert r.status == 200
                line = await asyncio.wait_for(_data_line(events), 5)
                assert json.loads(line)["uri"] == "/v2/apps/prod/web"

            standby.leader = None
            r = await client.get("/v2/apps")
            assert r.status == 503 and await r.json() == {"message": "no leader"}
            r = await client.get("/v2/leader")
            assert r.status == 404 and await r.json() == {"message": "There is no leader"}
            standby.leader = standby.url        # never to itself
            r = await client.get("/v2/apps")
            assert r.status == 503


@run
async def test_a_standby_holds_a_request_while_no_leader_is_known() -> None:
    """An election under way is a pause: the request waits (up to the hold)
    for a leader and is answered by it; a request the old leader refused
    unmarked (it lost its lease) is sent again to the new one; nothing the
    leader may have acted on is sent twice."""
    old, new = CoreBackend(leading=False), CoreBackend()
    async with served(old) as old_url, served(new) as new_url:
        standby = CoreBackend(leading=False, leader=None)
        standby.url = "http://127.0.0.1:8081"
        async with rest_client(standby, leader_hold=30) as (_, client):
            async def elect(after: float, url: str) -> None:
                await asyncio.sleep(after)
                standby.leader = url

            elected = asyncio.create_task(elect(0.3, new_url))
            r = await client.post("/v2/apps", json=WEB)     # no leader known yet
            assert r.status == 201 and r.headers["X-Marathon-Leader"] == new_url
            assert elected.done() and new.state.known("/prod/web")

            standby.leader = old_url                         # lost its lease: answers unmarked
            moved = asyncio.create_task(elect(0.3, new_url))
            r = await client.put("/v2/apps/prod/web?force=true", json={"instances": 3})
            assert r.status == 200 and moved.done()
            assert new.state.apps["/prod/web"].current.app.instances == 3
            assert not old.state.known("/prod/web")

        async with rest_client(standby, leader_hold=0.3) as (_, client):
            standby.leader = old_url                         # and no other comes
            r = await client.get("/v2/apps")
            assert r.status == 503
            assert (await r.json())["message"] == \
                f"no leader: the instance at {old_url} does not lead now"


@run
async def test_a_leader_s_own_503_is_never_sent_again() -> None:
    """A 503 from the leader that it did not mark as "not led" (a write to
    the store failed, maybe after it was made) may have acted: the standby
    passes it back and sends nothing twice."""
    seen: list[str] = []

    async def failing(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response({"message": "the store failed"}, status=503)

    app = web.Application()
    app.router.add_post("/v2/apps", failing)
    async with TestServer(app) as leader:
        standby = CoreBackend(leading=False, leader=str(leader.make_url("")).rstrip("/"))
        standby.url = "http://127.0.0.1:8081"
        async with rest_client(standby, leader_hold=30) as (_, client):
            r = await client.post("/v2/apps", json=WEB)
            assert r.status == 503 and await r.json() == {"message": "the store failed"}
    assert seen == ["/v2/apps"]


async def _data_line(resp: Any) -> str:
    while True:
        line = (await resp.content.readline()).decode()
        if line.startswith("data: "):
            return line[len("data: "):]


# -- /v2/events ------------------------------------------------------------------------------------


@run
async def test_the_event_stream_needs_its_accept_header_filters_and_beats() -> None:
    async with rest_client(heartbeat_seconds=0.05) as (backend, client):
        r = await client.get("/v2/events")
        assert r.status == 405
        async with client.get("/v2/events?event_type=event_stream_attached&event_type="
                              "app_terminated_event",
                              headers={"Accept": "text/event-stream"}) as events:
            assert (await events.content.readline()) == b"event: event_stream_attached\n"
            attached = json.loads((await events.content.readline())[len(b"data: "):])
            assert attached["eventType"] == "event_stream_attached"
            assert attached["timestamp"] == iso(backend.clock.time())
            assert await events.content.readline() == b"\n"
            assert await events.content.readline() == b": heartbeat\n"
            backend.emit("api_post_event", {"uri": "/v2/apps"})     # filtered out
            backend.emit("app_terminated_event", {"appId": "/web"})
            line = await asyncio.wait_for(_data_line(events), 5)
            assert json.loads(line)["appId"] == "/web"
        for _ in range(500):     # the handler sees the client gone at its next heartbeat
            if backend.bus.subscribers == 0:
                break
            await asyncio.sleep(0.01)
        assert backend.bus.subscribers == 0


@run
async def test_a_client_too_slow_for_the_bus_is_dropped_without_blocking_it() -> None:
    backend = CoreBackend(queue_size=3)
    async with rest_client(backend) as (_, client):
        async with client.get("/v2/events", headers={"Accept": "text/event-stream"}) as events:
            await events.content.readline()
            for i in range(10):         # the handler cannot run between these
                backend.emit("app_terminated_event", {"appId": f"/a{i}"})
            assert backend.bus.dropped == 1 and backend.bus.subscribers == 0
            rest_of_it = await asyncio.wait_for(events.content.read(), 5)
        assert DROPPED_TYPE.encode() not in rest_of_it
        assert b"/a0" not in rest_of_it      # what it had not read went with it


def test_the_bus_drops_a_full_subscriber_and_leaves_it_the_marker() -> None:
    async def scenario() -> None:
        bus = EventBus(lambda: "2026-01-01T00:00:00.000Z", maxsize=2)
        slow, fast = bus.subscribe(), bus.subscribe()
        for i in range(3):
            bus.publish("e", {"i": i})
            fast.get_nowait()
        assert [slow.get_nowait()] == [{"eventType": DROPPED_TYPE}] and slow.empty()
        assert bus.subscribers == 1 and bus.dropped == 1
        bus.unsubscribe(slow)    # idempotent
        assert frame({"eventType": "x", "timestamp": "t"}) == (
            b'event: x\ndata: {"eventType":"x","timestamp":"t"}\n\n')
    asyncio.run(scenario())


# -- pieces ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "labels", "matches"), [
    ("tier", {"tier": "x"}, True),
    ("tier", {}, False),
    ("tier==web", {"tier": "web"}, True),
    ("tier!=web", {"tier": "web"}, False),
    ("tier!=web", {}, False),
    ("tier in (web, db)", {"tier": "db"}, True),
    ("tier notin (web,db)", {"tier": "db"}, False),
    ("a, b==2", {"a": "1", "b": "2"}, True),
    ("a, b==2", {"b": "2"}, False),
    (r"\!\!\! in (\-\-\-, \&\&\&)", {"!!!": "&&&"}, True),
])
def test_label_selectors_read_as_marathon(query: str, labels: dict[str, str],
                                          matches: bool) -> None:
    assert rest.label_selector(query)(labels) is matches
