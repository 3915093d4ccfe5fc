"""Writable layers kept by name (ContainerInfo.writable_layer): where they
live, how a task gets one, how one is removed.

    <agent work dir>/layers/<framework id>/<name>/
        upper/     the overlay's upper dir: every file the tasks wrote
                   (Docker's overlay2 `diff/`)
        work/      the overlay's work dir (same filesystem as upper/)
        merged/    the mount point; mounted only inside a task's own mount
                   namespace, so it is empty on the host

    <sandbox>/rootfs ──symlink──▶ <agent work dir>/layers/<framework id>/<name>

A task without a writable layer has its overlay's directories in its sandbox
(`<sandbox>/rootfs/`, container/rootfs.py). One with a layer gets that path
as a symlink to the layer instead, made by the agent with the sandbox: the
executor builds the same overlay and needs to know nothing of layers, and
what the task writes lives outside the sandbox, so it outlives the task, the
sandbox and the agent's restarts (the work dir is the agent's, not the
task's). The next task of the framework naming the layer on this agent is
mounted over the same upper dir and starts from those files: `docker stop`
then `docker start` keeps a container's files. The layer goes when its
framework asks (Agent.RemoveWritableLayer); nothing else removes it.

Where overlayfs is missing and an image's layers are copied instead
(container/rootfs.py copy_layers), the copy is made in `merged/`, which the
layer keeps as well: files the task added stay, the image's files are copied
afresh over it at each start.

Layers are per framework: two frameworks naming the same layer get two. One
live task at a time uses a layer (AgentState.layer_user; the agent refuses a
second). The lower layers may change between two tasks (another image or
root filesystem): overlayfs takes the upper dir over the new lowers, as
Docker's layers would not; keeping the same image is the framework's part.

Removal is a rename into `layers/.removing/` (atomic, and done on the
agent's loop, so no launch can attach the layer half-removed), then a delete
beside the loop; the agent's start deletes what a crash left there. (A
framework id never starts with '.', common/ids.py.)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path

LAYERS = "layers"
REMOVING = ".removing"


def layer_dir(work_dir: Path, framework_id: str, name: str) -> Path:
    """Where the layer `name` of `framework_id` lives (whether it exists or not).
    Both are ids (common/ids.py): no '/', no leading '.'."""
    return Path(work_dir) / LAYERS / framework_id / name


def attach(work_dir: Path, sandbox: Path, framework_id: str, name: str) -> Path:
    """Make the layer if it is new, and `<sandbox>/rootfs` a symlink to it;
    returns the layer's directory. Raises OSError (the task cannot start)."""
    layer = layer_dir(work_dir, framework_id, name)
    for sub in ("upper", "work", "merged"):
        (layer / sub).mkdir(parents=True, exist_ok=True)
    (sandbox / "rootfs").symlink_to(layer, target_is_directory=True)
    return layer


def take_away(work_dir: Path, framework_id: str, name: str) -> Path | None:
    """Move the layer out of its name, into `layers/.removing/`: a task
    launched from now on gets a new, empty one. Returns where it went (for
    `purge`), None when there was no such layer. Raises OSError."""
    layer = layer_dir(work_dir, framework_id, name)
    if not layer.is_dir():
        return None
    graveyard = Path(work_dir) / LAYERS / REMOVING
    graveyard.mkdir(parents=True, exist_ok=True)
    doomed = graveyard / f"{framework_id}.{name}.{uuid.uuid4().hex[:8]}"
    os.rename(layer, doomed)
    with contextlib.suppress(OSError):  # its framework's last layer: tidy up
        layer.parent.rmdir()
    return doomed


def purge(work_dir: Path, doomed: Path | None = None) -> None:
    """Delete `doomed` (from take_away), or everything left in
    `layers/.removing/` (the agent's start). Blocking: run it beside the loop.
    Raises OSError when something cannot be deleted."""
    graveyard = Path(work_dir) / LAYERS / REMOVING
    targets = [doomed] if doomed is not None else (
        sorted(graveyard.iterdir()) if graveyard.is_dir() else [])
    for target in targets:
        shutil.rmtree(target)
