"""The cgroup manager interface and the host detection that picks v1 or v2.

One narrow interface (as runc's `cgroups.Manager`): create, set limits (the
warnings about limits this host cannot apply come back), add a pid, ask
how many processes the OOM killer took, kill every process, destroy, paths
and basic stats. `cgroups_v1` and `cgroups_v2` implement it; `detect()` chooses once
per process. Both take a root path so tests can point them at a fake tree.

A cgroup is named by a relative path (e.g. "juggler/<agent>/<task>") that is
the same under every v1 controller and under the v2 unified hierarchy.
"""

from __future__ import annotations

import contextlib
import functools
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROOT = Path("/sys/fs/cgroup")
UNLIMITED = -1
# What `set` returns when a swap limit was asked for and the kernel has no swap
# accounting: Docker's warning (moby's verifyPlatformContainerResources), word
# for word, so users search for it and find the fix (swapaccount=1).
NO_SWAP_LIMIT = ("Your kernel does not support swap limit capabilities or the cgroup is not "
                 "mounted. Memory limited without swap.")


@dataclass(frozen=True)
class Limits:
    """What a container may use. None leaves the kernel's default (no limit).

    `memory_swap_bytes` (with `memory_bytes`): memory + swap in bytes, or
    UNLIMITED (-1) for unlimited swap (Docker's --memory-swap); None: no swap
    at all, the same as `memory_bytes`."""

    cpu_shares: int | None = None
    cpu_quota_us: int | None = None
    cpu_period_us: int = 100_000
    memory_bytes: int | None = None
    memory_swap_bytes: int | None = None
    pids_max: int | None = None


@dataclass(frozen=True)
class Stats:
    """Usage of one container, read from its cgroup (v1 and v2 alike)."""

    cpu_usage_ns: int = 0
    cpu_user_ns: int = 0
    cpu_system_ns: int = 0
    # CFS bandwidth: periods elapsed, periods throttled, time throttled.
    cpu_periods: int = 0
    cpu_throttled_periods: int = 0
    cpu_throttled_ns: int = 0
    memory_bytes: int = 0
    memory_peak_bytes: int = 0
    memory_limit_bytes: int | None = None
    pids: int = 0  # pids.current: processes and threads, unreaped zombies included
    oom_kills: int = 0


class CgroupError(OSError):
    pass


class Cgroup(ABC):
    """One container's cgroup (in every controller it uses)."""

    version: int

    def __init__(self, name: str, root: Path = DEFAULT_ROOT) -> None:
        name = name.strip("/")
        if not name or ".." in Path(name).parts:
            raise ValueError(f"bad cgroup name {name!r}")
        self.name = name
        self.root = Path(root)

    @abstractmethod
    def paths(self) -> dict[str, Path]:
        """Controller (or "unified") → directory."""

    @abstractmethod
    def create(self) -> None: ...

    @abstractmethod
    def set(self, limits: Limits) -> list[str]:
        """Write `limits`; returns warnings (NO_SWAP_LIMIT) about what this
        host could not apply and the container runs without. Raises
        CgroupError when a write fails."""

    @abstractmethod
    def add(self, pid: int) -> None: ...

    def join_files(self) -> list[Path]:
        """Files a single-threaded process writes "0" to, to move itself in
        without the global lock a move of another pid takes (on v1, an RCU
        grace period: 10-20 ms); [] when the implementation has none."""
        return []

    @abstractmethod
    def pids(self) -> list[int]:
        """The processes in the cgroup (cgroup.procs): live ones only, not the
        zombies nobody has reaped yet (see `pids_current`)."""

    @abstractmethod
    def pids_current(self) -> int:
        """The pids controller's count (pids.current): every task (process or
        thread) of the cgroup, zombies included until they are reaped: what
        pids.max limits and what `docker stats` shows as PIDS (runc reads the
        same file). len(pids()) where the controller is missing."""

    @abstractmethod
    def oom_kills(self) -> int:
        """How many processes of the cgroup the kernel's OOM killer has killed
        since the cgroup was created (0 where the kernel does not count)."""

    def oom_killed(self) -> bool:
        return self.oom_kills() > 0

    @abstractmethod
    def stats(self) -> Stats: ...

    def exists(self) -> bool:
        return any(p.is_dir() for p in self.paths().values())

    def kill(self, sig: int = 9) -> None:
        """Send `sig` to every process in the cgroup (gone ones are skipped)."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def destroy(self) -> None:
        """SIGKILL what is left and remove the directories (idempotent)."""
        self.kill(9)
        for path in _unique(self.paths().values()):
            _rmdir_retrying(path)


@functools.lru_cache(maxsize=64)
def _real_dir(path: str) -> str:
    return os.path.realpath(path)


def real_path(path: str | Path, root: str | Path = DEFAULT_ROOT) -> str:
    """`os.path.realpath(path)` for a directory in a cgroup hierarchy mounted
    below `root`: only `root/<controller>` is resolved (a mount point, or a
    symlink to one, as cpu -> cpu,cpuacct), once per process (the launcher
    resolves DEFAULT_ROOT's before it forks executors, `warm`): a cgroup file
    system holds no symlinks. Any other path, or one with `.`, `..` or `//`
    in it, is resolved the plain way. (os.path.realpath took 112 lstat calls
    per executor: about 1 ms of its CPU.)"""
    text, top = str(path), str(root).rstrip("/")
    if not text.startswith(top + "/"):
        return os.path.realpath(text)
    controller, _, rest = text[len(top) + 1:].partition("/")
    parts = [controller, *(rest.split("/") if rest else ())]
    if any(part in ("", ".", "..") for part in parts):
        return os.path.realpath(text)
    base = _real_dir(f"{top}/{controller}")
    return f"{base}/{rest}" if rest else base


def warm(root: str | Path = DEFAULT_ROOT) -> None:
    """Resolve every controller directory below `root` now (for `real_path`:
    the launcher calls it once, and the executors it forks inherit them)."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(root):
            real_path(entry.path, root)


def _unique(paths) -> list[Path]:
    seen: set[str] = set()
    out = []
    for p in paths:
        key = real_path(p)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _rmdir_retrying(path: Path, attempts: int = 200) -> None:
    """rmdir a cgroup; EBUSY lasts while killed processes are still exiting."""
    import time

    for _ in range(attempts):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != 16:  # EBUSY
                raise CgroupError(e.errno, f"remove cgroup {path}: {e.strerror}") from None
            for pid in _read_pids(path / "cgroup.procs"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
            time.sleep(0.01)
    raise CgroupError(16, f"remove cgroup {path}: still busy")


def _read_pids(path: Path) -> list[int]:
    try:
        return [int(x) for x in path.read_text().split()]
    except FileNotFoundError:
        return []


def v2_has_controllers(unified: Path) -> bool:
    try:
        return bool((unified / "cgroup.controllers").read_text().split())
    except OSError:
        return False


@functools.cache
def detect(root: Path = DEFAULT_ROOT) -> int:
    """1 or 2: v2 only when the unified hierarchy actually has controllers."""
    root = Path(root)
    if (root / "cgroup.controllers").exists():  # pure v2: unified mounted at the root
        return 2 if v2_has_controllers(root) else 1
    if (root / "memory").is_dir() or (root / "cpu").is_dir():
        return 1
    if v2_has_controllers(root / "unified"):
        return 2
    return 1


def open_cgroup(name: str, root: Path = DEFAULT_ROOT, version: int | None = None) -> Cgroup:
    """The cgroup `name` with the implementation this host uses."""
    version = version or detect(root)
    if version == 2:
        from juggler.container.cgroups_v2 import CgroupV2

        return CgroupV2(name, root)
    from juggler.container.cgroups_v1 import CgroupV1

    return CgroupV1(name, root)
