"""cgroup v2: one unified directory; controllers enabled by the parents'
cgroup.subtree_control.

cpu.shares (v1 units, what Mesos and Docker speak) become cpu.weight with the
standard conversion used by runc and the kernel docs:
weight = 1 + ((shares - 2) * 9999) / 262142. Memory: memory.max with
memory.swap.max = 0 (no swap), or, when the task asks for memory + swap
(Limits.memory_swap_bytes, Docker's --memory-swap), memory.swap.max = that
minus the memory limit ("max" for -1), as runc's ConvertMemorySwapToCgroupV2Value.
Without memory.swap.max (no swap accounting) a swap limit asked for is the
NO_SWAP_LIMIT warning. An OOM kill is `oom_kill` in memory.events; the
task's PIDs in its stats are pids.current (zombies included, unlike
cgroup.procs).
"""

from __future__ import annotations

from pathlib import Path

from juggler.container.cgroups import (
    NO_SWAP_LIMIT,
    UNLIMITED,
    Cgroup,
    CgroupError,
    Limits,
    Stats,
    _read_pids,
)

WANTED = ("cpu", "memory", "pids")


def shares_to_weight(shares: int) -> int:
    if shares <= 0:
        return 100
    shares = min(max(shares, 2), 262144)
    return 1 + ((shares - 2) * 9999) // 262142


def swap_max(memory: int, memory_swap: int | None) -> str | int:
    """memory.swap.max for a memory limit and a v1-style memory + swap limit
    (None: no swap; -1: unlimited)."""
    if memory_swap is None:
        return 0
    if memory_swap == UNLIMITED:
        return "max"
    return max(0, memory_swap - memory)


class CgroupV2(Cgroup):
    version = 2

    def __init__(self, name: str, root: Path = Path("/sys/fs/cgroup")) -> None:
        super().__init__(name, root)
        # Hybrid hosts mount the unified hierarchy at <root>/unified.
        if not (self.root / "cgroup.controllers").exists() and (
            self.root / "unified" / "cgroup.controllers"
        ).exists():
            self.root = self.root / "unified"

    @property
    def path(self) -> Path:
        return self.root / self.name

    def paths(self) -> dict[str, Path]:
        return {"unified": self.path}

    def create(self) -> None:
        # Enable the controllers in every ancestor's subtree_control, top down,
        # then create the leaf (a v2 cgroup with processes may not have them
        # enabled for children, so only the leaf holds processes).
        available = set((self.root / "cgroup.controllers").read_text().split())
        wanted = [c for c in WANTED if c in available]
        parts = Path(self.name).parts
        current = self.root
        for part in parts:
            self._enable(current, wanted)
            current = current / part
            current.mkdir(exist_ok=True)

    def _enable(self, directory: Path, controllers: list[str]) -> None:
        control = directory / "cgroup.subtree_control"
        enabled = set(control.read_text().split()) if control.exists() else set()
        missing = [c for c in controllers if c not in enabled]
        if not missing:
            return
        try:
            control.write_text(" ".join(f"+{c}" for c in missing) + "\n")
        except OSError as e:
            raise CgroupError(e.errno or 0,
                              f"enable {missing} in {control}: {e.strerror}") from None

    def _write(self, file: str, value: object) -> None:
        path = self.path / file
        try:
            path.write_text(f"{value}\n")
        except OSError as e:
            raise CgroupError(e.errno or 0, f"write {value} to {path}: {e.strerror}") from None

    def set(self, limits: Limits) -> list[str]:
        warnings: list[str] = []
        if limits.cpu_shares is not None:
            self._write("cpu.weight", shares_to_weight(limits.cpu_shares))
        if limits.cpu_quota_us is not None:
            self._write("cpu.max", f"{limits.cpu_quota_us} {limits.cpu_period_us}")
        if limits.memory_bytes:
            self._write("memory.max", limits.memory_bytes)
            swap = swap_max(limits.memory_bytes, limits.memory_swap_bytes)
            if (self.path / "memory.swap.max").exists():
                self._write("memory.swap.max", swap)
            elif limits.memory_swap_bytes is not None:
                warnings.append(NO_SWAP_LIMIT)
        if limits.pids_max is not None:
            self._write("pids.max", limits.pids_max)
        return warnings

    def add(self, pid: int) -> None:
        self._write("cgroup.procs", pid)

    def pids(self) -> list[int]:
        return _read_pids(self.path / "cgroup.procs")

    def _keyed(self, file: str) -> dict[str, int]:
        out: dict[str, int] = {}
        try:
            text = (self.path / file).read_text()
        except OSError:
            return out
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            try:
                out[key] = int(value)
            except ValueError:
                continue
        return out

    def oom_kills(self) -> int:
        return self._keyed("memory.events").get("oom_kill", 0)

    def pids_current(self) -> int:
        try:
            return int((self.path / "pids.current").read_text())
        except (OSError, ValueError):
            return len(self.pids())

    def kill(self, sig: int = 9) -> None:
        # cgroup.kill (Linux 5.14+) kills atomically, forks included.
        if sig == 9 and (self.path / "cgroup.kill").exists():
            try:
                (self.path / "cgroup.kill").write_text("1\n")
                return
            except OSError:
                pass
        super().kill(sig)

    def stats(self) -> Stats:
        def read_int(file: str) -> int | None:
            try:
                text = (self.path / file).read_text().strip()
            except OSError:
                return None
            return None if text == "max" else int(text)

        cpu = self._keyed("cpu.stat")
        return Stats(
            cpu_usage_ns=cpu.get("usage_usec", 0) * 1000,
            cpu_user_ns=cpu.get("user_usec", 0) * 1000,
            cpu_system_ns=cpu.get("system_usec", 0) * 1000,
            cpu_periods=cpu.get("nr_periods", 0),
            cpu_throttled_periods=cpu.get("nr_throttled", 0),
            cpu_throttled_ns=cpu.get("throttled_usec", 0) * 1000,
            memory_bytes=read_int("memory.current") or 0,
            # memory.peak exists from Linux 5.19.
            memory_peak_bytes=read_int("memory.peak") or 0,
            memory_limit_bytes=read_int("memory.max"),
            pids=self.pids_current(),
            oom_kills=self.oom_kills(),
        )
