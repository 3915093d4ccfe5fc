"""How an image's unpacked layers stack into the tree the image-spec describes.

A layer is unpacked alone (changeset.py), without its parents, so where a
layer holds a directory only as the parent of its entries ("implicit") it
cannot know what the spec says is there: the layers below decide (layer.md:
entries replace paths, a directory over a directory only takes the new
attributes; a path without an entry keeps what it had). Overlayfs would show
the implicit directory's own attributes (0755 root:root), or an empty
directory where a layer held one only for its whiteouts. So each image gets a
small extra top layer, its *stack directory*, holding exactly the
corrections:

    a directory  for every implicit directory that shows (and for each of its
                 parents and the root, since a directory of the top layer
                 sets the attributes the merged tree shows), with the
                 attributes of the directory below it (or 0755 root:root when
                 there is none, or the layer deleted what was below);
    a directory  for every directory holding a layer's whiteouts, so that
                 overlayfs merges it and hides them: it lists a whiteout it
                 does not merge (a directory only one layer has), which no
                 one can then open;
    a whiteout   (character device 0:0) where a layer held a directory only
                 for its markers and nothing is below it;
    a hard link  to the lower layer's file where such a directory stood over
                 a non-directory (the same inode: what the spec shows there).

`plan` decides (pure: the layers are read through `probe`), `build` makes the
directory. `lowers` drops the layers below the topmost one whose root is
opaque (`./.wh..wh..opq`): overlayfs ignores the opaque xattr on a layer's
root, and the spec says everything below is hidden.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field

from juggler.common.file_attributes import OPAQUE_XATTR, copy_attributes
from juggler.images.changeset import BELOW, INHERIT, NEW


@dataclass(frozen=True)
class Layer:
    """An unpacked layer: its directory, its implicit directories (path →
    INHERIT | NEW | BELOW) and the directories holding its whiteouts
    (changeset.py)."""

    dir: str
    implicit: dict[str, str]
    whiteout_dirs: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Found:
    """What one layer's directory has at a path: kind "dir" | "whiteout" |
    "other" (any other non-directory), and whether a directory is opaque."""

    kind: str
    opaque: bool = False


Probe = Callable[[int, str], Found | None]  # (layer index, top first; path) → Found


@dataclass(frozen=True)
class Correction:
    """One path of the stack directory: `what` is "dir" (attributes from
    layer `source`'s directory at the path), "whiteout", or "link" (a hard
    link to layer `source`'s non-directory at the path)."""

    path: str
    what: str
    source: int = -1


@dataclass(frozen=True)
class _Resolved:
    kind: str  # "dir" | "other" | "none"
    source: int = -1  # the layer whose directory (attributes) or file it is


_NONE = _Resolved("none")


def _ancestors(path: str) -> list[str]:
    if not path:
        return []
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(len(parts))]  # "" (the root) first


def _resolve(path: str, layers: list[Layer], probe: Probe, start: int) -> _Resolved:
    """What the merged tree of layers[start:] (top first) has at `path`,
    implicit directories taken as the spec means them."""
    for k in range(start, len(layers)):
        blocked = False
        found: Found | None = Found("dir")
        for q in _ancestors(path):
            found = probe(k, q)
            if found is None:
                break
            if found.kind != "dir":
                return _NONE  # replaced or deleted by this layer
            blocked = blocked or found.opaque
        if found is not None:
            found = probe(k, path)
        if found is not None:
            if found.kind == "whiteout":
                return _NONE
            if found.kind == "other":
                return _Resolved("other", k)
            kind = layers[k].implicit.get(path)
            if kind is None or kind == NEW or (kind == INHERIT and blocked):
                return _Resolved("dir", k)
            if kind == BELOW and blocked:
                return _NONE
            below = _resolve(path, layers, probe, k + 1)
            if kind == INHERIT and below.kind != "dir":
                return _Resolved("dir", k)
            return below
        if blocked:
            return _NONE
    return _NONE


def _first(path: str, layers: list[Layer], probe: Probe) -> int:
    """The layer overlayfs takes `path` from (top first), -1 if none shows it."""
    for k in range(len(layers)):
        found: Found | None = Found("dir")
        blocked = False
        for q in _ancestors(path):
            found = probe(k, q)
            if found is None:
                break
            if found.kind != "dir":
                return -1
            blocked = blocked or found.opaque  # the root's too: `lowers` cuts there
        if found is not None and probe(k, path) is not None:
            return k if probe(k, path).kind != "whiteout" else -1  # type: ignore[union-attr]
        if blocked:
            return -1
    return -1


def lowers(layers: list[Layer], probe: Probe) -> list[Layer]:
    """`layers` (top first) down to the topmost one with an opaque root."""
    for k in range(len(layers)):
        found = probe(k, "")
        if found is not None and found.opaque:
            return layers[:k + 1]
    return layers


def plan(layers: list[Layer], probe: Probe) -> list[Correction]:
    """The stack directory for `layers` (top first, all of them: an opaque
    root hides what is below it, not the root's attributes): parents before
    children."""
    candidates = sorted({p for layer in layers for p in layer.implicit} | {""},
                        key=lambda p: (p.count("/") if p else -1, p))
    merge = {p for layer in layers for p in layer.whiteout_dirs}
    out: dict[str, Correction] = {}
    gone: list[str] = []  # paths that are not directories: nothing below them matters
    for path in candidates:
        if any(path == g or path.startswith(g + "/") for g in gone):
            continue
        first = _first(path, layers, probe) if path else 0
        if first < 0 or (path and layers[first].implicit.get(path) not in (INHERIT, BELOW)):
            continue
        got = _resolve(path, layers, probe, 0)
        if got.kind == "dir":
            if got.source == first and path and layers[first].implicit.get(path) == INHERIT \
                    and path not in merge:
                continue  # already right where overlayfs looks
            out[path] = Correction(path, "dir", got.source)
            continue
        gone.append(path)
        out[path] = Correction(path, "link", got.source) if got.kind == "other" else \
            Correction(path, "whiteout")
    for path in sorted(merge - set(out), key=lambda p: p.count("/")):
        if path and _first(path, layers, probe) >= 0 and not any(
                path == g or path.startswith(g + "/") for g in gone):
            got = _resolve(path, layers, probe, 0)
            if got.kind == "dir":
                out[path] = Correction(path, "dir", got.source)
    for path in list(out):  # every parent of a correction carries its own attributes
        for q in _ancestors(path):
            if q not in out:
                got = _resolve(q, layers, probe, 0)
                out[q] = Correction(q, "dir", got.source)
    return sorted(out.values(), key=lambda c: (c.path.count("/") if c.path else -1, c.path))


def probe_dirs(layers: list[Layer]) -> Probe:
    """A Probe reading the layers' directories (lstat; never through a
    symlink: `_resolve` probes every parent first and stops at a non-directory)."""

    def probe(k: int, path: str) -> Found | None:
        full = os.path.join(layers[k].dir, path) if path else layers[k].dir
        try:
            st = os.lstat(full)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat.S_ISDIR(st.st_mode):
            try:
                opaque = os.getxattr(full, OPAQUE_XATTR, follow_symlinks=False) == b"y"
            except OSError:
                opaque = False
            return Found("dir", opaque)
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            return Found("whiteout")
        return Found("other")

    return probe


def build(corrections: list[Correction], layers: list[Layer], dest: str) -> None:
    """Make the stack directory `dest` (new; its parent exists) from `plan`'s
    corrections. Raises OSError."""
    os.mkdir(dest, 0o755)
    for c in corrections:
        target = os.path.join(dest, c.path) if c.path else dest
        source = os.path.join(layers[c.source].dir, c.path) if c.source >= 0 else ""
        if c.what == "whiteout":
            os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(0, 0))
        elif c.what == "link":
            os.link(source, target, follow_symlinks=False)
        else:
            if c.path:
                os.mkdir(target, 0o700)
            copy_attributes(source, target, os.lstat(source))
    # mtimes last: making entries in a directory changes its mtime
    for c in reversed(corrections):
        if c.what == "dir":
            st = os.lstat(os.path.join(layers[c.source].dir, c.path) if c.path
                          else layers[c.source].dir)
            target = os.path.join(dest, c.path) if c.path else dest
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
