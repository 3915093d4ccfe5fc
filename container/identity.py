"""A process's identity inside a container: the task's user, its groups and
Docker's capability set, and the clean state it execs in (default signal
handling, nothing blocked, no inherited fd). Used by container/process.py,
the one way into a container for the task itself (launch.py), commands run
inside it (nsenter.py for exec) and command health checks (executor/health.py).
"""

from __future__ import annotations

import os
import signal

from juggler.container import capabilities, users


def assume(user: str, env: dict[str, str], *, home_from_task: bool) -> None:
    """Drop to Docker's default capabilities and, when `user` is set, become it
    (groups, gid, uid; HOME in `env` unless the task set it). Run in the child,
    after the filesystem is in place (the user is looked up in the container's
    /etc/passwd) and before no_new_privs and exec. Capabilities go first: a
    non-root user then ends with none (PR_SET_KEEPCAPS is off)."""
    account = users.lookup(user) if user else None
    if account is not None and not home_from_task:
        env["HOME"] = account.home
    capabilities.drop_to(capabilities.DEFAULT_MASK)
    if account is not None:
        os.setgroups(list(account.groups))
        os.setgid(account.gid)
        os.setuid(account.uid)


# Dispositions Python (or the executor) changed that a program expects at default.
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM,
                    signal.SIGCHLD)


def clean_for_exec(keep_fd: int = -1) -> None:
    """Just before execve in the child: default signal handling, an empty signal
    mask, and every fd above 2 closed but `keep_fd` (a CLOEXEC error pipe)."""
    for sig in _DEFAULT_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    if keep_fd >= 3:
        os.closerange(3, keep_fd)
        os.closerange(keep_fd + 1, 65536)
    else:
        os.closerange(3, 65536)
