"""Docker's `--init`: a tiny init as the container's pid 1.

With the task label `juggler.init=true` the container's pid 1 is tini, which
runs the task's command as its child, passes on every signal it gets (the
kill's SIGTERM reaches the command), reaps every orphan the command's
processes leave behind (no zombie counts against the pids limit for the
task's life), and exits with the command's status (128+N when it died of
signal N; 127/126 when it cannot be run). That is what `docker run --init`
does with its `docker-init`, a static build of tini.

As Docker (moby daemon/oci_linux.go): the agent's tini is bind-mounted
read-only at `/sbin/docker-init` (`INIT_PATH`) in a container with its own
root filesystem (an image or a rootfs directory), and the command becomes
`/sbin/docker-init -- CMD...`. A task on the host's filesystem runs the
host's tini where it lies (`/usr/bin/tini-static -- CMD...`): making a mount
point in the host's /sbin would write to the host.

The binary is `tini-static` (Debian's package `tini`; statically linked, so
it runs in any image, even one without a libc), looked up in the executor's
PATH and then in `SEARCH`. An agent without it fails the launch (exit 125)
saying so.

Order in the container's child (launch.py): `Init.find()` on the host's
filesystem; `stage()` before pivot_root binds the binary on an empty file in
the container's own /dev tmpfs (made by juggler: no symlink of the image can
aim the mount elsewhere); `command()` after pivot_root moves that mount to
/sbin/docker-init — resolved inside the container's root, where an image's
/sbin may well be a symlink to usr/sbin — and remounts it read-only.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass

from juggler.container import rootfs
from juggler.container import syscalls as sc

INIT_PATH = "/sbin/docker-init"   # moby: "/sbin/" + DefaultInitBinary
BINARY = "tini-static"
SEARCH = ("/usr/local/bin", "/usr/bin", "/bin", "/usr/local/sbin", "/usr/sbin", "/sbin")
_STAGE = "dev/.juggler-init"      # relative to the container's root, before pivot_root


@dataclass
class Init:
    """The host's tini, on its way into one container."""

    host_path: str
    staged: str = ""   # the staging mount (a path in the container), once staged

    @classmethod
    def find(cls, path: str | None = None) -> Init:
        """The agent's tini-static (`path`: the PATH to search first, default
        the environment's). Raises OSError ENOENT saying how to install it."""
        dirs = [d for d in (path if path is not None else os.environ.get("PATH", "")).split(
            os.pathsep) if d]
        found = shutil.which(BINARY, path=os.pathsep.join(dirs + list(SEARCH)))
        if found is None:
            raise OSError(errno.ENOENT, f"--init needs {BINARY} on the agent, and this one has "
                                        f"none (Debian: apt-get install tini)")
        return cls(host_path=os.path.abspath(found))

    def stage(self, root: str) -> None:
        """Before pivot_root into `root` (whose /dev is juggler's tmpfs): bind
        the binary on an empty file there."""
        target = os.path.join(root, _STAGE)
        with open(target, "w"):
            pass
        sc.mount(self.host_path, target, None, sc.MS_BIND)
        self.staged = "/" + _STAGE

    def command(self, argv: Sequence[str]) -> list[str]:
        """The argv to exec: `INIT_PATH -- argv` once the staged binary is moved
        there (after pivot_root, read-only); on the host's filesystem (never
        staged), the host's binary. Raises OSError naming what failed."""
        if not self.staged:
            return [self.host_path, "--", *argv]
        parent = os.path.dirname(INIT_PATH)
        try:
            os.makedirs(parent, exist_ok=True)
            os.close(os.open(INIT_PATH, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o755))
        except OSError as e:
            raise OSError(e.errno, f"make {INIT_PATH} in the container: "
                                   f"{e.strerror or e}") from None
        sc.mount(self.staged, INIT_PATH, None, sc.MS_MOVE)
        os.unlink(self.staged)
        rootfs.remount_readonly(INIT_PATH)
        return [INIT_PATH, "--", *argv]
