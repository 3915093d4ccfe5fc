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

Access (when the master has rules, --acls): /api/* and /prometheus/targets
need `view_cluster` (a task's logs also `access_sandboxes` on its
framework's principal); the principal is a verified client certificate's
common name, else a bearer token of --tokens (common/principals.py). A
refused caller without a principal gets 401 (WWW-Authenticate: Bearer; the
UI then asks for a token once and keeps it in localStorage), others 403
{"error": "permission denied: … (rule …)"}. The UI's page and files and
/metrics stay open (they hold no cluster state). The log links the UI shows
are plain links: under rules a browser opens them without the token (401);
`juggler logs` is the way then.

The apps and deployments are fetched by the master, server-side, from the
URL a framework registered (FrameworkInfo.webui_url, http(s) only), with a
short timeout: the browser needs no access to the apps service. The master
calls it as itself (its client certificate under TLS), never with the
browser's token: a framework registers any URL it likes. So, under rules,
/api/apps also needs `apps_read` on "/" (every app: the master answers with
its own rights, it cannot filter by the caller's), and under TLS the master
fetches only from frameworks whose principal (FrameworkInfo.principal, set
by the master from the subscriber's certificate) is APPS_PRINCIPAL, the
principal of the apps services' certificates (`juggler up --tls`): another
framework's URL is never called with the master's certificate.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import grpc
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from juggler.common import logs, principals, servers, tls
from juggler.common.access import AccessControl, Denied
from juggler.common.tokens import INVALID, Tokens
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
APPS_PRINCIPAL = "apps"  # the apps services' certificates' principal (cli/up_tls.py)
PRINCIPAL = web.RequestKey("principal", str)   # set by _access when rules are on


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
        # Bearer tokens of /api/* (--tokens); the rules are the master's own
        # (master.access, --acls). Raises TokensError for a bad file.
        config = getattr(master, "config", None)
        self.tokens = Tokens.from_file(getattr(config, "tokens", "") or None)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._access])
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
        # HTTPS when the master has TLS (client certificates verified when
        # presented; common/tls.py).
        cfg = tls.current()
        site = web.TCPSite(runner, host, port,
                           ssl_context=tls.server_ssl_context(cfg) if cfg else None)
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

    # -- who may ask ----------------------------------------------------------------------------
    @web.middleware
    async def _access(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """view_cluster on /api/* and /prometheus/targets when the master has
        rules; the UI's page and files and /metrics stay open. Principal:
        client certificate, else bearer token (common/principals.py). 401
        (WWW-Authenticate: Bearer) for a refused caller without a principal,
        403 {"error": "permission denied: … (rule …)"} otherwise."""
        rules: AccessControl | None = getattr(self.m, "access", None)
        guarded = request.path.startswith("/api/") or request.path == "/prometheus/targets"
        if rules is None or not rules.enabled or not guarded:
            return await handler(request)
        tokens = self.tokens
        principal = principals.http_principal(
            request, tokens.lookup if tokens is not None else lambda _token: None)
        try:
            rules.require("view_cluster", principal)
        except Denied as e:
            return _refused(request, principal, e)
        request[PRINCIPAL] = principal
        return await handler(request)

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
                # The leader this standby names may be frozen (its lease has not
                # run out yet): say so in a second rather than after LEADER_TIMEOUT.
                if not await servers.connects(channel):
                    raise Unavailable(f"the leading master {leader} does not answer "
                                      "(an election may be under way)")
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
        rules: AccessControl | None = getattr(self.m, "access", None)
        if rules is not None and rules.enabled:
            try:
                rules.require("apps_read", request.get(PRINCIPAL), "/")
            except Denied as e:
                return _refused(request, request.get(PRINCIPAL), e)
        try:
            state = await self.state()
        except Unavailable as e:
            return self._unavailable(e)
        services = [f for f in state.frameworks
                    if apps_service(f.info, tls.current() is not None)
                    and f.state != operator_pb2.FRAMEWORK_TORN_DOWN]
        async with aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=APPS_TIMEOUT),
                connector=aiohttp.TCPConnector(ssl=tls.client_ssl())) as session:
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
        rules: AccessControl | None = getattr(self.m, "access", None)
        if task is not None and rules is not None and rules.enabled:
            owner = next((f.info.principal for f in state.frameworks
                          if f.info.id == task.framework_id), "")
            try:
                rules.require("access_sandboxes", request.get(PRINCIPAL), owner)
            except Denied as e:
                return _refused(request, request.get(PRINCIPAL), e)
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
                timeout=aiohttp.ClientTimeout(total=APPS_TIMEOUT),
                connector=aiohttp.TCPConnector(ssl=tls.client_ssl())) as session:
            serve = await asyncio.gather(*(_serves_metrics(session, u) for _, u in probe))
        answered = {one for one, yes in zip(probe, serve, strict=True) if yes}
        self._serving_metrics = http_sd.apps_serving(registered, self._serving_metrics,
                                                     answered)
        apps = [url for _, url in sorted(self._serving_metrics)]
        return web.json_response(http_sd.targets(masters, agents, apps))


def apps_service(info: Any, with_tls: bool) -> bool:
    """Whether /api/apps fetches from the framework of `info` (a
    FrameworkInfo): an http(s) webui_url and, when the master has TLS (it
    would present its certificate), the principal APPS_PRINCIPAL."""
    if not ui_views.web_url(info.webui_url):
        return False
    return not with_tls or info.principal == APPS_PRINCIPAL


def _refused(request: web.Request, principal: str | None, e: Denied) -> web.Response:
    if principal is None:
        presented = principals.token_of(request.headers.get("Authorization", "")) is not None
        return web.json_response(
            {"error": "authentication required: "
                      + (INVALID if presented else
                         "send a client certificate or Authorization: Bearer TOKEN"
                         f" ({e.message})")},
            status=401, headers={"WWW-Authenticate": 'Bearer realm="juggler"'
                                 + (', error="invalid_token"' if presented else "")})
    return web.json_response({"error": e.message}, status=403)


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
