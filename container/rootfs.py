"""The container's filesystem, set up inside its own mount namespace.

With a root filesystem directory: an overlay whose lower layer is that
directory (never written) and whose upper and work layers live in the task's
sandbox under `rootfs/`; merged at `<sandbox>/rootfs/merged`. Inside it: a
fresh /proc, a minimal /dev (tmpfs with bind-mounted device nodes, devpts,
/dev/shm), a read-only /sys, then pivot_root and the old root detached.
Without one: the host's filesystem, with a fresh /proc so the task sees only
its own processes.

Every mount here is made after `unshare(CLONE_NEWNS)` and after / was made
rprivate, so none of them propagates to the host and all vanish with the
container: the executor has nothing to unmount on the host side.
"""

from __future__ import annotations

import os
from pathlib import Path

from juggler.container import syscalls as sc

DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


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


def mount_overlay(lower: str, sandbox: Path) -> str:
    dirs = sandbox_dirs(sandbox)
    if not os.path.isdir(lower):
        raise OSError(2, f"rootfs {lower!r} is not a directory")
    data = f"lowerdir={lower},upperdir={dirs['upper']},workdir={dirs['work']}"
    sc.mount("overlay", str(dirs["merged"]), "overlay", 0, data)
    return str(dirs["merged"])


def setup_dev(root: str) -> None:
    dev = os.path.join(root, "dev")
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


def mount_sys(root: str) -> None:
    target = os.path.join(root, "sys")
    os.makedirs(target, exist_ok=True)
    flags = sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
    try:
        sc.mount("sysfs", target, "sysfs", flags)
    except OSError:
        # sysfs cannot be mounted fresh in the host's network namespace
        # when it is shared; fall back to a read-only bind of the host's.
        sc.mount("/sys", target, None, sc.MS_BIND | sc.MS_REC)
        sc.mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | flags)


def pivot(root: str) -> None:
    """pivot_root into `root` and detach the old root (runc's "." trick)."""
    os.chdir(root)
    sc.pivot_root(".", ".")
    sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")


def enter(rootfs: str, sandbox: Path) -> None:
    """Build the container's filesystem in the current (new) mount namespace."""
    make_private()
    if not rootfs:
        mount_proc("/proc")
        return
    merged = mount_overlay(rootfs, sandbox)
    mount_proc(os.path.join(merged, "proc"))
    setup_dev(merged)
    mount_sys(merged)
    os.makedirs(os.path.join(merged, "tmp"), exist_ok=True)
    pivot(merged)
