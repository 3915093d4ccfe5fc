"""The task's own cgroups as it sees them at /sys/fs/cgroup, as `docker run` shows them.

Programs size themselves from there (the JVM's heap and processor count,
Go's automaxprocs, nproc): with the host's view they take the host's memory
and cpus. Docker's config mounts a `cgroup` at /sys/fs/cgroup read-only
(moby daemon/pkg/oci/defaults.go: "ro", "nosuid", "noexec", "nodev"), which
runc (libcontainer/rootfs_linux.go mountCgroupV1, mountCgroupV2) turns into:

- cgroup v1, no cgroup namespace: a tmpfs at /sys/fs/cgroup, and for every
  v1 hierarchy the host mounts (named ones too, e.g. name=systemd) the
  container's own directory in it bound at /sys/fs/cgroup/<basename of the
  host's mount point>, read-only, nosuid, nodev, noexec; a hierarchy whose
  mount point names several controllers ("cpu,cpuacct") gets one symlink per
  controller ("cpu" → "cpu,cpuacct"). The tmpfs itself stays read-write
  (runc 1.1.5 does not remount it; measured, tests/integration/
  test_runc_differential.py), each bind read-only. One difference, on
  purpose: juggler puts a task only in the hierarchies it limits or counts
  it by (cpu, cpuacct, memory, pids, devices: container/cgroups_v1.py), where
  runc puts a container in every one; the others (cpuset, blkio, freezer,
  name=systemd, ...) are not shown, since the task's directory there is its
  agent's, often the hierarchy's root, whose listing would show the host's
  other cgroups.
- cgroup v2: a private cgroup namespace entered once the process is in its
  cgroup, and a read-only cgroup2 mount there (Docker's default on v2:
  `--cgroupns private`). Untested on a real v2 host here (this CI is v1).

`plan` decides (pure: the host's mountinfo and /proc/self/cgroup text in, a
`CgroupView` out); the child acts: `enter_namespace` (v2, before the
filesystem is built) and `mount` (in rootfs.enter, before pivot_root, while
the host's cgroup tree is still in reach).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from juggler.container import syscalls as sc
from juggler.container.cgroups import real_path

# The view's tmpfs and its read-only binds (container/native_init.py's plans
# use the same).
FLAGS = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
TMPFS_OPTIONS = "mode=755"


@dataclass(frozen=True)
class Bind:
    """One v1 hierarchy: the host's directory `source`, shown at
    /sys/fs/cgroup/`name`."""

    source: str
    name: str


@dataclass(frozen=True)
class CgroupView:
    """What to mount at /sys/fs/cgroup. v1: `binds` and `links` ((name,
    target) symlinks in the tmpfs). v2: `procs`, the task's cgroup.procs the
    child writes "0" to before unsharing its cgroup namespace."""

    version: int
    binds: tuple[Bind, ...] = ()
    links: tuple[tuple[str, str], ...] = ()
    procs: str = ""


def _own_paths(proc_cgroup: str) -> dict[str, str]:
    """/proc/self/cgroup → {"cpu": "/a", "name=systemd": "/", "": "/"}."""
    out = {}
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for name in parts[1].split(",") if parts[1] else [""]:
                out[name] = parts[2]
    return out


def _unescape(field: str) -> str:
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def plan_v1(mountinfo: str, proc_cgroup: str, task_dirs: Iterable[str]) -> CgroupView:
    """The v1 view. `mountinfo`, `proc_cgroup`: the runtime's
    /proc/self/mountinfo and /proc/self/cgroup; `task_dirs`: the task's
    cgroup directories on the host, symlinks resolved. A hierarchy is bound
    once, at the first of its mount points (runc's GetCgroupMounts)."""
    own = _own_paths(proc_cgroup)
    dirs = [d.rstrip("/") for d in task_dirs]
    binds: list[Bind] = []
    seen: set[str] = set()
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3 or tail[0] != "cgroup":
            continue
        subsystems = [o for o in tail[2].split(",") if o in own and o]
        if not subsystems or subsystems[0] in seen:
            continue
        seen.update(subsystems)
        point = _unescape(fields[4])
        source = next((d for d in dirs if d.startswith(point.rstrip("/") + "/")), None)
        if source is None:
            continue  # a hierarchy the task is not put in: not shown (module docstring)
        binds.append(Bind(source=source, name=os.path.basename(point)))
    links = tuple((ss, b.name) for b in binds if "," in b.name
                  for ss in b.name.split(",") if ss != b.name)
    return CgroupView(version=1, binds=tuple(binds), links=links)


def plan(version: int, task_dirs: Iterable[str], mountinfo: str = "",
         proc_cgroup: str = "") -> CgroupView | None:
    """The view for a task whose cgroup directories are `task_dirs` (host
    paths, resolved; v2: the one unified directory); None without any (the
    task sees the fresh sysfs's empty /sys/fs/cgroup)."""
    dirs = list(task_dirs)
    if not dirs:
        return None
    if version == 2:
        return CgroupView(version=2, procs=os.path.join(dirs[0], "cgroup.procs"))
    return plan_v1(mountinfo, proc_cgroup, dirs)


def host_plan(version: int, task_dirs: Iterable[str]) -> CgroupView | None:
    """`plan` for this process (the runtime, host side, before the fork)."""
    dirs = [real_path(d) for d in task_dirs]  # as os.path.realpath, cached (cgroups.py)
    if version == 2 or not dirs:
        return plan(version, dirs)
    with open("/proc/self/mountinfo") as m, open("/proc/self/cgroup") as c:
        return plan(version, dirs, m.read(), c.read())


def enter_namespace(view: CgroupView | None) -> None:  # pragma: no cover - in the child
    """v2: move into the task's cgroup, then unshare the cgroup namespace so
    that it is the namespace's root. (On v2 the setup from here on is charged
    to the task's cgroup.) Nothing on v1."""
    if view is None or view.version != 2:
        return
    with open(view.procs, "w") as f:
        f.write("0")
    sc.unshare(sc.CLONE_NEWCGROUP)


def mount(view: CgroupView | None, target: str) -> None:  # pragma: no cover - in the child
    """Mount the view on the directory `target` (the new root's
    sys/fs/cgroup, or a staging directory moved there)."""
    if view is None:
        return
    if view.version == 2:
        sc.mount("cgroup2", target, "cgroup2", sc.MS_RDONLY | FLAGS)
        return
    sc.mount("tmpfs", target, "tmpfs", FLAGS, TMPFS_OPTIONS)
    for bind in view.binds:
        point = os.path.join(target, bind.name)
        os.mkdir(point)
        sc.mount(bind.source, point, None, sc.MS_BIND | sc.MS_REC)
        sc.mount(None, point, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | FLAGS)
    for name, link in view.links:
        if not os.path.lexists(os.path.join(target, name)):
            os.symlink(link, os.path.join(target, name))
