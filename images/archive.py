"""Images from files, for air-gapped hosts: an OCI image layout (a directory or
a tar of one) and a `docker save` tar. Pure reading, no store writes.

    OCI layout   oci-layout, index.json → manifests (or nested indexes, resolved
                 to this host's platform) → blobs/sha256/<hex>. The name comes
                 from the annotation `io.containerd.image.name`, else
                 `org.opencontainers.image.ref.name` (a tag: joined to the
                 name given on the command line).
    docker save  manifest.json: [{Config, RepoTags, Layers}] with uncompressed
                 layer tars whose sha256 is the diff id. (Newer Docker writes
                 both; the OCI index is preferred.)
"""

from __future__ import annotations

import contextlib
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from juggler.images import config as image_config


class ArchiveError(ValueError):
    pass


@dataclass
class ArchiveLayer:
    member: str  # path inside the archive
    digest: str  # expected sha256 of those bytes


@dataclass
class ArchiveImage:
    names: list[str]
    config: bytes
    layers: list[ArchiveLayer]
    manifest: bytes = b""  # empty for `docker save` images
    extra: dict = field(default_factory=dict)


class Archive:
    """Read access to a directory or a tar by member name."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tar: tarfile.TarFile | None = None
        if not path.is_dir():
            try:
                self.tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by close()  # noqa: SIM115 - closed by close()
            except (tarfile.TarError, OSError) as e:
                raise ArchiveError(f"{path}: not an image directory or tar: {e}") from None
            self._names = {m.name.removeprefix("./"): m for m in self.tar.getmembers()}

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()

    def exists(self, name: str) -> bool:
        if self.tar is None:
            return (self.path / name).is_file()
        return name in self._names

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        if self.tar is None:
            with open(self.path / name, "rb") as f:
                yield f
            return
        member = self._names.get(name)
        f = self.tar.extractfile(member) if member is not None else None
        if f is None:
            raise ArchiveError(f"{self.path}: no file {name!r} in the archive")
        with f:
            yield f

    def read(self, name: str, limit: int = 64 << 20) -> bytes:
        with self.open(name) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise ArchiveError(f"{self.path}: {name} is too large")
        return data


def _blob(digest: str) -> str:
    algo, _, hexd = digest.partition(":")
    return f"blobs/{algo}/{hexd}"


def read_images(archive: Archive, name: str = "") -> list[ArchiveImage]:
    """The images in `archive`; `name` names them when the archive does not."""
    if archive.exists("index.json"):
        return _oci(archive, name)
    if archive.exists("manifest.json"):
        return _docker(archive, name)
    raise ArchiveError(f"{archive.path}: neither an OCI image layout (index.json) nor a "
                       "`docker save` archive (manifest.json)")


def _json(archive: Archive, member: str) -> dict | list:
    try:
        return json.loads(archive.read(member))
    except ValueError as e:
        raise ArchiveError(f"{archive.path}: {member} is not JSON: {e}") from None


def _oci(archive: Archive, name: str) -> list[ArchiveImage]:
    out = []
    index = _json(archive, "index.json")
    assert isinstance(index, dict)
    for entry in index.get("manifests", []):
        ann = entry.get("annotations") or {}
        names = []
        full = ann.get("io.containerd.image.name", "")
        tag = ann.get("org.opencontainers.image.ref.name", "")
        if full:
            names.append(full)
        elif "/" in tag:  # some tools put a whole reference there
            names.append(tag)
        elif name:
            pinned = ":" in name.rsplit("/", 1)[-1] or "@" in name
            names.append(name if pinned or not tag else f"{name}:{tag}")
        desc = entry
        body = _json(archive, _blob(desc["digest"]))
        assert isinstance(body, dict)
        if "manifests" in body:
            chosen = image_config.choose_platform(body["manifests"], image_config.host_platform())
            if chosen is None:
                continue
            desc = chosen
            body = _json(archive, _blob(desc["digest"]))
            assert isinstance(body, dict)
        manifest = archive.read(_blob(desc["digest"]))
        config = archive.read(_blob(body["config"]["digest"]))
        layers = [ArchiveLayer(_blob(d["digest"]), d["digest"]) for d in body.get("layers", [])]
        out.append(ArchiveImage(names=names, config=config, layers=layers, manifest=manifest,
                                extra={"layer_digests": [d["digest"] for d in body["layers"]]}))
    if name and len(out) == 1 and not out[0].names:
        out[0].names.append(name)
    return out


def _docker(archive: Archive, name: str) -> list[ArchiveImage]:
    out = []
    manifest = _json(archive, "manifest.json")
    assert isinstance(manifest, list)
    for entry in manifest:
        config = archive.read(entry["Config"])
        cfg = image_config.ImageConfig.parse(config)
        if len(cfg.diff_ids) != len(entry["Layers"]):
            raise ArchiveError(f"{archive.path}: {entry['Config']} lists {len(cfg.diff_ids)} "
                               f"layers, manifest.json {len(entry['Layers'])}")
        layers = [ArchiveLayer(member, diff) for member, diff in
                  zip(entry["Layers"], cfg.diff_ids, strict=True)]
        names = list(entry.get("RepoTags") or []) or ([name] if name else [])
        out.append(ArchiveImage(names=names, config=config, layers=layers))
    return out
