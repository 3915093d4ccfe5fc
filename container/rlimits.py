"""A task's resource limits (Docker's --ulimit), set in the child before it execs.

`apply` runs in container/process.py's `execute`, after the chdir and before
the capabilities are dropped and the user switched: raising a hard limit above
the executor's needs CAP_SYS_RESOURCE, which Docker's default set does not
keep (runc too sets a container's rlimits before it drops its capabilities).
Limits not named are inherited: the agent's own, through its executor.

RLIMIT_NPROC counts the processes of the task's *real uid across the host*,
not of the container (setrlimit(2)), and the kernel does not apply it to
root (uid 0) or to a process with CAP_SYS_ADMIN or CAP_SYS_RESOURCE — as on
Docker; the container's pids limit (`--pids-limit`) is the per-container one.
"""

from __future__ import annotations

import errno
import resource
from collections.abc import Iterable

from juggler.common.ulimits import NUMBERS, UNLIMITED

# Python's resource module reads -1 as RLIM_INFINITY, as Docker's -1 is.
assert resource.RLIM_INFINITY == UNLIMITED


def _shown(value: int) -> str:
    return "unlimited" if value == UNLIMITED else str(value)


def apply(limits: Iterable[tuple[str, int, int]]) -> None:
    """setrlimit each (Docker's name, soft, hard). Raises OSError naming the
    limit and the agent's own hard limit when the kernel refuses (a hard limit
    above the agent's without CAP_SYS_RESOURCE, nofile above fs.nr_open)."""
    for name, soft, hard in limits:
        try:
            resource.setrlimit(NUMBERS[name], (soft, hard))
        except (OSError, ValueError) as e:
            why = getattr(e, "strerror", None) or str(e)
            own = resource.getrlimit(NUMBERS[name])[1]
            raise OSError(getattr(e, "errno", None) or errno.EPERM,
                          f"set ulimit {name}={soft}:{hard}: {why} (the agent's own hard "
                          f"limit is {_shown(own)})") from None
