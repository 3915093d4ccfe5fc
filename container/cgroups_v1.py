"""cgroup v1: one directory per controller (cpu, cpuacct, memory, pids,
devices: `DEVICE_RULES`).

Memory: memory.limit_in_bytes, and memory.memsw.limit_in_bytes (memory +
swap) set to the same value where the kernel has it, so the task cannot spill
into swap — or to Limits.memory_swap_bytes (-1: unlimited) when the task asks
for swap. A kernel without swap accounting has no memsw files: the limit on
memory alone applies, and a task that asked for a swap limit gets the
NO_SWAP_LIMIT warning. An OOM
kill is read from `oom_kill` in memory.oom_control (memory.failcnt only counts
allocations that hit the limit and were reclaimed, not kills). The task's
PIDs in its stats are pids.current, which counts the zombies that
cgroup.procs leaves out.

An executor creates, limits and joins one cgroup at every launch, so the
paths are worked out once per object (which controllers this host mounts,
and which of them share a directory, as a `cpu,cpuacct` mount does) and the
limits are written with plain os calls: a fifth of the Python it used to
take.
"""

from __future__ import annotations

import os
from pathlib import Path

from juggler.container.cgroups import (
    DEFAULT_ROOT,
    NO_SWAP_LIMIT,
    Cgroup,
    CgroupError,
    Limits,
    Stats,
    _read_pids,
    _unique,
)

CONTROLLERS = ("cpu", "cpuacct", "memory", "pids", "devices")

# The device nodes a container may use (devices controller), exactly as runc
# 1.1 leaves them for Docker's default config (moby oci/defaults.go's device
# rules over runc's libcontainer/specconv AllowedDevices), in devices.list's
# order: any node may be made (mknod), but only null, zero, full, random,
# urandom, tty, console, ptmx, the ptys and /dev/net/tun opened. Another node,
# even one the task makes itself with CAP_MKNOD (a host disk), is refused.
DEVICE_RULES = ("b *:* m", "c *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm",
                "c 1:9 rwm", "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 10:200 rwm",
                "c 136:* rwm")


class CgroupV1(Cgroup):
    version = 1

    def __init__(self, name: str, root: Path = DEFAULT_ROOT) -> None:
        super().__init__(name, root)
        self._paths: dict[str, Path] | None = None
        self._dirs: list[Path] | None = None  # one per distinct directory
        self._present: dict[str, bool] = {}

    def paths(self) -> dict[str, Path]:
        if self._paths is None:
            self._paths = {c: self.root / c / self.name for c in CONTROLLERS
                           if os.path.isdir(f"{self.root}/{c}")}
        return dict(self._paths)

    def _unique_dirs(self) -> list[Path]:
        if self._dirs is None:
            self._dirs = _unique(self.paths().values())
        return self._dirs

    def create(self) -> None:
        for path in self._unique_dirs():
            os.makedirs(path, exist_ok=True)
        if "devices" in self.paths():
            self._write("devices", "devices.deny", "a")
            for rule in DEVICE_RULES:
                self._write("devices", "devices.allow", rule)

    def _write(self, controller: str, file: str, value: object) -> None:
        path = f"{self.root}/{controller}/{self.name}/{file}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, f"{value}\n".encode())
            finally:
                os.close(fd)
        except OSError as e:
            raise CgroupError(e.errno or 0, f"write {value} to {path}: {e.strerror}") from None

    def _has(self, controller: str, file: str) -> bool:
        key = f"{controller}/{file}"
        if key not in self._present:
            self._present[key] = os.path.exists(f"{self.root}/{controller}/{self.name}/{file}")
        return self._present[key]

    def set(self, limits: Limits) -> list[str]:
        warnings: list[str] = []
        if limits.cpu_shares is not None:
            self._write("cpu", "cpu.shares", limits.cpu_shares)
        self._set_bandwidth(limits.cpu_period_us, limits.cpu_quota_us)
        if limits.memory_bytes:
            warnings += self._set_memory(limits.memory_bytes, limits.memory_swap_bytes)
        if limits.pids_max is not None and self._has("pids", "pids.max"):
            self._write("pids", "pids.max", limits.pids_max)
        return warnings

    def _set_bandwidth(self, period: int, quota: int | None) -> None:
        """CFS bandwidth: `quota` µs of CPU per `period` µs, None for no
        quota. Each write of either file walks every task group of the host
        (the kernel's tg_set_cfs_bandwidth checks the whole hierarchy's
        bandwidth: 4 % of an executor's CPU with 1,000 containers running),
        so a value already in place is not written again: a new cgroup has
        the default period and no quota. A reused cgroup's old quota is
        removed when there is none now, and a period that changes is written
        in the order whose ratio on the way is never above the old or the
        new one (the kernel refuses a child whose ratio exceeds its
        parent's)."""
        quota_now = (self._read("cpu", "cpu.cfs_quota_us") or "").strip()
        if quota is None:
            if quota_now not in ("", "-1"):
                self._write("cpu", "cpu.cfs_quota_us", -1)
            return
        period_now = (self._read("cpu", "cpu.cfs_period_us") or "").strip()
        if period_now == str(period):
            self._write("cpu", "cpu.cfs_quota_us", quota)
        elif period_now.isdigit() and period < int(period_now):
            self._write("cpu", "cpu.cfs_quota_us", quota)  # new quota, old (longer) period
            self._write("cpu", "cpu.cfs_period_us", period)
        else:
            self._write("cpu", "cpu.cfs_period_us", period)  # old quota, new (longer) period
            self._write("cpu", "cpu.cfs_quota_us", quota)

    def _set_memory(self, value: int, swap: int | None) -> list[str]:
        if not self._has("memory", "memory.memsw.limit_in_bytes"):
            self._write("memory", "memory.limit_in_bytes", value)
            return [NO_SWAP_LIMIT] if swap is not None else []
        memsw = value if swap is None else swap  # -1: unlimited, as the kernel reads it
        # memsw must stay >= the memory limit: raise memory first when growing,
        # memsw first when shrinking; try one order and fall back on the other.
        try:
            self._write("memory", "memory.limit_in_bytes", value)
            self._write("memory", "memory.memsw.limit_in_bytes", memsw)
        except CgroupError:
            self._write("memory", "memory.memsw.limit_in_bytes", memsw)
            self._write("memory", "memory.limit_in_bytes", value)
        return []

    def add(self, pid: int) -> None:
        for controller in self.paths():
            self._write(controller, "cgroup.procs", pid)

    def join_files(self) -> list[Path]:
        # `tasks`, not cgroup.procs: the kernel skips the threadgroup lock
        # only for a thread moving itself (cgroup_procs_write_start, pid 0).
        return [path / "tasks" for path in self._unique_dirs()]

    def pids(self) -> list[int]:
        for controller in ("pids", "memory", "cpu"):
            path = self.root / controller / self.name / "cgroup.procs"
            if path.exists():
                return _read_pids(path)
        return []

    def _read(self, controller: str, file: str) -> str | None:
        try:
            return (self.root / controller / self.name / file).read_text()
        except OSError:
            return None

    def oom_kills(self) -> int:
        text = self._read("memory", "memory.oom_control") or ""
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def pids_current(self) -> int:
        count = _int(self._read("pids", "pids.current"))
        return len(self.pids()) if count is None else count

    def stats(self) -> Stats:
        limit = _int(self._read("memory", "memory.limit_in_bytes"))
        # cpuacct.stat counts USER_HZ ticks; cpu.stat's throttled_time is in ns.
        ticks = _keyed(self._read("cpuacct", "cpuacct.stat"))
        tick_ns = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
        cpu = _keyed(self._read("cpu", "cpu.stat"))
        return Stats(
            cpu_usage_ns=_int(self._read("cpuacct", "cpuacct.usage")) or 0,
            cpu_user_ns=ticks.get("user", 0) * tick_ns,
            cpu_system_ns=ticks.get("system", 0) * tick_ns,
            cpu_periods=cpu.get("nr_periods", 0),
            cpu_throttled_periods=cpu.get("nr_throttled", 0),
            cpu_throttled_ns=cpu.get("throttled_time", 0),
            memory_bytes=_int(self._read("memory", "memory.usage_in_bytes")) or 0,
            memory_peak_bytes=_int(self._read("memory", "memory.max_usage_in_bytes")) or 0,
            memory_limit_bytes=limit if limit is not None and limit < 2**62 else None,
            pids=self.pids_current(),
            oom_kills=self.oom_kills(),
        )


def _keyed(text: str | None) -> dict[str, int]:
    """"name value" lines (cpu.stat, cpuacct.stat) as a dict."""
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        try:
            out[name] = int(value)
        except ValueError:
            continue
    return out


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None



