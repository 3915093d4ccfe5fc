"""The container's filesystem, set up inside its own mount namespace.

With a root filesystem directory: an overlay whose lower layer is that
directory (never written) and whose upper and work layers live in the task's
sandbox under `rootfs/`; merged at `<sandbox>/rootfs/merged`. (For a task
with a writable layer kept by name, the agent made `<sandbox>/rootfs` a
symlink to that layer, agent/writable_layers.py: the same paths, outside the
sandbox; the kernel follows the link when it mounts.) With an image:
the same, with the image's layers (images/, top first) as the lower
dirs — or, where overlayfs is unavailable, a copy of them (`copy_layers`). Inside it: a
fresh /proc, a minimal /dev as runc's (a tmpfs with runc's six device nodes
made by mknod, devpts, /dev/shm, /dev/mqueue), a read-only /sys, then
pivot_root and the old root detached.
Without one: the host's filesystem, read-only apart from the sandbox and a
private /tmp unless the task may write it (container/host_view.py), with
the same fresh /proc (the task sees only its own processes), minimal /dev
(built in `<sandbox>/.dev`, then moved over /dev) and read-only /sys over
the host's.

Both then get Docker's masked and read-only paths (`MASKED`, `READONLY`,
moby's `oci/defaults.go`): files are covered by /dev/null, directories by an
empty read-only tmpfs, and the read-only ones are bound onto themselves and
remounted read-only. Entries this kernel lacks are skipped. The task cannot
undo any of it: unmounting needs CAP_SYS_ADMIN, which it no longer has
(see capabilities.py).

/sys is a fresh sysfs mounted read-only (see `mount_sys`), so in a new network
namespace it shows only that namespace's devices (/sys/class/net holds `lo`),
and in every mode it hides the host's submounts; /sys/fs/cgroup then shows
the task's own cgroups (container/cgroup_view.py). With an image or a rootfs,
Docker's /etc/hosts, /etc/hostname and /etc/resolv.conf (container/
etc_files.py, written in the sandbox) are bound over the image's.

Every mount here is made after `unshare(CLONE_NEWNS)` and after / was made
rprivate, so none of them propagates to the host and all vanish with the
container: the executor has nothing to unmount on the host side.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

from juggler.container import cgroup_view, host_view, layer_copy
from juggler.container import syscalls as sc

# runc's default devices (libcontainer/specconv AllowedDevices): name, major, minor.
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
           ("urandom", 1, 9), ("tty", 5, 0))

MASKED = (
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)
# Masked too, for every cpu that has one (moby GHSA-6fw5-f8r9-fgfm, as /proc/interrupts).
MASKED_GLOB = "/sys/devices/system/cpu/cpu[0-9]*/thermal_throttle"
# MASKED_GLOB's parts, matched by patterns compiled once at import (in the
# launcher, before it forks executors): glob.glob in each container's setup
# compiled its pattern anew, 1.6 ms of the container's CPU.
_CPU_DIRS = "/sys/devices/system/cpu"
_CPU_NAME = re.compile(r"cpu[0-9].*", re.DOTALL)
_THERMAL = "thermal_throttle"
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")
READONLY = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# The mounts of a container's /proc and /dev, as runc makes them for Docker:
# flags and options (container/native_init.py's plans use the same).
NO_SUID_DEV_EXEC = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
PROC_FLAGS = NO_SUID_DEV_EXEC
DEV_FLAGS, DEV_OPTIONS = sc.MS_NOSUID, "mode=755,size=65536k"
# Docker's: a new instance of ptys, of group tty (5).
PTS_FLAGS, PTS_OPTIONS = sc.MS_NOSUID | sc.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"
SHM_FLAGS, SHM_OPTIONS = NO_SUID_DEV_EXEC, "mode=1777,size=65536k"
MQUEUE_FLAGS = NO_SUID_DEV_EXEC

# statvfs f_flag bits that equal their MS_* mount flags; a read-only remount
# of a bind must repeat them or the kernel may refuse (or clear them).
_KEPT_FLAGS = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC


def sandbox_dirs(sandbox: Path) -> dict[str, Path]:
    base = sandbox / "rootfs"
    return {"upper": base / "upper", "work": base / "work", "merged": base / "merged"}


def prepare(sandbox: Path) -> None:
    """Create the overlay's directories (host side, before the fork), 0755
    whatever the agent's umask: the upper one is the container's / (as
    Docker's overlay2 makes its diff directory)."""
    for path in sandbox_dirs(sandbox).values():
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o755)


def make_private() -> None:
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)


def mount_proc(target: str) -> None:
    os.makedirs(target, exist_ok=True)
    sc.mount("proc", target, "proc", PROC_FLAGS)


def mount_overlay(lower: str, sandbox: Path, layers: tuple[str, ...] = ()) -> str:
    """Overlay of `lower` (a rootfs directory) or of an image's `layers` (top
    first) under the sandbox's upper dir. Many long layer paths would overflow
    the one page of mount options, so they are named relative to their common
    parent, which becomes the cwd for the mount (the kernel resolves relative
    lowerdirs against it, as Docker's overlay2 driver relies on)."""
    dirs = sandbox_dirs(sandbox)
    lowers = list(layers) or [lower]
    for d in lowers:
        if not os.path.isdir(d):
            raise OSError(2, f"{'image layer' if layers else 'rootfs'} {d!r} is not a directory")
    upper = f"upperdir={dirs['upper']},workdir={dirs['work']}"
    data = f"lowerdir={':'.join(lowers)},{upper}"
    if len(data) < 4000:
        sc.mount("overlay", str(dirs["merged"]), "overlay", 0, data)
        return str(dirs["merged"])
    base = os.path.commonpath(lowers)
    cwd = os.getcwd()
    os.chdir(base)
    try:
        rel = ":".join(os.path.relpath(d, base) for d in lowers)
        sc.mount("overlay", str(dirs["merged"]), "overlay", 0, f"lowerdir={rel},{upper}")
    finally:
        os.chdir(cwd)
    return str(dirs["merged"])


def copy_layers(layers: tuple[str, ...], target: str) -> None:
    """The copy back-end where overlayfs is unavailable: apply the layers
    (top first, as given) bottom up into `target`, showing what their overlay
    would (container/layer_copy.py)."""
    layer_copy.copy_layers(layers, target)


def setup_dev(root: str) -> None:
    populate_dev(os.path.join(root, "dev"))


def setup_host_dev(sandbox: Path) -> None:
    """Minimal /dev over the host's: built aside, then moved into place."""
    staging = str(sandbox / ".dev")
    populate_dev(staging)
    sc.mount(staging, "/dev", None, sc.MS_MOVE)


def populate_dev(dev: str) -> None:
    os.makedirs(dev, exist_ok=True)
    sc.mount("tmpfs", dev, "tmpfs", DEV_FLAGS, DEV_OPTIONS)
    for name, major, minor in DEVICES:  # as runc makes them: mknod, 0666, root's
        target = os.path.join(dev, name)
        os.mknod(target, stat.S_IFCHR | 0o666, os.makedev(major, minor))
        os.chmod(target, 0o666)
        os.chown(target, 0, 0)
    pts = os.path.join(dev, "pts")
    os.mkdir(pts)
    sc.mount("devpts", pts, "devpts", PTS_FLAGS, PTS_OPTIONS)
    os.symlink("pts/ptmx", os.path.join(dev, "ptmx"))
    shm = os.path.join(dev, "shm")
    os.mkdir(shm)
    sc.mount("shm", shm, "tmpfs", SHM_FLAGS, SHM_OPTIONS)
    mqueue = os.path.join(dev, "mqueue")  # POSIX message queues of the ipc namespace
    os.mkdir(mqueue)
    sc.mount("mqueue", mqueue, "mqueue", MQUEUE_FLAGS)
    for i, name in enumerate(("stdin", "stdout", "stderr")):
        os.symlink(f"/proc/self/fd/{i}", os.path.join(dev, name))
    os.symlink("/proc/self/fd", os.path.join(dev, "fd"))


def mount_sys(root: str, sandbox: Path) -> None:
    """A fresh read-only sysfs at <root>/sys.

    In a new network namespace the kernel makes a new sysfs superblock and a
    read-only mount is simple. In the host's it reuses the host's (read-write)
    one, and refuses both a read-only new mount of it and any mount of it on
    top of itself at /sys (EBUSY): so mount it read-write aside, make that
    mount read-only, and move it into place. If even that fails, bind the
    host's /sys read-only, down to every submount."""
    target = os.path.join(root, "sys")
    os.makedirs(target, exist_ok=True)
    flags = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
    try:
        sc.mount("sysfs", target, "sysfs", sc.MS_RDONLY | flags)
        return
    except OSError:
        pass
    staging = str(sandbox / ".sys")
    os.makedirs(staging, exist_ok=True)
    try:
        sc.mount("sysfs", staging, "sysfs", flags)
    except OSError:
        sc.mount("/sys", target, None, sc.MS_BIND | sc.MS_REC)
        remount_readonly_tree(target)
        return
    remount_readonly(staging)
    sc.mount(staging, target, None, sc.MS_MOVE)


def _flags_of(path: str) -> int:
    return os.statvfs(path).f_flag & _KEPT_FLAGS


def remount_readonly(path: str) -> None:
    sc.mount(None, path, None,
             sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | _flags_of(path))


def remount_readonly_tree(target: str) -> None:
    """Remount `target` and every mount below it read-only (a recursive bind
    copies submounts, but a remount only changes the one it names)."""
    target = os.path.realpath(target)
    with open("/proc/self/mountinfo") as f:
        points = [_unescape(line.split()[4]) for line in f]
    for point in sorted({p for p in points
                         if p == target or p.startswith(target.rstrip("/") + "/")}, key=len):
        remount_readonly(point)


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def masked_cpu_paths() -> list[str]:
    """The paths MASKED_GLOB matches, sorted (as sorted(glob.glob(MASKED_GLOB)))."""
    try:
        names = os.listdir(_CPU_DIRS)
    except OSError:
        return []
    paths = (f"{_CPU_DIRS}/{name}/{_THERMAL}" for name in names if _CPU_NAME.fullmatch(name))
    return sorted(p for p in paths if os.path.lexists(p))


def mask_paths() -> None:
    """Docker's masked and read-only paths, in the current root."""
    for path in (*MASKED, *masked_cpu_paths()):
        try:
            is_dir = stat.S_ISDIR(os.lstat(path).st_mode)
        except FileNotFoundError:
            continue
        if is_dir:
            sc.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY, "mode=0555")
        else:
            sc.mount("/dev/null", path, None, sc.MS_BIND)
    for path in READONLY:
        if not os.path.lexists(path):
            continue
        sc.mount(path, path, None, sc.MS_BIND | sc.MS_REC)
        remount_readonly(path)


def refuse_symlinks(root: str, names) -> None:
    """Mount points the image provides must be directories, not symlinks: a
    link would aim the mount (made before pivot_root, while the host's tree is
    still reachable) at a path outside the container's root."""
    for name in names:
        path = os.path.join(root, name)
        if os.path.islink(path):
            raise OSError(40, f"/{name} in the root filesystem is a symlink "
                              f"(to {os.readlink(path)!r}); it must be a directory")


def _inside(root: str, path: str) -> str:
    """`path` (absolute, in the container) as a host path under `root`, its
    symlinks followed inside `root` (as runc's securejoin: ".." and absolute
    link targets never leave it). Raises OSError after 40 links."""
    parts = [p for p in path.split("/") if p]
    done: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part in (".", ""):
            continue
        if part == "..":
            done = done[:-1]
            continue
        current = os.path.join(root, *done, part)
        if not os.path.islink(current):
            done.append(part)
            continue
        hops += 1
        if hops > 40:
            raise OSError(errno.ELOOP, f"{path}: too many levels of symbolic links")
        target = os.readlink(current)
        if target.startswith("/"):
            done = []
        parts = [p for p in target.split("/") if p] + parts
    return os.path.join(root, *done)


def bind_etc_files(root: str, files: dict[str, str]) -> None:
    """Bind each host file of `files` ({"/etc/hosts": path}, etc_files.py)
    over its path in the container, read-write (Docker's rbind, rprivate).
    A missing one is made an empty file (0644, root's) in the writable
    layer, its missing directories 0755; a link is followed inside the root."""
    for name, source in sorted(files.items()):
        target = _inside(root, name)
        if not os.path.lexists(target):
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                             0o644))
        sc.mount(source, target, None, sc.MS_BIND | sc.MS_REC)


def pivot(root: str) -> None:
    """pivot_root into `root` and detach the old root (runc's "." trick)."""
    os.chdir(root)
    sc.pivot_root(".", ".")
    sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")


def enter(rootfs: str, sandbox: Path, layers: tuple[str, ...] = (),
          before_pivot: Callable[[str], None] | None = None,
          cgroup: cgroup_view.CgroupView | None = None,
          etc: dict[str, str] | None = None,
          host: host_view.HostView | None = None) -> None:
    """Build the container's filesystem in the current (new) mount namespace.
    `before_pivot(root)`: a last step with the new root (its /dev made) and the
    host's tree both in reach (docker_init.py stages --init's binary there);
    not called on the host's filesystem. `cgroup`: the task's cgroups to show
    at /sys/fs/cgroup (container/cgroup_view.py), in both modes. `etc`: the
    task's /etc/hosts, hostname and resolv.conf (container/etc_files.py),
    bound over the image's; ignored on the host's filesystem. `host`: on the
    host's filesystem, the read-only view to make first (container/
    host_view.py); None leaves it writable."""
    make_private()
    if not rootfs and not layers:
        if host is not None:
            host_view.enter(host)
        mount_proc("/proc")
        setup_host_dev(sandbox)
        if cgroup is not None:  # built aside: the fresh sysfs hides the host's cgroups
            staging = str(sandbox / ".cgroup")
            os.makedirs(staging, exist_ok=True)
            cgroup_view.mount(cgroup, staging)
        mount_sys("/", sandbox)
        if cgroup is not None:
            sc.mount(staging, "/sys/fs/cgroup", None, sc.MS_MOVE)
        mask_paths()
        return
    try:
        merged = mount_overlay(rootfs, sandbox, layers)
    except OSError as e:
        if not layers or e.errno not in (errno.ENODEV, errno.EINVAL, errno.EPERM):
            raise
        merged = str(sandbox_dirs(sandbox)["merged"])  # no overlayfs here: copy
        copy_layers(layers, merged)
    refuse_symlinks(merged, ("proc", "dev", "sys", "tmp"))
    mount_proc(os.path.join(merged, "proc"))
    setup_dev(merged)
    mount_sys(merged, sandbox)
    cgroup_view.mount(cgroup, os.path.join(merged, "sys", "fs", "cgroup"))
    os.makedirs(os.path.join(merged, "tmp"), exist_ok=True)
    if etc:
        bind_etc_files(merged, etc)
    if before_pivot is not None:
        before_pivot(merged)
    pivot(merged)
    mask_paths()
