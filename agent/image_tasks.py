"""Tasks that name an image: pull on first use, pin, resolve, then launch.

    RunTask(image) ─▶ cached? ──no──▶ STARTING "pulling image X" ─▶ pull ─┐
                        │ yes                     failed: FAILED ◀───────┤
                        ▼                   (CONTAINER_LAUNCH_FAILED)     │
                     lease the image for the task ◀──────────────────────┘
                        ▼
                     config.apply (Entrypoint/Cmd/Env/WorkingDir/User → command)
                        ▼
                     Agent._launch(…, image=(resolved task, layers top first, id))

The pull runs beside the master stream (never blocking it). A kill during the
pull cancels it and ends the task KILLED. The lease (store.acquire) keeps the
image's layers from gc while the task's executor lives; `release` drops it
when the executor is gone, and the agent's start drops the leases of tasks it
no longer has.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from juggler.common import logs
from juggler.images import config as image_config
from juggler.images.registry import RegistryClient, load_docker_config
from juggler.images.store import ImageError, ImageStore
from juggler.v1 import common_pb2

if TYPE_CHECKING:
    from juggler.agent.server import Agent

log = logs.get("juggler.images")
S = common_pb2.TaskState


def lease_id(key: tuple[str, str]) -> str:
    return f"{key[0]}/{key[1]}"


class ImageTasks:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self._store: ImageStore | None = None
        self.pending: dict[tuple[str, str], asyncio.Task[None]] = {}

    @property
    def store(self) -> ImageStore:
        if self._store is None:
            cfg = self.agent.config
            path = getattr(cfg, "registry_config", "")
            client = RegistryClient(
                credentials=load_docker_config(Path(path) if path else None),
                insecure=frozenset(getattr(cfg, "insecure_registries", ()) or ()))
            self._store = ImageStore(self.agent.work_dir / "images", client)
        return self._store

    def recover(self) -> None:
        """Drop the leases of tasks this agent no longer runs (after a restart)."""
        live = {lease_id(t.key) for t in self.agent.tasks.values() if not t.finished.is_set()}
        try:
            self.store.gc(live=live)
        except OSError as e:
            log.warning("image store gc failed", error=str(e))

    def launch(self, framework: common_pb2.FrameworkInfo, info: common_pb2.TaskInfo) -> None:
        key = (framework.id, info.task_id)
        if key in self.pending:
            return  # a re-sent RunTask while we pull
        job = asyncio.create_task(self._run(framework, info))
        self.pending[key] = job
        job.add_done_callback(lambda _: self.pending.pop(key, None))

    def kill(self, key: tuple[str, str]) -> bool:
        """Kill a task still pulling its image; False if none is."""
        job = self.pending.pop(key, None)
        if job is None:
            return False
        job.cancel()
        self.agent._agent_update(*key, S.TASK_KILLED, common_pb2.REASON_TASK_KILLED_DURING_LAUNCH,
                                 "Task killed while its image was being pulled")
        return True

    def release(self, key: tuple[str, str]) -> None:
        try:
            self.store.release(lease_id(key))
        except OSError as e:
            log.warning("could not release an image lease", key=lease_id(key), error=str(e))

    async def _run(self, framework: common_pb2.FrameworkInfo, info: common_pb2.TaskInfo) -> None:
        key = (framework.id, info.task_id)
        ref = info.container.image
        tlog = log.bind(framework_id=framework.id, task_id=info.task_id, image=ref)
        try:
            if self.store.get(ref) is None:
                self.agent._agent_update(*key, S.TASK_STARTING, common_pb2.REASON_UNSPECIFIED,
                                         f"pulling image {ref}")
                tlog.info("pulling image")
                await self.store.pull(ref)
            image, layers = self.store.acquire(lease_id(key), ref)
            try:
                resolved = image_config.apply(info, image.config)
            except image_config.ConfigError:
                self.store.release(lease_id(key))
                raise
        except asyncio.CancelledError:
            raise
        except (ImageError, image_config.ConfigError, OSError) as e:
            tlog.warning("cannot run the task's image", error=str(e))
            self.agent._agent_update(*key, S.TASK_FAILED,
                                     common_pb2.REASON_CONTAINER_LAUNCH_FAILED,
                                     f"cannot get image {ref}: {e}")
            return
        self.pending.pop(key, None)
        await self.agent._launch(framework, info, image=(resolved, layers, image.id))
