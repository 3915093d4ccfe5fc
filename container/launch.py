"""Start a container whose pid 1 is the task's command, as the caller's child.

    executor (host namespaces)                child (pid 1 of a new pid ns)
    ─────────────────────────                 ─────────────────────────────
    unshare(CLONE_NEWPID)   (once, for its future child only)
    open the cgroup's join files (v1),
    write /etc/hosts, hostname, resolv.conf
    into the sandbox (etc_files.py)
    [pin a net ns, start CNI ADD: network.py]
    fork ───────────────────────────────────▶ [setns(the pinned net ns)]
                                              unshare(NS|UTS|IPC[|NET])
    (v2: add the child to the cgroup)         (v2: join the cgroup, unshare
                                              CGROUP: cgroup_view.py)
                                              hostname, lo up, stdio, rootfs
                                              (the host's: read-only but the
                                              sandbox and /tmp, host_view.py)
                                              (+ /dev, /sys, /sys/fs/cgroup,
                                              the /etc files, masked paths,
                                              --init's tini: docker_init.py),
                                              a missing working directory,
                                              then process.execute: chdir,
                                              look the user up, drop caps,
                                              setgroups/gid/uid, no_new_privs
    [wait for CNI ADD, add the IP to hosts]
    write "go" to the sync pipe ────────────▶ wait on the sync pipe,
                                              join the cgroup (v1), execve
    read the error pipe (CLOEXEC): EOF ◀───── exec succeeded
                       or "code\\nmessage" ◀── a step failed, _exit(code):
                                              127 not found, 126 not
                                              executable, 125 setup failed
                                              (container/process.py)

For a task on the host's filesystem without a terminal or --init (cgroup v1),
the child is juggler-init instead (container/native_init.py): the same steps,
planned here and carried out in C by a program posix_spawn starts, with the
same pipes and messages; no copy of this process's Python.

The executor stays the container's direct parent, so it can waitpid and read
its exit status. The child never returns into Python's normal flow: every path
ends in execve or os._exit, so no cleanup of the parent's state runs twice.

Hardening order matters: the mounts need CAP_SYS_ADMIN, so capabilities are
dropped only once the filesystem is final; the user switch runs after the
bounding set is cut and before the other sets are (runc's order: a task that
dropped SETUID still becomes its user); no_new_privs, when the task asked for
it, is the last step before exec so nothing the task execs can gain
privileges back.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from juggler.container import (
    cgroup_view,
    console,
    docker_init,
    etc_files,
    host_view,
    native_init,
    process,
    rootfs,
    syscalls,
    users,
)
from juggler.container.cgroups import detect as cgroup_version
from juggler.container.process import EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_SETUP_FAILED
from juggler.container.spec import ContainerSpec

__all__ = ["EXIT_NOT_EXECUTABLE", "EXIT_NOT_FOUND", "EXIT_SETUP_FAILED", "LaunchError",
           "Started", "enter_pid_namespace", "read_error", "start"]

_pid_ns_ready = False


class LaunchError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_SETUP_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Started:
    pid: int
    # Read end of the error pipe: EOF with no data means exec succeeded.
    error_fd: int
    # What set the container up: "juggler-init" (container/native_init.py)
    # or "python" (this module's child).
    init: str = "python"


def give_sandbox(sandbox: Path, user: str) -> None:
    """Make `sandbox` (the directory itself: the files the executor made in it,
    stdout and stderr, stay root's) owned by the task's user, resolved in the
    host's /etc (a task on the host's filesystem; an image's task does not see
    its sandbox), so that a task run as another user than root can write it:
    Mesos chowns the sandbox to the task's user (Mesos slave.cpp, chown of the
    executor's directory). Nothing for root; a user that does not resolve is
    left to the child, which fails the task with its message
    (identity.assume). Raises OSError."""
    if user in ("", "root", "0", "0:0"):
        return
    try:
        account = users.lookup(user)
    except users.UnknownUser:
        return
    if account.uid != 0:
        os.chown(sandbox, account.uid, account.gid)


def enter_pid_namespace() -> None:
    """Make this process's next child pid 1 of a new pid namespace (once)."""
    global _pid_ns_ready
    if not _pid_ns_ready:
        syscalls.unshare(syscalls.CLONE_NEWPID)
        _pid_ns_ready = True


def start(spec: ContainerSpec, sandbox: Path, add_to_cgroup, stdio=None,
          join: Sequence[Path] = (), cgroup_dirs: Sequence[Path] = (),
          netns_fd: int = -1, before_go: Callable[[], None] | None = None) -> Started:
    """Fork the container; `add_to_cgroup(pid)` runs while the child sets the
    container up, and before it execs the task.

    `join` (Cgroup.join_files()): files the child writes "0" to just before
    the exec, moving itself into the cgroup (opened here, in the host's mount
    namespace). That costs ~0.3 ms where `add_to_cgroup` from the parent costs
    an RCU grace period on cgroup v1 (10-20 ms); pass add_to_cgroup=None then.

    `stdio` (executor.stdio.ChildStdio): the fds to make the task's 0, 1 and 2,
    or a console socket to pass the master of a pty made inside the container
    (container/console.py). None: /dev/null and the files sandbox/stdout and
    sandbox/stderr.

    `cgroup_dirs` (Cgroup.paths().values()): the task's cgroup directories,
    shown read-only at the container's /sys/fs/cgroup as Docker does
    (container/cgroup_view.py); by default the directories of `join`.

    `netns_fd`: a network namespace (a pinned one, container/netns.py) the
    child joins with setns(2) instead of unsharing a fresh one: a CNI network
    (container/network.py). `before_go()` runs in the parent after the fork,
    while the child builds its root filesystem, and before the child may
    exec: the CNI ADD finishes there. If it raises, the child is killed and
    the exception propagates."""
    native = native_init.enabled()  # before the pid namespace: it may start a probe
    enter_pid_namespace()
    view = cgroup_view.host_plan(cgroup_version(),
                                 [str(d) for d in cgroup_dirs] or [str(p.parent) for p in join])
    etc = None
    host = None
    if not spec.rootfs and not spec.layers:
        host = host_view.plan(str(sandbox), spec.writable_host_filesystem,
                              host_view.hidden_from_env(os.environ))
        if host is not None:
            host_view.prepare(host)
        # Mesos's name for the sandbox's path, as every Mesos task gets it.
        spec = dataclasses.replace(spec, env={**spec.env, "MESOS_SANDBOX": str(sandbox)})
        give_sandbox(sandbox, spec.user)
    if spec.rootfs or spec.layers:
        rootfs.prepare(sandbox)
        etc = etc_files.write(sandbox / "etc", spec.hostname, spec.network_host)
        # A CNI network's address is added to hosts in before_go (etc_files.add_address).
    stdout_path = str(sandbox / "stdout")
    stderr_path = str(sandbox / "stderr")
    steps = None
    if native:
        steps = native_init.plan(spec, sandbox, stdout_path, stderr_path, stdio, len(join),
                                 view, netns_fd >= 0, host)
    join_fds = [os.open(path, os.O_WRONLY | os.O_CLOEXEC) for path in join]
    sync_r, sync_w = os.pipe()
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    try:
        if steps is not None:
            try:
                pid = native_init.spawn(steps, sync_r, err_w, stdio, join_fds, netns_fd)
            except OSError as e:
                # No retry with a fork: a spawn that failed after its clone
                # took the pid namespace's init with it (native_init._starts).
                raise OSError(e.errno, f"start {native_init.BINARY}: {e.strerror or e} "
                              f"({native_init.ENGINE_ENV}=python in the agent's "
                              "environment makes executors fork instead)") from None
        else:
            pid = os.fork()
    except BaseException:
        for fd in (sync_r, sync_w, err_r, err_w, *join_fds):
            os.close(fd)
        raise
    if pid == 0:  # pragma: no cover - runs in the child
        code, message = EXIT_SETUP_FAILED, "container setup failed"
        try:
            os.close(sync_w)
            os.close(err_r)
            code, message = _child(spec, sandbox, stdout_path, stderr_path, sync_r, err_w,
                                   stdio, join_fds, view, etc, netns_fd, host)
        except BaseException as e:
            message = f"container setup: {e}"
        finally:
            try:
                os.write(err_w, f"{code}\n{message}".encode(errors="replace"))
            finally:
                os._exit(code)
    os.close(sync_r)
    os.close(err_w)
    for fd in join_fds:
        os.close(fd)
    try:
        if add_to_cgroup is not None:
            add_to_cgroup(pid)
        if before_go is not None:
            before_go()
    except BaseException:
        os.close(sync_w)
        os.close(err_r)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    try:
        os.write(sync_w, b"go")
    except BrokenPipeError:
        # The child failed a step before it waited for "go" (an ulimit above
        # the kernel's, say) and exited: its error pipe says which.
        pass
    finally:
        os.close(sync_w)
    return Started(pid=pid, error_fd=err_r, init="python" if steps is None else "juggler-init")


def read_error(fd: int) -> LaunchError | None:
    """After EOF on the error pipe: the launch error, or None if exec succeeded."""
    chunks = []
    while True:
        data = os.read(fd, 65536)
        if not data:
            break
        chunks.append(data)
    os.close(fd)
    if not chunks:
        return None
    code, _, message = b"".join(chunks).decode(errors="replace").partition("\n")
    try:
        exit_code = int(code)
    except ValueError:
        exit_code = EXIT_SETUP_FAILED
    return LaunchError(message, exit_code)


# -- the child (pid 1 of the new pid namespace) -----------------------------

# What Docker sets in a container's own network namespace (moby
# daemon/oci_linux.go, withCommonOptions): ping without CAP_NET_RAW, and ports
# below 1024 without CAP_NET_BIND_SERVICE, for every user. /proc/sys/net is
# the writer's network namespace's.
NETWORK_SYSCTLS = (("net/ipv4/ping_group_range", "0 2147483647"),
                   ("net/ipv4/ip_unprivileged_port_start", "0"))


def _write_proc(path: str, value: str) -> None:  # pragma: no cover - in the child
    """Write a /proc file with os.open and os.write. Python's io stack
    (open()) touches enough of the interpreter's objects, shared with the
    executor copy-on-write, to cost the set-up measurably: 0.28 ms of CPU for
    oom_score_adj and 0.21 ms for the two sysctls, per container (the child's
    getrusage around each step, 300 containers)."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _network_sysctls() -> None:  # pragma: no cover - in the child
    for name, value in NETWORK_SYSCTLS:
        try:
            _write_proc(f"/proc/sys/{name}", value)
        except FileNotFoundError:  # a kernel without it: moby skips it too
            continue


def _child(spec: ContainerSpec, sandbox: Path, stdout_path: str, stderr_path: str,
           sync_r: int, err_w: int, stdio=None, join_fds=(),
           view: cgroup_view.CgroupView | None = None,
           etc: dict[str, str] | None = None, netns_fd: int = -1,
           host: host_view.HostView | None = None) -> tuple[int, str]:
    """Returns only on failure: (exit code, message)."""
    # The child enters the task's cgroup only just before the exec (after
    # "go", or by writing to join_fds): the setup is the runtime's work, so
    # it is neither charged to the task's limits nor throttled by its CPU
    # quota (1 ms per 100 ms for cpus=0.01), and the parent's move of the
    # child (an RCU grace period on v1) overlaps it.
    step = "reset the umask and the OOM score"
    try:
        # Not the executor's (the agent's): runc sets umask 0022 for a
        # container's init (libcontainer/rootfs_linux.go finalizeRootfs) and
        # Docker an oom_score_adj of 0 (HostConfig.OomScoreAdj).
        os.umask(0o022)
        _write_proc("/proc/self/oom_score_adj", "0")
        step = "create namespaces"
        os.setsid()
        flags = syscalls.CLONE_NEWNS | syscalls.CLONE_NEWUTS | syscalls.CLONE_NEWIPC
        if netns_fd >= 0:
            step = "join the network namespace"
            syscalls.setns(netns_fd, syscalls.CLONE_NEWNET)
            os.close(netns_fd)
        elif not spec.network_host:
            flags |= syscalls.CLONE_NEWNET
        step = "create namespaces"
        syscalls.unshare(flags)
        step = "enter the cgroup namespace"
        cgroup_view.enter_namespace(view)  # v2 only: a private one rooted at the task's
        step = "set the hostname"
        syscalls.sethostname(spec.hostname)
        if not spec.network_host:
            step = "bring lo up"
            syscalls.link_up("lo")
            step = "set the network namespace's sysctls"
            _network_sysctls()
        step = "open stdio"
        if stdio is None:
            null = os.open("/dev/null", os.O_RDONLY)
            out = os.open(stdout_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            err = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        else:
            null, out, err = stdio.stdin, stdio.stdout, stdio.stderr
        init = None
        if spec.init:
            step = "find the init (--init)"
            init = docker_init.Init.find()
        step = "set up the root filesystem"
        rootfs.enter(spec.rootfs, sandbox, spec.layers, init.stage if init else None, view,
                     etc, host)
        if spec.rootfs or spec.layers:  # never on the host's filesystem (process.py)
            step = f"create the working directory {spec.working_dir!r}"
            process.make_working_dir(spec.working_dir)
        elif not os.path.isdir(spec.working_dir):
            return EXIT_SETUP_FAILED, (
                f"working directory {spec.working_dir!r}: no such directory on the agent's "
                "host (a task with neither image nor rootfs runs in the host's filesystem, "
                "where juggler creates no directory)")
        argv = spec.argv
        if init is not None:
            step = "mount the init (--init)"
            argv = init.command(spec.argv)
        if stdio is not None and stdio.console >= 0:
            step = "allocate the task's terminal"
            null = out = err = console.open_in_container(stdio.console)
    except OSError as e:
        return EXIT_SETUP_FAILED, f"{step}: {e.strerror or e}"
    except Exception as e:
        return EXIT_SETUP_FAILED, f"{step}: {e}"

    def ready() -> None:
        with process.step("wait for the cgroup"):
            if not os.read(sync_r, 2):
                raise process.SetupError("the executor went away before the launch")
            os.close(sync_r)
        with process.step("join the cgroup"):
            for fd in join_fds:
                os.write(fd, b"0")
                os.close(fd)
        with process.step("redirect stdio"):
            os.dup2(null, 0)
            os.dup2(out, 1)
            os.dup2(err, 2)
            for fd in {null, out, err} - {0, 1, 2}:
                os.close(fd)

    return process.execute(process.ProcessSpec.of_container(spec, argv), ready=ready,
                           keep_fd=err_w)

