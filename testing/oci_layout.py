"""Layer tars and OCI image layouts written directly, for differential tests
against `umoci unpack` without a registry or `umoci repack`.

    Entry          one tar member, by kind: file, dir, symlink, hardlink,
                   fifo, whiteout (`dir/.wh.NAME`), opaque (`dir/.wh..wh..opq`)
    layer_tar      the uncompressed tar of a list of entries, in that order
                   (PAX format, so any uid/gid and long names fit)
    write_layout   an OCI image layout (image-spec image-layout.md): the
                   `oci-layout` file, `index.json` naming one manifest by the
                   annotation `org.opencontainers.image.ref.name`, and
                   blobs/sha256/<hex> holding the manifest, the config (with
                   `rootfs.diff_ids`, the sha256 of each uncompressed layer,
                   config.md) and the layers (media type
                   `application/vnd.oci.image.layer.v1.tar`, media-types.md)
    umoci_unpack   `umoci unpack --image LAYOUT:TAG BUNDLE`; the tree is BUNDLE/rootfs

Whiteout names follow the image-spec's layer.md ("Whiteouts"): the prefix
`.wh.` plus the basename of the path to delete, and `.wh..wh..opq` for an
opaque directory. Nothing here imports pytest.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
KINDS = ("file", "dir", "symlink", "hardlink", "fifo", "whiteout", "opaque")


@dataclass(frozen=True)
class Entry:
    """One tar member. `path` is relative ("a/b"; "" is the root, a dir only).
    For a whiteout, `path` names what it deletes ("a/b" → member `a/.wh.b`);
    for an opaque marker, the directory made opaque ("a" → `a/.wh..wh..opq`).
    `link` is a symlink's target (verbatim) or a hardlink's target path.
    `mode` is the permission bits with setuid/setgid/sticky (0o7777);
    `mtime` whole seconds since the epoch; `xattrs` (name, value) pairs, as
    PAX `SCHILY.xattr.NAME` records."""

    path: str
    kind: str
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = 1_600_000_000
    data: bytes = b""
    link: str = ""
    xattrs: tuple[tuple[str, str], ...] = ()

    def member_name(self) -> str:
        """The tar member's name: `./`-prefixed as `tar -C dir .` writes them."""
        if self.kind in ("whiteout", "opaque"):
            parent, _, base = self.path.rpartition("/")
            name = OPAQUE if self.kind == "opaque" else WHITEOUT + base
            full = f"{self.path}/{name}" if self.kind == "opaque" else (
                f"{parent}/{name}" if parent else name)
            return "./" + full.lstrip("/")
        return "./" + self.path + ("/" if self.kind == "dir" and self.path else "")


def _info(e: Entry) -> tarfile.TarInfo:
    info = tarfile.TarInfo(e.member_name())
    info.mode, info.uid, info.gid, info.mtime = e.mode, e.uid, e.gid, e.mtime
    info.uname = info.gname = ""
    info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in e.xattrs}
    if e.kind in ("file", "whiteout", "opaque"):
        info.type = tarfile.REGTYPE
        info.size = len(e.data) if e.kind == "file" else 0
        if e.kind != "file":
            info.mode = 0o644
    elif e.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif e.kind == "symlink":
        info.type, info.linkname = tarfile.SYMTYPE, e.link
    elif e.kind == "hardlink":
        info.type, info.linkname = tarfile.LNKTYPE, "./" + e.link
    elif e.kind == "fifo":
        info.type = tarfile.FIFOTYPE
    else:
        raise ValueError(f"unknown entry kind {e.kind!r} (one of {', '.join(KINDS)})")
    return info


def layer_tar(entries: list[Entry]) -> bytes:
    """The uncompressed tar (PAX) of `entries`, in the given order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = _info(e)
            tar.addfile(info, io.BytesIO(e.data) if info.isreg() and info.size else None)
    return buf.getvalue()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _put(layout: Path, data: bytes) -> str:
    digest = _digest(data)
    path = layout / "blobs" / "sha256" / digest.removeprefix("sha256:")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return digest


def write_layout(layout: Path, layers: list[bytes], tag: str = "latest") -> str:
    """Write an OCI image layout at `layout` (created if missing) holding one
    image, tagged `tag`, made of `layers` (uncompressed tars, bottom first);
    returns the manifest's digest ("sha256:<hex>")."""
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    descs = [{"mediaType": LAYER_TAR, "digest": _put(layout, tar), "size": len(tar)}
             for tar in layers]
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descs]},
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": _put(layout, config), "size": len(config)},
        "layers": descs,
    }, sort_keys=True).encode()
    digest = _put(layout, manifest)
    index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": [{
        "mediaType": MANIFEST, "digest": digest, "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    (layout / "index.json").write_text(json.dumps(index, sort_keys=True))
    return digest


class UmociFailed(RuntimeError):
    """`umoci unpack` refused the image; the message holds its stderr."""


def umoci_unpack(layout: Path, bundle: Path, tag: str = "latest",
                 umoci: str = "umoci") -> Path:
    """Unpack the image `tag` of `layout` into the new directory `bundle` with
    `umoci unpack` (as root: owners kept); returns the root filesystem,
    `bundle/rootfs`. Raises UmociFailed when umoci exits non-zero."""
    result = subprocess.run([umoci, "unpack", "--image", f"{layout}:{tag}", str(bundle)],
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise UmociFailed(f"umoci unpack exited {result.returncode}: {result.stderr.strip()}")
    return bundle / "rootfs"
