"""Start a container through juggler-init (container/native/init.c): the
set-up of launch.py's child, carried out by a small C program that
posix_spawn(3) starts, instead of a fork of the executor's Python.

Why: a fork of the executor shares its ~30 MB of Python with the child
copy-on-write, and the child's Python touches enough of it to copy ~900
pages (3.6 MB) per container before it execs the task; with the kernel's
part, that child cost 12.7-18.2 ms of CPU per container in
benchmarks/launch_1000.py (100 to 1,000 containers, 2026-12-03), most of
the host's work after the executor's own. posix_spawn copies nothing
(glibc's clone(CLONE_VM|CLONE_VFORK)), and juggler-init is a few pages.

The executor decides, as before (launch.start): `plan` turns the launch
into juggler-init's steps, each the system calls of one Python function of
launch.py, rootfs.py, host_view.py, cgroup_view.py, process.py and
identity.py, in their order, with their error messages. `spawn` starts the
program with the plan in a memfd and the launch's fds at fixed numbers.

Which launches: a task on the host's filesystem (neither image nor
rootfs: the Mesos command task, benchmarks/launch_1000.py's), without a
terminal or --init, on cgroup v1 (or none), whose user resolves (looked up
in the executor, in the host's /etc, where the Python child looked in the
task's read-only view of it), by an agent running as root whose
capabilities an execve keeps (juggler-init gets its capabilities from its
execve, where a forked child inherited them: `_exec_keeps_capabilities`).
Every other launch, and every launch when the program was not built
(scripts/setup builds it; `gcc`), cannot start here (an LSM refusing it:
`_starts`) or when JUGGLER_CONTAINER_INIT=python, takes launch.py's
Python child; both give the container the same view and the same failure
messages (tests/integration/test_native_init.py runs the same checks
through both).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import resource
from collections.abc import Sequence
from pathlib import Path

from juggler.common.ulimits import NUMBERS
from juggler.container import capabilities, cgroup_view, host_view, rlimits, rootfs, users
from juggler.container import syscalls as sc
from juggler.container.process import ProcessSpec
from juggler.container.spec import ContainerSpec

__all__ = ["BINARY", "ENGINE_ENV", "build", "built", "built_from", "enabled", "plan",
           "source_marker", "spawn"]

SOURCE = Path(__file__).resolve().parent / "native" / "init.c"
BINARY = SOURCE.with_name("juggler-init")
ENGINE_ENV = "JUGGLER_CONTAINER_INIT"  # "python": always launch.py's child

# The fds juggler-init finds its plan, pipes and descriptors at.
PLAN_FD, ERR_FD, SYNC_FD, STDIO_FD, NETNS_FD, JOIN_FD = 3, 4, 5, 6, 9, 10
# Sources are first duplicated at or above this, so that no dup2 of the
# spawn overwrites a source still to be moved.
_HIGH_FD = 100


def _source_digest(source: Path | None = None) -> str:
    """`source`'s (init.c's by default) SHA-256, hex. Raises OSError."""
    return hashlib.sha256((source or SOURCE).read_bytes()).hexdigest()


def source_marker(source: Path | None = None) -> bytes:
    """The string a juggler-init built from `source` (init.c by default)
    carries (its SHA-256; init.c's `source_digest`). Raises OSError."""
    return f"juggler-init source sha256 {_source_digest(source)}".encode()


def built_from(binary: Path, source: Path) -> bool:
    """`binary` is executable and carries `source`'s marker. Raises OSError."""
    return os.access(binary, os.X_OK) and source_marker(source) in binary.read_bytes()


def build(compiler: str = "gcc") -> Path:
    """Compile juggler-init next to its source (scripts/setup does, once):
    linked statically where the C library allows it (libc6-dev's libc.a),
    since an exec then loads no shared library (0.35 ms of CPU per start
    against 0.62 ms dynamic, 500 posix_spawns here), else dynamically.
    Returns its path. Raises subprocess.CalledProcessError, FileNotFoundError
    without a compiler."""
    import subprocess

    # Built aside and renamed over: an executor starting it meanwhile gets
    # the old program or the new one, never a half-written file.
    aside = BINARY.with_name(BINARY.name + ".new")
    command = [compiler, "-O2", "-Wall", f'-DJUGGLER_INIT_SOURCE_SHA256="{_source_digest()}"',
               "-o", str(aside), str(SOURCE)]
    if subprocess.run([*command, "-static"], stderr=subprocess.DEVNULL).returncode != 0:
        subprocess.run(command, check=True)
    os.replace(aside, BINARY)
    return BINARY


def built() -> bool:
    """juggler-init is there, executable, and built from the init.c beside
    it (it carries `source_marker()`): a checkout updated without
    scripts/setup keeps launching the Python way, and a package installed
    by pip (the Docker image's, with a binary scripts/setup built) is
    checked the same way, whatever the files' times."""
    try:
        return built_from(BINARY, SOURCE)
    except OSError:
        return False


def _starts() -> bool:
    """Whether juggler-init can be started here at all (an LSM may refuse
    it, a binary may be for another machine): started once without a plan,
    it prints its usage and exits 2. Checked before any launch, because a
    spawn that fails in the executor cannot be retried: the dead child was
    the pid namespace's init, and the namespace takes no other process."""
    try:
        pid = os.posix_spawn(str(BINARY), [str(BINARY)], {}, file_actions=[
            (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)])
        _, status = os.waitpid(pid, 0)
    except OSError:
        return False
    return os.waitstatus_to_exitcode(status) == 2


_usable: bool | None = None  # checked once per process (the launcher: before it forks)


def _exec_keeps_capabilities() -> bool:
    """Whether a program this process execs holds the capabilities it holds:
    for root, execve makes the permitted set the bounding set plus the
    inheritable one (capabilities(7)), where a fork inherited the set as it
    was. True for root whose permitted set is exactly that, as an agent
    runs; then juggler-init holds what the Python child held."""
    if os.geteuid() != 0:
        return False
    _, permitted, inheritable = sc.capget()
    bounding = 0
    for cap in range(capabilities._last_cap() + 1):
        if sc.prctl(sc.PR_CAPBSET_READ, cap):
            bounding |= 1 << cap
    return permitted == bounding | inheritable


_EXEC_KEEPS_CAPABILITIES = _exec_keeps_capabilities()
MAX_FIELDS = 262144  # init.c's: fields of one step (argv, env, groups)


def enabled() -> bool:
    """Whether launches may take juggler-init: not turned off, built from
    the current source, and startable here (`_starts`). Call it outside
    the pid namespace launch.start makes for its children."""
    global _usable
    if os.environ.get(ENGINE_ENV, "") == "python":
        return False
    if _usable is None:
        _usable = built() and _starts()
    return _usable


class _Plan:
    """juggler-init's plan format: per step, its field count, then each field,
    every count and field as `<length in bytes>:<bytes>` (init.c, the head
    comment). Built as text and encoded once (surrogateescape keeps a
    path's undecodable bytes as they were): ~100 steps per launch."""

    def __init__(self) -> None:
        self.out: list[str] = []

    def __call__(self, op: str, *args: str | int) -> None:
        out = self.out
        out.append(f"{len(args) + 1}:{len(op)}:{op}")
        for a in args:
            a = a if type(a) is str else str(a)
            size = len(a) if a.isascii() else len(a.encode(errors="surrogateescape"))
            out.append(f"{size}:{a}")

    def bytes(self) -> bytes:
        return "".join(self.out).encode(errors="surrogateescape")


def plan(spec: ContainerSpec, sandbox: Path, stdout_path: str, stderr_path: str,
         stdio, join_count: int, view: cgroup_view.CgroupView | None, netns: bool,
         host: host_view.HostView | None) -> bytes | None:
    """juggler-init's steps for this launch (launch._child's, in its order),
    or None when the launch is not one juggler-init makes (module
    docstring): then launch.py's child makes it. `stdio`: as launch.start's;
    `join_count`: how many cgroup join files are handed over (at JOIN_FD
    on); `netns`: a network namespace to join is handed over (at NETNS_FD)."""
    if spec.rootfs or spec.layers or spec.init or (view is not None and view.version != 1):
        return None
    if (stdio is not None and stdio.console >= 0) or not _EXEC_KEEPS_CAPABILITIES:
        return None
    if len(spec.argv) >= MAX_FIELDS or len(spec.env) >= MAX_FIELDS - 1:
        return None
    if not os.path.isabs(spec.working_dir):
        return None
    if any("\0" in a for a in spec.argv) or any("\0" in k or "\0" in v
                                                 for k, v in spec.env.items()):
        return None  # the Python child reports it
    pspec = ProcessSpec.of_container(spec)
    try:
        account = users.lookup(spec.user)
    except (users.UnknownUser, OSError, ValueError):
        return None  # the Python child reports it, naming the user
    env = dict(pspec.env)
    if not (pspec.home_from_task and env.get("HOME")):
        env["HOME"] = account.home
    if len(account.groups) >= MAX_FIELDS - 4:
        return None
    _, permitted, _ = sc.capget()
    if pspec.capabilities & ~permitted and capabilities.missing(
            pspec.capabilities, permitted, capabilities._last_cap()):
        return None  # the Python child refuses it, naming them

    p = _Plan()
    p("step", "reset the umask and the OOM score")
    p("umask", 0o022)
    p("write", "/proc/self/oom_score_adj", "0", 0)
    p("step", "create namespaces")
    p("setsid")
    flags = sc.CLONE_NEWNS | sc.CLONE_NEWUTS | sc.CLONE_NEWIPC
    if netns:
        p("step", "join the network namespace")
        p("setns", NETNS_FD, sc.CLONE_NEWNET)
    elif not spec.network_host:
        flags |= sc.CLONE_NEWNET
    p("step", "create namespaces")
    p("unshare", flags)
    p("step", "set the hostname")
    p("hostname", spec.hostname)
    if not spec.network_host:
        from juggler.container.launch import NETWORK_SYSCTLS

        p("step", "bring lo up")
        p("lo_up")
        p("step", "set the network namespace's sysctls")
        for name, value in NETWORK_SYSCTLS:
            p("write", f"/proc/sys/{name}", value, 1)
    p("step", "open stdio")
    if stdio is None:
        p("open_stdio", "/dev/null", stdout_path, stderr_path)
    else:
        p("stdio_fds", STDIO_FD, STDIO_FD + 1, STDIO_FD + 2)
    p("step", "set up the root filesystem")
    _host_filesystem(p, sandbox, view, host)
    p("require_dir", spec.working_dir,
      f"working directory {spec.working_dir!r}: no such directory on the agent's host (a "
      "task with neither image nor rootfs runs in the host's filesystem, where juggler "
      "creates no directory)")
    _execute(p, pspec, account, env, join_count)
    return p.bytes()


def _host_filesystem(p: _Plan, sandbox: Path, view: cgroup_view.CgroupView | None,
                     host: host_view.HostView | None) -> None:
    """rootfs.enter without a root filesystem."""
    p("mount", "", "/", "", sc.MS_REC | sc.MS_PRIVATE, "")  # rootfs.make_private
    if host is not None:  # host_view.enter
        p("open_sandbox", host.sandbox)
        p("read_only", "/")
        for c in host.covers:
            p("cover", c.path, c.way)
        p("bind_writable", "", host.sandbox)
        p("bind_writable", host.tmp, host_view.TMP)
        if host.sandbox_in_tmp:
            first, _, rest = host.sandbox_in_tmp.partition("/")
            top = os.path.join(host_view.TMP, first)
            p("makedirs", top, 0o755)
            p("cover", top, rest or ".")
            p("bind_writable", "", os.path.join(host_view.TMP, host.sandbox_in_tmp))
        p("close_sandbox")
    p("makedirs", "/proc", 0o777)  # rootfs.mount_proc
    p("mount", "proc", "/proc", "proc", rootfs.PROC_FLAGS, "")
    dev = str(sandbox / ".dev")  # rootfs.setup_host_dev, populate_dev
    p("makedirs", dev, 0o777)
    p("mount", "tmpfs", dev, "tmpfs", rootfs.DEV_FLAGS, rootfs.DEV_OPTIONS)
    for name, major, minor in rootfs.DEVICES:
        p("mknod", f"{dev}/{name}", major, minor)
    p("mkdir", f"{dev}/pts", 0o777)
    p("mount", "devpts", f"{dev}/pts", "devpts", rootfs.PTS_FLAGS, rootfs.PTS_OPTIONS)
    p("symlink", "pts/ptmx", f"{dev}/ptmx")
    p("mkdir", f"{dev}/shm", 0o777)
    p("mount", "shm", f"{dev}/shm", "tmpfs", rootfs.SHM_FLAGS, rootfs.SHM_OPTIONS)
    p("mkdir", f"{dev}/mqueue", 0o777)
    p("mount", "mqueue", f"{dev}/mqueue", "mqueue", rootfs.MQUEUE_FLAGS, "")
    for i, name in enumerate(("stdin", "stdout", "stderr")):
        p("symlink", f"/proc/self/fd/{i}", f"{dev}/{name}")
    p("symlink", "/proc/self/fd", f"{dev}/fd")
    p("mount", dev, "/dev", "", sc.MS_MOVE, "")
    staging = str(sandbox / ".cgroup")
    if view is not None:  # cgroup_view.mount (v1), built aside
        p("makedirs", staging, 0o777)
        flags = cgroup_view.FLAGS
        p("mount", "tmpfs", staging, "tmpfs", flags, cgroup_view.TMPFS_OPTIONS)
        for bind in view.binds:
            point = os.path.join(staging, bind.name)
            p("mkdir", point, 0o777)
            p("mount", bind.source, point, "", sc.MS_BIND | sc.MS_REC, "")
            p("mount", "", point, "", sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | flags, "")
        for name, link in view.links:
            p("symlink_absent", link, os.path.join(staging, name))
    p("mount_sys", "/", str(sandbox / ".sys"))
    if view is not None:
        p("mount", staging, "/sys/fs/cgroup", "", sc.MS_MOVE, "")
    for path in (*rootfs.MASKED, *rootfs.masked_cpu_paths()):  # rootfs.mask_paths
        p("mask", path)
    for path in rootfs.READONLY:
        p("readonly_path", path)


def _execute(p: _Plan, spec: ProcessSpec, account: users.User, env: dict[str, str],
             join_count: int) -> None:
    """process.execute, with launch._child's ready()."""
    p("step", f"chdir {spec.cwd!r}")
    p("chdir", spec.cwd)
    for name, soft, hard in spec.rlimits:  # rlimits.apply
        own = resource.getrlimit(NUMBERS[name])[1]
        p("step", f"set the ulimits: set ulimit {name}={soft}:{hard}")
        p("rlimit", NUMBERS[name], soft, hard,
          f" (the agent's own hard limit is {rlimits._shown(own)})")
    p("step", f"run as user {spec.user!r}" if spec.user else "set capabilities")
    p("caps", spec.capabilities, 1, account.uid, account.gid, *account.groups)
    if spec.no_new_privileges:
        p("step", "set no_new_privs")
        p("no_new_privs")
    p("step", "wait for the cgroup")
    p("wait_go", SYNC_FD)
    p("step", "join the cgroup")
    for i in range(join_count):
        p("join", JOIN_FD + i)
    p("step", "redirect stdio")
    p("dup_stdio")
    p("argv", *spec.argv)
    p("env", *(f"{k}={v}" for k, v in env.items()))
    p("exec")


def spawn(steps: bytes, sync_r: int, err_w: int, stdio, join_fds: Sequence[int],
          netns_fd: int) -> int:
    """Start juggler-init with `steps` (from `plan`) and the launch's fds at
    the numbers the plan names; returns its pid (pid 1 of the pid namespace
    launch.enter_pid_namespace made for this process's children). Raises
    OSError."""
    memfd = os.memfd_create("juggler-plan", os.MFD_CLOEXEC)
    sources = [memfd]
    try:
        os.write(memfd, steps)
        os.lseek(memfd, 0, os.SEEK_SET)
        wanted = [(memfd, PLAN_FD), (err_w, ERR_FD), (sync_r, SYNC_FD)]
        if stdio is not None:
            wanted += [(stdio.stdin, STDIO_FD), (stdio.stdout, STDIO_FD + 1),
                       (stdio.stderr, STDIO_FD + 2)]
        if netns_fd >= 0:
            wanted.append((netns_fd, NETNS_FD))
        wanted += [(fd, JOIN_FD + i) for i, fd in enumerate(join_fds)]
        actions = []
        for fd, target in wanted:
            high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, _HIGH_FD)
            sources.append(high)
            actions.append((os.POSIX_SPAWN_DUP2, high, target))
        return os.posix_spawn(str(BINARY), [str(BINARY), str(PLAN_FD), str(ERR_FD)], {},
                              file_actions=actions)
    finally:
        for fd in sources:
            os.close(fd)
