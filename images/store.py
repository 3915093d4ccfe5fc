"""The agent's image store, in `<agent work dir>/images/`:

    blobs/sha256/<hex>   manifests and configs, content-addressed
    layers/<hex>/        one unpacked layer per diff id (sha256 of its tar),
                         overlayfs-ready (layer.py); shared by every image
    stacks/<hex>/        per image (config digest): the extra top layer that
                         makes its stacked layers show what the image-spec
                         says where a layer alone could not know (stack.py);
                         made by the first `acquire`
    tmp/                 work in progress; wiped when the store opens
    index.json           image records, references, container leases
    lock                 flock held around every index change (an agent and a
                         `juggler pull --work-dir` may share a store)

Trust: nothing enters blobs/ or layers/ but by rename(2) from tmp/ after its
digest matched — the blob's sha256 (as the manifest says) *and* the
uncompressed tar's (the config's diff id). A crash mid-pull leaves only tmp/,
which nobody trusts. Layers are unpacked as they stream in (one pass, no
compressed copy kept: like Docker, the store keeps unpacked layers only).

Records (index.json):

    images  {image id (config digest): {digest, layers: [diff ids, bottom
             first], config: {…}, created, size}}
    refs    {"127.0.0.1:5000/app:1": image id, …}
    leases  {container id: image id}: a running container pins its image

Refcounts are derived, never stored: a layer is used by the images that list
it, an image by its references and by the containers leasing it. `remove(ref)`
drops a reference; `gc()` deletes images nothing uses, then layers and blobs no
image uses, then stale temporary files.

Concurrent pulls of one image (or of one layer by two images) share one
asyncio future: the second caller waits for the first's work.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import Counter

from juggler.common import logs
from juggler.images import archive as archives
from juggler.images import layer as layers
from juggler.images import reference, stack
from juggler.images.config import ImageConfig
from juggler.images.registry import (
    DigestMismatch,
    NotFound,
    RegistryClient,
    RegistryError,
    Unauthorized,
    Unreachable,
)

log = logs.get("juggler.images")

PULLS = Counter("juggler_agent_image_pulls_total", "Image pulls from registries",
                ["result"])
PULLED_BYTES = Counter("juggler_agent_image_pull_bytes_total", "Layer bytes downloaded")
MAX_CONCURRENT_LAYERS = 4


class ImageError(Exception):
    """An image cannot be had or used; the message says why, for a person.
    `kind`: invalid | not_found | unauthorized | unreachable | corrupt | failed."""

    def __init__(self, message: str, kind: str = "failed") -> None:
        super().__init__(message)
        self.kind = kind


def registry_error_kind(e: RegistryError) -> str:
    """ImageError's `kind` for a registry error (not_found, unauthorized, …)."""
    return {NotFound: "not_found", Unauthorized: "unauthorized", Unreachable: "unreachable",
            DigestMismatch: "corrupt"}.get(type(e), "failed")


@dataclass
class PullEvent:
    """Progress of one layer (or of the whole pull when `layer` is empty)."""
    layer: str  # blob digest of the layer
    status: str  # waiting | downloading | verifying | already exists | pull complete | …
    current: int = 0
    total: int = 0


@dataclass
class Image:
    id: str  # config digest, as Docker's image id
    digest: str  # manifest digest ("" for a `docker save` import)
    layers: list[str]  # diff ids, bottom first
    config: ImageConfig
    created: str = ""
    size: int = 0
    references: list[str] = field(default_factory=list)
    containers: int = 0
    config_json: str = ""  # the image config as pulled (Labels, ExposedPorts, … for Docker's API)


Listener = Callable[[PullEvent], None]


@dataclass
class _LayerJob:
    """A layer's download, shared by every pull that needs the layer meanwhile."""

    job: asyncio.Future[None]
    stop: threading.Event  # set when no pull waits for it any more
    waiters: int = 0


def _hex(digest: str) -> str:
    algo, _, hexd = digest.partition(":")
    if algo != "sha256" or len(hexd) != 64 or not all(c in "0123456789abcdef" for c in hexd):
        raise ImageError(f"unsupported digest {digest!r}")
    return hexd


class ImageStore:
    def __init__(self, root: Path, client: RegistryClient | None = None) -> None:
        self.root = root
        self.client = client or RegistryClient()
        self.blobs = root / "blobs" / "sha256"
        self.layers = root / "layers"
        self.tmp = root / "tmp"
        self.stacks = root / "stacks"
        for d in (self.blobs, self.layers, self.tmp, self.stacks):
            d.mkdir(parents=True, exist_ok=True)
        self._pulls: dict[str, asyncio.Future[Image]] = {}
        self._waiters: dict[str, int] = {}
        self._layer_jobs: dict[str, _LayerJob] = {}
        self._limit = asyncio.Semaphore(MAX_CONCURRENT_LAYERS)
        with self._locked():
            self._clean_tmp()

    # -- the index -------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / "lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads((self.root / "index.json").read_text())
        except FileNotFoundError:
            data = {}
        for key in ("images", "refs", "leases"):
            data.setdefault(key, {})
        return data

    def _save(self, data: dict[str, Any]) -> None:
        tmp = self.root / f"index.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, self.root / "index.json")

    def _clean_tmp(self) -> None:
        """Leftovers of a crashed pull; only when no other process is mid-pull."""
        for p in self.tmp.iterdir():
            pid = p.name.split(".", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
                continue
            _rmtree(p)

    def _tmp_path(self, what: str) -> Path:
        return self.tmp / f"{os.getpid()}.{what}.{uuid.uuid4().hex[:8]}"

    # -- queries ---------------------------------------------------------------------
    def _image(self, data: dict[str, Any], image_id: str) -> Image:
        rec = data["images"][image_id]
        return Image(id=image_id, digest=rec.get("digest", ""), layers=list(rec["layers"]),
                     config=ImageConfig.parse(rec.get("config_json", "{}")),
                     created=rec.get("created", ""), size=rec.get("size", 0),
                     references=sorted(r for r, i in data["refs"].items() if i == image_id),
                     containers=sum(1 for i in data["leases"].values() if i == image_id),
                     config_json=rec.get("config_json", ""))

    def images(self) -> list[Image]:
        data = self._load()
        return [self._image(data, i) for i in data["images"]]

    def get(self, ref: str) -> Image | None:
        """The image a reference (or an image id, or a unique id prefix) names."""
        data = self._load()
        image_id = self._lookup(data, ref)
        return self._image(data, image_id) if image_id else None

    def _lookup(self, data: dict[str, Any], text: str) -> str:
        with contextlib.suppress(reference.ReferenceError):
            key = str(reference.parse(text))
            if key in data["refs"]:
                return data["refs"][key]
        hexd = text.removeprefix("sha256:")
        if len(hexd) >= 6 and all(c in "0123456789abcdef" for c in hexd):
            found = [i for i in data["images"] if i.removeprefix("sha256:").startswith(hexd)]
            if len(found) == 1:
                return found[0]
        return ""

    def layer_path(self, diff_id: str) -> Path:
        return self.layers / _hex(diff_id)

    def layer_sizes(self) -> dict[str, int]:
        return dict(self._load().get("layer_sizes", {}))

    def layer_users(self) -> dict[str, tuple[int, int]]:
        """diff id → (images listing it, containers running on it)."""
        data = self._load()
        out: dict[str, list[int]] = {}
        for image_id, rec in data["images"].items():
            leases = sum(1 for i in data["leases"].values() if i == image_id)
            for diff in set(rec["layers"]):
                counts = out.setdefault(diff, [0, 0])
                counts[0] += 1
                counts[1] += leases
        return {k: (v[0], v[1]) for k, v in out.items()}

    # -- containers ------------------------------------------------------------------
    def acquire(self, container_id: str, ref: str) -> tuple[Image, list[str]]:
        """Pin the image `ref` names for a container; returns it and its layer
        directories top first (overlayfs's lowerdir order): the image's stack
        directory, then its layers down to the one with an opaque root, each
        once (stack.py)."""
        with self._locked():
            data = self._load()
            image_id = self._lookup(data, ref)
            if not image_id:
                raise ImageError(f"image {ref} is not in this agent's store")
            image = self._image(data, image_id)
            dirs = [str(self.layer_path(d)) for d in reversed(image.layers)]
            missing = [d for d in dirs if not os.path.isdir(d)]
            if missing:
                raise ImageError(f"image {ref}: layer {missing[0]} is missing from the store "
                                 "(remove the image and pull it again)")
            dirs = self._stack(data, image_id, dirs)
            data["leases"][container_id] = image_id
            self._save(data)
        return image, dirs

    def _stack(self, data: dict[str, Any], image_id: str, dirs: list[str]) -> list[str]:
        """The image's stack directory (made now if missing) and its layers,
        top first (see `acquire`)."""
        notes = data.get("layer_stacking", {})
        image = data["images"][image_id]
        # A layer listed twice is one directory, which overlayfs refuses to
        # stack twice (ELOOP); the upper copy alone gives the same tree: what
        # the layer says, it says again over whatever lies between.
        found = [stack.Layer(d, notes.get(diff, {}).get("implicit", {}),
                             notes.get(diff, {}).get("whiteout_dirs", []))
                 for i, (d, diff) in enumerate(zip(dirs, reversed(image["layers"]), strict=True))
                 if d not in dirs[:i]]
        path = self.stacks / _hex(image_id)
        if not path.is_dir():
            work = self._tmp_path("stack")
            try:
                stack.build(stack.plan(found, stack.probe_dirs(found)), found, str(work))
                os.rename(work, path)
            finally:
                _rmtree(work)
        return [str(path)] + [layer.dir for layer in stack.lowers(found, stack.probe_dirs(found))]

    def release(self, container_id: str) -> None:
        with self._locked():
            data = self._load()
            if data["leases"].pop(container_id, None) is not None:
                self._save(data)

    # -- removal ---------------------------------------------------------------------
    def remove(self, ref: str) -> list[str]:
        """Forget a reference (or an image id: all its references); returns what gc
        then deleted. The layers of an image a container uses stay until it ends."""
        with self._locked():
            data = self._load()
            image_id = self._lookup(data, ref)
            if not image_id:
                raise ImageError(f"no such image: {ref}")
            keys = [r for r, i in data["refs"].items() if i == image_id]
            with contextlib.suppress(reference.ReferenceError):
                named = str(reference.parse(ref))
                if named in data["refs"]:
                    keys = [named]
            for k in keys:
                del data["refs"][k]
            self._save(data)
        return self.gc()

    def gc(self, live: set[str] | None = None) -> list[str]:
        """Delete what nothing uses. With `live` (the containers still running),
        leases of any other container are dropped first."""
        removed: list[str] = []
        with self._locked():
            data = self._load()
            if live is not None:
                for cid in [c for c in data["leases"] if c not in live]:
                    del data["leases"][cid]
            used = set(data["refs"].values()) | set(data["leases"].values())
            for image_id in [i for i in data["images"] if i not in used]:
                del data["images"][image_id]
                removed.append(image_id)
            self._save(data)
            keep_layers = {_hex(d) for rec in data["images"].values() for d in rec["layers"]}
            keep_blobs = {_hex(i) for i in data["images"]}
            keep_blobs |= {_hex(rec["digest"]) for rec in data["images"].values()
                           if rec.get("digest")}
            for rec in data["images"].values():
                keep_blobs |= {_hex(d) for d in rec.get("index_digests", [])}
            for d in self.layers.iterdir():
                if d.name not in keep_layers:
                    _rmtree(d)
                    removed.append(f"sha256:{d.name}")
            for d in self.stacks.iterdir():
                if d.name not in keep_blobs:  # an image id's hex
                    _rmtree(d)
            for b in self.blobs.iterdir():
                if b.name not in keep_blobs:
                    b.unlink(missing_ok=True)
            self._clean_tmp()
        return removed

    # -- pulling ---------------------------------------------------------------------
    async def pull(self, ref_text: str, listener: Listener | None = None,
                   client: RegistryClient | None = None) -> Image:
        """Pull `ref_text` from its registry (deduplicated with any pull of the same
        reference in progress); raises ImageError with a reason on failure."""
        try:
            ref = reference.parse(ref_text)
        except reference.ReferenceError as e:
            raise ImageError(str(e), "invalid") from None
        key = str(ref)
        job = self._pulls.get(key)
        if job is None:
            job = asyncio.ensure_future(self._pull(ref, listener, client or self.client))
            self._pulls[key] = job
            self._waiters[key] = 0
            job.add_done_callback(lambda _: self._pulls.pop(key, None))
        elif listener is not None:
            listener(PullEvent("", f"waiting for the pull of {ref.familiar()} in progress"))
        self._waiters[key] += 1
        try:
            return await asyncio.shield(job)
        except RegistryError as e:
            raise ImageError(str(e), registry_error_kind(e)) from None
        except asyncio.CancelledError:
            # The pull goes on while someone else still waits for it.
            if self._waiters[key] == 1 and not job.done():
                job.cancel()
            raise
        finally:
            self._waiters[key] -= 1

    async def _pull(self, ref: reference.Reference, listener: Listener | None,
                    client: RegistryClient) -> Image:
        emit = listener or (lambda _: None)
        cancel = threading.Event()
        try:
            manifest = await client.resolve(ref, cancel)
            source = manifest.source or ref  # a mirror's, for a Hub image it serves
            if source != ref:
                log.info("pulling from a mirror", image=str(ref), mirror=source.registry)
            config_digest = manifest.config["digest"]
            config_raw = self._read_blob(config_digest)
            if config_raw is None:
                config_raw = await client.blob_bytes(source, config_digest)
                self._write_blob(config_digest, config_raw)
            cfg = ImageConfig.parse(config_raw)
            descs = manifest.layers
            if len(cfg.diff_ids) != len(descs):
                raise ImageError(f"{ref}: the manifest has {len(descs)} layers but the config "
                                 f"{len(cfg.diff_ids)} diff ids")
            for desc in descs:
                emit(PullEvent(desc["digest"], "waiting", 0, int(desc.get("size", 0))))

            async def one(desc: dict, diff_id: str) -> None:
                if self.layer_path(diff_id).is_dir():
                    emit(PullEvent(desc["digest"], "already exists", 0,
                                   int(desc.get("size", 0))))
                    return
                await self._layer(diff_id, lambda stop: self._fetch_layer(
                    client, source, desc, diff_id, emit, stop))
                emit(PullEvent(desc["digest"], "pull complete", int(desc.get("size", 0)),
                               int(desc.get("size", 0))))

            jobs = [asyncio.ensure_future(one(d, i))
                    for d, i in zip(descs, cfg.diff_ids, strict=True)]
            try:
                await asyncio.gather(*jobs)
            except BaseException:
                # One layer failed (or the pull was cancelled): let go of the other
                # layers. A download no other pull waits for stops, and is waited
                # for while it removes its work in tmp/, so that a failed pull
                # leaves nothing behind when it raises (_layer).
                for j in jobs:
                    j.cancel()
                await asyncio.wait(jobs)
                raise
            self._write_blob(manifest.digest, manifest.raw)
            image = self._commit(config_digest, config_raw, cfg, manifest.digest, [str(ref)])
            PULLS.labels(result="ok").inc()
            return image
        except BaseException as e:
            cancel.set()  # stops the download threads of the other layers
            PULLS.labels(result="cancelled" if isinstance(e, asyncio.CancelledError)
                         else "error").inc()
            raise

    async def _layer(self, diff_id: str, make: Callable[[threading.Event], Any]) -> None:
        """Run `make(stop)` (which commits layer `diff_id`) once however many ask.

        The download is shared: it stops (its `stop` is set) only when every
        pull that waits for it has let go, and the last to let go waits for it
        to clean up. One image's failed or cancelled pull does not fail another
        image's pull of a layer they share."""
        while (entry := self._layer_jobs.get(diff_id)) is not None and entry.stop.is_set():
            await asyncio.wait([entry.job])  # being stopped: let it clean up, then start anew
            if self.layer_path(diff_id).is_dir():
                return  # it finished before it saw `stop`
        if entry is None:
            stop = threading.Event()
            entry = _LayerJob(asyncio.ensure_future(make(stop)), stop)
            self._layer_jobs[diff_id] = entry
            entry.job.add_done_callback(
                lambda _, e=entry: self._layer_jobs.get(diff_id) is e
                and self._layer_jobs.pop(diff_id))
            # Its failure reaches every pull still waiting; once none waits, it is moot.
            entry.job.add_done_callback(lambda f: f.cancelled() or f.exception())
        entry.waiters += 1
        try:
            await asyncio.shield(entry.job)
        except asyncio.CancelledError:
            if entry.waiters == 1 and not entry.job.done():
                entry.stop.set()
                await asyncio.wait([entry.job])
            raise
        finally:
            entry.waiters -= 1

    async def _fetch_layer(self, client: RegistryClient, ref: reference.Reference, desc: dict,
                           diff_id: str,
                           emit: Listener, cancel: threading.Event) -> None:
        digest, total = desc["digest"], int(desc.get("size", 0))
        seen = [0]

        def progress(n: int) -> None:
            seen[0] += n
            PULLED_BYTES.inc(n)
            emit(PullEvent(digest, "downloading", seen[0], total))

        async with self._limit:
            emit(PullEvent(digest, "downloading", 0, total))
            work = self._tmp_path("layer")
            work.mkdir()
            try:
                streaming = asyncio.ensure_future(client.stream(
                    ref, digest, lambda f: layers.unpack_layer(f, work), progress, cancel))
                try:
                    done = await asyncio.shield(streaming)
                except asyncio.CancelledError:
                    # The thread writes into `work` until it sees `cancel`: wait for
                    # it, so the cleanup below is the last word.
                    cancel.set()
                    await asyncio.wait([streaming])
                    raise
                emit(PullEvent(digest, "verifying", seen[0], total))
                if done.diff_id != diff_id:
                    raise ImageError(f"{ref}: layer {digest} unpacks to {done.diff_id}, but "
                                     f"the image config says {diff_id}: rejected", "corrupt")
                self._commit_layer(work, diff_id, done)
            except layers.LayerError as e:
                raise ImageError(f"{ref}: layer {digest}: {e}") from None
            finally:
                _rmtree(work)

    def _commit_layer(self, work: Path, diff_id: str, done: layers.Unpacked) -> None:
        try:
            os.rename(work, self.layer_path(diff_id))
        except OSError:
            if not self.layer_path(diff_id).is_dir():  # someone else committed it first
                raise
        with self._locked():
            data = self._load()
            data.setdefault("layer_sizes", {})[diff_id] = done.size
            data.setdefault("layer_stacking", {})[diff_id] = {
                "implicit": done.implicit, "whiteout_dirs": done.whiteout_dirs}
            self._save(data)

    def _commit(self, image_id: str, config_raw: bytes, cfg: ImageConfig, digest: str,
                names: list[str]) -> Image:
        self._write_blob(image_id, config_raw)
        with self._locked():
            data = self._load()
            sizes = data.get("layer_sizes", {})
            data["images"][image_id] = {
                "digest": digest, "layers": cfg.diff_ids, "created": cfg.created,
                "config_json": config_raw.decode(errors="replace"),
                "size": sum(sizes.get(d, 0) for d in cfg.diff_ids), "stored": time.time()}
            for name in names:
                data["refs"][name] = image_id
            self._save(data)
            return self._image(data, image_id)

    # -- blobs -----------------------------------------------------------------------
    def _read_blob(self, digest: str) -> bytes | None:
        try:
            data = (self.blobs / _hex(digest)).read_bytes()
        except FileNotFoundError:
            return None
        return data if "sha256:" + hashlib.sha256(data).hexdigest() == digest else None

    def _write_blob(self, digest: str, data: bytes) -> None:
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise ImageError(f"blob {digest} does not match its content: rejected")
        path = self.blobs / _hex(digest)
        if path.exists():
            return
        tmp = self._tmp_path("blob")
        tmp.write_bytes(data)
        os.rename(tmp, path)

    # -- import ----------------------------------------------------------------------
    async def import_archive(self, path: Path, name: str = "",
                             listener: Listener | None = None) -> list[Image]:
        """Import the images of an OCI layout (dir or tar) or a `docker save` tar."""
        return await asyncio.to_thread(self._import, path, name, listener or (lambda _: None))

    def _import(self, path: Path, name: str, emit: Listener) -> list[Image]:
        if name:
            try:
                reference.parse(name)
            except reference.ReferenceError as e:
                raise ImageError(str(e), "invalid") from None
        archive = archives.Archive(path)
        try:
            found = archives.read_images(archive, name)
            if not found:
                raise ImageError(f"{path}: no image for this host's platform in the archive")
            out = []
            for img in found:
                cfg = ImageConfig.parse(img.config)
                if len(cfg.diff_ids) != len(img.layers):
                    raise ImageError(f"{path}: config and manifest disagree on the layers")
                for lay, diff_id in zip(img.layers, cfg.diff_ids, strict=True):
                    if self.layer_path(diff_id).is_dir():
                        emit(PullEvent(lay.digest, "already exists"))
                        continue
                    emit(PullEvent(lay.digest, "importing"))
                    work = self._tmp_path("layer")
                    work.mkdir()
                    try:
                        with archive.open(lay.member) as raw:
                            hashing = _Hashing(raw)
                            done = layers.unpack_layer(hashing, work)
                            hashing.drain()
                        if hashing.digest() != lay.digest or done.diff_id != diff_id:
                            raise ImageError(f"{path}: layer {lay.member} does not match its "
                                             "digest: rejected")
                        self._commit_layer(work, diff_id, done)
                    except layers.LayerError as e:
                        raise ImageError(f"{path}: layer {lay.member}: {e}") from None
                    finally:
                        _rmtree(work)
                    emit(PullEvent(lay.digest, "imported"))
                image_id = "sha256:" + hashlib.sha256(img.config).hexdigest()
                digest = ""
                if img.manifest:
                    digest = "sha256:" + hashlib.sha256(img.manifest).hexdigest()
                    self._write_blob(digest, img.manifest)
                names = []
                for n in img.names:
                    try:
                        names.append(str(reference.parse(n)))
                    except reference.ReferenceError:
                        continue
                out.append(self._commit(image_id, img.config, cfg, digest, names))
            return out
        except (archives.ArchiveError, KeyError, OSError) as e:
            raise ImageError(f"{path}: cannot import: {e}") from None
        finally:
            archive.close()


class _Hashing:
    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.h = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.h.update(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass

    def digest(self) -> str:
        return "sha256:" + self.h.hexdigest()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _rmtree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
