"""cgroup v1 manager against a fake tree of controller directories."""

from __future__ import annotations

import os
from pathlib import Path

from juggler.container.cgroups import Limits
from juggler.container.cgroups_v1 import CONTROLLERS, CgroupV1


def make(tmp_path: Path) -> CgroupV1:
    root = tmp_path / "cgroup"
    for c in CONTROLLERS:
        (root / c).mkdir(parents=True)
    cg = CgroupV1("juggler/a/t", root)
    cg.create()
    files = {"memory": ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes",
                        "memory.oom_control", "memory.usage_in_bytes", "cgroup.procs"],
             "cpu": ["cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us", "cgroup.procs"],
             "pids": ["pids.max", "cgroup.procs"], "cpuacct": ["cpuacct.usage", "cgroup.procs"]}
    for controller, names in files.items():
        for name in names:
            (root / controller / cg.name / name).write_text("")
    (root / "memory" / cg.name / "memory.oom_control").write_text(
        "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
    return cg


def test_limits_written_per_controller(tmp_path):
    cg = make(tmp_path)
    cg.set(Limits(cpu_shares=512, cpu_quota_us=50_000, memory_bytes=2**25, pids_max=10))
    d = cg.paths()
    assert (d["cpu"] / "cpu.shares").read_text() == "512\n"
    assert (d["cpu"] / "cpu.cfs_quota_us").read_text() == "50000\n"
    assert (d["cpu"] / "cpu.cfs_period_us").read_text() == "100000\n"
    assert (d["memory"] / "memory.limit_in_bytes").read_text() == f"{2**25}\n"
    assert (d["memory"] / "memory.memsw.limit_in_bytes").read_text() == f"{2**25}\n"
    assert (d["pids"] / "pids.max").read_text() == "10\n"


def test_the_cfs_period_is_written_only_when_it_changes(tmp_path):
    """A write of cpu.cfs_period_us walks every task group of the host (the
    kernel's tg_set_cfs_bandwidth): a period already in place is left alone."""
    cg = make(tmp_path)
    period = cg.paths()["cpu"] / "cpu.cfs_period_us"
    period.write_text("100000\n")  # a new cgroup's
    os.utime(period, ns=(0, 0))
    cg.set(Limits(cpu_quota_us=50_000))
    assert period.stat().st_mtime_ns == 0
    assert (cg.paths()["cpu"] / "cpu.cfs_quota_us").read_text() == "50000\n"
    cg.set(Limits(cpu_quota_us=5_000, cpu_period_us=10_000))
    assert period.read_text() == "10000\n"
    assert (cg.paths()["cpu"] / "cpu.cfs_quota_us").read_text() == "5000\n"


def test_a_changing_period_is_written_so_that_no_step_exceeds_both_ratios(
        tmp_path, monkeypatch):
    """quota/period on the way stays within the old or the new ratio: the
    kernel refuses a step whose ratio is above the parent's, even when the
    end result is not."""
    cg = make(tmp_path)
    d = cg.paths()["cpu"]
    (d / "cpu.cfs_period_us").write_text("100000\n")
    (d / "cpu.cfs_quota_us").write_text("50000\n")
    writes: list[str] = []
    real = cg._write
    monkeypatch.setattr(cg, "_write", lambda c, f, v: (writes.append(f), real(c, f, v)))
    cg.set(Limits(cpu_quota_us=5_000, cpu_period_us=10_000))  # shorter: quota first
    assert writes == ["cpu.cfs_quota_us", "cpu.cfs_period_us"]
    writes.clear()
    cg.set(Limits(cpu_quota_us=50_000, cpu_period_us=100_000))  # longer: period first
    assert writes == ["cpu.cfs_period_us", "cpu.cfs_quota_us"]


def test_a_reused_cgroup_loses_a_quota_it_no_longer_has(tmp_path):
    cg = make(tmp_path)
    quota = cg.paths()["cpu"] / "cpu.cfs_quota_us"
    quota.write_text("50000\n")  # an earlier run's
    cg.set(Limits(cpu_shares=256))
    assert quota.read_text() == "-1\n"
    os.utime(quota, ns=(0, 0))
    cg.set(Limits(cpu_shares=256))
    assert quota.stat().st_mtime_ns == 0  # no limit already: not written again

def test_oom_kill_count_not_failcnt(tmp_path):
    cg = make(tmp_path)
    assert not cg.oom_killed()
    (cg.paths()["memory"] / "memory.oom_control").write_text(
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert cg.oom_killed() and cg.stats().oom_kills == 2


def test_add_writes_every_controller(tmp_path):
    cg = make(tmp_path)
    cg.add(77)
    assert all((p / "cgroup.procs").read_text() == "77\n" for p in cg.paths().values())


def test_stats_pids_are_pids_current_zombies_included(tmp_path):
    cg = make(tmp_path)
    d = cg.paths()
    for controller in ("pids", "memory", "cpu"):
        (d[controller] / "cgroup.procs").write_text("77\n")
    (d["pids"] / "pids.current").write_text("4\n")  # 77 and three unreaped zombies
    assert cg.pids() == [77]
    assert cg.pids_current() == 4 and cg.stats().pids == 4
    (d["pids"] / "pids.current").unlink()
    assert cg.stats().pids == 1


def test_real_path_resolves_the_controller_link_as_realpath_does(tmp_path):
    import os

    from juggler.container.cgroups import real_path, warm

    root = tmp_path / "cgroup"
    (root / "cpu,cpuacct" / "juggler" / "t").mkdir(parents=True)
    (root / "cpu").symlink_to("cpu,cpuacct")
    (root / "cpuacct").symlink_to("cpu,cpuacct")
    warm(root)
    for path in (root / "cpu" / "juggler" / "t", root / "cpuacct" / "juggler",
                 root / "cpu", f"{root}/cpu/juggler/../juggler/t", f"{root}//cpu/juggler",
                 f"{root}/cpu/juggler/t/", tmp_path / "elsewhere"):
        assert real_path(path, root) == os.path.realpath(path), path


def test_one_directory_per_shared_mount(tmp_path):
    root = tmp_path / "cgroup"
    for c in ("cpu,cpuacct", "memory", "pids", "devices"):
        (root / c).mkdir(parents=True)
    (root / "cpu").symlink_to("cpu,cpuacct")
    (root / "cpuacct").symlink_to("cpu,cpuacct")
    cg = CgroupV1("juggler/a/t", root)
    cg.create()
    assert sorted(p.relative_to(root).parts[0] for p in cg._unique_dirs()) == [
        "cpu", "devices", "memory", "pids"]
