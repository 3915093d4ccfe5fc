"""About this instance, for the REST API (routes in rest.py): /v2/info,
/v2/leader, /ping and /metrics, the paths a standby answers itself
(rest_proxy.LOCAL_PATHS).
"""

from __future__ import annotations

from importlib import metadata
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from juggler.apps.rest_backend import Reply, _backend
from juggler.apps.state import REFUSE_IDLE

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def _host_port(url: str | None) -> str | None:
    """"http://host:port" → "host:port" (Marathon's leader form)."""
    if not url:
        return None
    parts = urlsplit(url if "//" in url else "//" + url)
    return parts.netloc or None


def _juggler_version() -> str:
    try:
        return metadata.version("juggler")
    except metadata.PackageNotFoundError:
        return "unknown"


async def get_info(request: web.Request) -> web.Response:
    """GET /v2/info: Marathon's shape (every key one marathon.models.MarathonInfo
    knows), with juggler's facts in Marathon's fields."""
    backend = _backend(request)
    facts = backend.info()
    url = urlsplit(backend.url or "")
    config: dict[str, Any] = {
        "master": facts.get("master"),
        "framework_name": facts.get("frameworkName"),
        "mesos_role": facts.get("role"),
        "failover_timeout": facts.get("failoverTimeout"),
        "ha": facts.get("store") == "etcd",
        "hostname": url.hostname,
        "webui_url": backend.url or None,
        "checkpoint": True,
        "decline_offer_duration": int(REFUSE_IDLE * 1000),
        "features": [],
    }
    return web.json_response({
        "name": facts.get("name") or "juggler",
        "version": facts.get("version") or _juggler_version(),
        "buildref": None,
        "elected": bool(backend.leading),
        "leader": _host_port(backend.leader_url()),
        "frameworkId": backend.framework_id or None,
        "marathon_config": config,
        "zookeeper_config": {},
        "http_config": {"http_port": url.port, "https_port": None},
        "event_subscriber": None,
    })


async def get_leader(request: web.Request) -> web.Response:
    """GET /v2/leader: {"leader": "host:port"}; 404 {"message": "There is no
    leader"}."""
    leader = _host_port(_backend(request).leader_url())
    if leader is None:
        raise Reply(404, {"message": "There is no leader"})
    return web.json_response({"leader": leader})


async def ping(request: web.Request) -> web.Response:
    return web.Response(text="pong")


async def get_metrics(request: web.Request) -> web.Response:
    return web.Response(body=_backend(request).metrics(),
                        headers={"Content-Type": PROMETHEUS_TEXT})
