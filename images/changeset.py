"""Apply one layer's tar entries to the directory overlayfs will stack for it.

The rules are the OCI image-spec's (layer.md, "Applying Changesets" and
"Whiteouts"), turned into what one overlayfs layer can hold, in whatever
order the entries come:

- An entry replaces what the layer already has at its path (a duplicate:
  layer.md says a layer MUST NOT have any, so the last one wins, as a
  sequential tar extraction does), except that a directory over a directory
  keeps its contents and takes the new attributes ("Changeset over existing
  files").
- `dir/.wh.NAME` deletes NAME of the layers below only: "Whiteout files MUST
  only apply to resources in lower/parent layers. Files that are present in
  the same layer as a whiteout file can only be hidden by whiteout files in
  subsequent layers." So it becomes overlayfs's whiteout (a character device
  0:0) only where the layer has nothing of its own at NAME; where it has a
  directory, that directory becomes opaque (what was below is gone, the
  layer's own entries stay); where it has another file, nothing more is needed.
- `dir/.wh..wh..opq` hides everything of the layers below in `dir` and is
  "applied first, ... regardless of the ordering in which the whiteout file
  was encountered": the xattr `trusted.overlay.opaque=y` on `dir`, which
  overlayfs reads that way whatever the order. Overlayfs ignores it on a
  layer's root, so images/merged_dirs.py drops the layers below such a layer.
- A non-directory entry hides the whole path below it as well; a directory
  the same layer later puts back at that path (a duplicate) is opaque.
- Hard links: "Extracting a layer with hardlink references to files outside
  of the layer may fail" — a link must name a non-directory (a file, a FIFO,
  a symlink: "possible with all file types except directories") that an
  earlier entry of the same layer made; otherwise LayerError, as Docker's
  overlay2 driver fails.
- Directories the layer holds only as the parents of its entries (no entry of
  their own: "implicit") are created 0755 root:root, and `implicit` records
  what each stands for, because a layer alone cannot know what is below it:
  INHERIT (the directory below, with its attributes, if there is one), NEW (a
  new directory: what was below is deleted), BELOW (whatever is below:
  the layer holds it only for whiteouts and opaque markers). The image store
  turns these into what the merged tree must show (images/merged_dirs.py).
- Whiteouts and opaque markers beneath a path this layer made a non-directory
  or deleted are moot (nothing below shows through) and are skipped; so are
  whiteouts beneath an opaque directory. (Overlayfs filters whiteouts out of
  a directory's listing only where it merges the directory with another
  layer's: one beneath an opaque directory would be listed, and not found.
  For the same reason `whiteout_dirs` lists the directories holding
  whiteouts: the image store merges each with its stack directory.)

Safety: names climbing out (`..`), entries through a symlink this layer made,
and hard links to anything but an earlier non-directory of this layer are
refused; a hostile layer cannot write outside its directory. Device nodes are
skipped (a container gets its /dev from the launcher), and so are the xattrs
`trusted.overlay.*` (overlayfs's own metadata: an image must not steer the
overlay with them), `security.selinux` and `system.nfs4_acl` (host-specific;
umoci skips these too).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tarfile
from typing import IO

from juggler.common.file_attributes import OPAQUE_XATTR, OVERLAY_PREFIX

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
INHERIT, NEW, BELOW = "inherit", "new", "below"
SKIPPED_XATTRS = (OVERLAY_PREFIX, "security.selinux", "system.nfs4_acl")
BUF = 1 << 20

# What the layer made at a path (Changeset.made): "dir" (explicit or
# implicit), "file", "fifo", "symlink" (also a hard link to a symlink),
# "whiteout" (a character device 0:0).
_DIR, _WHITEOUT, _SYMLINK = "dir", "whiteout", "symlink"


class LayerError(ValueError):
    """The layer is malformed or hostile; the message says which entry."""


def clean(name: str) -> str:
    """A member name as a relative path ("" for the root); raises LayerError
    for a name with a `..` component."""
    parts = []
    for part in name.replace("\\", "/").split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise LayerError(f"layer entry {name!r} climbs out of the layer ('..')")
        parts.append(part)
    return "/".join(parts)


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _under(path: str, top: str) -> bool:
    return path.startswith(top + "/") if top else path != ""


class Changeset:
    """The state of one layer's extraction into the empty directory `root`:
    feed every member to `apply` in tar order, then call `finish`."""

    def __init__(self, root: str) -> None:
        self.root = root
        os.chmod(root, 0o755)  # an implicit directory too, whatever the umask
        self.made: dict[str, str] = {"": _DIR}
        self.implicit: dict[str, str] = {"": INHERIT}  # path → INHERIT | NEW | BELOW
        self.hidden: set[str] = set()  # paths whose lower content this layer deleted
        self.pending: dict[str, tarfile.TarInfo] = {}  # explicit dirs' metadata, set last
        self.opaque: set[str] = set()
        self.whiteouts: set[str] = set()  # the paths `made` has as whiteouts
        self.size = 0

    def _path(self, rel: str) -> str:
        return os.path.join(self.root, rel) if rel else self.root

    # -- bookkeeping -------------------------------------------------------------------
    def _forget_below(self, path: str) -> None:
        for table in (self.made, self.implicit, self.pending):
            for p in [p for p in table if _under(p, path)]:
                del table[p]
        self.hidden = {p for p in self.hidden if not _under(p, path)}
        self.opaque = {p for p in self.opaque if not _under(p, path)}
        self.whiteouts = {p for p in self.whiteouts if not _under(p, path)}

    def _clear(self, path: str) -> None:
        """Remove what the layer has at `path` (and below), on disk and in the books."""
        kind = self.made.pop(path, None)
        if kind is None:
            return  # nothing there (the layer's files are all in `made`)
        full = self._path(path)
        if kind == _DIR:
            shutil.rmtree(full)
            self._forget_below(path)
        else:
            os.unlink(full)
            self.whiteouts.discard(path)
        self.implicit.pop(path, None)
        self.pending.pop(path, None)
        self.opaque.discard(path)

    def _mkdir(self, path: str, implicit: str | None) -> None:
        full = self._path(path)
        os.mkdir(full, 0o700)
        self.made[path] = _DIR
        if implicit is not None:
            os.chmod(full, 0o755)
            self.implicit[path] = NEW if path in self.hidden else implicit
        if path in self.hidden:
            self._make_opaque(path)

    def _make_opaque(self, path: str) -> None:
        os.setxattr(self._path(path), OPAQUE_XATTR, b"y")
        self.opaque.add(path)
        for p in [p for p in self.whiteouts if _under(p, path)]:
            os.unlink(self._path(p))  # moot now: nothing below shows through
            del self.made[p]
            self.whiteouts.discard(p)

    def _in_opaque(self, path: str) -> bool:
        return any(q in self.opaque for q in _ancestors(path)) or "" in self.opaque

    def _parents(self, m: tarfile.TarInfo, path: str, marker: bool) -> bool:
        """Make sure every ancestor of `path` is a directory of this layer;
        False when the entry is a marker that nothing below can show through."""
        for q in _ancestors(path):
            kind = self.made.get(q)
            if kind == _SYMLINK:
                raise LayerError(f"layer entry {m.name!r} goes through the symlink {q!r}")
            if kind == _DIR:
                if not marker and self.implicit.get(q) == BELOW:
                    self.implicit[q] = NEW if q in self.hidden else INHERIT
                continue
            if kind is None and q not in self.hidden:
                self._mkdir(q, BELOW if marker else INHERIT)
                continue
            # Deleted by this layer (a whiteout, or beneath an opaque directory),
            # or a non-directory of this layer.
            if marker:
                return False
            if kind is not None and kind != _WHITEOUT:
                raise LayerError(f"layer entry {m.name!r}: {q!r} is not a directory in "
                                 "this layer")
            self._clear(q)  # a whiteout, then entries beneath: a new directory
            self._mkdir(q, NEW)
        return True

    # -- entries ---------------------------------------------------------------------
    def apply(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        """Apply one member (its data read from `tar`); raises LayerError."""
        path = clean(m.name)
        parent, _, base = path.rpartition("/")
        if base == OPAQUE:
            self._opaque(m, parent)
        elif base.startswith(WHITEOUT):
            self._whiteout(m, f"{parent}/{base[len(WHITEOUT):]}" if parent
                           else base[len(WHITEOUT):])
        elif not path:
            if not m.isdir():
                raise LayerError(f"layer entry {m.name!r} makes the root a non-directory")
            self.implicit.pop("", None)
            self.pending[""] = m
        elif m.isdir():
            self._parents(m, path, marker=False)
            if self.made.get(path) != _DIR:
                self._clear(path)
                self._mkdir(path, None)
            self.implicit.pop(path, None)
            self.pending[path] = m
        elif m.isreg() or m.issym() or m.islnk() or m.isfifo():
            self._parents(m, path, marker=False)
            self._nondir(tar, m, path)
        # character and block devices: never from an image

    def _opaque(self, m: tarfile.TarInfo, path: str) -> None:
        if path and not self._parents(m, f"{path}/{OPAQUE}", marker=True):
            return
        if self.made.get(path) == _DIR:
            self._make_opaque(path)
        # else: a file or a whiteout of this layer hides everything below anyway

    def _whiteout(self, m: tarfile.TarInfo, path: str) -> None:
        if not path:
            raise LayerError(f"layer entry {m.name!r} whites out the root")
        if not self._parents(m, path, marker=True):
            return
        kind = self.made.get(path)
        if kind == _DIR and self.implicit.get(path) != BELOW:
            # The layer's own directory stays; what was below it goes.
            self.hidden.add(path)
            self._make_opaque(path)
            if path in self.implicit:
                self.implicit[path] = NEW
        elif kind is None or kind == _DIR:  # nothing, or a directory of markers only
            self._clear(path)
            self.hidden.add(path)
            if not self._in_opaque(path):
                os.mknod(self._path(path), stat.S_IFCHR | 0o600, os.makedev(0, 0))
                self.made[path] = _WHITEOUT
                self.whiteouts.add(path)
        # else: a non-directory of this layer, which hides what was below anyway

    def _nondir(self, tar: tarfile.TarFile, m: tarfile.TarInfo, path: str) -> None:
        full = self._path(path)
        if m.islnk():
            target = clean(m.linkname)
            kind = self.made.get(target)
            if target == path or kind in (None, _DIR, _WHITEOUT):
                raise LayerError(f"hard link {m.name!r} → {m.linkname!r}: the target is not "
                                 "a file an earlier entry of this layer made (links to other "
                                 "layers' files are not supported)")
            self._clear(path)
            os.link(self._path(target), full, follow_symlinks=False)
            self.made[path] = kind
            self.hidden.add(path)
            return
        self._clear(path)
        self.hidden.add(path)
        if m.isreg():
            fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                _copy(tar.extractfile(m), out, m)
            self.size += m.size
            self.made[path] = "file"
        elif m.issym():
            os.symlink(m.linkname, full)
            self.made[path] = _SYMLINK
            _owner(full, m)
            with contextlib.suppress(OSError):
                os.utime(full, (m.mtime, m.mtime), follow_symlinks=False)
            return
        else:
            os.mkfifo(full, 0o600)
            self.made[path] = "fifo"
        _meta(full, m)

    def finish(self) -> None:
        """Directory attributes last: writing into a directory changes its
        mtime, and a read-only one would refuse its own entries."""
        for path, m in sorted(self.pending.items(), key=lambda kv: -kv[0].count("/")):
            _meta(self._path(path), m)

    def whiteout_dirs(self) -> list[str]:
        """The directories that hold whiteouts (sorted)."""
        return sorted({p.rpartition("/")[0] for p in self.whiteouts})


def _copy(src: IO[bytes] | None, out: IO[bytes], m: tarfile.TarInfo) -> None:
    assert src is not None
    remaining = m.size
    while remaining:
        data = src.read(min(BUF, remaining))
        if not data:
            raise LayerError(f"layer entry {m.name!r} is truncated")
        out.write(data)
        remaining -= len(data)


def _owner(path: str, m: tarfile.TarInfo) -> None:
    with contextlib.suppress(PermissionError):
        os.lchown(path, m.uid, m.gid)


def _meta(path: str, m: tarfile.TarInfo) -> None:
    _owner(path, m)
    os.chmod(path, m.mode & 0o7777)  # after chown, which clears setuid bits
    with contextlib.suppress(OSError):
        os.utime(path, (m.mtime, m.mtime))
    for key, value in (m.pax_headers or {}).items():
        name = key[len("SCHILY.xattr."):]
        # An empty pax record deletes its keyword (POSIX pax, "pax Extended
        # Header"): no xattr, as Go's archive/tar (Docker, umoci) reads it.
        if key.startswith("SCHILY.xattr.") and value and not name.startswith(SKIPPED_XATTRS):
            with contextlib.suppress(OSError):
                os.setxattr(path, name, value.encode("utf-8", "surrogateescape"),
                            follow_symlinks=False)
