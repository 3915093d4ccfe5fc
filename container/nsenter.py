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
                                                  chdir, look the user up in
                                                  the container's /etc,
                                                  drop caps (the task's set),
                                                  setgroups/gid/uid, parent-
                                                  death signal, no_new_privs,
                                                  execvpe
    wait, exit with its code (128+N for signal N)

The process gets the same hardening as the task (container/launch.py). It
dies with the helper (PR_SET_PDEATHSIG): the agent kills the helper when the
client goes away. Errors before the fork exit 125; a command not found 127,
not executable 126, as `docker exec`.

REQUEST is JSON: {"pid", "cgroup", "argv", "env", "cwd", "user", "tty",
"home_from_task", "console_fd" (with tty)}.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import socket
import sys
import termios

from juggler.container import capabilities, identity, syscalls
from juggler.container.cgroups import open_cgroup

NAMESPACES = ("user", "cgroup", "ipc", "uts", "net", "pid", "mnt")
EXIT_FAILED = 125
PR_SET_PDEATHSIG = 1


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


def _child(req: dict, slave: int) -> None:  # pragma: no cover - runs in the child
    step = "set up"
    try:
        os.setsid()
        if slave >= 0:
            step = "set the controlling terminal"
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
            os.close(slave)
        step = f"chdir {req['cwd']!r}"
        os.chdir(req["cwd"])
        env = dict(req["env"])
        step = f"run as user {req['user']!r}" if req["user"] else "drop capabilities"
        identity.assume(req["user"], env, home_from_task=bool(req.get("home_from_task")))
        step = "set the parent-death signal"  # after setuid, which clears it
        syscalls.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:
            os._exit(EXIT_FAILED)
        step = "set no_new_privs"
        capabilities.set_no_new_privs()
        identity.clean_for_exec()
        step = f"exec {req['argv'][0]!r}"
        os.execvpe(req["argv"][0], req["argv"], env)
    except OSError as e:
        code = {errno.ENOENT: 127, errno.EACCES: 126}.get(e.errno or 0, EXIT_FAILED) \
            if step.startswith("exec") else EXIT_FAILED
        os.write(2, f"juggler exec: {step}: {e.strerror or e}\n".encode())
        os._exit(code)
    except BaseException as e:
        os.write(2, f"juggler exec: {step}: {e}\n".encode())
        os._exit(EXIT_FAILED)


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
    pid = os.fork()
    if pid == 0:  # pragma: no cover
        _child(req, slave)
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
