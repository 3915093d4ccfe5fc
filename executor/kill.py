"""Who a kill's SIGTERM reaches: PID 1, or every process of the task.

    command.shell = false (argv)     SIGTERM to PID 1                  as `docker stop`
    command.shell = true  (sh -c)    SIGTERM to every process of the   as Mesos's command
                                     task's cgroup                     executor (os::killtree)
    either, after the grace period   SIGKILL to every process of the cgroup (executor.py)

SIGTERM here is the kill's first signal: KillPolicy.signal when the kill or
the task names one, or the image's StopSignal (`docker stop` sends that
too), SIGTERM otherwise (executor.py chooses; the rules below hold for any).

Why two rules. A task's command is PID 1 of its pid namespace, and the kernel
lets a namespace's init receive, from an ancestor namespace, only the signals
it has a handler for, besides SIGKILL and SIGSTOP (pid_namespaces(7)).

- argv is the user's own program, run as Docker runs an image's exec-form
  CMD: `docker stop` signals the container's PID 1 and nothing else, and
  Docker's users know it ("use the exec form ... to run the executable as the
  main process (PID 1) in the container", Docker's build check
  JSONArgsRecommended; `exec` in a start script; `docker run --init`).
  juggler does the same, so a task behaves as the same container would.
- `/bin/sh -c CMD` is juggler's wrapper, as it is the Mesos command
  executor's for a Marathon app's `cmd` (Marathon apps run under it). A shell
  with no TERM trap drops SIGTERM as PID 1, so a SIGTERM to PID 1 alone never
  reached the program: every stop waited out the grace period and ended with
  SIGKILL. Mesos's command executor (src/launcher/executor.cpp, `kill`:
  "Sending SIGTERM to process tree at pid ...",
  `os::killtree(pid, SIGTERM, true, true)`, then SIGKILL after the grace
  period) signals the task's whole process tree, and apps are written for
  that. juggler signals every process of the task's cgroup: the set killtree
  approximates by walking children, process groups and sessions (a daemon
  that left its parent is still in the cgroup).

A shell task's end is then the shell's own: the status of the program as the
shell returns it (0 from a handler that exits cleanly, 143 from a program
that dies of the SIGTERM) in TASK_KILLED, as for every kill. One difference
with Mesos remains: there the shell is no init and dies of the SIGTERM too;
here it ignores it unless CMD traps TERM, so a script goes on once the
command it waited for has ended (`while :; do prog; done` starts prog again,
unsignalled, and the grace period runs out). `exec prog`, or
`trap 'exit' TERM` (exit with the status of the command that just ended) in
the command, makes the shell stop there.

Forks during the kill (`signal_every_process`). Reading cgroup.procs and then
signalling each pid misses a child forked in between: it is in no list read,
and never gets the signal. As killtree does ("Stop the process to keep it from
forking while we are killing it", stout's os/posix/killtree.hpp), every
process is first SIGSTOPped, the list is read again until no new pid shows,
the signal goes to each, then SIGCONT to each. A process stops only on its way
back to user space, so a fork it is in the middle of can still add a child
after the SIGSTOP was sent: the list counts as complete only when it was read
after every thread of every process listed was seen stopped (`StopWalk`).
That wait is bounded by STOP_SETTLE (a task throttled by its CFS quota runs,
and stops, only in its next period; a process in uninterruptible sleep stops
when it leaves it); past it, the signal goes to the processes found. runc
closes the same race in `signalAllProcesses` (`runc kill --all`) by freezing
the cgroup; juggler's v1 cgroups have no freezer controller, and stopping
works on v1 and v2 alike. What processes may notice, as under Mesos: their
parent gets SIGCHLD for the stop and the continue (CLD_STOPPED, CLD_CONTINUED;
waitpid reports them only to those asking with WUNTRACED or WCONTINUED). What
no sender avoids: a process that joins the cgroup after the last listing (a
`juggler exec` starting) does not get the signal, and a child signalled
between its fork and its exec, while it still has its parent's handlers
(a shell trapping TERM), takes the signal in that handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterable

from juggler.container.cgroups import Cgroup
from juggler.v1 import common_pb2 as pb

# Seconds to wait for the processes of a task to stop before signalling them
# anyway: two CFS periods (container/spec.py CFS_PERIOD_US), as a throttled
# task runs again only in the next one.
STOP_SETTLE = 0.2
_POLL = 0.001  # seconds between two looks at the processes' states
# /proc/<pid>/task/<tid>/stat states of a thread that cannot fork any more:
# stopped, stopped by a tracer, zombie, dead.
_NOT_RUNNING = frozenset("TtZX")

__all__ = ["STOP_SETTLE", "StopWalk", "signal_every_process", "term_every_process",
           "thread_state"]


# -- the decisions (pure) ---------------------------------------------------


def term_every_process(task: pb.TaskInfo) -> bool:
    """True: a kill's SIGTERM goes to every process of `task` (a shell
    command); False: to its PID 1 only (argv). See the module docstring."""
    return task.command.shell


class StopWalk:
    """When the list of a cgroup's processes, each SIGSTOPped as it is first
    listed, is complete: pure, fed what the shell saw.

        listed(pids) → the new pids, to SIGSTOP now
        settled()    → every pid so far was seen stopped (or gone)
        closed       → a listing made after settled() found no new pid
    """

    def __init__(self) -> None:
        self.pids: list[int] = []  # every pid listed, in the order first seen
        self._known: set[int] = set()
        self._settled = False
        self.closed = False

    def listed(self, pids: Iterable[int]) -> list[int]:
        new = [pid for pid in dict.fromkeys(pids) if pid not in self._known]
        self._known.update(new)
        self.pids.extend(new)
        self.closed = self._settled and not new
        self._settled = False  # the new ones (if any) are not seen stopped yet
        return new

    def settled(self) -> None:
        self._settled = True


def thread_state(stat: bytes) -> str:
    """The state letter of a /proc/<pid>/stat line (after "(comm)", which may
    itself hold spaces and parentheses)."""
    return chr(stat[stat.rindex(b")") + 2])


# -- the shell --------------------------------------------------------------


async def signal_every_process(cgroup: Cgroup, sig: int,
                               settle: float = STOP_SETTLE) -> StopWalk:
    """Send `sig` to every process of `cgroup` without missing one forked
    meanwhile: SIGSTOP each until the list is complete, `sig` to each, SIGCONT
    to each. Returns the walk: `pids` signalled, `closed` False where the
    processes did not all stop within `settle` seconds. Raises OSError if the
    cgroup cannot be read (nothing is left stopped)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settle
    walk = StopWalk()
    try:
        while True:
            for pid in walk.listed(cgroup.pids()):
                _signal(pid, signal.SIGSTOP)
            if walk.closed or loop.time() >= deadline:
                break
            while not all(_stopped(pid) for pid in walk.pids):
                if loop.time() >= deadline:
                    break
                await asyncio.sleep(_POLL)
            else:
                walk.settled()
        for pid in walk.pids:
            _signal(pid, sig)
    finally:
        for pid in walk.pids:
            _signal(pid, signal.SIGCONT)
    return walk


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _stopped(pid: int) -> bool:
    """Whether every thread of `pid` is stopped, a zombie or gone."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return True
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                stat = f.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if thread_state(stat) not in _NOT_RUNNING:
            return False
    return True
