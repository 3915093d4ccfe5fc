"""The cluster pointers `juggler up` leaves for the CLI: $JUGGLER_HOME/master,
apps and docker (cli/address.py reads them), and whose they are.

The fault this fixes: `up` removed a pointer on exit when its text equalled its
own address, and two ups on the same ports have the same address text — a
second up that failed removed the first's pointer. A pointer's owner is now a
record, not its text: $JUGGLER_HOME/clusters.json lists the ups that published
pointers, oldest first, each as

    {"pid": 1234, "start": <its /proc/PID/stat start time, in clock ticks>,
     "work_dir": "/…", "master": "127.0.0.1:5050", "apps": "http://…",
     "docker": "unix:///…", "endpoints": ["http://127.0.0.1:5055/", …],
     "tls": true}

("apps" and "docker" absent with --no-apps). The rules, pure in `published`
and `withdrawn`:

- an up publishes only once its cluster is ready (an up that refused or
  failed never touches the pointers) and then owns all three, as `docker
  context use` does: the last started cluster is the one the CLI talks to.
  A kind it lacks (apps, docker with --no-apps) is removed while it runs, so
  the CLI never mixes two clusters (cli/address.py then says that cluster
  serves none, rather than use a default);
- when the owner (the newest record) leaves — exits, or is found dead — each
  pointer that still says what it wrote (absent, for a kind it lacked) goes to
  the newest other recorded up that is still alive, that one cluster's whole
  set (a kind it lacks goes away), or away: when the second of two clusters
  stops, the CLI goes back to the first rather than to nothing. A file someone
  else wrote since stays; an up that is not the newest changes no pointer;
- records of ups that are gone are dropped whenever the list is written;
- a CLI reader heals (`heal`): when a recorded up's pid no longer has its
  start time (SIGKILLed), its record is withdrawn as if it had exited.

Writers take an flock on $JUGGLER_HOME/clusters.lock around read-modify-write;
files are replaced by rename, so a reader sees the old text or the new.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from juggler.cli import home

KINDS = ("master", "apps", "docker")
Record = dict[str, Any]


def _file(kind: str) -> Path:
    return {"master": home.master_file, "apps": home.apps_file,
            "docker": home.docker_file}[kind]()


def _write(kind: str, text: str) -> None:
    home.write_file(_file(kind), text)


# -- pure ---------------------------------------------------------------------------------

def published(records: list[Record],
              mine: Record) -> tuple[list[Record], dict[str, str | None]]:
    """(the new record list, pointer kind → text to write) when up `mine`
    publishes: it is appended (replacing a record of the same pid) and owns
    every pointer: each kind it has is written, each it lacks removed (None).
    Raises nothing."""
    rest = [r for r in records if r.get("pid") != mine["pid"]]
    return [*rest, mine], {k: mine.get(k) or None for k in KINDS}


def withdrawn(records: list[Record], mine: Record | None, files: dict[str, str | None],
              alive: Callable[[Record], bool]) -> tuple[list[Record], dict[str, str | None]]:
    """(the new record list, pointer kind → text to write, None to remove)
    when up `mine` exits (None: only the dead leave, `heal`). `files`: each
    pointer's current text (None: no file). Nothing changes unless the owner,
    the newest record, is leaving (it is `mine`, or not alive); then each
    pointer still saying what the owner wrote (None for a kind it lacked) goes
    to the newest live other record's, or away. Dead records are dropped.
    `alive(record)` is asked once per other record. Raises nothing."""
    others = [r for r in records if mine is None or r.get("pid") != mine.get("pid")]
    verdict = {id(r): alive(r) for r in others}
    living = [r for r in others if verdict[id(r)]]
    owner = records[-1] if records else mine
    if owner is None:
        return living, {}
    leaving = mine is not None and owner.get("pid") == mine.get("pid")
    if not leaving and verdict.get(id(owner), False):
        return living, {}   # the newest up still runs: the pointers are its
    previous = living[-1] if living else {}
    writes: dict[str, str | None] = {}
    for kind in KINDS:
        if files.get(kind) == (owner.get(kind) or None):
            writes[kind] = previous.get(kind) or None
    return living, writes


# -- the shell ----------------------------------------------------------------------------

def _records_file() -> Path:
    return home.state_dir() / "clusters.json"


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    where = home.state_dir()
    where.mkdir(parents=True, exist_ok=True)
    fd = os.open(where / "clusters.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def records() -> list[Record]:
    """The recorded ups, oldest first ([] when none or unreadable)."""
    try:
        got = json.loads(_records_file().read_text())
    except (OSError, ValueError):
        return []
    return [r for r in got if isinstance(r, dict)] if isinstance(got, list) else []


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _apply(kept: list[Record], writes: dict[str, str | None]) -> None:
    for kind, text in writes.items():
        if text is None:
            _file(kind).unlink(missing_ok=True)
        else:
            _write(kind, text)
    _replace(_records_file(), json.dumps(kept, indent=1) + "\n")


def start_time(pid: int) -> int | None:
    """A process's start time (field 22 of /proc/PID/stat, clock ticks since
    boot): with the pid, it names one process (pids are reused). None when
    there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _answers(masters: str) -> bool:
    for hostport in masters.split(","):
        host, _, port = hostport.strip().rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=1.0):
                return True
        except (OSError, ValueError):
            continue
    return False


def running(record: Record) -> bool:
    """Whether the up of `record` still runs: its pid with the same start time
    (/proc reads only)."""
    pid = record.get("pid")
    return isinstance(pid, int) and start_time(pid) == record.get("start")


def alive(record: Record) -> bool:
    """Whether the up of `record` still runs (same pid and start time) and its
    master accepts connections."""
    return running(record) and _answers(str(record.get("master", "")))


def record_for(*, master: str, apps: str, docker: str, work_dir: Path,
               endpoints: list[str], tls: bool = False) -> Record:
    """This process's record (apps/docker "" when it serves none; "tls": true
    for an up --tls, whose files in $JUGGLER_HOME/tls/ the CLI then uses)."""
    pid = os.getpid()
    out: Record = {"pid": pid, "start": start_time(pid), "work_dir": str(work_dir),
                   "master": master, "endpoints": endpoints}
    if tls:
        out["tls"] = True
    if apps:
        out["apps"] = apps
    if docker:
        out["docker"] = docker
    return out


def publish(mine: Record) -> None:
    """Record `mine` and point every pointer it has at it. Raises OSError."""
    with _locked():
        kept, writes = published([r for r in records() if alive(r)], mine)
        _apply(kept, dict(writes))


def withdraw(mine: Record) -> None:
    """`mine` exits: its pointers go back to the newest live other cluster, or
    away, unless someone rewrote them (`withdrawn`). Raises OSError."""
    with _locked():
        kept, writes = withdrawn(records(), mine, _files(), alive)
        _apply(kept, writes)


def _files() -> dict[str, str | None]:
    files: dict[str, str | None] = {}
    for kind in KINDS:
        try:
            files[kind] = _file(kind).read_text().strip()
        except OSError:
            files[kind] = None
    return files


def heal() -> None:
    """A CLI reader's first step: withdraw, as if they had exited, the records
    of ups that died without doing so (SIGKILL), so the pointers go back to
    the newest still-running cluster, or away. Cheap: no clusters.json, or
    every recorded up still running (/proc reads), does nothing; no network.
    Raises nothing (a home the user cannot write is left as it is)."""
    if not _records_file().exists() or all(running(r) for r in records()):
        return
    try:
        with _locked():
            kept, writes = withdrawn(records(), None, _files(), running)
            _apply(kept, writes)
    except OSError:
        pass


def owner_is_plain() -> bool:
    """Whether the newest recorded up (the pointers' owner) runs without TLS:
    the TLS files an older up --tls left in $JUGGLER_HOME/tls/ are not for it."""
    try:
        recs = records()
    except (OSError, ValueError):
        return False
    return bool(recs) and not recs[-1].get("tls")


def find(master: str) -> Record | None:
    """The newest recorded up whose master list is `master` (None: none)."""
    return next((r for r in reversed(records()) if r.get("master") == master), None)
