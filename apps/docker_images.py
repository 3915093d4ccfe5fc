"""The image half of the Docker Engine API, as aiohttp handlers over the
cluster's agents (apps/image_cluster.py); the server, the other routes and
the error plumbing are apps/docker_api.py's.

    GET    /images/json              ImageSummary list, merged over the agents
    POST   /images/create            pull on every agent (`agent=` one), streaming
                                     Docker's JSON progress messages
    GET    /images/{name}/json       ImageInspect
    DELETE /images/{name}            [{"Untagged": …}, {"Deleted": …}], 404, 409

Each route answers bare and under /v{version}/. Handlers raise DockerError
(apps/docker_errors.py) before they answer; the server turns it into
Docker's `{"message": …}` with its status. A pull's error once progress has
been sent ends the stream with Docker's `{"errorDetail": …, "error": …}`
(the `docker` CLI prints it and exits 1). juggler's one addition: `agent=`
(hostname, id or address) on POST /images/create pulls on that agent only.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from juggler.apps import docker_image_views as views
from juggler.apps.docker_errors import DockerError
from juggler.apps.image_cluster import ImageAgent, ImageCluster
from juggler.apps.image_presence import ImagePresence, names
from juggler.images.reference import Reference

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# What POST /containers/create checks an image against (docker_containers.create).
IMAGE_CLUSTER = web.AppKey("image_cluster", ImageCluster)
IMAGE_PRESENCE = web.AppKey("image_presence", ImagePresence)


def route(app: web.Application, method: str, path: str, handler: Handler) -> None:
    """`method path` and `method /v{version}path` (Docker's versioned form) → handler."""
    app.router.add_route(method, path, handler)
    app.router.add_route(method, r"/v{version:[0-9]+\.[0-9]+}" + path, handler)


def add_image_routes(app: web.Application, cluster: ImageCluster) -> None:
    """Register the image endpoints on `app`, served from `cluster`'s agents;
    app[IMAGE_CLUSTER] and app[IMAGE_PRESENCE] (filled by pulls, emptied of
    what is deleted) for the containers' create."""
    app[IMAGE_CLUSTER] = cluster
    app[IMAGE_PRESENCE] = presence = ImagePresence()
    images = _Images(cluster, presence)
    route(app, "GET", "/images/json", images.list_images)
    route(app, "POST", "/images/create", images.create)
    route(app, "GET", "/images/{name:.+}/json", images.inspect)
    route(app, "DELETE", "/images/{name:.+}", images.delete)


def json_response(data: Any, status: int = 200) -> web.Response:
    """A JSON answer typed exactly `application/json`: the docker CLI reads an
    error body as JSON only then (any charset parameter and it prints the raw
    body)."""
    return web.Response(body=json.dumps(data).encode(), status=status,
                        content_type="application/json")


def _flag(request: web.Request, name: str) -> bool:
    """A boolean query parameter as moby reads it (httputils.BoolValue)."""
    return request.query.get(name, "").strip().lower() not in ("", "0", "no", "false", "none")


class _Images:
    def __init__(self, cluster: ImageCluster, presence: ImagePresence) -> None:
        self.cluster = cluster
        self.presence = presence

    async def _merged(self, agents: list[ImageAgent] | None = None) -> list[views.DockerImage]:
        agents = agents if agents is not None else await self.cluster.agents()
        return views.merge(await self.cluster.images(agents))

    async def list_images(self, request: web.Request) -> web.Response:
        filters = views.parse_filters(request.query.get("filters", ""))
        summaries = [views.image_summary(i) for i in await self._merged()
                     if views.matches(i, filters)]
        summaries.sort(key=lambda s: s["Created"], reverse=True)
        return json_response(summaries)

    async def inspect(self, request: web.Request) -> web.Response:
        image, _ = views.find(await self._merged(), request.match_info["name"])
        return json_response(views.image_inspect(image))

    async def delete(self, request: web.Request) -> web.Response:
        agents = await self.cluster.agents()
        image, ref = views.find(await self._merged(agents), request.match_info["name"])
        by_name = {a.name: a for a in agents}
        deleted: list[str] = []
        self.presence.forget([ref] if ref else names([image]))
        for agent, what in views.removal(image, ref, _flag(request, "force")):
            deleted += await self.cluster.remove(by_name[agent], what)
        return json_response(views.removal_report(image, ref, deleted))

    async def create(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        if q.get("fromSrc"):
            raise DockerError(501, "importing an image (fromSrc) is not supported here: use "
                                   "`juggler image import FILE`")
        ref, every_tag = views.pull_reference(q.get("fromImage", ""), q.get("tag", ""))
        username, password = views.registry_auth(request.headers.get("X-Registry-Auth", ""))
        agents = await self.cluster.agents(q.get("agent", ""))
        refs = [ref]
        if every_tag:
            tags = await self.cluster.tags(agents[0], ref.name, username, password)
            if not tags:
                raise DockerError(404, f"{ref.familiar_repository}: the registry lists no tags")
            refs = [Reference(ref.registry, ref.repository, tag) for tag in tags]
        stream = _Stream(request)
        try:
            before = {name: images for name, images in await self.cluster.images(agents)}
            newer = False
            for one in refs:
                newer |= await self._pull(stream, agents, one, before, username, password,
                                          every_tag)
            if every_tag:
                await stream.send([views.status_line(ref.familiar_repository, newer)])
        except DockerError as e:
            if stream.response is None:
                raise
            await stream.send([views.error_message(e.message)])
        return await stream.end()

    async def _pull(self, stream: _Stream, agents: list[ImageAgent], ref: Reference,
                    before: dict[str, list[Any]], username: str, password: str,
                    every_tag: bool) -> bool:
        """Pull `ref` on `agents`, its messages sent; whether some agent did not
        have it under that name before."""
        messages = views.PullMessages(ref, [a.name for a in agents])
        done: list[tuple[str, Any]] = []
        async with contextlib.aclosing(self.cluster.pull(agents, str(ref), username,
                                                         password)) as progress:
            async for agent, p in progress:
                if p.HasField("image"):
                    done.append((agent.name, p.image))
                    self.presence.learn([str(ref), p.image.id, *p.image.references])
                await stream.send(messages.update(agent.name, p))
        had = {name: {i.id for i in images if str(ref) in i.references}
               for name, images in before.items()}
        newer = any(image.id not in had.get(name, set()) for name, image in done)
        await stream.send(messages.finish([image for _, image in done], newer, every_tag))
        return newer


class _Stream:
    """Docker's progress stream: JSON messages, "\\r\\n" after each. The response
    starts with the first message, so that an error before any (a bad name,
    an unknown tag) is still an HTTP error."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.response: web.StreamResponse | None = None

    async def send(self, messages: list[dict[str, Any]]) -> None:
        if not messages:
            return
        if self.response is None:
            self.response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await self.response.prepare(self.request)
        await self.response.write(b"".join(json.dumps(m).encode() + b"\r\n" for m in messages))

    async def end(self) -> web.StreamResponse:
        if self.response is None:  # nothing to say (cannot happen: a pull always says)
            return json_response([])
        await self.response.write_eof()
        return self.response
