"""What a task on the host's filesystem may see and write there.

A task with neither image nor rootfs shares the agent host's filesystem, as
a Mesos command task does. By default (ContainerInfo.writable_host_filesystem
false) its mount namespace shows that filesystem read-only, every submount
included, apart from:

    <sandbox>        its sandbox, writable (the task's own directory, at the
                     same path as on the host; $MESOS_SANDBOX names it)
    /tmp             private and writable: `<sandbox>/tmp` (mode 1777) bound
                     over the host's /tmp
    hidden paths     each covered by an empty read-only tmpfs (mode 0755):
                     the agent's work dir (every other sandbox, the agent's
                     checkpoints, sockets and images), the directory of the
                     agent's TLS key, /run/juggler, and each
                     `--hide-from-tasks PATH` (a path that is not a directory,
                     e.g. a socket, gets /dev/null bound over it read-only and
                     nodev: connect(2) is ECONNREFUSED, open(2) EACCES; a path
                     that does not exist is left alone)
    /dev, /proc,     as for every task (container/rootfs.py, mounted after
    /sys             this): a fresh minimal /dev (null, zero, ptys, shm
                     writable), a fresh /proc, a read-only /sys

The exact order, in the task's own mount namespace (made rprivate first, so
the host's mounts stay as they are), is `plan()`'s and `enter()` follows it:

    1. the sandbox is opened (O_PATH) while still reachable;
    2. / and every mount below it are made read-only;
    3. each hidden path is covered, shallowest first; a path below another
       hidden one, at or below /tmp, or below /proc, /dev or /sys is dropped
       (already hidden, or remade for the task anyway). When the sandbox lies
       below a covered path, the directories leading to it are made in that
       tmpfs before it turns read-only;
    4. the sandbox (from step 1's descriptor) is bound writable at its path:
       over those directories when a cover hid it, else over itself;
    5. `<sandbox>/tmp` is bound writable at /tmp; when the sandbox lies under
       /tmp (a test's work dir), the first directory below /tmp is covered by
       a tmpfs holding the way to the sandbox, bound there again as in 3-4.

So the task finds its sandbox where $MESOS_SANDBOX says and nothing else of
a hidden directory: `ls` shows an empty directory (or the way to its own
sandbox), and a file or socket there is ENOENT. Covers and re-binds are the
trick a sandbox below /tmp always needed, generalised. Hiding applies to the
read-only view only: a task with writable_host_filesystem (a rule of its own,
write_host_filesystem) sees the host as it is.

Why /tmp is a directory of the sandbox rather than a tmpfs: what a task
writes there counts as its disk, not as memory charged to its cgroup (a
tmpfs page is, and a full /tmp would OOM-kill the task); it survives the
task for a post-mortem in the sandbox and goes with the sandbox's garbage
collection; and it is Mesos's own recipe for a private /tmp (the agent's
`--default_container_info` volume `{"host_path": "tmp", "container_path":
"/tmp", "mode": "RW"}`).

The read-only view is made with mount_setattr(2) and AT_RECURSIVE (Linux
5.12), one call for every mount; on an older kernel each mount listed in
/proc/self/mountinfo is remounted read-only (a mount hidden under another is
then missed).

The agent hands its hidden paths to its executors in the environment
(HIDE_ENV, a JSON list: `hide_env()`, read back by `hidden_from_env()`),
set on its launcher and on any executor it starts itself.
"""

from __future__ import annotations

import errno
import json
import os
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from juggler.container import syscalls as sc

TMP = "/tmp"
HIDE_ENV = "JUGGLER_HIDE_FROM_TASKS"
ALWAYS_HIDDEN = ("/run/juggler",)
_REMADE = ("/proc", "/dev", "/sys")  # container/rootfs.py mounts them afresh after this
_COVER_FLAGS = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
_COVER_DATA = "mode=755,size=64k,nr_inodes=256"


@dataclass(frozen=True)
class Cover:
    """An empty tmpfs over `path` (absolute, normalised); `way`: the
    sandbox's path relative to `path` when the sandbox lies below it (its
    directories are made in the tmpfs, the sandbox bound there), else ""."""

    path: str
    way: str = ""


@dataclass(frozen=True)
class HostView:
    """The plan for one task (pure): `sandbox` (absolute, normalised) stays
    writable, `tmp` (in the sandbox) is bound at /tmp; `sandbox_in_tmp` is
    the sandbox's path relative to /tmp when the sandbox lies under it
    (then bound again there, after /tmp), else ""; `covers`: the hidden
    paths, shallowest first (module docstring, step 3)."""

    sandbox: str
    tmp: str
    sandbox_in_tmp: str = ""
    covers: tuple[Cover, ...] = ()


def _below(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def plan(sandbox: str, writable: bool, hidden: Iterable[str] = ()) -> HostView | None:
    """The view of a host-filesystem task whose sandbox is `sandbox`, hiding
    `hidden` (absolute paths); None when `writable` (the host's filesystem
    as it is). Raises ValueError for a sandbox that is not absolute or is /
    or /tmp itself, or a hidden path that is relative or /."""
    if writable:
        return None
    path = posixpath.normpath(sandbox)
    if not path.startswith("/") or path in ("/", TMP):
        raise ValueError(f"sandbox {sandbox!r}: must be an absolute directory other than / "
                         f"and {TMP}")
    inside = path[len(TMP) + 1:] if path.startswith(TMP + "/") else ""
    return HostView(sandbox=path, tmp=posixpath.join(path, "tmp"), sandbox_in_tmp=inside,
                    covers=covers(path, hidden))


def covers(sandbox: str, hidden: Iterable[str]) -> tuple[Cover, ...]:
    """The covers for `hidden` around the (normalised) `sandbox`: shallowest
    first, without the ones below another, at or below /tmp, or under /proc,
    /dev, /sys. Raises ValueError for a relative path or /."""
    paths: set[str] = set()
    for h in hidden:
        p = posixpath.normpath(h)
        if not p.startswith("/") or p == "/" or p.startswith("//"):
            raise ValueError(f"hidden path {h!r}: must be absolute and not /")
        if not any(_below(p, top) for top in (TMP, *_REMADE)):
            paths.add(p)
    kept = [p for p in sorted(paths, key=lambda p: (p.count("/"), p))
            if not any(q != p and _below(p, q) for q in paths)]
    return tuple(Cover(p, posixpath.relpath(sandbox, p) if _below(sandbox, p) else "")
                 for p in kept)


def agent_hidden(work_dir: str, tls_key: str, extra: Iterable[str]) -> list[str]:
    """What an agent hides from its host-filesystem tasks: its `work_dir`,
    the directory of its TLS private key (`tls_key`, "" without TLS; the CA
    and certificate are public, and may sit in a system directory such as
    /etc/ssl/certs that tasks need), /run/juggler and the operator's `extra`
    paths (--hide-from-tasks), in that order, without repeats. Paths as given
    (the caller makes them absolute)."""
    out: list[str] = []
    key_dir = [posixpath.dirname(tls_key)] if tls_key else []
    for p in (work_dir, *key_dir, *ALWAYS_HIDDEN, *extra):
        if p and p not in out:
            out.append(p)
    return out


def hide_env(paths: Iterable[str]) -> dict[str, str]:
    """The environment that hands `paths` to executors ({HIDE_ENV: JSON list})."""
    return {HIDE_ENV: json.dumps(list(paths))}


def hidden_from_env(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The paths `hide_env` put in `environ`; () when absent. Raises ValueError
    when the variable is not a JSON list of strings."""
    text = environ.get(HIDE_ENV, "")
    if not text:
        return ()
    value = json.loads(text)
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise ValueError(f"{HIDE_ENV}: not a JSON list of paths")
    return tuple(value)


def prepare(view: HostView) -> None:
    """Host side, before the fork: the sandbox's tmp directory, 1777 as /tmp."""
    tmp = Path(view.tmp)
    tmp.mkdir(exist_ok=True)
    tmp.chmod(0o1777)


def enter(view: HostView) -> None:
    """Carry `view` out in the current mount namespace (a new one, rprivate),
    in the module docstring's order. Raises OSError naming the mount that
    failed."""
    sandbox_fd = os.open(view.sandbox, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        sandbox = f"/proc/self/fd/{sandbox_fd}"
        read_only("/")
        for cover in view.covers:
            _cover(cover)
        _bind_writable(sandbox, view.sandbox)
        _bind_writable(view.tmp, TMP)
        if view.sandbox_in_tmp:
            # The way to the sandbox is made in a small tmpfs over its first
            # directory below /tmp, not in <sandbox>/tmp: nothing the host
            # sees there looks like the sandbox.
            first, _, rest = view.sandbox_in_tmp.partition("/")
            top = posixpath.join(TMP, first)
            os.makedirs(top, mode=0o755, exist_ok=True)
            _cover(Cover(top, rest or "."))
            _bind_writable(sandbox, posixpath.join(TMP, view.sandbox_in_tmp))
    finally:
        os.close(sandbox_fd)


def _cover(cover: Cover) -> None:
    """An empty read-only tmpfs over a directory (with `way` made in it), or
    /dev/null bound read-only over anything else; nothing for a missing path."""
    try:
        is_dir = os.path.isdir(cover.path)
        if not is_dir and not os.path.lexists(cover.path):
            return
    except OSError:
        return
    if not is_dir:
        sc.mount("/dev/null", cover.path, None, sc.MS_BIND)
        sc.mount(None, cover.path, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY
                 | _COVER_FLAGS)
        return
    sc.mount("tmpfs", cover.path, "tmpfs", _COVER_FLAGS, _COVER_DATA)
    if cover.way and cover.way != ".":
        os.makedirs(posixpath.join(cover.path, cover.way), mode=0o755, exist_ok=True)
    sc.mount(None, cover.path, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | _COVER_FLAGS)


def read_only(path: str) -> None:
    """Make the mount at `path` and every mount below it read-only."""
    try:
        sc.mount_setattr(path, attr_set=sc.MOUNT_ATTR_RDONLY)
    except OSError as e:
        if e.errno not in (errno.ENOSYS, errno.EINVAL):
            raise
        from juggler.container.rootfs import remount_readonly_tree

        remount_readonly_tree(path)


def _bind_writable(source: str, target: str) -> None:
    # A bind copies its source mount's flags, read-only included: clear it on
    # the copy (and on the mounts copied below it) only.
    sc.mount(source, target, None, sc.MS_BIND | sc.MS_REC)
    try:
        sc.mount_setattr(target, attr_clr=sc.MOUNT_ATTR_RDONLY)
    except OSError as e:
        if e.errno not in (errno.ENOSYS, errno.EINVAL):
            raise
        flags = os.statvfs(target).f_flag & (sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
        sc.mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | flags)
