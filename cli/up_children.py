"""The daemons `juggler up` starts die with it, even when it is SIGKILLed.

Each child asks the kernel, between fork and exec, for a signal when its parent
ends: prctl(PR_SET_PDEATHSIG, sig) (prctl(2); the setting survives execve of a
non-set-user-ID program and is cleared in a fork's child, so the daemons'
own children — executors, tasks — do not inherit it). The signal is sent when
the *thread* that forked the child ends: up starts (and restarts) every daemon
from its main thread. A parent that died before the prctl is caught by
comparing getppid() with the parent's pid afterwards.

The signal, per daemon (`death_signal`): SIGTERM for all of them, each
daemon's graceful stop (cli/daemons.py):
- an agent on SIGTERM stops and leaves its executors running (Agent.stop), as a
  SIGKILLed one would; an agent started again recovers them. SIGUSR1, which
  kills the tasks, is what up's orderly stop sends, not the death signal;
- a master and an apps service on SIGTERM stop (releasing an etcd election
  lease at once rather than at its TTL);
- etcd on SIGTERM shuts down cleanly.

SIGHUP to up is not an end: up forwards it to the daemons that reload their rules
and tokens files on it (`reload_targets`) and keeps running.
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Callable

PR_SET_PDEATHSIG = 1   # include/uapi/linux/prctl.h


def death_signal(name: str) -> signal.Signals:
    """The signal daemon `name` ("master-2", "agent-1", "apps", "etcd") gets
    when up ends without stopping it. Raises nothing."""
    del name   # every daemon stops gracefully on SIGTERM (module docstring)
    return signal.SIGTERM


def preexec(sig: signal.Signals, then: Callable[[], None] | None = None) -> Callable[[], None]:
    """A Popen preexec_fn: set the parent-death signal, exit at once if the
    parent is already gone, then run `then` (e.g. joining a network namespace).
    libc is loaded here, in the parent: the child only makes the call."""
    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl
    parent = os.getpid()
    value = int(sig)

    def run() -> None:
        if prctl(PR_SET_PDEATHSIG, value, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
        if os.getppid() != parent:
            os._exit(1)   # up died before the prctl: nobody would signal us
        if then is not None:
            then()

    return run


def reload_targets(names: list[str], rules_on: bool) -> list[int]:
    """The indexes in `names` of the daemons that SIGHUP `juggler up` forwards
    to: every master, agent and apps service when they were given a rules file
    (--tls or --acls), which they then read again, with their tokens file; none
    otherwise, as a daemon without one keeps SIGHUP's default action (it would
    end). etcd is never among them (SIGHUP is not its reload). Raises nothing."""
    if not rules_on:
        return []
    return [i for i, name in enumerate(names) if name.split("-")[0] in ("master", "agent", "apps")]
