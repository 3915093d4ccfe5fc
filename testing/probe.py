"""A probe for differential tests of container runtimes: a busybox sh script
that prints what a process sees of its container, and the parser that turns
its output into flat fields (name → text) to compare field by field.

The script prints sections (`== name`, then the raw text), then waits for a
line on stdin (or EOF), so that the caller can read the container's cgroup
from the host while the container still exists. What it reads:

    status      /proc/self/status: Uid, Gid, Groups, Cap{Inh,Prm,Eff,Bnd,Amb},
                NoNewPrivs, Seccomp
    environ     its own environment, as execve gave it (/proc/self/environ)
    cwd         pwd -P; the owner, group, mode and type of the directory
    umask, hostname, oom_score_adj
    file        the content of /etc/hosts, /etc/hostname, /etc/resolv.conf
    limits      /proc/self/limits
    mountinfo   /proc/self/mountinfo
    dev         every entry of /dev (and of its real subdirectories): type,
                mode, owner, major:minor, symlink target
    sysctl      the net.ipv4 sysctls Docker sets in a private network namespace
    devaccess   whether root can open a device node Docker's device cgroup
                denies (it makes one with mknod, opens it, removes it)
    cgroup      /proc/self/cgroup, and the limits as seen inside the container
                under /sys/fs/cgroup (v1 and v2 names)

The probe needs the applets of testing/rootfs.py's busybox tree plus mknod
and rm. Environment values must hold no newline (one variable per line).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import time
from dataclasses import dataclass, field
from pathlib import Path

SCRIPT = r"""p=/proc/$$
echo "== status"; cat $p/status
echo "== environ"; tr '\0' '\n' < $p/environ
echo "== cwd"; pwd -P; stat -c '%u %g %a %F' .
echo "== umask"; umask
echo "== hostname"; hostname
for f in /etc/hosts /etc/hostname /etc/resolv.conf; do echo "== file $f"; cat $f 2>/dev/null; done
echo "== oom_score_adj"; cat $p/oom_score_adj
echo "== limits"; cat $p/limits
echo "== mountinfo"; cat $p/mountinfo
echo "== dev"
entry() { echo "$(stat -c '%n|%F|%a|%u|%g|%t:%T' "$1")|$(readlink "$1")"; }
for f in /dev/*; do
  entry "$f"
  if [ -d "$f" ] && [ ! -L "$f" ]; then
    for g in "$f"/*; do
      if [ -e "$g" ] || [ -L "$g" ]; then entry "$g"; fi
    done
  fi
done
echo "== sysctl"
for s in ip_unprivileged_port_start ping_group_range; do
  echo "$s $(cat /proc/sys/net/ipv4/$s 2>/dev/null || echo -)"
done
echo "== devaccess"
for d in "c 10 229" "c 1 11" "b 7 0"; do
  n=/tmp/.probe-node
  rm -f $n
  if mknod $n $d 2>/dev/null; then
    if (: < $n) 2>/dev/null; then r=open; else r=denied; fi
    rm -f $n
  else
    r=nomknod
  fi
  echo "$d $r"
done
echo "== cgroup"; cat $p/cgroup
echo "== cgroupfs"
for f in memory/memory.limit_in_bytes memory/memory.memsw.limit_in_bytes cpu/cpu.shares \
         cpu/cpu.cfs_quota_us cpu/cpu.cfs_period_us pids/pids.max \
         memory.max memory.swap.max cpu.max cpu.weight pids.max; do
  if [ -r /sys/fs/cgroup/$f ]; then echo "$f $(cat /sys/fs/cgroup/$f)"; fi
done
echo "== end"
read -r _ || :  # EOF (no stdin) is as good as a line
"""

END = "== end"
APPLETS = ("mknod", "rm")  # beyond testing/rootfs.py's

STATUS_FIELDS = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
                 "NoNewPrivs", "Seccomp")
# What a mount's own options say that a program can notice (mountinfo field 6).
MOUNT_FLAGS = ("nosuid", "nodev", "noexec")


def sections(text: str) -> dict[str, list[str]]:
    """The probe's output split at its `== name` lines."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("== "):
            current = out.setdefault(line[3:].strip(), [])
        elif current is not None:
            current.append(line)
    return out


def unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts(lines: list[str]) -> dict[str, str]:
    """mountinfo → {mount point: "fstype ro|rw[,nosuid][,nodev][,noexec][,gid=N]"}; where
    mounts are stacked on one point, all of them, bottom first, joined by " + "."""
    out: dict[str, list[str]] = {}
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, fstype = left.split(), right.split()[0]
        options = fields[5].split(",")
        flags = ["ro" if "ro" in options else "rw"] + [f for f in MOUNT_FLAGS if f in options]
        flags += [o for o in right.split()[-1].split(",") if o.startswith("gid=")]  # devpts
        out.setdefault(unescape(fields[4]), []).append(f"{fstype} {','.join(flags)}")
    return {point: " + ".join(seen) for point, seen in out.items()}


def limits(lines: list[str]) -> dict[str, str]:
    """/proc/self/limits → {"Max open files": "1024 1048576"}."""
    out = {}
    for line in lines[1:]:
        name, rest = line[:26].strip(), line[26:].split()
        if name and len(rest) >= 2:
            out[name] = f"{rest[0]} {rest[1]}"
    return out


def parse(text: str) -> dict[str, str]:
    """The probe's output as flat fields, e.g. "status.Uid", "env.PATH", "cwd",
    "mount./proc", "dev./dev/null", "rlimit.Max open files", "sysctl.<name>",
    "devaccess.c 10 229", "cgroupfs.memory.max", "file./etc/hosts". Raises ValueError when the
    output is cut short (no `== end`)."""
    if END not in text:
        raise ValueError(f"the probe did not finish; its output:\n{text}")
    s = sections(text)
    out: dict[str, str] = {}
    for line in s.get("status", []):
        key, _, value = line.partition(":")
        if key in STATUS_FIELDS:
            out[f"status.{key}"] = " ".join(value.split())
    for line in s.get("environ", []):
        name, _, value = line.partition("=")
        out[f"env.{name}"] = value
    cwd = s.get("cwd", [])
    out["cwd"] = cwd[0] if cwd else ""
    out["cwd.stat"] = cwd[1] if len(cwd) > 1 else ""
    for name in ("umask", "hostname", "oom_score_adj"):
        out[name] = " ".join(s.get(name, []))
    out.update({f"rlimit.{k}": v for k, v in limits(s.get("limits", [])).items()})
    out.update({f"mount.{k}": v for k, v in mounts(s.get("mountinfo", [])).items()})
    for line in s.get("dev", []):
        path, _, rest = line.partition("|")
        out[f"dev.{path}"] = rest
    for section in ("sysctl", "cgroupfs"):
        for line in s.get(section, []):
            key, _, value = line.partition(" ")
            out[f"{section}.{key}"] = value
    for line in s.get("devaccess", []):
        key, _, value = line.rpartition(" ")
        out[f"devaccess.{key}"] = value
    for key, lines in s.items():
        if key.startswith("file "):
            out[f"file.{key[5:]}"] = "\n".join(lines)
    out["cgroup.paths"] = "\n".join(s.get("cgroup", []))
    return out


def cgroup_paths(fields: dict[str, str]) -> dict[str, str]:
    """/proc/self/cgroup as the probe saw it: {controller: path} ("" for v2's line)."""
    out = {}
    for line in fields.get("cgroup.paths", "").splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            out[controller.removeprefix("name=")] = path
    return out


# The limits a task's cgroup holds, as files of each hierarchy (v1) or of the
# unified one (v2): read on the host while the probe waits.
HOST_CGROUP_FILES = {
    "memory": ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes"),
    "cpu": ("cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us"),
    "pids": ("pids.max",),
    "devices": ("devices.list",),
    "": ("memory.max", "memory.swap.max", "cpu.max", "cpu.weight", "pids.max"),
}


def host_cgroup(fields: dict[str, str], root: Path = Path("/sys/fs/cgroup")) -> dict[str, str]:
    """The probe's cgroup limits read on the host, from the paths it printed
    (with no cgroup namespace they are the host's): {"cgroup.host.cpu.shares": ...}."""
    out = {}
    for controller, path in cgroup_paths(fields).items():
        directory = root / controller / path.lstrip("/") if controller else root / path.lstrip("/")
        for name in HOST_CGROUP_FILES.get(controller, ()):
            try:
                out[f"cgroup.host.{name}"] = (directory / name).read_text().strip()
            except OSError:
                continue
    return out


@dataclass
class Outcome:
    """What one runtime made of one case: the probe's fields when it ran, or
    the runtime's refusal (exit code and message) when it did not."""

    ran: bool
    exit_code: int
    fields: dict[str, str] = field(default_factory=dict)
    error: str = ""


def collect(out_fd: int, err_fd: int, in_fd: int, deadline: float) -> Outcome:
    """Read a probe's stdout until `== end`, read its cgroup on the host, let
    it exit (a line on its stdin), and read to EOF. The caller waits for the
    exit status and puts it in `exit_code`. Raises TimeoutError at `deadline`
    (time.monotonic())."""
    chunks = {out_fd: bytearray(), err_fd: bytearray()}
    open_fds = [out_fd, err_fd]
    released = False
    fields: dict[str, str] = {}
    while open_fds:
        left = deadline - time.monotonic()
        if left <= 0:
            seen = chunks[out_fd].decode(errors="replace")
            raise TimeoutError(f"the probe did not finish: {seen}")
        ready, _, _ = select.select(open_fds, [], [], left)
        for fd in ready:
            data = os.read(fd, 65536)
            if not data:
                open_fds.remove(fd)
            chunks[fd] += data
        if not released and f"\n{END}\n".encode() in chunks[out_fd]:
            fields = parse(chunks[out_fd].decode(errors="replace"))
            fields.update(host_cgroup(fields))
            released = True
            with contextlib.suppress(BrokenPipeError):
                os.write(in_fd, b"\n")
    error = chunks[err_fd].decode(errors="replace")
    return Outcome(ran=released, exit_code=-1, fields=fields, error=error)
