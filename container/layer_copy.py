"""Where overlayfs is unavailable: an image's layers copied into one directory,
showing what the overlay of the same layers would show.

The layers are the image store's (images/store.py `acquire`: its stack
directory first, then the layers, top first); they are applied bottom up:

    a whiteout (character device 0:0)  deletes the path
    an opaque directory                (xattr trusted.overlay.opaque=y, never
                                       read on a layer's root, as overlayfs)
                                       loses what the layers below put in it
    a non-directory                    replaces the path (a directory with all
                                       below it); hard links within a layer,
                                       and to a lower layer's file (the stack
                                       directory's), stay hard links
    a directory                        merges; it ends with the attributes of
                                       the topmost layer that has it, as the
                                       overlay shows them (set last: copying
                                       into a directory changes its mtime)

Owners, modes (setuid, setgid, sticky), mtimes and xattrs are kept, except
overlayfs's own `trusted.overlay.*`.
"""

from __future__ import annotations

import os
import shutil
import stat

from juggler.common.file_attributes import OPAQUE_XATTR, copy_attributes


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _attrs(src: str, dst: str, st: os.stat_result) -> None:
    """Owner, mode, xattrs and times of `src` (lstat `st`) onto `dst`."""
    copy_attributes(src, dst, st)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def copy_layers(layers: tuple[str, ...] | list[str], target: str) -> None:
    """Apply `layers` (directories, top first) bottom up into the existing
    directory `target`. Raises OSError."""
    copy = _Copy()
    for layer in reversed(layers):
        for dirpath, dirnames, filenames in os.walk(layer):
            rel = os.path.relpath(dirpath, layer)
            dest_dir = target if rel == "." else os.path.join(target, rel)
            if rel != "." and _opaque(dirpath) and os.path.isdir(dest_dir):
                for name in os.listdir(dest_dir):
                    copy.remove(os.path.join(dest_dir, name))
            copy.dirs[dest_dir] = dirpath
            links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
            for name in dirnames:
                dst = os.path.join(dest_dir, name)
                if name not in links and (os.path.islink(dst) or not os.path.isdir(dst)):
                    copy.remove(dst)
                    os.mkdir(dst, 0o700)
            for name in filenames + links:
                src, dst = os.path.join(dirpath, name), os.path.join(dest_dir, name)
                copy.remove(dst)
                st = os.lstat(src)
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    continue  # a whiteout: the name is gone
                copy.add(src, dst, st)
    for dest_dir, source in copy.dirs.items():
        _attrs(source, dest_dir, os.lstat(source))


class _Copy:
    """Copies of non-directories, remembered by the source inode while they
    last, so that names of one inode (hard links) stay one inode; and the
    target's directories, each with the topmost layer directory that has it."""

    def __init__(self) -> None:
        self.copies: dict[tuple[int, int], list[str]] = {}  # source inode → copies
        self.source: dict[str, tuple[int, int]] = {}  # copy → its source inode
        self.dirs: dict[str, str] = {}  # target directory → its layer directory

    def remove(self, path: str) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(path)
            gone = [p for p in self.source if p.startswith(path + "/")]
            for d in [d for d in self.dirs if d == path or d.startswith(path + "/")]:
                del self.dirs[d]
        else:
            os.unlink(path)
            gone = [path] if path in self.source else []
        for p in gone:
            self.copies[self.source.pop(p)].remove(p)

    def add(self, src: str, dst: str, st: os.stat_result) -> None:
        key = (st.st_dev, st.st_ino)
        others = self.copies.setdefault(key, [])
        if others:
            os.link(others[0], dst, follow_symlinks=False)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src), dst)
        elif stat.S_ISFIFO(st.st_mode):
            os.mkfifo(dst, 0o600)
        elif stat.S_ISREG(st.st_mode):
            shutil.copyfile(src, dst, follow_symlinks=False)
        else:
            return  # devices: never in an image's layers (images/changeset.py)
        if not others:
            _attrs(src, dst, st)
        if st.st_nlink > 1:
            others.append(dst)
            self.source[dst] = key
