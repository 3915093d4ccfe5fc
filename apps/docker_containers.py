"""Docker's container endpoints (Engine API 1.47) over the apps service's
containers (routes and the error plumbing: docker_api.py; the JSON shapes:
docker_views.py; logs, attach and resize: docker_logs.py, docker_stream.py;
exec: docker_exec.py).

    POST   /containers/create?name=          201 {"Id", "Warnings": [...]} (dockerd's for
                                             -p on the host network); 404 "No such
                                             image: REF" when no agent has it (moby's)
    GET    /containers/json?all=&limit=&filters=   newest first; limit implies all
    GET    /containers/{id}/json
    POST   /containers/{id}/start            204, 304 when running
    POST   /containers/{id}/stop?t=          204, 304 when not running
    POST   /containers/{id}/restart?t=       204
    POST   /containers/{id}/kill?signal=     204
    DELETE /containers/{id}?force=&v=        204
    POST   /containers/{id}/rename?name=     204
    POST   /containers/{id}/wait?condition=  200 at once; the body when it returns
    GET    /containers/{id}/top?ps_args=     {"Titles", "Processes"} (the agent's Top)
    GET    /containers/{id}/stats?stream=&one-shot=   (the agent's GetUsage)
    POST   /containers/prune?filters=        {"ContainersDeleted", "SpaceReclaimed"}
    *      /containers/{id}/pause|unpause|update|export|changes|archive, /commit: 501

`stop -s SIG` (the `signal` query) other than the container's StopSignal is
refused: a stop uses the run's kill policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from typing import Any

import grpc
from aiohttp import web

from juggler.apps import cluster, docker_image_views, image_presence
from juggler.apps import docker_views as views
from juggler.apps.containers import CS, Container, ContainerError
from juggler.apps.docker_api import (
    DockerBackend,
    agent_error,
    agents_view,
    backend_of,
    find,
    flag,
    int_query,
    json_response,
    total,
    until_disconnected,
)
from juggler.apps.docker_errors import DockerError
from juggler.apps.docker_images import IMAGE_CLUSTER, IMAGE_PRESENCE
from juggler.common import published_ports
from juggler.v1 import agent_pb2

STATS_INTERVAL = 1.0            # seconds between two stats samples (Docker's collector)
# Docker's container endpoints juggler does not implement, and the verb behind each.
UNIMPLEMENTED = {"pause": "pause", "unpause": "unpause", "update": "update",
                 "export": "export", "changes": "diff", "archive": "cp",
                 "checkpoints": "checkpoint"}


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise DockerError(400, f"invalid JSON: {e}") from None


async def create(request: web.Request) -> web.Response:
    if request.query.get("platform"):
        raise DockerError(400, "juggler cannot honour platform="
                               f"{request.query['platform']} (--platform): each agent runs "
                               "its own platform's image")
    body = await _body(request)
    config = views.config_from_create(body)
    await image_presence.check(request.app[IMAGE_PRESENCE], request.app[IMAGE_CLUSTER],
                               config.image)
    if config.publish_all and config.image:
        config.exposed = list(dict.fromkeys(
            [*config.exposed, *await _image_exposed(request, config.image)]))
    c = await backend_of(request).container_create(config, request.query.get("name", ""))
    warning = published_ports.discarded_warning(
        config.network, (body.get("HostConfig") or {}).get("PortBindings"))
    return json_response({"Id": c.id, "Warnings": [warning] if warning else []}, 201)


async def _image_exposed(request: web.Request, image: str) -> list[str]:
    """The image's EXPOSE ports ("80/tcp"), from an agent that holds it, for
    -P (dockerd merges the image's ExposedPorts into the container's config
    at create). [] when no agent can say now: -P then publishes the
    --expose and -p ports only."""
    cluster = request.app[IMAGE_CLUSTER]
    try:
        images = docker_image_views.merge(await cluster.images(await cluster.agents()))
        found, _ = docker_image_views.find(images, image)
    except DockerError:
        return []
    exposed = (found.config.get("config") or {}).get("ExposedPorts") or {}
    try:
        return published_ports.exposed_from_docker(exposed)
    except published_ports.PortSpecError:
        return []


async def list_containers(request: web.Request) -> web.Response:
    backend = backend_of(request)
    filters = views.parse_filters(request.query.get("filters", ""))
    limit = int_query(request, "limit") or 0
    every = flag(request, "all") or limit > 0
    now = time.time()
    chosen = [c for c in backend.containers.containers.values()
              if (every or c.status in (CS.RUNNING, CS.RESTARTING)
                  or (c.status == CS.STARTING and views.state(c) == "restarting"))
              and views.matches(c, filters)]
    chosen.sort(key=lambda c: c.created, reverse=True)
    if limit > 0:
        chosen = chosen[:limit]
    return json_response([views.summary(c, now) for c in chosen])


async def inspect(request: web.Request) -> web.Response:
    backend = backend_of(request)
    return json_response(views.inspect(find(request), backend.framework_id))


async def start(request: web.Request) -> web.Response:
    started = await backend_of(request).container_start(request.match_info["id"])
    return web.Response(status=204 if started else 304)


def _timeout(request: web.Request) -> float | None:
    t = int_query(request, "t")
    if t is None:
        t = int_query(request, "timeout")
    return None if t is None or t < 0 else float(t)


def _no_stop_signal(request: web.Request, c: Container) -> None:
    """`docker stop -s SIG`: juggler stops with the container's StopSignal
    only (the run's kill policy); another signal is refused, not ignored."""
    sig = request.query.get("signal", "")
    wanted = (c.config.stop_signal or "TERM").upper().removeprefix("SIG")
    if sig and sig.upper().removeprefix("SIG") != wanted:
        raise DockerError(400, f"juggler stops a container with its StopSignal "
                               f"(SIG{wanted}); signal={sig} cannot be honoured (use "
                               "docker kill -s, then docker stop)")


async def stop(request: web.Request) -> web.Response:
    _no_stop_signal(request, find(request))
    stopped = await backend_of(request).container_stop(request.match_info["id"],
                                                       _timeout(request))
    return web.Response(status=204 if stopped else 304)


async def restart(request: web.Request) -> web.Response:
    _no_stop_signal(request, find(request))
    await backend_of(request).container_restart(request.match_info["id"], _timeout(request))
    return web.Response(status=204)


async def kill(request: web.Request) -> web.Response:
    await backend_of(request).container_kill(request.match_info["id"],
                                             request.query.get("signal", "") or "KILL")
    return web.Response(status=204)


async def remove(request: web.Request) -> web.Response:
    if flag(request, "link"):
        raise DockerError(400, "juggler has no container links (link=1)")
    await backend_of(request).container_remove(request.match_info["id"], flag(request, "force"))
    return web.Response(status=204)


async def rename(request: web.Request) -> web.Response:
    name = request.query.get("name", "")
    if not name:
        raise DockerError(400, "new name cannot be empty")
    await backend_of(request).container_rename(request.match_info["id"], name)
    return web.Response(status=204)


async def wait(request: web.Request) -> web.StreamResponse:
    """The status line and headers go out at once (the docker CLI waits for
    them before it starts the container); the JSON when the condition holds."""
    backend = backend_of(request)
    c = find(request)
    condition = request.query.get("condition", "") or "not-running"
    if condition not in ("not-running", "next-exit", "removed"):
        raise DockerError(400, f"invalid condition: {condition!r}")
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    try:
        done, code = await until_disconnected(
            request, backend.container_wait(c.id, condition))
    except ContainerError as e:
        done, code = True, None
        body: dict[str, Any] = {"StatusCode": -1, "Error": {"Message": e.message}}
    else:
        # A start's error was that call's answer; once the container is gone
        # (--rm) it is not the wait's too (the docker CLI would print it twice).
        error = c.error if c.error and condition != "removed" else ""
        body = {"StatusCode": code, "Error": {"Message": error} if error else None}
    if done:
        with contextlib.suppress(ConnectionError):
            await response.write(json.dumps(body).encode() + b"\n")
            await response.write_eof()
    return response


def _running(c: Container) -> None:
    if c.status != CS.RUNNING or not c.agent_address:
        raise DockerError(409, f"Container {c.id} is not running")


async def top(request: web.Request) -> web.Response:
    backend = backend_of(request)
    c = find(request)
    _running(c)
    try:
        answer = await cluster.agent_call(c.agent_address, "Top", agent_pb2.TopRequest(
            task_id=c.task_id, framework_id=backend.framework_id,
            ps_args=request.query.get("ps_args", "")))
    except grpc.aio.AioRpcError as e:
        raise agent_error(c, e) from None
    return json_response({"Titles": list(answer.titles),
                          "Processes": [list(p.fields) for p in answer.processes]})


async def _usage(backend: DockerBackend, c: Container) -> agent_pb2.TaskUsage | None:
    if c.status != CS.RUNNING or not c.agent_address:
        return None
    try:
        return await cluster.agent_call(c.agent_address, "GetUsage", agent_pb2.GetUsageRequest(
            task_id=c.task_id, framework_id=backend.framework_id))
    except grpc.aio.AioRpcError as e:
        if e.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
            return None
        raise agent_error(c, e) from None


async def stats(request: web.Request) -> web.StreamResponse:
    """Docker's stats from the agent's GetUsage: one sample per second while
    streaming; with stream=0, one answer with precpu_stats from a sample a
    second earlier (one-shot=1: at once, without them)."""
    backend = backend_of(request)
    c = find(request)
    streaming = flag(request, "stream", True)
    one_shot = flag(request, "one-shot")
    view = next((a for a in await agents_view(backend) if a.info.id == c.agent_id), None)
    cpus = int(total(view, "cpus")) if view is not None else 0
    online = max(1, cpus or os.cpu_count() or 1)
    mem_total = int(total(view, "mem") * 2**20) if view is not None else 0

    def sample(usage: agent_pb2.TaskUsage | None,
               pre: agent_pb2.TaskUsage | None) -> dict[str, Any]:
        return views.stats(c, usage, pre, online_cpus=online, mem_total=mem_total,
                           now=time.time())

    usage = await _usage(backend, c)
    if not streaming:
        pre = None
        if usage is not None and not one_shot:
            await asyncio.sleep(STATS_INTERVAL)
            pre, usage = usage, await _usage(backend, c)
        return json_response(sample(usage, pre))
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    pre = None
    with contextlib.suppress(ConnectionError):
        while True:
            await response.write(json.dumps(sample(usage, pre)).encode() + b"\n")
            if usage is None or request.transport is None:
                break
            await asyncio.sleep(STATS_INTERVAL)
            pre, usage = usage, await _usage(backend, c)
        await response.write_eof()
    return response


async def prune(request: web.Request) -> web.Response:
    """POST /containers/prune: remove every container that does not run
    (created, exited, dead); `filters` label=… only."""
    backend = backend_of(request)
    filters = views.parse_filters(request.query.get("filters", ""))
    if set(filters) - {"label"}:
        raise DockerError(400, f"invalid filter '{sorted(set(filters) - {'label'})[0]}'")
    deleted = []
    for c in list(backend.containers.containers.values()):
        if c.status in (CS.CREATED, CS.EXITED, CS.DEAD) and views.matches(c, filters):
            with contextlib.suppress(ContainerError):
                await backend.container_remove(c.id)
                deleted.append(c.id)
    return json_response({"ContainersDeleted": deleted, "SpaceReclaimed": 0})


async def unimplemented(request: web.Request) -> web.Response:
    action = request.match_info.get("action", "commit")
    verb = UNIMPLEMENTED.get(action, action)
    if action != "commit" and action not in UNIMPLEMENTED:
        raise web.HTTPNotFound()
    raise DockerError(501, f"juggler does not implement docker {verb}")
