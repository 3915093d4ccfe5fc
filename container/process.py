"""The last steps of every process juggler starts inside a container, and what
its exit code says when they fail.

Three callers get a process into a container their own way, then end here:
the task itself (launch.py: new namespaces, the root filesystem), `juggler
exec` (nsenter.py: setns into a running task) and command health checks
(executor/health.py: setns from the executor). From a `ProcessSpec`:

    chdir(cwd) ─▶ [the task's ulimits: rlimits.py] ─▶ drop to the task's
    capabilities (Docker's default set ± --cap-add/--cap-drop); become the
    user (groups, gid, uid, HOME from the container's /etc/passwd;
    identity.py) ─▶ [parent-death signal: after setuid, which clears it] ─▶
    [no_new_privs, when the task asked: --security-opt no-new-privileges] ─▶
    ready() (the caller's last step: the launch joins its cgroup there) ─▶
    default signal handling, no inherited fd ─▶ execvpe

`execute` returns only when a step failed, with an exit code and a message that
names the step ("chdir '/x': No such file or directory", "exec 'foo': Permission
denied"); the caller reports both its own way and `_exit`s with the code.

The codes are Docker's for `docker run` and `docker exec` (moby's
daemon/errors.go, translateContainerdStartErr; the docker CLI exits with them),
which are POSIX shells' for "not found" and "not executable":

    127  the command was not found: execve failed with ENOENT or ENOTDIR. The
         kernel says ENOENT too when the file exists but its '#!' interpreter
         or its ELF loader does not; runc reports "no such file or directory"
         and Docker exits 127 for that as well, so does juggler (the message
         names the missing interpreter).
    126  the command was found but cannot be run: any other execve error
         (EACCES: no x bit, a directory, a noexec mount; ENOEXEC: neither a
         binary nor a script; EISDIR, ETXTBSY, E2BIG, ...). Docker maps EACCES
         and EISDIR to 126; ENOEXEC falls through to its generic error, where a
         shell says 126, as juggler does.
    125  juggler's own setup failed before the exec (an unknown user, a
         working directory that cannot be made or entered, ...), as `docker
         run` exits 125 when the daemon fails.

The working directory: a task in a root filesystem (an image, a rootfs) whose
working directory is missing gets it created, as Docker and runc do
(`make_working_dir`, called by launch.py after pivot_root); a task on the
host's filesystem does not (juggler creates nothing on the agent's host: the
launch fails, 125, naming the directory), nor does `juggler exec -w` (nor
does `docker exec -w`).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from juggler.container import capabilities, identity, rlimits, syscalls

if TYPE_CHECKING:
    from juggler.container.spec import ContainerSpec

EXIT_SETUP_FAILED = 125
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127
PR_SET_PDEATHSIG = 1
_NOT_FOUND = frozenset((errno.ENOENT, errno.ENOTDIR))


@dataclass(frozen=True)
class ProcessSpec:
    """A process to exec inside a container, once the caller is in its namespaces
    and root filesystem."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = "/"
    # A user name or numeric uid, looked up in the container's /etc/passwd
    # (users.py); empty: root, with Docker's capabilities.
    user: str = ""
    # HOME in `env` was set on purpose: the user's home does not replace it.
    home_from_task: bool = False
    # A signal for the process when its parent dies (PR_SET_PDEATHSIG); 0: none.
    death_signal: int = 0
    # The capability set (a mask; container/capabilities.py), no_new_privs,
    # and resource limits (Docker's name, soft, hard; -1 unlimited): the task's,
    # which `docker exec` and health checks share.
    capabilities: int = capabilities.DEFAULT_MASK
    no_new_privileges: bool = False
    rlimits: tuple[tuple[str, int, int], ...] = ()

    @classmethod
    def of_container(cls, spec: ContainerSpec, argv: tuple[str, ...] | list[str] | None = None,
                     death_signal: int = 0) -> ProcessSpec:
        """The task's process (`argv` None) or another one run as the task runs."""
        return cls(argv=tuple(spec.argv if argv is None else argv), env=dict(spec.env),
                   cwd=spec.working_dir, user=spec.user, home_from_task=spec.home_from_task,
                   death_signal=death_signal, **privileges_of(spec))

    def to_json(self) -> dict[str, Any]:
        return {"argv": list(self.argv), "env": dict(self.env), "cwd": self.cwd,
                "user": self.user, "home_from_task": self.home_from_task,
                "death_signal": self.death_signal, "capabilities": self.capabilities,
                "no_new_privileges": self.no_new_privileges,
                "rlimits": [list(limit) for limit in self.rlimits]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProcessSpec:
        return cls(argv=tuple(data["argv"]), env=dict(data["env"]), cwd=data["cwd"],
                   user=data["user"], home_from_task=bool(data["home_from_task"]),
                   death_signal=int(data["death_signal"]),
                   capabilities=int(data.get("capabilities", capabilities.DEFAULT_MASK)),
                   no_new_privileges=bool(data.get("no_new_privileges", False)),
                   rlimits=tuple((str(n), int(s), int(h)) for n, s, h in data.get("rlimits", ())))


def privileges_of(spec: ContainerSpec) -> dict[str, Any]:
    """The ProcessSpec fields a container's processes share (its capability
    set, no_new_privs, rlimits), as keyword arguments."""
    return {"capabilities": capabilities.mask(spec.capabilities),
            "no_new_privileges": spec.no_new_privileges,
            "rlimits": tuple((u.name, u.soft, u.hard) for u in spec.rlimits)}


class SetupError(Exception):
    """A step of juggler's own failed before the exec (exit 125); str(): "step: why"."""


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Run a setup step: any error becomes a SetupError saying "name: why"."""
    try:
        yield
    except SetupError:
        raise
    except OSError as e:
        raise SetupError(f"{name}: {e.strerror or e}") from None
    except Exception as e:
        raise SetupError(f"{name}: {e}") from None


def make_working_dir(path: str) -> None:  # pragma: no cover - in the child
    """Create `path` (absolute, clean) and its missing parents inside the
    container, as Docker does before runc starts (moby's
    SetupWorkingDirectory: MkdirAllAndChown 0755, root's, only what is new)
    and as runc does after pivot_root (libcontainer/rootfs_linux.go: MkdirAll
    0755): each new directory mode 0755 whatever the umask, owned by root;
    existing ones are left as they are (a symlink is followed, inside the
    container's root). Raises SetupError when something in the way is not a
    directory (Docker: "Cannot mkdir: ... is not a directory")."""
    made = []
    probe = path
    while not os.path.isdir(probe):
        if os.path.lexists(probe) and not os.path.islink(probe):
            raise SetupError(f"{probe!r} is not a directory")
        made.append(probe)
        probe = os.path.dirname(probe)
    for directory in reversed(made):
        try:
            os.mkdir(directory, 0o755)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise SetupError(f"{directory!r} is not a directory") from None
            continue
        os.chown(directory, 0, 0)
        os.chmod(directory, 0o755)


def exec_exit_code(err: int) -> int:
    """The exit code for an execve(2) that failed with `err` (see the module docstring)."""
    return EXIT_NOT_FOUND if err in _NOT_FOUND else EXIT_NOT_EXECUTABLE


def execute(spec: ProcessSpec, *, ready: Callable[[], None] | None = None,
            keep_fd: int = -1) -> tuple[int, str]:  # pragma: no cover - in the child
    """Become `spec`'s process: run in a forked child, inside the container.

    `ready`: the caller's last step before the exec, after no_new_privs (raise
    SetupError or anything else to fail with 125). `keep_fd`: an fd to keep
    open across the clean-up (a CLOEXEC error pipe). Returns only on failure:
    (exit code, message)."""
    env = dict(spec.env)
    try:
        with step(f"chdir {spec.cwd!r}"):
            os.chdir(spec.cwd)
        if spec.rlimits:
            with step("set the ulimits"):
                rlimits.apply(spec.rlimits)
        with step(f"run as user {spec.user!r}" if spec.user else "set capabilities"):
            identity.assume(spec.user, env, home_from_task=spec.home_from_task,
                            caps=spec.capabilities)
        if spec.death_signal:
            with step("set the parent-death signal"):
                syscalls.prctl(PR_SET_PDEATHSIG, spec.death_signal)
                if os.getppid() == 1:  # reparented: the parent is already gone
                    raise SetupError("the parent of the process went away")
        if spec.no_new_privileges:
            with step("set no_new_privs"):
                capabilities.set_no_new_privs()
        if ready is not None:
            with step("get ready"):
                ready()
    except SetupError as e:
        return EXIT_SETUP_FAILED, str(e)
    identity.clean_for_exec(keep_fd=keep_fd)
    name = spec.argv[0]
    try:
        os.execvpe(name, spec.argv, env)
    except OSError as e:
        code = exec_exit_code(e.errno or 0)
        reason = e.strerror or str(e)
        if e.errno == errno.ENOENT:
            reason += _missing_interpreter(name, env)
        return code, f"exec {name!r}: {reason}"
    except ValueError as e:  # a NUL byte in argv or env: nothing was run
        return EXIT_SETUP_FAILED, f"exec {name!r}: {e}"
    return EXIT_SETUP_FAILED, "unreachable"


def _missing_interpreter(name: str, env: Mapping[str, str]) -> str:
    """When execve said ENOENT for a file that exists: what is missing is the
    program that runs it. Returns words to append to the message, or ""."""
    if "/" in name:
        candidates = [name]
    else:
        path = env.get("PATH", os.defpath)
        candidates = [os.path.join(d or ".", name) for d in path.split(os.pathsep)]
    for candidate in candidates:
        try:
            with open(candidate, "rb") as f:
                head = f.read(256)
        except OSError:
            continue
        if head.startswith(b"#!"):
            line = head[2:].split(b"\n", 1)[0].strip()
            interpreter = line.split()[0].decode(errors="replace") if line else ""
            return f" (its interpreter {interpreter!r}, named on its '#!' line, is missing)"
        if head.startswith(b"\x7fELF"):
            return " (its ELF interpreter, the dynamic loader, is missing)"
        return ""
    return ""
