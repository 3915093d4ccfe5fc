"""What an agent offers: detected from the host, or given with --resources."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from juggler.common.ranges import Ranges
from juggler.common.resources import Resources

GIB_MIB = 1024
DEFAULT_PORTS = Ranges.of([(31000, 32000)])  # Mesos's default "ports" resource


def _mem_total_mib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024
    raise OSError("MemTotal missing from /proc/meminfo")


def detect(work_dir: str | Path) -> Resources:
    """Mesos's defaults: every cpu; memory and disk less a reserve for the host
    (1 GiB of memory and 5 GiB of disk, or half when the host is that small);
    host ports 31000-32000."""
    cpus = float(len(os.sched_getaffinity(0)))
    mem = _mem_total_mib()
    mem -= min(GIB_MIB, mem / 2)
    disk = shutil.disk_usage(work_dir).total / 2**20
    disk -= min(5 * GIB_MIB, disk / 2)
    return Resources({"cpus": cpus, "mem": int(mem), "disk": int(disk)}, ports=DEFAULT_PORTS)


def resolve(flag: str | None, work_dir: str | Path) -> Resources:
    """--resources overrides the detected amounts name by name, and the ports
    when it names "ports" ("cpus:2;ports:[31000-32000,40000-40100]"; "ports:[]"
    offers none). Raises ResourceError for a flag Resources.parse refuses."""
    found = detect(work_dir)
    detected, ports = found.as_dict(), found.ports
    if flag:
        given = Resources.parse(flag)
        detected.update(given.as_dict())
        if any(p.split(":", 1)[0].strip() == "ports" for p in flag.split(";")):
            ports = given.ports
    return Resources(detected, ports=ports)
