"""The master's HTTP port (--metrics-port, default 5055): metrics, the web UI
and its JSON, and Prometheus service discovery. An aiohttp server on the
master's own asyncio loop, so on the leader it reads MasterState directly.

    GET /metrics               Prometheus text format of the default registry
                               (juggler_master_is_leader says whether this one leads)
    GET /                      the web UI (master/ui/: static HTML, CSS, JS; no build step)
    GET /ui/{file}             its files
    GET /api/state             agents, frameworks, tasks, resources, masters
                               (master/ui_views.py state_json)
    GET /api/apps              every framework with a webui_url that answers the
                               Marathon-style REST API: its apps and deployments
    GET /api/tasks/{id}/logs   ?framework=ID&stream=stdout|stderr&tail=N: the
                               task's output, read from its agent (Agent.Logs), as text
    GET /prometheus/targets    Prometheus HTTP SD (master/http_sd.py; an apps
                               service once seen serving /metrics stays listed
                               while its framework is registered)

Following the leader: a standby answers /api/* and /prometheus/targets with
the leader's state, read through the leader's Operator API (GetState), and
says which master answered ("master.answered_by"); 503 with {"error": ...}
while no leader is known or it does not answer. /metrics is always this
master's own. Errors: 404 {"error"} for an unknown task, 502 {"error"} when
its agent cannot give its output; /api/apps reports each service's failure
in that service's "error" rather than failing the page.

The apps and deployments are fetched by the master, server-side, from the
URL a framework registered (FrameworkInfo.webui_url, http(s) only), with a
short timeout: the browser needs no access to the apps service.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import grpc
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from juggler.common import logs, servers
from juggler.master import http_sd, ui_views, views
from juggler.v1 import agent_pb2, agent_pb2_grpc, operator_pb2, operator_pb2_grpc

if TYPE_CHECKING:
    from juggler.master.server import Master

log = logs.get("juggler.master.http")

UI = Path(__file__).resolve().parent / "ui"
LEADER_TIMEOUT = 5.0    # seconds to wait for the leader's GetState
APPS_TIMEOUT = 3.0      # seconds to wait for an apps service's REST API
LOGS_TIMEOUT = 10.0     # seconds to wait for an agent's Logs
MAX_LOG_BYTES = 4 << 20  # at most this much of a task's output per request
MAX_TAIL = 100_000
STATE_TTL = 1.0          # seconds one state answers every request


class Unavailable(Exception):
    """No state to answer with: no leader known, or it did not answer."""


class MasterHttp:
    """The HTTP server of one master. start() binds it (port 0 picks a free
    one) and returns the port; raises OSError when it cannot bind."""

    def __init__(self, master: Master) -> None:
        self.m = master
        self._runner: web.AppRunner | None = None
        # (when, state): one state serves every request for STATE_TTL seconds,
        # however many browsers refresh at once.
        self._cached: tuple[float, operator_pb2.GetStateResponse] | None = None
        # (framework id, webui_url) of the registered frameworks seen serving
        # /metrics: listed while registered, answering or not (http_sd.py).
        self._serving_metrics: set[http_sd.Framework] = set()

    def app(self) -> web.Application:
        app = web.Application()
        r = app.router
        r.add_get("/metrics", self.metrics)
        r.add_get("/", self.index)
        r.add_static("/ui/", UI)
        r.add_get("/api/state", self.api_state)
        r.add_get("/api/apps", self.api_apps)
        r.add_get("/api/tasks/{task_id}/logs", self.api_task_logs)
        r.add_get("/prometheus/targets", self.prometheus_targets)
        return app

    async def start(self, host: str, port: int) -> int:
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        return int(runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- where the state comes from -------------------------------------------------------------
    def masters(self) -> list[str]:
        """Every master's gRPC address (the election's succession, leader
        first), or this one's alone."""
        election = self.m.election
        found = election.succession() if election is not None else []
        return found or [self.m.address]

    async def state(self) -> operator_pb2.GetStateResponse:
        """This master's state when it leads, else the leader's, at most
        STATE_TTL seconds old. Raises Unavailable when there is no leader to
        ask or it does not answer."""
        now = asyncio.get_running_loop().time()
        if self._cached is not None and now - self._cached[0] < STATE_TTL:
            return self._cached[1]
        state = await self._fresh_state()
        self._cached = (now, state)
        return state

    async def _fresh_state(self) -> operator_pb2.GetStateResponse:
        m = self.m
        if m.leading:
            return views.state_view(m.state, operator_pb2.GetLeaderResponse(
                address=m.address, self=m.address, is_leader=True))
        leader = m.leader_address()
        if not leader or leader == m.address:
            raise Unavailable("no leading master is known yet (an election may be under way)")
        try:
            async with servers.channel(leader) as channel:
                return await operator_pb2_grpc.OperatorStub(channel).GetState(
                    operator_pb2.GetStateRequest(), timeout=LEADER_TIMEOUT)
        except grpc.aio.AioRpcError as e:
            raise Unavailable(f"the leading master {leader} did not answer: "
                              f"{e.code().name} {e.details()}") from None

    def _unavailable(self, e: Unavailable) -> web.Response:
        return web.json_response(
            {"error": str(e), "master": {"self": self.m.address, "is_leader": False,
                                         "leader": self.m.leader_address() or "",
                                         "masters": self.masters(), "answered_by": ""}},
            status=503)

    # -- handlers -------------------------------------------------------------------------------
    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(REGISTRY),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(UI / "index.html")

    async def api_state(self, request: web.Request) -> web.Response:
        try:
            state = await self.state()
        except Unavailable as e:
            return self._unavailable(e)
        return web.json_response(ui_views.state_json(state, self_address=self.m.address,
                                                     masters=self.masters()))

    async def api_apps(self, request: web.Request) -> web.Response:
        try:
            state = await self.state()
        except Unavailable as e:
            return self._unavailable(e)
        services = [f for f in state.frameworks
                    if ui_views.web_url(f.info.webui_url)
                    and f.state != operator_pb2.FRAMEWORK_TORN_DOWN]
        async with aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=APPS_TIMEOUT)) as session:
            found = await asyncio.gather(*(_apps_of(session, f.info.webui_url)
                                           for f in services))
        return web.json_response({"services": [
            {"framework_id": f.info.id, "name": f.info.name, **one}
            for f, one in zip(services, found, strict=True)]})

    async def api_task_logs(self, request: web.Request) -> web.Response:
        task_id = request.match_info["task_id"]
        framework_id = request.query.get("framework", "")
        stream = request.query.get("stream", "stdout")
        tail_text = request.query.get("tail", "0")
        if stream not in ("stdout", "stderr") or not tail_text.isdigit():
            return web.json_response(
                {"error": "stream must be stdout or stderr, tail a number of lines"},
                status=400)
        try:
            state = await self.state()
        except Unavailable as e:
            return self._unavailable(e)
        task = next((t for t in [*state.tasks, *reversed(state.completed_tasks)]
                     if t.info.task_id == task_id
                     and framework_id in ("", t.framework_id)), None)
        if task is None or not task.agent_address:
            return web.json_response({"error": f"no task {task_id!r} is known"
                                      + (f" in framework {framework_id}" if framework_id else "")
                                      + " (or it was never on an agent)"}, status=404)
        try:
            text = await _task_output(task, stream, min(int(tail_text), MAX_TAIL))
        except grpc.aio.AioRpcError as e:
            return web.json_response(
                {"error": f"agent {task.agent_hostname or task.agent_id} "
                          f"({task.agent_address}) did not give the task's {stream}: "
                          f"{e.code().name} {e.details()}"}, status=502)
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    async def prometheus_targets(self, request: web.Request) -> web.Response:
        masters = http_sd.master_http_addresses(self.masters(), self.m.address,
                                                self.m.metrics_port)
        try:
            state: operator_pb2.GetStateResponse | None = await self.state()
        except Unavailable as e:
            log.info("service discovery without the leader's state", error=str(e))
            state = None
        agents = [a.info.metrics_address for a in state.agents
                  if a.state != operator_pb2.AGENT_GONE] if state else []
        if state is None:  # no news of the frameworks: those known to serve stay
            return web.json_response(http_sd.targets(
                masters, agents, [url for _, url in sorted(self._serving_metrics)]))
        registered = [(f.info.id, f.info.webui_url) for f in state.frameworks
                      if f.state != operator_pb2.FRAMEWORK_TORN_DOWN]
        probe = http_sd.to_probe(registered, self._serving_metrics)
        async with aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=APPS_TIMEOUT)) as session:
            serve = await asyncio.gather(*(_serves_metrics(session, u) for _, u in probe))
        answered = {one for one, yes in zip(probe, serve, strict=True) if yes}
        self._serving_metrics = http_sd.apps_serving(registered, self._serving_metrics,
                                                     answered)
        apps = [url for _, url in sorted(self._serving_metrics)]
        return web.json_response(http_sd.targets(masters, agents, apps))


async def _get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url, headers={"Accept": "application/json"}) as response:
        if response.status != 200:
            raise ValueError(f"GET {url}: HTTP {response.status}")
        return await response.json(content_type=None)


async def _apps_of(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    """One service's ui_views.apps_json, or {"url", "apps": [], "deployments":
    [], "error"} when it cannot be read."""
    base = url.rstrip("/")
    try:
        apps, deployments = await asyncio.gather(
            _get_json(session, f"{base}/v2/apps?embed=apps.counts"),
            _get_json(session, f"{base}/v2/deployments"))
        return {**ui_views.apps_json(url, apps, deployments), "error": ""}
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:
        return {"url": url, "apps": [], "deployments": [],
                "error": f"{type(e).__name__}: {e}" if str(e) else type(e).__name__}


async def _serves_metrics(session: aiohttp.ClientSession, url: str) -> bool:
    if not http_sd.url_target(url):
        return False
    try:
        async with session.get(f"{url.rstrip('/')}/metrics") as response:
            return response.status == 200 and response.content_type == "text/plain"
    except (aiohttp.ClientError, TimeoutError):
        return False


async def _task_output(task: operator_pb2.TaskView, stream: str, tail: int) -> str:
    """The task's `stream`, its last `tail` lines (all when 0), at most
    MAX_LOG_BYTES (the latest). Raises grpc.aio.AioRpcError."""
    request = agent_pb2.LogsRequest(task_id=task.info.task_id, framework_id=task.framework_id,
                                    follow=False, tail=tail, stdout=stream == "stdout",
                                    stderr=stream == "stderr")
    data = bytearray()
    async with servers.channel(task.agent_address) as channel:
        async for chunk in agent_pb2_grpc.AgentStub(channel).Logs(request,
                                                                  timeout=LOGS_TIMEOUT):
            data += chunk.data
            if len(data) > 2 * MAX_LOG_BYTES:
                del data[:-MAX_LOG_BYTES]
    return bytes(data[-MAX_LOG_BYTES:]).decode("utf-8", errors="replace")
