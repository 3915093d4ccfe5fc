"""What a container sees of a directory tree, as a value two trees can be compared by.

`snapshot(root)` walks `root` without following symlinks and records, for
every path below it (relative, "" for the root itself), a `Node`: the type,
the permission bits with setuid/setgid/sticky, the owner, the mtime in whole
seconds, a regular file's bytes, a symlink's target, a device's numbers, the
`user.*` xattrs, and the other names of the same inode (hard links: the
names that share st_dev and st_ino; directories have none). Link counts are
not recorded: an overlay reports those of the layer holding the inode,
which counts names other layers hide.

`differences(a, b)` lists, sorted, every path whose nodes differ, in words a
person can act on ("a/b: mode 0o755 != 0o700"); empty when equal.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, fields

KINDS = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink",
         stat.S_IFIFO: "fifo", stat.S_IFCHR: "char", stat.S_IFBLK: "block",
         stat.S_IFSOCK: "socket"}


@dataclass(frozen=True)
class Node:
    kind: str
    mode: int  # 0o7777 bits; 0 for a symlink (its own bits mean nothing)
    uid: int
    gid: int
    mtime: int | None  # seconds; None where a comparison leaves it out
    data: bytes = b""
    link: str = ""
    rdev: tuple[int, int] = (0, 0)
    xattrs: tuple[tuple[str, bytes], ...] = ()
    hardlinks: tuple[str, ...] = ()  # the other names of this inode, sorted


def _xattrs(path: str) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    return tuple(sorted((n, os.getxattr(path, n, follow_symlinks=False))
                        for n in names if n.startswith("user.")))


def snapshot(root: str | os.PathLike[str]) -> dict[str, Node]:
    """Every path under `root` ("" is `root`) → its Node. Raises OSError when
    `root` cannot be read."""
    root = os.fspath(root)
    out: dict[str, Node] = {}
    inodes: dict[tuple[int, int], list[str]] = {}
    stats: dict[str, os.stat_result] = {}

    def visit(rel: str) -> None:
        path = os.path.join(root, rel) if rel else root
        st = os.lstat(path)
        stats[rel] = st
        kind = KINDS.get(stat.S_IFMT(st.st_mode), "unknown")
        if kind != "dir":
            inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
        if kind == "dir":
            for name in sorted(os.listdir(path)):
                visit(f"{rel}/{name}" if rel else name)

    visit("")
    for rel, st in stats.items():
        path = os.path.join(root, rel) if rel else root
        kind = KINDS.get(stat.S_IFMT(st.st_mode), "unknown")
        data, link, rdev = b"", "", (0, 0)
        if kind == "file":
            with open(path, "rb") as f:
                data = f.read()
        elif kind == "symlink":
            link = os.readlink(path)
        elif kind in ("char", "block"):
            rdev = (os.major(st.st_rdev), os.minor(st.st_rdev))
        others = () if kind == "dir" else tuple(
            sorted(p for p in inodes[(st.st_dev, st.st_ino)] if p != rel))
        out[rel] = Node(kind=kind, mode=0 if kind == "symlink" else stat.S_IMODE(st.st_mode),
                        uid=st.st_uid, gid=st.st_gid, mtime=int(st.st_mtime), data=data,
                        link=link, rdev=rdev, xattrs=_xattrs(path), hardlinks=others)
    return out


def _show(name: str, value: object) -> str:
    if name == "mode" and isinstance(value, int):
        return oct(value)
    if isinstance(value, bytes) and len(value) > 40:
        return repr(value[:40]) + "…"
    return repr(value)


def differences(a: dict[str, Node], b: dict[str, Node], a_name: str = "a",
                b_name: str = "b") -> list[str]:
    """Each path present in only one tree, or whose nodes differ (field by
    field: `a_name`'s value first), as one line; sorted by path."""
    out = []
    for path in sorted(set(a) | set(b)):
        shown = path or "/"
        if path not in a:
            out.append(f"{shown}: only in {b_name} ({b[path].kind})")
        elif path not in b:
            out.append(f"{shown}: only in {a_name} ({a[path].kind})")
        elif a[path] != b[path]:
            diffs = [f"{f.name} {_show(f.name, getattr(a[path], f.name))} != "
                     f"{_show(f.name, getattr(b[path], f.name))}"
                     for f in fields(Node) if getattr(a[path], f.name) != getattr(b[path], f.name)]
            out.append(f"{shown}: " + ", ".join(diffs) + f" ({a_name} != {b_name})")
    return out
