"""A process's identity inside a container: the task's user, its groups and
Docker's capability set. One place for the task itself (launch.py), commands
run inside it (nsenter.py for exec) and command health checks (executor/health.py).
"""

from __future__ import annotations

import os

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
