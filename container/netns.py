"""Pinned network namespaces: a namespace that lives as long as a file says.

`pin(path)` makes a new network namespace and bind-mounts it onto `path` (an
empty file it creates), as `ip netns add` does under /run/netns and Mesos's
network/cni isolator does under its runtime directory: the CNI plugins are
given `path` as CNI_NETNS, and the container joins it with setns(2). It
costs ~1 ms and no process: the calling *thread* unshares CLONE_NEWNET, binds
/proc/thread-self/ns/net, and goes back to its own namespace (network
namespaces are per thread, so nothing else of the process moves).

`unpin(path)` unmounts (lazily) and removes the file; the namespace goes away
with its last user. Both raise OSError.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from juggler.container import syscalls

_SELF = "/proc/thread-self/ns/net"


def pin(path: Path) -> None:
    """A new network namespace (only `lo`, down) bound at `path`."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    os.close(fd)
    own = os.open(_SELF, os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.unshare(syscalls.CLONE_NEWNET)
        try:
            syscalls.mount(_SELF, str(path), None, syscalls.MS_BIND)
        finally:
            syscalls.setns(own, syscalls.CLONE_NEWNET)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    finally:
        os.close(own)


def unpin(path: Path) -> None:
    """Unmount and remove `path`; nothing to do when it is gone or not mounted."""
    try:
        syscalls.umount2(str(path), syscalls.MNT_DETACH)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOENT):
            raise
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def is_pinned(path: Path) -> bool:
    """Whether `path` is a bind of a network namespace (nsfs)."""
    try:
        return os.stat(path).st_dev != os.stat(os.path.dirname(path) or ".").st_dev
    except OSError:
        return False
