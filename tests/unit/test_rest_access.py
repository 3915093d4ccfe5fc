"""apps/access_targets.py (what a request needs of the rules) and
apps/rest_access.py (the middleware) over the REST API with a real core."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from juggler.apps import rest
from juggler.apps.access_targets import (
    Check,
    Target,
    body_app_ids,
    docker_target,
    filter_list,
    rest_target,
)
from juggler.apps.definition import AppDefinition
from juggler.apps.rest_access import HttpAccess
from juggler.common.access import AccessControl
from juggler.common.tokens import Tokens, digest
from tests.unit.test_apps_rest import CoreBackend

# -- the pure mapping ------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "target"), [
    ("GET", "/ping", Target(open=True)),
    ("GET", "/metrics", Target(open=True)),
    ("GET", "/v2/info", Target()),
    ("GET", "/v2/events", Target((Check("apps_read", "/"),))),
    ("GET", "/v2/apps", Target(filter="apps")),
    ("POST", "/v2/apps", Target(resolve="app_body", action="apps_write")),
    ("PATCH", "/v2/apps", Target(resolve="apps_body", action="apps_write")),
    ("GET", "/v2/apps/team-a/web", Target((Check("apps_read", "/team-a/web"),))),
    ("PUT", "/v2/apps/team-a/web", Target((Check("apps_write", "/team-a/web"),))),
    ("POST", "/v2/apps/team-a/web/restart", Target((Check("apps_write", "/team-a/web"),))),
    ("DELETE", "/v2/apps/team-a/web/tasks/t1", Target((Check("apps_write", "/team-a/web"),))),
    ("GET", "/v2/apps/team-a/web/versions/v1", Target((Check("apps_read", "/team-a/web"),))),
    ("GET", "/v2/apps/team-a/*", Target((Check("apps_read", "/team-a/"),))),
    ("GET", "/v2/apps/*/tasks", Target((Check("apps_read", "/"),))),
    ("GET", "/v2/groups", Target((Check("apps_read", "/"),))),
    ("GET", "/v2/groups/team-a", Target((Check("apps_read", "/team-a/"),))),
    ("DELETE", "/v2/groups/team-a", Target((Check("apps_write", "/team-a/"),))),
    ("PUT", "/v2/groups/team-a", Target(resolve="group_body", ref="/team-a",
                                        action="apps_write")),
    ("GET", "/v2/tasks", Target(filter="tasks")),
    ("POST", "/v2/tasks/delete", Target(resolve="task_ids", action="apps_write")),
    ("GET", "/v2/deployments", Target(filter="deployments")),
    ("DELETE", "/v2/deployments/d1", Target(resolve="deployment", ref="d1",
                                            action="apps_write")),
    ("GET", "/v2/queue", Target(filter="queue")),
    ("DELETE", "/v2/queue/team-a/web/delay", Target((Check("apps_write", "/team-a/web"),))),
])
def test_marathon_paths_name_their_objects(method: str, path: str, target: Target) -> None:
    assert rest_target(method, path) == target


def test_load_balancer_lines_need_the_whole_tree() -> None:
    assert rest_target("GET", "/v2/tasks", wants_text=True) == Target(
        (Check("apps_read", "/"),))


API = Check("docker_api")


@pytest.mark.parametrize(("method", "rest_path", "query", "target"), [
    ("GET", "/_ping", {}, Target((API,))),
    ("GET", "/images/json", {}, Target((API,))),
    ("GET", "/containers/json", {}, Target((API,), filter="containers")),
    ("POST", "/containers/create", {"name": "team-a-web"},
     Target((API, Check("containers_write", "team-a-web")), resolve="create_body")),
    ("POST", "/containers/create", {}, Target((API, Check("containers_write", "")),
                                              resolve="create_body")),
    ("GET", "/containers/abc/json", {}, Target((API,), resolve="container", ref="abc",
                                               action="containers_read")),
    ("POST", "/containers/abc/stop", {}, Target((API,), resolve="container", ref="abc",
                                                action="containers_write")),
    ("DELETE", "/containers/abc", {}, Target((API,), resolve="container", ref="abc",
                                             action="containers_write")),
    ("POST", "/containers/abc/rename", {"name": "/b-x"},
     Target((API, Check("containers_write", "b-x")), resolve="container", ref="abc",
            action="containers_write")),
    ("POST", "/containers/prune", {}, Target((API,), resolve="prune",
                                             action="containers_write")),
    ("POST", "/exec/e1/start", {}, Target((API,), resolve="exec", ref="e1",
                                          action="containers_write")),
])
def test_docker_paths_name_their_objects(method: str, rest_path: str, query: dict[str, str],
                                         target: Target) -> None:
    assert docker_target(method, rest_path, query) == target


def test_bodies_name_the_apps_they_change() -> None:
    assert body_app_ids("app_body", {"id": "team-a/web"}) == ["/team-a/web"]
    assert body_app_ids("app_body", "not json") == []
    assert body_app_ids("apps_body", [{"id": "/a/x"}, {"id": "b/y"}, {}]) == ["/a/x", "/b/y"]
    group = {"id": "team-a", "apps": [{"id": "web", "cmd": "true"}],
             "groups": [{"id": "db", "apps": [{"id": "pg", "cmd": "true"}]}]}
    assert body_app_ids("group_body", group, "/") == [
        "/team-a/", "/team-a/web", "/team-a/db/pg"]
    # A relative id is taken under the URL's group; a body that does not parse: the group.
    assert body_app_ids("group_body", {"id": "x", "apps": "bad"}, "/b") == ["/b/x/"]
    assert body_app_ids("group_body", {"scaleBy": 2}, "/b") == ["/b/"]


def test_lists_keep_what_may_be_read() -> None:
    def may(obj: str) -> bool:
        return obj.startswith("/a/") or obj.startswith("a-")
    assert filter_list("apps", {"apps": [{"id": "/a/x"}, {"id": "/b/y"}]}, may) == {
        "apps": [{"id": "/a/x"}]}
    assert filter_list("tasks", {"tasks": [{"appId": "/b/y"}]}, may) == {"tasks": []}
    assert filter_list("deployments", [{"affectedApps": ["/a/x", "/b/y"]},
                                       {"affectedApps": ["/a/z"]}], may) == [
        {"affectedApps": ["/a/z"]}]
    assert filter_list("queue", {"queue": [{"app": {"id": "/a/x"}}, {"app": {"id": "/c"}}]},
                       may) == {"queue": [{"app": {"id": "/a/x"}}]}
    assert filter_list("containers", [{"Names": ["/a-1"]}, {"Names": ["/b-1"]}], may) == [
        {"Names": ["/a-1"]}]


# -- the middleware over the REST API -----------------------------------------------------------

RULES = {
    "apps_read": [{"principals": {"values": ["alice"]}, "app_ids": {"values": ["/team-a/*"]}},
                  {"principals": {"values": ["root"]}, "app_ids": {"type": "ANY"}}],
    "apps_write": [{"principals": {"values": ["alice"]}, "app_ids": {"values": ["/team-a/*"]}},
                   {"principals": {"values": ["root"]}, "app_ids": {"type": "ANY"}}],
    # What apps launch (apps/launch_access.py): alice as nobody, off the
    # host's network; root anything.
    "run_tasks": [{"principals": {"values": ["alice"]}, "users": {"values": ["nobody"]}},
                  {"principals": {"values": ["root"]}, "users": {"type": "ANY"}}],
    "run_host_network": [{"principals": {"values": ["root"]}, "roles": {"type": "ANY"}}],
    "run_host_filesystem": [{"principals": {"values": ["alice", "root"]},
                             "roles": {"type": "ANY"}}],
}
# An app alice may launch: as nobody, on the bridge network.
AS_NOBODY = {"user": "nobody", "networks": [{"mode": "container/bridge"}]}
TOKENS = {"alice": "alice-token", "root": "root-token", "eve": "eve-token"}


def _access(tmp_path: Path) -> HttpAccess:
    (tmp_path / "acls.json").write_text(json.dumps(RULES))
    (tmp_path / "tokens.json").write_text(json.dumps({"tokens": [
        {"principal": p, "sha256": digest(t)} for p, t in TOKENS.items()]}))
    tokens = Tokens.from_file(tmp_path / "tokens.json")
    return HttpAccess(AccessControl.from_file(tmp_path / "acls.json"), tokens)


def _as(who: str, scheme: str = "Bearer") -> dict[str, str]:
    token = TOKENS[who]
    return {"Authorization": f"{scheme} {token}" if scheme == "Bearer" else f"token={token}"}


def test_rest_api_under_rules(tmp_path: Path) -> None:
    async def main() -> None:
        backend = CoreBackend()
        app = rest.make_app(backend, access=_access(tmp_path))  # type: ignore[arg-type]
        async with TestClient(TestServer(app)) as client:
            web = {"id": "/team-a/web", "cmd": "sleep 1000", "cpus": 0.1, "mem": 32,
                   **AS_NOBODY}
            other = {"id": "/team-b/db", "cmd": "sleep 1000", "cpus": 0.1, "mem": 32}
            r = await client.post("/v2/apps", json=web, headers=_as("alice", "token"))
            assert r.status == 201, await r.text()
            # Another group's app: 403 in Marathon's shape, nothing created.
            r = await client.post("/v2/apps", json=other, headers=_as("alice"))
            assert r.status == 403
            body = await r.json()
            assert body["message"].startswith("permission denied:")
            assert "rule" in body["message"] and "/team-b/db" in body["message"]
            assert "/team-b/db" not in backend.state.apps
            # No principal: 401 with a challenge; a wrong token too.
            r = await client.post("/v2/apps", json=other)
            assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
            r = await client.get("/v2/apps", headers={"Authorization": "Bearer nope"})
            assert r.status == 401 and "invalid_token" in r.headers["WWW-Authenticate"]
            # A principal with no rule at all.
            r = await client.get("/v2/apps/team-a/web", headers=_as("eve"))
            assert r.status == 403
            r = await client.post("/v2/apps", json=other, headers=_as("root"))
            assert r.status == 201
            # Lists are filtered; the whole tree for root.
            r = await client.get("/v2/apps", headers=_as("alice"))
            assert [a["id"] for a in (await r.json())["apps"]] == ["/team-a/web"]
            r = await client.get("/v2/apps", headers=_as("root"))
            assert [a["id"] for a in (await r.json())["apps"]] == ["/team-a/web", "/team-b/db"]
            # Groups: the group path; a group body's apps.
            r = await client.get("/v2/groups/team-b", headers=_as("alice"))
            assert r.status == 403
            r = await client.delete("/v2/groups/team-b", headers=_as("alice"))
            assert r.status == 403 and "/team-b/db" in backend.state.apps
            r = await client.put("/v2/groups/team-a", headers=_as("alice"),
                                 json={"id": "/team-b", "apps": []})
            assert r.status == 403
            # Open paths.
            assert (await client.get("/ping")).status == 200
    asyncio.run(main())


def test_what_an_app_launches_is_checked_against_the_caller(tmp_path: Path) -> None:
    """The apps service launches as itself (`apps`): run_tasks and
    run_host_* are the caller's, checked before anything is deployed."""
    async def main() -> None:
        backend = CoreBackend()
        app = rest.make_app(backend, access=_access(tmp_path))  # type: ignore[arg-type]
        async with TestClient(TestServer(app)) as client:
            base = {"cmd": "sleep 1000", "cpus": 0.1, "mem": 32}
            refusals = [
                # No user: the apps framework's, root.
                ({"id": "/team-a/root", **base, "networks": [{"mode": "container/bridge"}]},
                 "no run_tasks rule allows principal 'alice' for user 'root'"),
                ({"id": "/team-a/root", **base, **AS_NOBODY, "user": "root"},
                 "for user 'root'"),
                # Marathon's default network mode is the host's.
                ({"id": "/team-a/host", **base, "user": "nobody"},
                 "no run_host_network rule allows principal 'alice' for role '*'"),
                ({"id": "/team-a/host", **base, "user": "nobody", "role": "web"},
                 "for role 'web'"),
            ]
            for definition, message in refusals:
                r = await client.post("/v2/apps", json=definition, headers=_as("alice"))
                assert r.status == 403, definition
                body = await r.json()
                assert message in body["message"] and "(rule " in body["message"]
                assert not backend.state.apps and not backend.state.deployments
            # A group with one such app among allowed ones: nothing at all.
            r = await client.post("/v2/groups", headers=_as("alice"), json={
                "id": "/team-a", "apps": [{"id": "ok", **base, **AS_NOBODY},
                                          {"id": "root", **base, "user": "root"}]})
            assert r.status == 403 and not backend.state.apps
            r = await client.post("/v2/apps", headers=_as("alice"),
                                  json={"id": "/team-a/web", **base, **AS_NOBODY})
            assert r.status == 201, await r.text()
            # An update is checked as merged: PATCH to root, PUT to the host's network.
            r = await client.patch("/v2/apps/team-a/web", json={"user": "root"},
                                   headers=_as("alice"))
            assert r.status == 403 and "user 'root'" in (await r.json())["message"]
            r = await client.put("/v2/apps", headers=_as("alice"), json=[
                {"id": "/team-a/web", "networks": [{"mode": "host"}]}])
            assert r.status == 403 and "run_host_network" in (await r.json())["message"]
            assert backend.state.apps["/team-a/web"].current.app.user == "nobody"
            # root may (its rules allow anything).
            r = await client.post("/v2/apps", headers=_as("root"),
                                  json={"id": "/team-b/host", **base})
            assert r.status == 201, await r.text()
    asyncio.run(main())


def test_without_rules_nothing_is_checked(tmp_path: Path) -> None:
    async def main() -> None:
        access = HttpAccess(AccessControl.from_file(None), None)
        app = rest.make_app(CoreBackend(), access=access)  # type: ignore[arg-type]
        async with TestClient(TestServer(app)) as client:
            r = await client.post("/v2/apps", json={"id": "/x", "cmd": "true", "cpus": 0.1,
                                                    "mem": 16})
            assert r.status == 201
    asyncio.run(main())


def test_a_standby_passes_on_no_principal_but_a_token(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A certificate's (or the socket's) principal cannot travel to the
    leader with a proxied request: the standby says so rather than let the
    leader decide for its own principal."""
    from juggler.apps import rest_access

    async def main() -> None:
        backend = CoreBackend(leading=False, leader="http://127.0.0.1:9")
        app = rest.make_app(backend, access=_access(tmp_path))  # type: ignore[arg-type]
        async with TestClient(TestServer(app)) as client:
            monkeypatch.setattr(rest_access, "principal_of", lambda request, access: "alice")
            r = await client.get("/v2/apps/team-a/web")
            assert r.status == 503 and "standby" in (await r.json())["message"]
            assert (await client.get("/v2/info")).status == 200   # answered here
    asyncio.run(main())


def test_what_a_container_launches() -> None:
    from juggler.apps.containers import ContainerConfig
    from juggler.apps.launch_access import container_checks

    assert container_checks(ContainerConfig(image="busybox", network="bridge"), "*") == [
        Check("run_tasks", "root")]
    assert container_checks(ContainerConfig(user="nobody", network="host"), "web") == [
        Check("run_tasks", "nobody"), Check("run_host_network", "web"),
        Check("run_host_filesystem", "web")]
    assert container_checks(ContainerConfig(rootfs="/srv/fs", user="1000"), "*") == [
        Check("run_tasks", "1000")]


def test_a_request_held_while_its_standby_takes_over_meets_the_leaders_checks(
        tmp_path: Path) -> None:
    """A standby leaves the checks that need the leader's state (which apps
    a deployment touches) to the leader. A request it holds while no leader
    is known, and that finds this very instance elected, still goes through
    the leader's front door: alice (rights on /team-a only) cannot cancel a
    deployment of /team-b by sending it just before the election."""
    import aiohttp

    async def main() -> None:
        backend = CoreBackend()
        d = await backend.deploy({"/team-b/db": AppDefinition(
            id="/team-b/db", cmd="sleep 1000", cpus=0.1, mem=32.0, instances=1)})
        assert d.id in backend.state.deployments
        backend.leading = False
        runner, port = await rest.serve(backend, "127.0.0.1", 0, access=_access(tmp_path),
                                        leader_hold=30)
        backend.url = f"http://127.0.0.1:{port}"
        try:
            async def elected() -> None:
                await asyncio.sleep(0.3)
                backend.leading = True

            takeover = asyncio.create_task(elected())
            async with aiohttp.ClientSession() as session:
                async with session.delete(f"{backend.url}/v2/deployments/{d.id}",
                                          headers=_as("alice")) as r:
                    assert r.status == 403, await r.text()
                    assert "/team-b/db" in (await r.json())["message"]
                assert takeover.done() and d.id in backend.state.deployments
                async with session.delete(f"{backend.url}/v2/deployments/{d.id}",
                                          headers=_as("root")) as r:
                    assert r.status in (200, 202), await r.text()
        finally:
            await runner.cleanup()
    asyncio.run(main())
