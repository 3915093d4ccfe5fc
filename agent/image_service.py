"""The Agent API's image RPCs (agent.proto: PullImage, ListImages, RemoveImage,
ImportImage, ListTags), mixed into agent/api.py's AgentServicer. Errors map to gRPC
codes by kind: invalid → INVALID_ARGUMENT, not_found → NOT_FOUND, unauthorized
→ UNAUTHENTICATED, unreachable → UNAVAILABLE, corrupt → DATA_LOSS, other →
FAILED_PRECONDITION.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from juggler.images.archive import ArchiveError
from juggler.images.messages import image_proto
from juggler.images.reference import ReferenceError, parse, parse_name
from juggler.images.registry import Credentials, RegistryClient, RegistryError
from juggler.images.store import ImageError, ImageStore, PullEvent, registry_error_kind
from juggler.v1 import agent_pb2

if TYPE_CHECKING:
    from juggler.agent.server import Agent

CODES = {"invalid": grpc.StatusCode.INVALID_ARGUMENT, "not_found": grpc.StatusCode.NOT_FOUND,
         "unauthorized": grpc.StatusCode.UNAUTHENTICATED,
         "unreachable": grpc.StatusCode.UNAVAILABLE, "corrupt": grpc.StatusCode.DATA_LOSS}


class ImageServicer:
    a: Agent

    @property
    def _store(self) -> ImageStore:
        return self.a.images.store

    async def PullImage(self, request: agent_pb2.PullImageRequest,
                        context: grpc.aio.ServicerContext
                        ) -> AsyncIterator[agent_pb2.PullImageProgress]:
        store = self._store
        client = None
        if request.username:
            with contextlib.suppress(ReferenceError):
                client = _with_credentials(store.client, parse(request.reference).registry,
                                           request.username, request.password)
        events: asyncio.Queue[PullEvent | None] = asyncio.Queue()
        job = asyncio.ensure_future(store.pull(request.reference, events.put_nowait, client))
        job.add_done_callback(lambda _: events.put_nowait(None))
        try:
            while True:
                event = await events.get()
                if event is None:
                    break
                yield agent_pb2.PullImageProgress(layer=event.layer, status=event.status,
                                                  current=event.current, total=event.total)
            image = job.result()
        except ImageError as e:
            await context.abort(CODES.get(e.kind, grpc.StatusCode.FAILED_PRECONDITION), str(e))
            return
        finally:
            job.cancel()
        yield agent_pb2.PullImageProgress(status="done", image=image_proto(image, store))

    async def ListImages(self, request: agent_pb2.ListImagesRequest,
                         context: grpc.aio.ServicerContext) -> agent_pb2.ListImagesResponse:
        store = self._store
        users = store.layer_users()
        return agent_pb2.ListImagesResponse(
            images=[image_proto(i, store, users) for i in store.images()])

    async def RemoveImage(self, request: agent_pb2.RemoveImageRequest,
                          context: grpc.aio.ServicerContext) -> agent_pb2.RemoveImageResponse:
        try:
            deleted = await asyncio.to_thread(self._store.remove, request.reference)
        except ImageError as e:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(e))
            raise
        return agent_pb2.RemoveImageResponse(deleted=deleted)

    async def ImportImage(self, request_iterator: AsyncIterator[agent_pb2.ImportImageChunk],
                          context: grpc.aio.ServicerContext) -> agent_pb2.ListImagesResponse:
        store = self._store
        path = store.tmp / f"{os.getpid()}.import.{id(request_iterator):x}.tar"
        name = ""
        try:
            with open(path, "wb") as f:
                async for chunk in request_iterator:
                    name = name or chunk.name
                    f.write(chunk.data)
            try:
                images = await store.import_archive(Path(path), name)
            except ImageError as e:
                await context.abort(CODES.get(e.kind, grpc.StatusCode.INVALID_ARGUMENT), str(e))
                raise
            except ArchiveError as e:  # not a tar / OCI layout / docker save at all
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
                raise
        finally:
            path.unlink(missing_ok=True)
        users = store.layer_users()
        return agent_pb2.ListImagesResponse(images=[image_proto(i, store, users) for i in images])

    async def ListTags(self, request: agent_pb2.ListTagsRequest,
                       context: grpc.aio.ServicerContext) -> agent_pb2.ListTagsResponse:
        """The tags of a repository (no tag or digest: INVALID_ARGUMENT) in its
        registry, Docker Hub's through this agent's mirrors first (`pull -a`)."""
        try:
            ref = parse_name(request.repository)
        except ReferenceError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
            raise
        client = self._store.client
        if request.username:
            client = _with_credentials(client, ref.registry, request.username,
                                       request.password)
        try:
            tags = await client.tags(ref)
        except RegistryError as e:
            await context.abort(CODES.get(registry_error_kind(e),
                                          grpc.StatusCode.FAILED_PRECONDITION), str(e))
            raise
        return agent_pb2.ListTagsResponse(tags=tags)


def _with_credentials(base: RegistryClient, registry: str, username: str,
                      password: str) -> RegistryClient:
    """A client as `base` (mirrors, insecure registries) with these credentials
    for `registry`, and no tokens of its own yet."""
    return dataclasses.replace(base, credentials={**base.credentials,
                                                  registry: Credentials(username, password)},
                               _tokens={})
