"""The cluster's images, for the Docker Engine API (apps/docker_images.py): the
active agents from the leading master's Operator API, and each agent's image
RPCs (agent.proto: PullImage, ListImages, RemoveImage, ListTags), as the CLI's
`juggler pull/images/rmi` reach them (cli/images.py).

Errors are the Engine API's: DockerError with Docker's status for the gRPC
code an agent answered (INVALID_ARGUMENT 400, UNAUTHENTICATED 401,
PERMISSION_DENIED 403, NOT_FOUND 404, FAILED_PRECONDITION 409, other 500), 503
when no master leads or no agent is active.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc

from juggler.apps import cluster
from juggler.apps.docker_errors import DockerError
from juggler.common import logs, servers
from juggler.v1 import agent_pb2, agent_pb2_grpc, operator_pb2

log = logs.get("juggler.apps.images")

STATUS = {grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.UNAUTHENTICATED: 401,
          grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.NOT_FOUND: 404,
          grpc.StatusCode.FAILED_PRECONDITION: 409}
CALL_SECONDS = 30.0


@dataclass(frozen=True)
class ImageAgent:
    name: str  # its hostname (its id when it has none)
    id: str
    address: str  # of its Agent API


def docker_error(e: grpc.aio.AioRpcError, agent: ImageAgent | None = None) -> DockerError:
    """An agent's gRPC error as the Engine API's, naming the agent when given."""
    where = f"{agent.name}: " if agent else ""
    return DockerError(STATUS.get(e.code(), 500), where + (e.details() or e.code().name))


class ImageCluster:
    """Images on the agents of the cluster the masters `masters`
    ("host:port[,host:port…]") lead. Holds no state: each call asks the master
    which agents are active, then asks them."""

    def __init__(self, masters: str) -> None:
        self.masters = masters

    async def agents(self, agent: str = "") -> list[ImageAgent]:
        """The active agents, or the one `agent` names (its hostname, id or API
        address); DockerError 404 when none is so named, 503 when none is active."""
        try:
            views = await cluster.agents(self.masters)
        except cluster.ClusterUnavailable as e:
            raise DockerError(503, str(e)) from None
        except grpc.aio.AioRpcError as e:
            raise DockerError(500, f"the master: {e.details() or e.code().name}") from None
        active = [ImageAgent(v.info.hostname or v.info.id, v.info.id, v.info.address)
                  for v in views if v.state == operator_pb2.AGENT_ACTIVE and v.info.address]
        if agent:
            active = [a for a in active if agent in (a.name, a.id, a.address)]
            if not active:
                raise DockerError(404, f"no active agent {agent!r}")
        if not active:
            raise DockerError(503, "no active agent in the cluster")
        return active

    async def images(self, agents: list[ImageAgent]) -> list[tuple[str, list[agent_pb2.Image]]]:
        """(agent name, its images) for each of `agents` that answers; an agent
        that does not is left out (and logged), unless none answers: DockerError."""

        async def one(a: ImageAgent) -> list[agent_pb2.Image]:
            async with servers.channel(a.address) as ch:
                got = await agent_pb2_grpc.AgentStub(ch).ListImages(
                    agent_pb2.ListImagesRequest(), timeout=CALL_SECONDS)
            return list(got.images)

        results = await asyncio.gather(*(one(a) for a in agents), return_exceptions=True)
        out: list[tuple[str, list[agent_pb2.Image]]] = []
        errors: list[DockerError] = []
        for a, got in zip(agents, results, strict=True):
            if isinstance(got, grpc.aio.AioRpcError):
                log.warning("an agent did not list its images", agent=a.name, error=got.details())
                errors.append(docker_error(got, a))
            elif isinstance(got, BaseException):
                raise got
            else:
                out.append((a.name, got))
        if errors and not out:
            raise errors[0]
        return out

    async def tags(self, agent: ImageAgent, repository: str, username: str = "",
                   password: str = "") -> list[str]:
        """The tags `agent`'s registry (or mirror) lists for `repository`."""
        try:
            async with servers.channel(agent.address) as ch:
                got = await agent_pb2_grpc.AgentStub(ch).ListTags(agent_pb2.ListTagsRequest(
                    repository=repository, username=username, password=password),
                    timeout=CALL_SECONDS)
        except grpc.aio.AioRpcError as e:
            raise docker_error(e) from None
        return list(got.tags)

    async def remove(self, agent: ImageAgent, reference: str) -> list[str]:
        """RemoveImage on `agent`: the image ids and layers it deleted."""
        try:
            async with servers.channel(agent.address) as ch:
                got = await agent_pb2_grpc.AgentStub(ch).RemoveImage(
                    agent_pb2.RemoveImageRequest(reference=reference), timeout=CALL_SECONDS)
        except grpc.aio.AioRpcError as e:
            raise docker_error(e, agent) from None
        return list(got.deleted)

    async def pull(self, agents: list[ImageAgent], reference: str, username: str = "",
                   password: str = ""
                   ) -> AsyncIterator[tuple[ImageAgent, agent_pb2.PullImageProgress]]:
        """Pull `reference` on every one of `agents` at once: their progress
        messages as they come, each agent's last one holding its image. The
        first agent that fails raises DockerError (naming it when there are
        several) and the other pulls are cancelled, as they are when the caller
        stops iterating (use contextlib.aclosing)."""
        queue: asyncio.Queue[tuple[ImageAgent, agent_pb2.PullImageProgress | DockerError | None]]
        queue = asyncio.Queue()
        request = agent_pb2.PullImageRequest(reference=reference, username=username,
                                             password=password)

        async def one(a: ImageAgent) -> None:
            try:
                async with servers.channel(a.address) as ch:
                    async for p in agent_pb2_grpc.AgentStub(ch).PullImage(request):
                        queue.put_nowait((a, p))
                queue.put_nowait((a, None))
            except grpc.aio.AioRpcError as e:
                queue.put_nowait((a, docker_error(e, a if len(agents) > 1 else None)))

        jobs = [asyncio.create_task(one(a)) for a in agents]
        try:
            running = len(jobs)
            while running:
                a, item = await queue.get()
                if item is None:
                    running -= 1
                elif isinstance(item, DockerError):
                    raise item
                else:
                    yield a, item
        finally:
            for job in jobs:
                job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)
