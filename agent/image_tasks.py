"""Tasks that name an image: pull on first use, pin, resolve, then launch.

    PullImage ─▶ cached? ──no──▶ ImagePulling (STARTING "pulling image X") ─▶ pull ─┐
                   │ yes                        failed: ImageFailed ◀───────────┤
                   ▼                                                            │
                lease the image for the task ◀─────────────────────────────────┘
                   ▼
                config.apply (Entrypoint/Cmd/Env/WorkingDir/User → command),
                with_stop_signal (StopSignal → kill_policy.signal)
                   ▼
                ImageReady(resolved task, layers top first, id) ─▶ the core starts
                                                                   the executor

The shell of the agent's PullImage, CancelPull and ReleaseImage commands
(agent/state.py decides; this pulls). The pull runs beside the master stream
(never blocking it). A kill during the pull cancels it. The lease
(store.acquire) keeps the image's layers from gc while the task's executor
lives; `release` drops it when the executor is gone, and the agent's start
drops the leases of tasks it no longer has.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from juggler.agent import events as ev
from juggler.common import logs, task_check
from juggler.images import config as image_config
from juggler.images.mirrors import parse_mirrors
from juggler.images.registry import RegistryClient, load_docker_config
from juggler.images.store import ImageError, ImageStore
from juggler.v1 import common_pb2

if TYPE_CHECKING:
    from juggler.agent.server import Agent

log = logs.get("juggler.images")


def lease_id(key: tuple[str, str]) -> str:
    return f"{key[0]}/{key[1]}"


def with_stop_signal(task: common_pb2.TaskInfo, stop_signal: str) -> common_pb2.TaskInfo:
    """`task` (changed in place, and returned) with the image's StopSignal as
    its kill's first signal when it names none itself. A StopSignal that is no
    signal is ignored (the kill sends SIGTERM), as Docker's
    Container.StopSignal falls back on SIGTERM."""
    if task.kill_policy.signal or not stop_signal:
        return task
    try:
        task_check.parse_signal(stop_signal)
    except task_check.TaskError:
        log.warning("the image's StopSignal is not a signal; SIGTERM stops the task",
                    task_id=task.task_id, stop_signal=stop_signal)
        return task
    task.kill_policy.signal = stop_signal
    return task


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
                insecure=frozenset(getattr(cfg, "insecure_registries", ()) or ()),
                mirrors=parse_mirrors(getattr(cfg, "registry_mirrors", ()) or ()))
            self._store = ImageStore(self.agent.work_dir / "images", client)
        return self._store

    def recover(self) -> None:
        """Drop the leases of tasks this agent no longer runs (after a restart)."""
        live = {lease_id(key) for key, t in self.agent.tasks.items() if not t.exited}
        try:
            self.store.gc(live=live)
        except OSError as e:
            log.warning("image store gc failed", error=str(e))

    def pull(self, key: tuple[str, str], info: common_pb2.TaskInfo) -> None:
        """Pull (if needed) and pin the task's image beside the loop; the outcome
        goes to the agent's core as ImagePulling, ImageReady or ImageFailed."""
        if key in self.pending:
            return
        job = asyncio.create_task(self._run(key, info))
        self.pending[key] = job
        job.add_done_callback(lambda _: self.pending.pop(key, None))

    def cancel(self, key: tuple[str, str]) -> None:
        """Stop the task's pull (its kill came first)."""
        job = self.pending.pop(key, None)
        if job is not None:
            job.cancel()

    def release(self, key: tuple[str, str]) -> None:
        try:
            self.store.release(lease_id(key))
        except OSError as e:
            log.warning("could not release an image lease", key=lease_id(key), error=str(e))

    async def _run(self, key: tuple[str, str], info: common_pb2.TaskInfo) -> None:
        ref = info.container.image
        tlog = log.bind(framework_id=key[0], task_id=key[1], image=ref)
        try:
            if self.store.get(ref) is None:
                self.agent.handle(ev.ImagePulling(key))
                tlog.info("pulling image")
                await self.store.pull(ref)
            image, layers = self.store.acquire(lease_id(key), ref)
            try:
                resolved = with_stop_signal(image_config.apply(info, image.config),
                                            image.config.stop_signal)
            except image_config.ConfigError:
                self.store.release(lease_id(key))
                raise
        except asyncio.CancelledError:
            raise
        except (ImageError, image_config.ConfigError, OSError) as e:
            tlog.warning("cannot run the task's image", error=str(e))
            self.agent.handle(ev.ImageFailed(key, str(e)))
            return
        self.pending.pop(key, None)
        self.agent.handle(ev.ImageReady(key, resolved, tuple(layers), image.id))
