"""`-p`, `-P`, `--expose` and `--network`: the real `docker` client (28) is the
oracle. For a bad spec both CLIs refuse before any request, with the same
words and exit 125; for a good one both send the same ExposedPorts,
PortBindings, PublishAllPorts and NetworkMode to a Docker API (a recording
stand-in on a unix socket that answers /_ping and refuses the create).
No cluster, no root: each case runs `docker` once and juggler's CLI in-process."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from juggler.cli.main import main
from tests.unit.test_publish_flags import DOCKER_REFUSES

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="requires the docker CLI")


class Recorder:
    """A Docker API that records create bodies and refuses them (500)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.bodies: list[dict[str, Any]] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def ping(_: web.Request) -> web.Response:
            return web.Response(text="OK", headers={"Api-Version": "1.47"})

        async def create(request: web.Request) -> web.Response:
            self.bodies.append(await request.json())
            return web.json_response({"message": "recorded"}, status=500)

        async def other(request: web.Request) -> web.Response:
            return web.json_response({"message": f"not here: {request.path}"}, status=404)

        app = web.Application()
        app.router.add_get("/_ping", ping)
        app.router.add_post("/v1.47/containers/create", create)
        app.router.add_post("/containers/create", create)
        app.router.add_route("*", "/{tail:.*}", other)
        runner = web.AppRunner(app)
        self.loop.run_until_complete(runner.setup())
        self.loop.run_until_complete(web.UnixSite(runner, str(self.path)).start())
        self.ready.set()
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(runner.cleanup())

    def __enter__(self) -> Recorder:
        self.thread.start()
        assert self.ready.wait(10), "the recording Docker API did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def last(self) -> dict[str, Any]:
        assert self.bodies, "no create request arrived"
        return self.bodies.pop()


@pytest.fixture(scope="module")
def recorder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorder]:
    with Recorder(tmp_path_factory.mktemp("docker-api") / "docker.sock") as r:
        yield r


def _env(tmp: Path, host: str) -> dict[str, str]:
    return dict(os.environ, DOCKER_HOST=host, JUGGLER_DOCKER=host,
                JUGGLER_MASTER="127.0.0.1:1", JUGGLER_HOME=str(tmp / "home"),
                DOCKER_CONFIG=str(tmp / "docker-config"))


def _docker(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=30,
                          env=env)


def _juggler(env: dict[str, str], capsys: pytest.CaptureFixture[str],
             monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    """`juggler ARGS` in this process (the CLI's own main; no interpreter
    start per case): (exit code, stderr)."""
    for name in ("DOCKER_HOST", "JUGGLER_DOCKER", "JUGGLER_MASTER", "JUGGLER_HOME"):
        monkeypatch.setenv(name, env[name])
    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().err


BAD_EXPOSE = ["abc", "1:2", "99999", "5-3"]


@pytest.mark.parametrize(("flag", "spec"), [("-p", spec) for spec, _ in DOCKER_REFUSES]
                         + [("--expose", spec) for spec in BAD_EXPOSE])
def test_a_bad_spec_is_refused_with_docker_s_words(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        flag: str, spec: str) -> None:
    env = _env(tmp_path, f"unix://{tmp_path}/nothing.sock")
    docker = _docker(env, "run", flag, spec, "busybox", "true")
    code, said_by_juggler = _juggler(env, capsys, monkeypatch, "run", flag, spec, "busybox",
                                     "true")
    said = docker.stderr.strip().splitlines()[0]
    assert said.startswith("docker: ") and "Cannot connect" not in said, docker.stderr
    assert code == docker.returncode == 125
    assert said_by_juggler.strip() == "juggler: " + said.removeprefix("docker: ")


GOOD = [
    ["-p", "8080:80"],
    ["-p", "80"],
    ["-p", "0.0.0.0:8080:80/udp"],
    ["-p", "::80", "-p", ":81"],
    ["-p", "8080:80", "-p", "8080:80/udp", "-p", "8081:80"],
    ["-p", "8080-8082:80-82"],
    ["-P"],
    ["-P", "--expose", "90", "--expose", "100-101/udp"],
    ["-p", "80:80", "--network", "host"],
    ["-p", "80", "--network", "bridge"],
]


@pytest.mark.parametrize("flags", GOOD, ids=" ".join)
def test_a_good_spec_sends_what_docker_sends(
        tmp_path: Path, recorder: Recorder, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, flags: list[str]) -> None:
    env = _env(tmp_path, f"unix://{recorder.path}")
    _docker(env, "run", "-d", *flags, "busybox", "true")
    theirs = recorder.last()
    code, said = _juggler(env, capsys, monkeypatch, "run", "-d", *flags, "busybox", "true")
    assert code == 125 and "recorded" in said, said
    ours = recorder.last()

    def ports(body: dict[str, Any]) -> dict[str, Any]:
        host = body.get("HostConfig") or {}
        return {"ExposedPorts": body.get("ExposedPorts") or {},
                "PortBindings": host.get("PortBindings") or {},
                "PublishAllPorts": bool(host.get("PublishAllPorts")),
                # the docker CLI says "default" for no --network; juggler leaves it out
                "NetworkMode": host.get("NetworkMode") or "default"}

    assert json.dumps(ports(ours), sort_keys=True) == json.dumps(ports(theirs), sort_keys=True)
