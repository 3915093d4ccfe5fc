"""Unpack one layer (a tar, plain or gzip) into a directory overlayfs can stack.

OCI whiteouts become overlayfs's own: `dir/.wh.name` → a character device 0:0
named `dir/name` (hides `name` of the layers below), and `dir/.wh..wh..opq`
→ the xattr `trusted.overlay.opaque="y"` on `dir` (hides everything below
it). File modes, owners, mtimes, symlinks, hard links (within the layer),
FIFOs and xattrs (PAX `SCHILY.xattr.*`) are kept; device nodes are skipped
(a container gets its /dev from the launcher, never from an image).

Safety: member names are normalised and refused if they climb out (`..`) or
pass through a symlink this layer made, and hard links must name a file of
the layer: a hostile layer cannot write outside its directory.

The uncompressed stream is hashed while it is read, giving the layer's
diff id (sha256 of the tar) to check against the image config's
rootfs.diff_ids. Runs in a thread; the caller unpacks into a temporary
directory and renames it into the store only when everything checked out.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tarfile
import zlib
from pathlib import Path
from typing import BinaryIO

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
BUF = 1 << 20


class LayerError(ValueError):
    pass


class _Reader:
    """Decompresses (gzip, possibly multi-member) or passes through, and hashes
    the uncompressed bytes: a file object tarfile can read in stream mode."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.hash = hashlib.sha256()
        head = b""
        while len(head) < 4:
            more = raw.read(4 - len(head))
            if not more:
                break
            head += more
        self._pending = b""
        self._pos = 0
        self._eof = False
        if head[:2] == b"\x1f\x8b":
            self._z: zlib._Decompress | None = zlib.decompressobj(zlib.MAX_WBITS | 16)
            self._pending = self._z.decompress(head)
        elif head == b"\x28\xb5\x2f\xfd":
            raise LayerError("zstd-compressed layers are not supported (only gzip and plain "
                             "tar)")
        else:
            self._z = None
            self._pending = head
        self.hash.update(self._pending)

    def _more(self) -> bytes:
        while True:
            data = self.raw.read(BUF)
            if self._z is None:
                if not data:
                    self._eof = True
                return data
            if not data:
                self._eof = True
                return self._z.flush()
            out = self._z.decompress(data)
            while self._z.eof and self._z.unused_data:  # concatenated gzip members
                rest = self._z.unused_data
                self._z = zlib.decompressobj(zlib.MAX_WBITS | 16)
                out += self._z.decompress(rest)
            if out:
                return out

    def read(self, n: int = -1) -> bytes:
        # tarfile asks for small pieces: serve them from the pending buffer by
        # offset instead of re-slicing (and copying) it on every call.
        while (n < 0 or len(self._pending) - self._pos < n) and not self._eof:
            data = self._more()
            if data:
                self.hash.update(data)
                self._pending = self._pending[self._pos:] + data
                self._pos = 0
        end = len(self._pending) if n < 0 else min(len(self._pending), self._pos + n)
        out = self._pending[self._pos:end]
        self._pos = end
        if self._pos == len(self._pending):
            self._pending, self._pos = b"", 0
        return out

    def drain(self) -> None:
        while self.read(BUF):
            pass


def _clean(name: str) -> str:
    parts = []
    for part in name.replace("\\", "/").split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise LayerError(f"layer entry {name!r} climbs out of the layer ('..')")
        parts.append(part)
    return "/".join(parts)


def unpack(src: BinaryIO, dest: Path) -> tuple[str, int]:
    """Unpack the layer read from `src` into the empty directory `dest`; returns
    its diff id ("sha256:<hex of the uncompressed tar>") and the size of its files."""
    reader = _Reader(src)
    root = str(dest)
    links: set[str] = set()  # symlinks this layer made: never written through
    dirs: list[tuple[str, tarfile.TarInfo]] = []
    size = 0
    try:
        tar = tarfile.open(fileobj=reader, mode="r|", bufsize=BUF)  # type: ignore[call-overload]  # noqa: SIM115
    except tarfile.TarError as e:
        raise LayerError(f"not a tar archive: {e}") from None
    with tar:
        try:
            for member in tar:
                _extract(tar, member, root, links, dirs)
                size += member.size if member.isreg() else 0
        except tarfile.TarError as e:
            raise LayerError(f"corrupt tar: {e}") from None
    reader.drain()  # tar's end-of-archive blocks and padding count for the digest
    # Directory modes and times last: writing into a dir changes its mtime, and a
    # read-only dir would refuse its own entries.
    for path, member in reversed(dirs):
        _meta(path, member)
    return "sha256:" + reader.hash.hexdigest(), size


def _extract(tar: tarfile.TarFile, m: tarfile.TarInfo, root: str, links: set[str],
             dirs: list[tuple[str, tarfile.TarInfo]]) -> None:
    name = _clean(m.name)
    if not name:
        if m.isdir():
            dirs.append((root, m))
        return
    parent, _, base = name.rpartition("/")
    probe = ""
    for part in parent.split("/") if parent else []:
        probe = f"{probe}/{part}" if probe else part
        if probe in links:
            raise LayerError(f"layer entry {m.name!r} goes through the symlink {probe!r}")
    pdir = os.path.join(root, parent) if parent else root
    if parent:
        os.makedirs(pdir, exist_ok=True)
    path = os.path.join(pdir, base)
    if base == OPAQUE:
        os.setxattr(pdir, OPAQUE_XATTR, b"y")
        return
    if base.startswith(WHITEOUT):
        target = os.path.join(pdir, base[len(WHITEOUT):])
        _remove(target)
        os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(0, 0))
        links.discard(f"{parent}/{base[len(WHITEOUT):]}" if parent else base[len(WHITEOUT):])
        return
    if m.isdir():
        if not os.path.isdir(path) or os.path.islink(path):
            _remove(path)
            os.mkdir(path, 0o700)
        links.discard(name)
        dirs.append((path, m))
        return
    _remove(path)
    links.discard(name)
    if m.isreg():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            f = tar.extractfile(m)
            assert f is not None
            remaining = m.size
            while remaining:
                data = f.read(min(BUF, remaining))
                if not data:
                    raise LayerError(f"layer entry {m.name!r} is truncated")
                out.write(data)
                remaining -= len(data)
    elif m.issym():
        os.symlink(m.linkname, path)
        links.add(name)
        _owner(path, m)
        with contextlib.suppress(OSError):
            os.utime(path, (m.mtime, m.mtime), follow_symlinks=False)
        return
    elif m.islnk():
        target = _clean(m.linkname)
        src = os.path.join(root, target)
        if target in links or not os.path.lexists(src) or os.path.isdir(src):
            raise LayerError(f"hard link {m.name!r} → {m.linkname!r}: the target is not a "
                             "file of this layer")
        os.link(src, path, follow_symlinks=False)
        return
    elif m.isfifo():
        os.mkfifo(path, 0o600)
    else:  # character and block devices: never from an image
        return
    _meta(path, m)
    _xattrs(path, m)


def _remove(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _owner(path: str, m: tarfile.TarInfo) -> None:
    with contextlib.suppress(PermissionError):
        os.lchown(path, m.uid, m.gid)


def _meta(path: str, m: tarfile.TarInfo) -> None:
    _owner(path, m)
    os.chmod(path, m.mode & 0o7777)  # after chown, which clears setuid bits
    with contextlib.suppress(OSError):
        os.utime(path, (m.mtime, m.mtime))
    if m.isdir():
        _xattrs(path, m)


def _xattrs(path: str, m: tarfile.TarInfo) -> None:
    for key, value in (m.pax_headers or {}).items():
        if key.startswith("SCHILY.xattr."):
            with contextlib.suppress(OSError):
                os.setxattr(path, key[len("SCHILY.xattr."):],
                            value.encode("utf-8", "surrogateescape"), follow_symlinks=False)


def unpack_file(path: Path, dest: Path) -> tuple[str, int]:
    with open(path, "rb") as f:
        return unpack(f, dest)
