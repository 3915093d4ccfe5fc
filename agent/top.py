"""A task's processes as the host's `ps` lists them (Agent.Top, `docker top`).

As dockerd's ContainerTop: run `ps` on the host with the caller's options
(default `-ef`), keep its header's titles, and keep the rows whose PID column
is a process of the task's cgroup (cgroup.procs). A row whose PID is "-" (a
thread line, `ps -eLf` or `ps m`) belongs to the process above it. Fields
beyond the titles (a command's arguments) are joined into the last column.

    ps_argv(ps_args, pids)   the ps command lines to try: first with
                             `-q PIDS` (ps reads only those), then without,
                             for options that refuse it (a forest, `f`)
    parse(output, pids)      (titles, rows), pure
    run(ps_args, pids)       both, in a subprocess; TopError for bad options

Options renaming the PID column (`-o pid=X`) are refused, as Docker refuses
them: the rows could not be matched. Options are split at whitespace
(dockerd splits at single spaces).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Collection

DEFAULT_PS_ARGS = "-ef"
# "-o comm=PID": another column titled PID, which the rows would be matched
# on (Docker's validatePSArgs refuses every "key=PID..." but pid=).
_RENAMED = re.compile(r"\s+(\S*)=\s*(PID\S*)")
PS_TIMEOUT = 10.0  # seconds


class TopError(ValueError):
    """`ps` refused the options, or its output has no PID column."""


def ps_argv(ps_args: str, pids: Collection[int]) -> list[list[str]]:
    """The `ps` command lines to try in turn. Raises TopError for options
    that rename a column to PID."""
    args = ps_args.split() or [DEFAULT_PS_ARGS]
    for key, value in _RENAMED.findall(" " + " ".join(args)):
        if key != "pid":
            raise TopError(f"ps options may not title another column PID ({key}={value})")
    plain = ["ps", *args]
    if not pids:
        return [plain]
    return [[*plain, "-q", ",".join(str(p) for p in sorted(pids))], plain]


def parse(output: str, pids: Collection[int]) -> tuple[list[str], list[list[str]]]:
    """`ps` output → (titles, rows of `pids`); each row has as many fields as
    there are titles. Raises TopError without a PID column or for a PID that
    is not a number."""
    lines = output.splitlines()
    titles = lines[0].split() if lines else []
    if "PID" not in titles:
        raise TopError("ps printed no PID column (its options must keep one)")
    at = titles.index("PID")
    wanted = set(pids)
    rows: list[list[str]] = []
    under_wanted = False  # the last process line was one of `pids`
    for line in lines[1:]:
        fields = line.split()
        if len(fields) <= at:
            continue
        if fields[at] == "-":  # a thread of the process above
            if under_wanted:
                rows.append(_fit(fields, len(titles)))
            continue
        try:
            pid = int(fields[at])
        except ValueError:
            raise TopError(f"ps printed {fields[at]!r} as a PID") from None
        under_wanted = pid in wanted
        if under_wanted:
            rows.append(_fit(fields, len(titles)))
    return titles, rows


def _fit(fields: list[str], n: int) -> list[str]:
    """`fields` as `n` columns: what overhangs goes into the last one."""
    if len(fields) <= n:
        return fields
    return [*fields[:n - 1], " ".join(fields[n - 1:])]


async def run(ps_args: str, pids: Collection[int]) -> tuple[list[str], list[list[str]]]:
    """Run `ps` and keep the rows of `pids`. Raises TopError when ps refuses
    the options (its first line of complaint), OSError when it cannot run."""
    error = ""
    for argv in ps_argv(ps_args, pids):
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), PS_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise OSError(f"ps did not answer within {PS_TIMEOUT:g} s") from None
        if proc.returncode == 0:
            return parse(out.decode(errors="replace"), pids)
        lines = err.decode(errors="replace").strip().splitlines()
        error = lines[0] if lines else f"ps exited with status {proc.returncode}"
    raise TopError(f"ps {' '.join(ps_args.split() or [DEFAULT_PS_ARGS])}: {error}")
