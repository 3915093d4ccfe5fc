"""A file's owner, mode and extended attributes carried onto another path:
what images/stack.py and container/layer_copy.py do with an image layer's
entries (the one rule, kept here because container/ may not import images/:
tests/unit/test_boundaries.py)."""

from __future__ import annotations

import contextlib
import os
import stat

# overlayfs's own attributes: they steer the mount (an opaque directory hides
# the layers below), and are no file's own.
OVERLAY_PREFIX = "trusted.overlay."
OPAQUE_XATTR = OVERLAY_PREFIX + "opaque"


def copy_attributes(source: str, target: str, st: os.stat_result) -> None:
    """Owner, mode and xattrs of `source` (its lstat `st`) onto `target`:
    every xattr but overlayfs's `trusted.overlay.*` (a filesystem without
    xattrs: none). Times are the caller's: making entries in a directory
    changes its mtime. Raises OSError."""
    os.lchown(target, st.st_uid, st.st_gid)
    if stat.S_ISLNK(st.st_mode):
        return
    os.chmod(target, stat.S_IMODE(st.st_mode))  # after chown, which clears setuid bits
    with contextlib.suppress(OSError):
        for name in os.listxattr(source, follow_symlinks=False):
            if not name.startswith(OVERLAY_PREFIX):
                os.setxattr(target, name, os.getxattr(source, name, follow_symlinks=False),
                            follow_symlinks=False)
