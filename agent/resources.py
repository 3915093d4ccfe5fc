"""What an agent offers: detected from the host, or given with --resources."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from juggler.common.resources import Resources

GIB_MIB = 1024


def _mem_total_mib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024
    raise OSError("MemTotal missing from /proc/meminfo")


def detect(work_dir: str | Path) -> Resources:
    """Mesos's defaults: every cpu; memory and disk less a reserve for the host
    (1 GiB of memory and 5 GiB of disk, or half when the host is that small)."""
    cpus = float(len(os.sched_getaffinity(0)))
    mem = _mem_total_mib()
    mem -= min(GIB_MIB, mem / 2)
    disk = shutil.disk_usage(work_dir).total / 2**20
    disk -= min(5 * GIB_MIB, disk / 2)
    return Resources({"cpus": cpus, "mem": int(mem), "disk": int(disk)})


def resolve(flag: str | None, work_dir: str | Path) -> Resources:
    """--resources overrides the detected amounts name by name."""
    detected = detect(work_dir).as_dict()
    if flag:
        detected.update(Resources.parse(flag).as_dict())
    return Resources(detected)
