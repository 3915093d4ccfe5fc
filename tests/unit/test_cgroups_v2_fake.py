"""cgroup v2 manager against a fake cgroupfs tree in tmp_path.

This host's unified hierarchy has no controllers (cgroups are v1 here), so v2
is tested against a faithful fake tree: cgroup.controllers at the root,
cgroup.subtree_control per directory, and the interface files a real kernel
creates in a new cgroup (written by the fake's `mkdir` stand-in below).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from juggler.container import cgroups
from juggler.container.cgroups import Limits, detect, open_cgroup
from juggler.container.cgroups_v2 import CgroupV2, shares_to_weight

FILES = {
    "cgroup.controllers": "", "cgroup.subtree_control": "", "cgroup.procs": "",
    "cpu.weight": "100\n", "cpu.max": "max 100000\n", "cpu.stat": "usage_usec 1500\n",
    "memory.max": "max\n", "memory.swap.max": "max\n", "memory.current": "4096\n",
    "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n", "pids.max": "max\n",
}


def fake_root(tmp_path: Path, controllers: str = "cpuset cpu io memory pids") -> Path:
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cgroup.controllers").write_text(controllers + "\n")
    (root / "cgroup.subtree_control").write_text("")
    (root / "cgroup.procs").write_text("1\n")
    return root


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    root = fake_root(tmp_path)
    real_mkdir = Path.mkdir

    def kernel_mkdir(self, mode=0o777, parents=False, exist_ok=False):
        # The kernel populates a new cgroup directory with its interface files.
        existed = self.exists()
        real_mkdir(self, mode, parents, exist_ok)
        if not existed and str(self).startswith(str(root)):
            for name, text in FILES.items():
                (self / name).write_text(text)
            enabled = (self.parent / "cgroup.subtree_control").read_text().split()
            (self / "cgroup.controllers").write_text(
                " ".join(c.lstrip("+") for c in enabled) + "\n")

    monkeypatch.setattr(Path, "mkdir", kernel_mkdir)
    return root


def test_weight_conversion_is_the_standard_one():
    assert shares_to_weight(2) == 1
    assert shares_to_weight(1024) == 1 + ((1024 - 2) * 9999) // 262142 == 39
    assert shares_to_weight(262144) == 10000
    assert shares_to_weight(512) == 1 + (510 * 9999) // 262142


def test_detect_v2_only_with_controllers(tmp_path):
    detect.cache_clear()
    root = fake_root(tmp_path)
    assert detect(root) == 2
    assert isinstance(open_cgroup("juggler/a/t", root), CgroupV2)
    (root / "cgroup.controllers").write_text("\n")
    detect.cache_clear()
    assert detect(root) == 1
    detect.cache_clear()


def test_detect_hybrid_with_empty_unified_is_v1(tmp_path):
    root = tmp_path / "hybrid"
    (root / "memory").mkdir(parents=True)
    (root / "unified").mkdir()
    (root / "unified" / "cgroup.controllers").write_text("")
    assert cgroups.detect.__wrapped__(root) == 1


def test_create_enables_controllers_down_the_path(root):
    cg = CgroupV2("juggler/agent-1/task-1", root)
    cg.create()
    assert cg.path == root / "juggler" / "agent-1" / "task-1"
    assert cg.path.is_dir()
    for parent in (root, root / "juggler", root / "juggler" / "agent-1"):
        assert (parent / "cgroup.subtree_control").read_text().split() == [
            "+cpu", "+memory", "+pids"]
    assert cg.paths() == {"unified": cg.path}


def test_set_limits(root):
    cg = CgroupV2("juggler/a/t", root)
    cg.create()
    cg.set(Limits(cpu_shares=512, cpu_quota_us=50_000, memory_bytes=32 * 2**20, pids_max=64))
    assert (cg.path / "cpu.weight").read_text() == f"{shares_to_weight(512)}\n"
    assert (cg.path / "cpu.max").read_text() == "50000 100000\n"
    assert (cg.path / "memory.max").read_text() == f"{32 * 2**20}\n"
    assert (cg.path / "memory.swap.max").read_text() == "0\n"
    assert (cg.path / "pids.max").read_text() == "64\n"


def test_unset_limits_leave_defaults(root):
    cg = CgroupV2("juggler/a/t", root)
    cg.create()
    cg.set(Limits(cpu_shares=1024))
    assert (cg.path / "memory.max").read_text() == "max\n"


def test_add_pid_oom_and_stats(root):
    cg = CgroupV2("juggler/a/t", root)
    cg.create()
    cg.add(4242)
    assert (cg.path / "cgroup.procs").read_text() == "4242\n"
    assert cg.pids() == [4242]
    assert not cg.oom_killed()
    (cg.path / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert cg.oom_killed()
    (cg.path / "memory.max").write_text(f"{2**25}\n")
    stats = cg.stats()
    assert stats.cpu_usage_ns == 1_500_000
    assert stats.memory_bytes == 4096 and stats.memory_limit_bytes == 2**25
    assert stats.oom_kills == 1 and stats.pids == 1


def test_stats_pids_are_pids_current_zombies_included(root):
    # Two live processes (cgroup.procs) and three zombies nobody reaped: the
    # kernel's pids.current counts all five, as pids.max does.
    cg = CgroupV2("juggler/a/t", root)
    cg.create()
    (cg.path / "cgroup.procs").write_text("4242\n4243\n")
    (cg.path / "pids.current").write_text("5\n")  # the kernel keeps it; the fake, here
    assert cg.pids() == [4242, 4243]
    assert cg.pids_current() == 5 and cg.stats().pids == 5
    (cg.path / "pids.current").unlink()  # no pids controller: the live ones
    assert cg.stats().pids == 2


def test_oom_kills_are_counted(root):
    cg = CgroupV2("juggler/a/t", root)
    cg.create()
    assert cg.oom_kills() == 0
    (cg.path / "memory.events").write_text("low 0\nhigh 0\nmax 9\noom 2\noom_kill 2\n")
    assert cg.oom_kills() == 2 and cg.oom_killed()


def test_destroy_removes_the_leaf_only(root, monkeypatch):
    cg = CgroupV2("juggler/a/t", root)
    cg.create()
    # A real cgroupfs directory can be removed with its interface files in it;
    # the fake is a plain directory, so remove the files first.
    for f in cg.path.iterdir():
        f.unlink()
    cg.destroy()
    assert not cg.path.exists() and (root / "juggler" / "a").is_dir()
    cg.destroy()  # idempotent


def test_bad_names_are_refused(root):
    for name in ("", "/", "juggler/../etc"):
        with pytest.raises(ValueError):
            CgroupV2(name, root)
