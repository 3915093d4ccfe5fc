"""A process's identity inside a container: the task's user, its groups and
Docker's capability set, and the clean state it execs in (default signal
handling, nothing blocked, no inherited fd). Used by container/process.py,
the one way into a container for the task itself (launch.py), commands run
inside it (nsenter.py for exec) and command health checks (executor/health.py).
"""

from __future__ import annotations

import contextlib
import os
import signal

from juggler.container import capabilities, users


def assume(user: str, env: dict[str, str], *, home_from_task: bool,
           caps: int = capabilities.DEFAULT_MASK) -> None:
    """Drop to the capability set `caps` (a mask; Docker's default set unless
    the task added or dropped some) and become `user` ("" is root) as Docker
    and runc do (users.py): groups, gid, uid from the container's /etc/passwd
    and /etc/group, even for root (root's groups are those its files give,
    not the executor's); HOME in `env` unless the task set a non-empty one
    (runc sets HOME when the environment has none or an empty one). Run in
    the child, after the filesystem is in place and before no_new_privs and
    exec. The user switch runs between the cut of the bounding set and that of
    the other sets (capabilities.drop_to, runc's order), and the exec of a
    non-root user's program clears them, as on Docker. Raises
    users.UnknownUser."""
    account = users.lookup(user)
    if not (home_from_task and env.get("HOME")):
        env["HOME"] = account.home

    def switch() -> None:
        os.setgroups(list(account.groups))
        os.setgid(account.gid)
        os.setuid(account.uid)

    capabilities.drop_to(caps, switch)


# Every signal a disposition can be set for. Not only those Python or the
# executor changed: an ignored signal stays ignored across fork and execve, so
# an agent started with SIGQUIT ignored (any background job of a
# non-interactive shell: `cmd &` ignores SIGINT and SIGQUIT) passed it down to
# every task, and a shell task's `trap ... QUIT` was silently refused (POSIX:
# a non-interactive shell cannot trap a signal ignored on entry), so a kill
# whose first signal was an image's StopSignal SIGQUIT waited out the whole
# grace period. runc's containers start with every signal at its default (its
# Go init catches them all, and execve resets caught ones), and so do
# juggler's.
_DEFAULT_SIGNALS = tuple(sorted(set(signal.valid_signals())
                                - {signal.SIGKILL, signal.SIGSTOP}))


def clean_for_exec(keep_fd: int = -1) -> None:
    """Just before execve in the child: every signal at its default
    disposition, an empty signal mask, and every fd above 2 closed but
    `keep_fd` (a CLOEXEC error pipe)."""
    for sig in _DEFAULT_SIGNALS:
        with contextlib.suppress(OSError, ValueError):  # none is refused today (not 32, 33)
            signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    if keep_fd >= 3:
        os.closerange(3, keep_fd)
        os.closerange(keep_fd + 1, 65536)
    else:
        os.closerange(3, 65536)
