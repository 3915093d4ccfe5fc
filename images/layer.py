"""Unpack one layer (a tar, plain or gzip) into a directory overlayfs can stack.

How the entries become that directory — OCI whiteouts as overlayfs's own
(`dir/.wh.name` → a character device 0:0, `dir/.wh..wh..opq` → the xattr
`trusted.overlay.opaque="y"`), in whatever order they come, with the
image-spec's rules for each — is changeset.py's. File modes, owners, mtimes,
symlinks, hard links (within the layer), FIFOs and xattrs (PAX
`SCHILY.xattr.*`) are kept; device nodes are skipped (a container gets its
/dev from the launcher, never from an image).

Safety: member names are normalised and refused if they climb out (`..`) or
pass through a symlink this layer made, and hard links must name a file of
the layer: a hostile layer cannot write outside its directory.

The uncompressed stream is hashed while it is read, giving the layer's
diff id (sha256 of the tar) to check against the image config's
rootfs.diff_ids. Runs in a thread; the caller unpacks into a temporary
directory and renames it into the store only when everything checked out.
"""

from __future__ import annotations

import hashlib
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from juggler.images.changeset import (  # noqa: F401 - re-exported
    BELOW,
    INHERIT,
    NEW,
    OPAQUE,
    OPAQUE_XATTR,
    WHITEOUT,
    Changeset,
    LayerError,
)

BUF = 1 << 20


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


@dataclass
class Unpacked:
    """One unpacked layer: `diff_id` ("sha256:<hex of the uncompressed tar>"),
    `size` (bytes of its regular files), `implicit` (path → INHERIT | NEW |
    BELOW: the directories it holds only as parents) and `whiteout_dirs` (the
    directories holding whiteouts), both for images/stack.py (changeset.py)."""

    diff_id: str
    size: int
    implicit: dict[str, str] = field(default_factory=dict)
    whiteout_dirs: list[str] = field(default_factory=list)


def unpack(src: BinaryIO, dest: Path) -> tuple[str, int]:
    """Unpack the layer read from `src` into the empty directory `dest`; returns
    its diff id ("sha256:<hex of the uncompressed tar>") and the size of its
    files. Raises LayerError for a malformed or hostile layer."""
    done = unpack_layer(src, dest)
    return done.diff_id, done.size


def unpack_layer(src: BinaryIO, dest: Path) -> Unpacked:
    """As `unpack`, with what the image store needs to show the layer stacked
    as the image-spec says (`Unpacked.implicit`). Raises LayerError."""
    reader = _Reader(src)
    changes = Changeset(str(dest))
    try:
        tar = tarfile.open(fileobj=reader, mode="r|", bufsize=BUF)  # type: ignore[call-overload]  # noqa: SIM115
    except tarfile.TarError as e:
        raise LayerError(f"not a tar archive: {e}") from None
    with tar:
        try:
            for member in tar:
                changes.apply(tar, member)
        except tarfile.TarError as e:
            raise LayerError(f"corrupt tar: {e}") from None
    reader.drain()  # tar's end-of-archive blocks and padding count for the digest
    changes.finish()
    return Unpacked("sha256:" + reader.hash.hexdigest(), changes.size, dict(changes.implicit),
                    changes.whiteout_dirs())


def unpack_file(path: Path, dest: Path) -> tuple[str, int]:
    with open(path, "rb") as f:
        return unpack(f, dest)
