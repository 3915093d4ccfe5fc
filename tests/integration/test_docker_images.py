"""Images the Docker way on a real cluster (a master and two agents as
processes), with the real test registry (Debian's docker-registry on
loopback, no internet) also serving as the agents' Docker Hub mirror:

- `--registry-mirror`: a Hub name (`busybox:x`) comes from the mirror;
- `juggler pull -a`, `juggler images [REPOSITORY[:TAG]]` with Docker's columns;
- the Engine API's image endpoints (apps/docker_images.py) through aiohttp's
  test client, and through the real `docker` CLI on a unix socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from juggler.apps.docker_errors import DockerError
from juggler.apps.docker_images import add_image_routes, json_response, route
from juggler.apps.image_cluster import ImageCluster
from juggler.common.resources import Resources
from juggler.images.mirrors import Mirror
from juggler.images.reference import parse_name
from juggler.images.registry import NotFound, RegistryClient
from juggler.testing.daemons import Daemons
from juggler.testing.registry import CONFIGURED_CREATED, ImageBuilder, TestImages
from tests.conftest import free_port, juggler_up, needs_root
from tests.framework_client import Client, S, run, task

pytestmark = [pytest.mark.root]

API = "/v1.47"


@dataclass
class Lab:
    daemons: Daemons
    images: TestImages
    home: Path

    @property
    def registry(self) -> str:
        return self.images.registry.address

    def juggler(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "juggler.cli.main", *args],
                              capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, JUGGLER_HOME=str(self.home),
                                       JUGGLER_MASTER=self.daemons.master))

    def push(self, tag: str, name: str) -> str:
        return self.images.registry.push(self.images.layout, tag, name)


@pytest.fixture(scope="module")
def lab(test_images: TestImages, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Two agents whose Docker Hub mirror is the test registry, which holds
    Hub-style names (`library/busybox:x`, `someone/app:2`) beside its own."""
    needs_root()
    work = tmp_path_factory.mktemp("mirrored")
    lab = Lab(Daemons(work), test_images, work / "home")
    lab.push("base", "library/busybox:x")
    lab.push("sibling", "someone/app:2")
    for tag, image in (("1", "base"), ("2", "sibling")):
        lab.push(image, f"alltags:{tag}")
    try:
        lab.daemons.start_master()
        for name in ("m1", "m2"):
            lab.daemons.start_agent(name, "--registry-mirror", f"http://{lab.registry}")
        lab.daemons.wait_agents(2)
        yield lab
    finally:
        lab.daemons.close()


def rows(listing: str) -> list[list[str]]:
    """`juggler images` / `docker images` rows, split on the 3-space gaps."""
    return [[c.strip() for c in line.split("   ") if c.strip()]
            for line in listing.splitlines()[1:]]


def not_created(row: list[str]) -> list[str]:
    """A row without its CREATED cell, which moves on with the clock."""
    return row[:3] + row[4:]


# -- --registry-mirror, pull -a, images ----------------------------------------------


def test_a_docker_hub_image_comes_from_the_mirror_under_its_hub_name(lab: Lab) -> None:
    # No internet here: Docker Hub cannot answer, so the image can only come
    # from the mirror, which has it as library/busybox:x.
    r = lab.juggler("run", "--image", "busybox:x", "--", "cat", "/data/keep")
    assert (r.returncode, r.stdout) == (0, "kept\n"), r.stderr + lab.daemons.logs()
    listing = lab.juggler("images", "busybox").stdout
    assert [row[:2] for row in rows(listing)] == [["busybox", "x"]], listing
    r = lab.juggler("pull", "--agent", "m2", "docker.io/someone/app:2")
    assert r.returncode == 0, r.stderr
    assert "Status: downloaded docker.io/someone/app:2" in r.stdout


def test_a_hub_image_no_mirror_has_says_what_each_place_answered(lab: Lab) -> None:
    r = lab.juggler("pull", "--agent", "m1", "busybox:nope")
    assert r.returncode == 1
    assert "cannot reach the registry at https://registry-1.docker.io" in r.stderr, r.stderr
    assert f"tried the mirrors first: http://{lab.registry}: " in r.stderr
    assert "manifest unknown" in r.stderr


def test_juggler_up_gives_every_agent_the_mirror(lab: Lab, tmp_path: Path) -> None:
    flags = ("--agents", "1", "--no-apps", "--port", str(free_port()), "--metrics-port",
             str(free_port()), "--work-dir", str(tmp_path / "work"),
             "--registry-mirror", f"http://{lab.registry}")
    with juggler_up(*flags, home=tmp_path / "home") as (_, line):
        master = line.split("master at ", 1)[1].split()[0]
        r = subprocess.run([sys.executable, "-m", "juggler.cli.main", "pull", "busybox:x"],
                           capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, JUGGLER_HOME=str(tmp_path / "home"),
                                    JUGGLER_MASTER=master))
    assert r.returncode == 0, r.stderr
    assert "Status: downloaded docker.io/library/busybox:x" in r.stdout


def test_a_bad_mirror_url_is_refused_before_anything_starts(tmp_path: Path) -> None:
    for argv, why in ((["up", "--registry-mirror", "ftp://mirror"], "unsupported scheme"),
                      (["agent", "--master", "127.0.0.1:1", "--registry-mirror",
                        "10.0.0.5:5000"], "unsupported scheme"),
                      (["agent", "--master", "127.0.0.1:1", "--registry-mirror",
                        "http://mirror/x"], "has a path")):
        r = subprocess.run([sys.executable, "-m", "juggler.cli.main", *argv, "--work-dir",
                            str(tmp_path / argv[0])], capture_output=True, text=True,
                           timeout=60, env=dict(os.environ, JUGGLER_HOME=str(tmp_path)))
        assert r.returncode == 2, r.stderr
        assert f"juggler {argv[0]}: --registry-mirror: invalid mirror: " in r.stderr
        assert why in r.stderr
    assert not (tmp_path / "up").exists()


def test_tags_through_the_mirror_and_of_an_unknown_repository(lab: Lab) -> None:
    direct = RegistryClient()
    assert sorted(asyncio.run(direct.tags(parse_name(f"{lab.registry}/alltags")))) == ["1", "2"]
    mirrored = RegistryClient(mirrors=(Mirror("http", lab.registry),))
    assert asyncio.run(mirrored.tags(parse_name("busybox"))) == ["x"]
    with pytest.raises(NotFound, match="repository unknown"):
        asyncio.run(direct.tags(parse_name(f"{lab.registry}/nothing-here")))


def test_tags_follow_the_registrys_next_page_links() -> None:
    """Debian's registry answers every tag at once; Docker Hub pages them
    (`Link: <…?last=x&n=…>; rel="next"`): a registry that pages by one."""
    tags = ["1.0", "1.1", "latest"]
    asked: list[str] = []

    class Pages(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            asked.append(self.path)
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            last = query.get("last", [""])[0]
            rest = [t for t in tags if t > last]
            body = json.dumps({"name": "app", "tags": rest[:1]}).encode()
            self.send_response(200)
            if len(rest) > 1:
                self.send_header("Link", f'</v2/app/tags/list?n=1&last={rest[0]}>; rel="next"')
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        got = asyncio.run(RegistryClient().tags(
            parse_name(f"127.0.0.1:{server.server_address[1]}/app"), page=1))
    finally:
        server.shutdown()
        server.server_close()
    assert got == tags
    assert asked == ["/v2/app/tags/list?n=1", "/v2/app/tags/list?n=1&last=1.0",
                     "/v2/app/tags/list?n=1&last=1.1"]


def test_pull_all_tags_of_a_repository(lab: Lab) -> None:
    repo = f"{lab.registry}/alltags"
    r = lab.juggler("pull", "-a", "--agent", "m1", repo)
    assert r.returncode == 0, r.stderr
    assert "1: Pulling from alltags" in r.stderr and "2: Pulling from alltags" in r.stderr
    assert f"Status: downloaded {repo}:1" in r.stdout
    assert f"Status: downloaded {repo}:2" in r.stdout
    listing = lab.juggler("images", repo).stdout
    assert sorted(row[:2] for row in rows(listing)) == [[repo, "1"], [repo, "2"]], listing
    # Through the mirror, for a Docker Hub name:
    r = lab.juggler("pull", "-a", "--agent", "m1", "busybox")
    assert r.returncode == 0 and "Status: downloaded docker.io/library/busybox:x" in r.stdout
    for bad in (f"{repo}:1", f"{repo}@sha256:{'0' * 64}"):
        r = lab.juggler("pull", "-a", bad)
        assert r.returncode == 1
        assert "tag can't be used with --all-tags/-a" in r.stderr, r.stderr


def test_images_prints_dockers_columns_filters_and_quiet_ids(lab: Lab) -> None:
    ref = lab.images.refs["configured"]
    assert lab.juggler("pull", ref).returncode == 0
    listing = lab.juggler("images").stdout
    header = listing.splitlines()[0]
    assert [c.strip() for c in header.split("   ") if c.strip()] == [
        "REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
    mine = [row for row in rows(listing) if row[0] == f"{lab.registry}/configured"]
    assert len(mine) == 1, listing  # on both agents, listed once
    _, tag, image_id, created, size = mine[0]
    # The image's own creation time (its config's `created`), as Docker shows,
    # not when it was pulled a moment ago.
    assert tag == "1" and len(image_id) == 12 and re.fullmatch(r"\d+ years ago", created), \
        (created, CONFIGURED_CREATED)
    assert size.endswith(("B", "kB", "MB"))
    only = rows(lab.juggler("images", f"{lab.registry}/configured:1").stdout)
    assert [not_created(row) for row in only] == [not_created(mine[0])]
    assert rows(lab.juggler("images", f"{lab.registry}/configured:2").stdout) == []
    quiet = lab.juggler("images", "-q", f"{lab.registry}/configured").stdout.split()
    assert quiet == [image_id]
    full = lab.juggler("images", "-q", "--no-trunc", f"{lab.registry}/configured").stdout
    assert full.strip().startswith(f"sha256:{image_id}") and len(full.strip()) == 71
    assert lab.juggler("images", "-a", "--tree").returncode == 0


# -- the Engine API's image endpoints --------------------------------------------------


def docker_app(cluster: ImageCluster) -> web.Application:
    """A minimal Docker API server around the image routes: what apps/docker_api.py
    does for real (DockerError → Docker's body, Api-Version, /_ping, /version)."""

    @web.middleware
    async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)  # type: ignore[no-any-return]
        except DockerError as e:
            return json_response(e.body(), status=e.status)

    async def api_version(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Api-Version"] = "1.47"

    async def ping(request: web.Request) -> web.Response:
        return web.Response(text="OK", headers={"OSType": "linux"})

    async def version(request: web.Request) -> web.Response:
        return json_response({"Version": "28.0.0-juggler", "ApiVersion": "1.47",
                                  "MinAPIVersion": "1.24", "Os": "linux", "Arch": "amd64",
                                  "KernelVersion": os.uname().release, "Components": []})

    app = web.Application(middlewares=[errors])
    app.on_response_prepare.append(api_version)
    route(app, "GET", "/_ping", ping)
    route(app, "GET", "/version", version)
    add_image_routes(app, cluster)
    return app


@contextlib.asynccontextmanager
async def api(lab: Lab) -> AsyncIterator[TestClient]:
    client = TestClient(TestServer(docker_app(ImageCluster(lab.daemons.master))))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def pull(client: TestClient, query: str) -> tuple[int, list[dict[str, Any]]]:
    resp = await client.post(f"{API}/images/create?{query}")
    text = await resp.text()
    if resp.status != 200:
        return resp.status, [json.loads(text)]
    return 200, [json.loads(line) for line in text.splitlines() if line.strip()]


def test_api_pull_streams_dockers_progress_on_every_agent(lab: Lab) -> None:
    repo = f"{lab.registry}/sibling"

    async def scenario() -> None:
        async with api(lab) as client:
            status, msgs = await pull(client, f"fromImage={repo}&tag=1")
            assert status == 200, msgs
            assert msgs[0] == {"status": "Pulling from sibling", "id": "1"}
            layers = [m for m in msgs if m.get("status") in ("Pull complete", "Already exists")]
            assert {m["id"].split(": ")[0] for m in layers} == {"m1", "m2"}
            assert all(len(m["id"].split(": ")[1]) == 12 for m in layers)
            assert any(m.get("status") == "Downloading" and m["progressDetail"]["total"] > 0
                       for m in msgs) or all(m["status"] == "Already exists" for m in layers)
            assert msgs[-2]["status"].startswith("Digest: sha256:")
            assert msgs[-1] == {"status": f"Status: Downloaded newer image for {repo}:1"}
            status, msgs = await pull(client, f"fromImage={repo}&tag=1&agent=m2")
            assert msgs[-1] == {"status": f"Status: Image is up to date for {repo}:1"}
            # An unknown tag fails before any progress: an HTTP error, as Docker's.
            status, msgs = await pull(client, f"fromImage={repo}&tag=nope")
            assert status == 404 and "manifest unknown" in msgs[0]["message"], msgs
            status, msgs = await pull(client, "fromImage=Bad&tag=1")
            assert status == 400 and msgs[0]["message"].startswith("invalid reference format")
            # A Docker Hub name, through the agents' mirror.
            status, msgs = await pull(client, "fromImage=busybox&tag=x&agent=m1")
            assert msgs[0] == {"status": "Pulling from library/busybox", "id": "x"}, msgs
            assert msgs[-1]["status"].endswith(" for busybox:x")
            # No tag: every tag, as `docker pull -a`.
            status, msgs = await pull(client, f"fromImage={lab.registry}/alltags&agent=m2")
            assert sorted(m["id"] for m in msgs if m["status"].startswith("Pulling from")) == [
                "1", "2"]
            assert msgs[-1]["status"].endswith(f" for {lab.registry}/alltags")

    asyncio.run(scenario())


def test_api_lists_inspects_and_deletes_images(lab: Lab) -> None:
    ref = f"{lab.registry}/configured:1"

    async def scenario() -> None:
        async with api(lab) as client:
            status, msgs = await pull(client, f"fromImage={lab.registry}/configured&tag=1")
            assert status == 200 and "error" not in msgs[-1], msgs
            resp = await client.get(f"{API}/images/json")
            assert resp.headers["Api-Version"] == "1.47"
            listed = [i for i in await resp.json() if ref in i["RepoTags"]]
            assert len(listed) == 1  # on two agents, listed once
            summary = listed[0]
            assert summary["Id"].startswith("sha256:") and summary["ParentId"] == ""
            assert summary["RepoDigests"][0].startswith(f"{lab.registry}/configured@sha256:")
            # the config's creation time, in Unix seconds (2021-06-01T12:00:00Z)
            assert summary["Created"] == 1622548800 and summary["Size"] > 0
            assert (summary["SharedSize"], summary["Containers"]) == (-1, 0)
            filters = json.dumps({"reference": {f"{lab.registry}/configured": True}})
            resp = await client.get("/images/json", params={"filters": filters})
            assert [i["RepoTags"] for i in await resp.json()] == [[ref]]

            resp = await client.get(f"{API}/images/{ref}/json")
            got = await resp.json()
            assert got["Id"] == summary["Id"] and got["RepoTags"] == [ref]
            assert got["RootFS"]["Type"] == "layers" and len(got["RootFS"]["Layers"]) == 2
            assert got["Os"] == "linux" and got["Created"] == CONFIGURED_CREATED
            assert got["Config"]["WorkingDir"] == "/srv" and got["Config"]["User"] == "nobody"
            assert got["Config"]["Cmd"] == ["sh", "-c", "echo $GREETING; pwd; id -u"]
            assert "GREETING=hello from the image" in got["Config"]["Env"]
            by_id = await (await client.get(f"/images/{summary['Id'][7:19]}/json")).json()
            assert by_id["Id"] == summary["Id"]

            resp = await client.delete(f"{API}/images/{ref}")
            assert resp.status == 200
            answer = await resp.json()
            assert answer[0] == {"Untagged": ref}
            assert {"Deleted": summary["Id"]} in answer
            resp = await client.get(f"{API}/images/{ref}/json")
            assert (resp.status, await resp.json()) == (404, {"message": f"No such image: {ref}"})
            resp = await client.delete(f"{API}/images/{ref}")
            assert resp.status == 404

    asyncio.run(scenario())


def test_api_refuses_to_delete_an_image_a_container_uses(lab: Lab) -> None:
    # An image of its own: one that also has other names is just untagged (Docker's rule).
    builder = ImageBuilder(lab.images.layout)
    builder.copy("base", "inuse")
    builder.add_layer("inuse", lambda rootfs: (rootfs / "inuse").write_text("in use\n"))
    ref = lab.push("inuse", "inuse:1")

    async def scenario() -> None:
        async with Client(lab.daemons.master, "img-inuse") as c, api(lab) as client:
            offer = await c.offer(Resources({"cpus": 0.1, "mem": 32}))
            t = task("img-inuse", 0.1, 32, "sh", "-c", "while :; do sleep 0.2; done")
            t.container.image = ref
            await c.fw.launch([offer.id], [t])
            await c.until("img-inuse", S.TASK_RUNNING)

            resp = await client.delete(f"/images/{ref}")
            assert resp.status == 409
            message = (await resp.json())["message"]
            assert message.startswith(f'conflict: unable to remove repository reference "{ref}" '
                                      "(must force) - a container on "), message
            image_id = (await (await client.get(f"/images/{ref}/json")).json())["Id"]
            resp = await client.delete(f"/images/{image_id}", params={"force": "1"})
            assert resp.status == 409
            assert "(cannot be forced) - image is being used by running container" in (
                await resp.json())["message"]
            resp = await client.delete(f"/images/{ref}", params={"force": "1"})
            assert (resp.status, await resp.json()) == (200, [{"Untagged": ref}])
            await c.fw.kill("img-inuse")
            await c.until("img-inuse", S.TASK_KILLED)

    run(scenario)


# -- the real docker CLI ---------------------------------------------------------------


def test_the_docker_cli_pulls_lists_inspects_and_removes(lab: Lab, tmp_path: Path) -> None:
    if shutil.which("docker") is None:
        pytest.skip("requires the docker CLI")
    sock = tmp_path / "docker.sock"
    ref = f"{lab.registry}/multi:1"
    env = dict(os.environ, DOCKER_HOST=f"unix://{sock}", DOCKER_CONFIG=str(tmp_path / "cfg"))

    async def docker(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            "docker", *args, env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL)
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        return proc.returncode or 0, out.decode(), err.decode()

    async def scenario() -> None:
        runner = web.AppRunner(docker_app(ImageCluster(lab.daemons.master)))
        await runner.setup()
        await web.UnixSite(runner, str(sock)).start()
        try:
            code, out, err = await docker("pull", ref)
            assert code == 0, out + err
            assert "1: Pulling from multi" in out
            assert f"Status: Downloaded newer image for {ref}" in out
            assert out.rstrip().endswith(ref)
            code, out, err = await docker("pull", f"{lab.registry}/multi:nope")
            assert code == 1 and err.startswith("Error response from daemon: "), err
            assert "manifest unknown" in err and '"message"' not in err
            code, out, err = await docker("images")
            assert code == 0, err
            assert out.splitlines()[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID",
                                                   "CREATED", "SIZE"]
            mine = [r for r in rows(out) if r[0] == f"{lab.registry}/multi"]
            assert len(mine) == 1 and mine[0][1] == "1" and mine[0][3].endswith(" ago"), out
            juggler_rows = rows(await asyncio.to_thread(
                lambda: lab.juggler("images", f"{lab.registry}/multi").stdout))
            # The same table as Docker's, cell for cell (the age may have moved on).
            assert [not_created(r) for r in juggler_rows] == [not_created(r) for r in mine]
            assert juggler_rows[0][3].endswith(" ago")
            code, out, err = await docker("image", "inspect", "--format",
                                          "{{.Os}} {{len .RootFS.Layers}}", ref)
            assert (code, out.strip()) == (0, "linux 3"), err
            code, out, err = await docker("rmi", ref)
            assert code == 0, err
            assert f"Untagged: {ref}" in out and "Deleted: sha256:" in out
            code, out, err = await docker("rmi", ref)
            assert (code, err.strip()) == (1, f"Error response from daemon: No such image: {ref}")
        finally:
            await runner.cleanup()

    asyncio.run(scenario())
