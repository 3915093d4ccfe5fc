"""`python -m juggler.container.nsenter REQUEST`: run a process in a running container.

The agent starts this helper for `Agent.Exec` (a fresh single-threaded
process: forking the agent itself, with gRPC's threads, would not be safe).

    helper (host pid ns)                          process (container pid ns)
    check pid 1 is still the task's (its cgroup)
    join the task's cgroup (every controller)
    setns: user?, cgroup?, ipc, uts, net, pid, mnt (mnt last: /proc/<pid>
           must stay reachable until then; a pid ns applies to children)
    [tty: openpty in the container's devpts, send the master back over
          the socket `console_fd`]
    fork ───────────────────────────────────────▶ setsid, [pty → ctty, 0/1/2]
                                                  process.execute: chdir, the
                                                  user from the container's
                                                  /etc, the task's caps,
                                                  parent-death signal,
                                                  no_new_privs, execvpe
    wait, exit with its code (128+N for signal N)

The process gets the same hardening as the task (container/process.py, which
launch.py and the health checks use too). It dies with the helper
(PR_SET_PDEATHSIG): the agent kills the helper when the client goes away.
Exit codes as `docker exec`: 125 when entering the container or a step before
the exec fails (a missing working directory, an unknown user), 127 when the
command is not found, 126 when it cannot be executed; the message on stderr
names the step.

REQUEST is JSON: {"pid", "cgroup", "tty", "console_fd" (with tty), "process"
(a container.process.ProcessSpec, `to_json`)}.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import os
import signal
import socket
import sys
import termios

from juggler.container import process, syscalls
from juggler.container.cgroups import open_cgroup

NAMESPACES = ("user", "cgroup", "ipc", "uts", "net", "pid", "mnt")
EXIT_FAILED = process.EXIT_SETUP_FAILED


def owned_by(pid: int, cgroup: str) -> bool:
    """Whether `pid` lives in the cgroup `cgroup` (guards against pid reuse)."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return False
    want = "/" + cgroup.strip("/")
    return any(line.split(":", 2)[-1] == want for line in lines)


def enter(pid: int, cgroup: str) -> None:
    if not owned_by(pid, cgroup):
        raise OSError(errno.ESRCH, f"process {pid} is not the container's (cgroup {cgroup})")
    fds = []
    for ns in NAMESPACES:
        theirs = f"/proc/{pid}/ns/{ns}"
        try:
            if os.stat(theirs).st_ino == os.stat(f"/proc/self/ns/{ns}").st_ino:
                continue
        except FileNotFoundError:
            continue
        fds.append((ns, os.open(theirs, os.O_RDONLY | os.O_CLOEXEC)))
    open_cgroup(cgroup).add(os.getpid())
    for ns, fd in fds:
        try:
            syscalls.setns(fd)
        except OSError as e:
            raise OSError(e.errno, f"enter the {ns} namespace: {e.strerror}") from None
        os.close(fd)


def _child(spec: process.ProcessSpec, slave: int) -> None:  # pragma: no cover - the child
    code, message = EXIT_FAILED, "set up"
    try:
        with process.step("start a session"):
            os.setsid()
        if slave >= 0:
            with process.step("set the controlling terminal"):
                fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
                for fd in (0, 1, 2):
                    os.dup2(slave, fd)
                os.close(slave)
        code, message = process.execute(spec)
    except process.SetupError as e:
        message = str(e)
    except BaseException as e:
        message = f"set up: {e}"
    finally:
        try:
            os.write(2, f"juggler exec: {message}\n".encode(errors="replace"))
        finally:
            os._exit(code)


def main(argv: list[str]) -> int:
    req = json.loads(argv[0])
    try:
        enter(int(req["pid"]), req["cgroup"])
        slave = -1
        if req["tty"]:
            master, slave = os.openpty()  # the container's /dev/ptmx: its own devpts
            with socket.socket(fileno=int(req["console_fd"])) as sock:
                socket.send_fds(sock, [b"m"], [master])
            os.close(master)
    except OSError as e:
        print(f"juggler exec: {e.strerror or e}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    # It dies with this helper, which the agent kills when the client goes away.
    spec = dataclasses.replace(process.ProcessSpec.from_json(req["process"]),
                               death_signal=signal.SIGKILL)
    pid = os.fork()
    if pid == 0:  # pragma: no cover
        _child(spec, slave)
    if slave >= 0:
        os.close(slave)
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
