"""The container's filesystem, set up inside its own mount namespace.

With a root filesystem directory: an overlay whose lower layer is that
directory (never written) and whose upper and work layers live in the task's
sandbox under `rootfs/`; merged at `<sandbox>/rootfs/merged`. (For a task
with a writable layer kept by name, the agent made `<sandbox>/rootfs` a
symlink to that layer, agent/writable_layers.py: the same paths, outside the
sandbox; the kernel follows the link when it mounts.) With an image:
the same, with the image's layers (images/, top first) as the lower
dirs — or, where overlayfs is unavailable, a copy of them (`copy_layers`). Inside it: a
fresh /proc, a minimal /dev (tmpfs with bind-mounted device nodes, devpts,
/dev/shm), a read-only /sys, then pivot_root and the old root detached.
Without one: the host's filesystem, with the same fresh /proc (the task sees
only its own processes), minimal /dev (built in `<sandbox>/.dev`, then moved
over /dev) and read-only /sys over the host's.

Both then get Docker's masked and read-only paths (`MASKED`, `READONLY`,
moby's `oci/defaults.go`): files are covered by /dev/null, directories by an
empty read-only tmpfs, and the read-only ones are bound onto themselves and
remounted read-only. Entries this kernel lacks are skipped. The task cannot
undo any of it: unmounting needs CAP_SYS_ADMIN, which it no longer has
(see capabilities.py).

/sys is a fresh sysfs mounted read-only (see `mount_sys`), so in a new network
namespace it shows only that namespace's devices (/sys/class/net holds `lo`),
and in every mode it hides the host's submounts (/sys/fs/cgroup, ...).

Every mount here is made after `unshare(CLONE_NEWNS)` and after / was made
rprivate, so none of them propagates to the host and all vanish with the
container: the executor has nothing to unmount on the host side.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
from pathlib import Path

from juggler.container import syscalls as sc

DEVICES = ("null", "zero", "full", "random", "urandom", "tty")

MASKED = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
)
READONLY = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# statvfs f_flag bits that equal their MS_* mount flags; a read-only remount
# of a bind must repeat them or the kernel may refuse (or clear them).
_KEPT_FLAGS = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC


def sandbox_dirs(sandbox: Path) -> dict[str, Path]:
    base = sandbox / "rootfs"
    return {"upper": base / "upper", "work": base / "work", "merged": base / "merged"}


def prepare(sandbox: Path) -> None:
    """Create the overlay's directories (host side, before the fork)."""
    for path in sandbox_dirs(sandbox).values():
        path.mkdir(parents=True, exist_ok=True)


def make_private() -> None:
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)


def mount_proc(target: str) -> None:
    os.makedirs(target, exist_ok=True)
    sc.mount("proc", target, "proc", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)


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
    (top first, as given) bottom up into `target`, honouring overlay whiteouts
    (character devices 0:0) and opaque directories (trusted.overlay.opaque)."""
    for layer in reversed(layers):
        for dirpath, dirnames, filenames in os.walk(layer):
            rel = os.path.relpath(dirpath, layer)
            dest_dir = os.path.normpath(os.path.join(target, rel))
            if rel != "." and _opaque(dirpath) and os.path.isdir(dest_dir):
                shutil.rmtree(dest_dir)
            if not os.path.isdir(dest_dir) or os.path.islink(dest_dir):
                if os.path.lexists(dest_dir):
                    os.unlink(dest_dir)
                os.makedirs(dest_dir, exist_ok=True)
            shutil.copystat(dirpath, dest_dir, follow_symlinks=False)
            st = os.lstat(dirpath)
            os.lchown(dest_dir, st.st_uid, st.st_gid)
            for name in filenames + [d for d in dirnames if os.path.islink(
                    os.path.join(dirpath, d))]:
                src, dst = os.path.join(dirpath, name), os.path.join(dest_dir, name)
                st = os.lstat(src)
                if os.path.lexists(dst) and not (stat.S_ISDIR(os.lstat(dst).st_mode)
                                                 and not os.path.islink(dst)):
                    os.unlink(dst)
                elif os.path.isdir(dst) and not os.path.islink(dst):
                    shutil.rmtree(dst)
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    continue  # a whiteout: the name is gone
                if stat.S_ISLNK(st.st_mode):
                    os.symlink(os.readlink(src), dst)
                else:
                    shutil.copy2(src, dst, follow_symlinks=False)
                os.lchown(dst, st.st_uid, st.st_gid)
                if not stat.S_ISLNK(st.st_mode):
                    os.chmod(dst, stat.S_IMODE(st.st_mode))


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def setup_dev(root: str) -> None:
    populate_dev(os.path.join(root, "dev"))


def setup_host_dev(sandbox: Path) -> None:
    """Minimal /dev over the host's: built aside (its nodes are bound from the
    host's /dev, which must still be visible), then moved into place."""
    staging = str(sandbox / ".dev")
    populate_dev(staging)
    sc.mount(staging, "/dev", None, sc.MS_MOVE)


def populate_dev(dev: str) -> None:
    os.makedirs(dev, exist_ok=True)
    sc.mount("tmpfs", dev, "tmpfs", sc.MS_NOSUID, "mode=755,size=65536k")
    for name in DEVICES:
        target = os.path.join(dev, name)
        with open(target, "w"):
            pass
        sc.mount(f"/dev/{name}", target, None, sc.MS_BIND)
    pts = os.path.join(dev, "pts")
    os.mkdir(pts)
    sc.mount("devpts", pts, "devpts", sc.MS_NOSUID | sc.MS_NOEXEC,
             "newinstance,ptmxmode=0666,mode=0620")
    os.symlink("pts/ptmx", os.path.join(dev, "ptmx"))
    shm = os.path.join(dev, "shm")
    os.mkdir(shm)
    sc.mount("shm", shm, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC,
             "mode=1777,size=65536k")
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
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mask_paths() -> None:
    """Docker's masked and read-only paths, in the current root."""
    for path in MASKED:
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


def pivot(root: str) -> None:
    """pivot_root into `root` and detach the old root (runc's "." trick)."""
    os.chdir(root)
    sc.pivot_root(".", ".")
    sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")


def enter(rootfs: str, sandbox: Path, layers: tuple[str, ...] = ()) -> None:
    """Build the container's filesystem in the current (new) mount namespace."""
    make_private()
    if not rootfs and not layers:
        mount_proc("/proc")
        setup_host_dev(sandbox)
        mount_sys("/", sandbox)
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
    os.makedirs(os.path.join(merged, "tmp"), exist_ok=True)
    pivot(merged)
    mask_paths()
