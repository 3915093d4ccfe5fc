"""The oracle side of tests/integration/test_runc_differential.py: the OCI
config `docker run` would hand runc for a case, built here from moby's own
rules, and a runner for Debian's runc (1.1.5) on it.

`DockerRun` is a case as Docker's flags and an image config say it.
`docker_config` turns it into config.json, from:

- moby daemon/pkg/oci/defaults.go `DefaultLinuxSpec` (commit b985e23 of
  2026): the capability set (oci/caps/defaults.go), the mounts /proc /dev
  /dev/pts /sys /sys/fs/cgroup /dev/mqueue /dev/shm with their options, the
  masked paths (with /proc/interrupts and every existing
  /sys/devices/system/cpu/cpu*/thermal_throttle) and read-only paths, the
  namespaces (mount, network, uts, pid, ipc; moby also asks for a time
  namespace where the kernel has one, which runc 1.1.5 does not know and
  which changes nothing a program reads), and the device cgroup rules;
  runc adds its default devices (null, zero, full, random, urandom, tty),
  /dev/ptmx, /dev/fd and the stdio links itself;
- daemon/oci_linux.go: `withCommonOptions` (cwd, args, env, hostname, the
  net.ipv4 sysctls of a private network namespace, --init's bind mount of
  docker-init), `getUser` (uid, gid, additional gids = [gid] + the user's
  supplementary groups), `withMounts` (/dev/shm's size=ShmSize, 64 MiB by
  default; the container's /etc/resolv.conf, /etc/hostname and /etc/hosts
  bound rbind, rprivate), `WithCapabilities` (bounding = effective =
  permitted = the set, for every user), `WithOOMScore` (0), --ulimit as
  process.rlimits, no-new-privileges;
- daemon/daemon_unix.go: --cpus as a CFS quota over a 100 ms period, and
  --memory-swap = 2 × --memory when not given;
- container/container.go `CreateDaemonEnvironment`: PATH (moby's default),
  HOSTNAME, then the image's and the task's variables.

Left out: Docker's default seccomp profile and AppArmor profile, which
juggler does not apply (row "seccomp, AppArmor" of the README's table of
differences).

Users are resolved by umoci (`umoci raw runtime-config`), which runs the
GetExecUser of runc's libcontainer/user on an image config whose `User` is
the case's: an oracle that shares no code with container/users.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from juggler.container import syscalls as sc
from juggler.testing import probe

RUNC = "/usr/sbin/runc"
UMOCI = "umoci"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SHM_SIZE = 64 * 2**20  # moby's DefaultShmSize
CFS_PERIOD_US = 100_000
INIT_PATH = "/sbin/docker-init"  # moby's inContainerInitPath
TINI = "/usr/bin/tini-static"  # Debian's tini, Docker's docker-init

DOCKER_CAPS = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
               "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
               "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE")
DOCKER_MOUNTS = (
    ("/proc", "proc", "proc", ("nosuid", "noexec", "nodev")),
    ("/dev", "tmpfs", "tmpfs", ("nosuid", "strictatime", "mode=755", "size=65536k")),
    ("/dev/pts", "devpts", "devpts",
     ("nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5")),
    ("/sys", "sysfs", "sysfs", ("nosuid", "noexec", "nodev", "ro")),
    ("/sys/fs/cgroup", "cgroup", "cgroup", ("ro", "nosuid", "noexec", "nodev")),
    ("/dev/mqueue", "mqueue", "mqueue", ("nosuid", "noexec", "nodev")),
    ("/dev/shm", "tmpfs", "shm", ("nosuid", "noexec", "nodev", "mode=1777")),
)
DOCKER_MASKED = ("/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
                 "/proc/latency_stats", "/proc/sched_debug", "/proc/scsi", "/proc/timer_list",
                 "/proc/timer_stats", "/sys/devices/virtual/powercap", "/sys/firmware")
DOCKER_READONLY = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
DOCKER_DEVICE_RULES = (
    {"allow": False, "access": "rwm"},
    *({"allow": True, "type": "c", "major": major, "minor": minor, "access": "rwm"}
      for major, minor in ((1, 5), (1, 3), (1, 9), (1, 8), (5, 0), (5, 1))),
    {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
)
DOCKER_SYSCTLS = {"net.ipv4.ping_group_range": "0 2147483647",
                  "net.ipv4.ip_unprivileged_port_start": "0"}
# capability.h order: a name's index is its number.
ALL_CAPS = ("CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
            "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST",
            "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO",
            "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
            "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
            "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
            "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE")
RLIMIT_INFINITY = 2**64 - 1


class Refused(Exception):
    """Docker would refuse the case before runc runs (`docker run` exits 125)."""


@dataclass(frozen=True)
class DockerRun:
    """A `docker run` of an image: its flags, and the image's config."""

    args: tuple[str, ...]
    user: str = ""                               # -u
    workdir: str = ""                            # -w
    env: tuple[tuple[str, str], ...] = ()        # -e, in order
    hostname: str = ""
    image_user: str = ""
    image_workdir: str = ""
    image_env: tuple[tuple[str, str], ...] = ()
    cpus: float | None = None                    # --cpus
    cpu_shares: int | None = None                # --cpu-shares
    memory: int | None = None                    # --memory, bytes
    memory_swap: int | None = None               # --memory-swap, bytes; -1 unlimited
    pids_limit: int | None = None                # --pids-limit
    cap_add: tuple[str, ...] = ()                # names without CAP_, or ALL
    cap_drop: tuple[str, ...] = ()
    ulimits: tuple[tuple[str, int, int], ...] = ()  # (name, soft, hard); -1 unlimited
    no_new_privileges: bool = False
    init: bool = False
    files: dict[str, str] = field(default_factory=dict)  # /etc files Docker binds


def environment(run: DockerRun) -> list[str]:
    """moby's CreateDaemonEnvironment (no tty): PATH and HOSTNAME, then the
    image's variables and -e over them, each name once, in first-seen order."""
    env = {"PATH": DEFAULT_PATH, "HOSTNAME": run.hostname}
    env.update(dict(run.image_env))
    env.update(dict(run.env))
    return [f"{k}={v}" for k, v in env.items()]


def kernel_capabilities() -> tuple[str, ...]:
    """What `--cap-add ALL` means to moby (oci/caps/utils.go
    GetAllCapabilities): every capability it knows, up to this kernel's
    CAP_LAST_CAP, whether or not the daemon holds it (a host whose root lacks
    one, as this CI's does CAP_SYS_RESOURCE, makes runc refuse the config)."""
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    return ALL_CAPS[:last + 1]


def capabilities(run: DockerRun) -> list[str]:
    """moby's TweakCapabilities on the default set."""
    if "ALL" in run.cap_add:
        caps = [c for c in kernel_capabilities() if c not in run.cap_drop]
    elif "ALL" in run.cap_drop:
        caps = list(run.cap_add)
    else:
        caps = [c.removeprefix("CAP_") for c in DOCKER_CAPS if c[4:] not in run.cap_drop]
        caps += [c for c in run.cap_add if c not in caps]
    return [f"CAP_{c}" for c in caps]


# moby libnetwork/etchosts defaultContent, as etchosts.Build writes it with no
# address (the container has none on network "none").
DOCKER_HOSTS = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
                "ff02::2\tip6-allrouters\n")


def docker_resolv_conf(host: str, source: str = "/etc/resolv.conf") -> str:
    """What moby's libnetwork/internal/resolvconf writes for a legacy network
    without IPv6 from the host's file (nameservers, search and options lines
    only: enough for the hosts this runs on): TransformForLegacyNw keeps the
    IPv4 non-loopback nameservers, or 8.8.8.8 and 8.8.4.4 when none is left;
    Generate(comments=true) adds its trailer."""
    keep, search, options = [], "", []
    for words in (line.split() for line in host.splitlines()):
        if len(words) > 1 and words[0] == "nameserver":
            if "." in words[1] and not words[1].startswith("127."):
                keep.append(words[1])
        elif len(words) > 1 and words[0] in ("search", "domain"):
            search = " ".join(words[1:])
        elif len(words) > 1 and words[0] == "options":
            options += words[1:]
    text = "".join(f"nameserver {ns}\n" for ns in keep or ("8.8.8.8", "8.8.4.4"))
    text += f"search {search}\n" if search else ""
    text += f"options {' '.join(options)}\n" if options else ""
    text += f"\n# Based on host file: '{source}' (legacy)\n"
    text += "" if keep else "# Used default nameservers.\n"
    return text + "# Overrides: []\n"


def docker_etc_files(directory: Path, hostname: str) -> dict[str, str]:
    """The files Docker binds at /etc/hosts, /etc/hostname, /etc/resolv.conf
    (network none), written into `directory`: {"/etc/hosts": path, ...}."""
    directory.mkdir(parents=True, exist_ok=True)
    host = Path("/etc/resolv.conf").read_text() if Path("/etc/resolv.conf").exists() else ""
    out = {}
    for name, text in (("hosts", DOCKER_HOSTS), ("hostname", hostname + "\n"),
                       ("resolv.conf", docker_resolv_conf(host))):
        (directory / name).write_text(text)
        out[f"/etc/{name}"] = str(directory / name)
    return out


def masked_paths() -> list[str]:
    cpus = sorted(Path("/sys/devices/system/cpu").glob("cpu[0-9]*/thermal_throttle"))
    return list(DOCKER_MASKED) + [str(p) for p in cpus]


def docker_config(run: DockerRun, root: str, cgroups_path: str,
                  user: tuple[int, int, tuple[int, ...]]) -> dict:
    """config.json for `run`, its root filesystem at `root`; `user` as
    `resolve_user` gives it (uid, gid, the user's supplementary groups)."""
    uid, gid, supplementary = user
    caps = capabilities(run)
    args = list(run.args)
    mounts = [{"destination": d, "type": t, "source": s, "options": list(o)}
              for d, t, s, o in DOCKER_MOUNTS]
    for m in mounts:
        if m["destination"] == "/dev/shm":
            m["options"].append(f"size={SHM_SIZE}")
    for name, source in sorted(run.files.items()):
        mounts.append({"destination": name, "type": "bind", "source": source,
                       "options": ["rbind", "rprivate"]})
    if run.init:
        args = [INIT_PATH, "--", *args]
        mounts.append({"destination": INIT_PATH, "type": "bind", "source": TINI,
                       "options": ["bind", "ro"]})
    resources: dict = {"devices": [dict(r) for r in DOCKER_DEVICE_RULES]}
    if run.memory:
        swap = run.memory_swap if run.memory_swap is not None else 2 * run.memory
        resources["memory"] = {"limit": run.memory, "swap": swap}
    cpu: dict = {}
    if run.cpu_shares:
        cpu["shares"] = run.cpu_shares
    if run.cpus:
        cpu.update(period=CFS_PERIOD_US, quota=round(run.cpus * CFS_PERIOD_US))
    if cpu:
        resources["cpu"] = cpu
    if run.pids_limit and run.pids_limit > 0:
        resources["pids"] = {"limit": run.pids_limit}
    process = {
        "terminal": False,
        "user": {"uid": uid, "gid": gid,
                 "additionalGids": list(dict.fromkeys((gid, *supplementary)))},
        "args": args,
        "env": environment(run),
        "cwd": _clean(run.workdir or run.image_workdir or "/"),
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "oomScoreAdj": 0,
        "noNewPrivileges": run.no_new_privileges,
    }
    if run.ulimits:
        process["rlimits"] = [
            {"type": f"RLIMIT_{name.upper()}",
             "soft": RLIMIT_INFINITY if soft < 0 else soft,
             "hard": RLIMIT_INFINITY if hard < 0 else hard}
            for name, soft, hard in run.ulimits]
    return {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": root, "readonly": False},
        "hostname": run.hostname,
        "mounts": mounts,
        "linux": {
            "cgroupsPath": cgroups_path,
            "resources": resources,
            "namespaces": [{"type": t} for t in ("mount", "network", "uts", "pid", "ipc")],
            "maskedPaths": masked_paths(),
            "readonlyPaths": list(DOCKER_READONLY),
            "sysctl": dict(DOCKER_SYSCTLS),
        },
    }


def _clean(path: str) -> str:
    """Go's filepath.Clean of an absolute path (moby cleans WorkingDir)."""
    return "/" + os.path.normpath(path).lstrip("/")


class UserOracle:
    """Docker's first step of user resolution (GetExecUser on the container's
    files), asked of umoci: `umoci raw runtime-config` on an OCI layout whose
    image config has the case's `User`, with the case's rootfs as the source
    of /etc/passwd and /etc/group. Answers are cached per (user, files)."""

    def __init__(self, work: Path) -> None:
        self.layout = work / "umoci-layout"
        (self.layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        self.manifests: list[dict] = []
        self.cache: dict[tuple[str, str], tuple[int, int, tuple[int, ...]] | str] = {}

    def _blob(self, data: dict) -> dict:
        raw = json.dumps(data).encode()
        digest = hashlib.sha256(raw).hexdigest()
        (self.layout / "blobs" / "sha256" / digest).write_bytes(raw)
        return {"digest": f"sha256:{digest}", "size": len(raw)}

    def resolve(self, user: str, rootfs: Path) -> tuple[int, int, tuple[int, ...]]:
        """(uid, gid, supplementary gids); raises Refused with umoci's words."""
        etc = "\0".join(_read(rootfs / "etc" / n) for n in ("passwd", "group"))
        key = (user, etc)
        if key not in self.cache:
            self.cache[key] = self._ask(user, rootfs)
        answer = self.cache[key]
        if isinstance(answer, str):
            raise Refused(answer)
        return answer

    def _ask(self, user: str, rootfs: Path) -> tuple[int, int, tuple[int, ...]] | str:
        tag = f"u{len(self.manifests)}"
        config = self._blob({"architecture": "amd64", "os": "linux", "config": {"User": user},
                             "rootfs": {"type": "layers", "diff_ids": []}})
        manifest = self._blob({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
            "layers": []})
        self.manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                               **manifest,
                               "annotations": {"org.opencontainers.image.ref.name": tag}})
        (self.layout / "index.json").write_text(json.dumps(
            {"schemaVersion": 2, "manifests": self.manifests}))
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "config.json"
            done = subprocess.run([UMOCI, "raw", "runtime-config", "--image",
                                   f"{self.layout}:{tag}", "--rootfs", str(rootfs), str(out)],
                                  capture_output=True, text=True, timeout=60)
            if done.returncode != 0:
                return (done.stderr.strip() or done.stdout.strip()).splitlines()[-1]
            spec = json.loads(out.read_text())["process"]["user"]
        return (spec["uid"], spec["gid"], tuple(spec.get("additionalGids") or ()))


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


@contextlib.contextmanager
def overlay(lowers: list[str], work: Path):
    """An overlay of `lowers` (top first) with a fresh upper layer, as Docker's
    overlay2 driver gives a container; yields the merged directory."""
    upper, scratch, merged = work / "upper", work / "work", work / "merged"
    for d in (upper, scratch, merged):
        d.mkdir(parents=True)
    sc.mount("overlay", str(merged), "overlay", 0,
             f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={scratch}")
    try:
        yield merged
    finally:
        sc.umount2(str(merged), sc.MNT_DETACH)


def run_runc(config: dict, bundle: Path, state: Path, container_id: str,
             timeout: float = 30.0) -> probe.Outcome:
    """`runc run` the probe in `bundle` (config.json written from `config`),
    reading its cgroup on the host while it waits. A container runc could
    not create is an Outcome with ran False and runc's message."""
    (bundle / "config.json").write_text(json.dumps(config))
    proc = subprocess.Popen([RUNC, "--root", str(state), "run", "--bundle", str(bundle),
                             container_id], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdin and proc.stdout and proc.stderr
    try:
        outcome = probe.collect(proc.stdout.fileno(), proc.stderr.fileno(),
                                proc.stdin.fileno(), time.monotonic() + timeout)
        outcome.exit_code = proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for f in (proc.stdin, proc.stdout, proc.stderr):
            with contextlib.suppress(OSError):
                f.close()
        subprocess.run([RUNC, "--root", str(state), "delete", "--force", container_id],
                       capture_output=True, timeout=30)
    return outcome


def remove_cgroup_parent(name: str, root: Path = Path("/sys/fs/cgroup")) -> None:
    """rmdir the (empty) parent cgroup runc made for a run's containers."""
    for directory in [root / name, *(p / name for p in root.iterdir() if p.is_dir())]:
        with contextlib.suppress(OSError):
            directory.rmdir()


def clean_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
