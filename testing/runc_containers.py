"""Running juggler's own image (scripts/build-image's OCI layout) under runc,
as docker-compose.yml runs it under Docker: the smoke test of
tests/integration/test_image_smoke.py.

`container_config` turns the runtime config `umoci unpack` writes (an image's
Entrypoint/Cmd/Env/WorkingDir in OCI runtime form) into one container's config;
`Runc` runs such configs detached and removes them again. What compose asks of
Docker and how it maps to runc's config (facts from the OCI runtime spec,
config.md / config-linux.md, and moby's daemon/oci_linux.go for --privileged):

  network_mode: host   no network namespace
  pid: host            no pid namespace
  privileged: true     every capability the caller holds in all five sets, all
                       devices allowed, /sys read-write, no masked or read-only
                       paths, no_new_privileges off
  /sys/fs/cgroup:/sys/fs/cgroup   the host's hierarchies bind-mounted read-write
                       (umoci's config mounts a read-only cgroup filesystem)
  volumes              bind mounts, read-write
  command: [...]       process.args = the image's Entrypoint + the command
"""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from juggler.testing.oci_runtime import ALL_CAPS

RUNC = shutil.which("runc") or "runc"


def held_capabilities(status: str | None = None) -> list[str]:
    """The capabilities in this process's bounding set (`CapBnd:` of
    /proc/self/status, or of `status`), as CAP_ names: what --privileged can
    give (a host's root may lack some, and runc refuses a config asking for
    one it cannot grant)."""
    text = status if status is not None else Path("/proc/self/status").read_text()
    mask = next(int(line.split()[1], 16) for line in text.splitlines()
                if line.startswith("CapBnd:"))
    return [f"CAP_{name}" for bit, name in enumerate(ALL_CAPS) if mask >> bit & 1]


def image_config(layout: Path, tag: str) -> dict[str, Any]:
    """The image config (`config` of the OCI image config blob: Entrypoint,
    Cmd, Env, WorkingDir, …) of `tag` in the OCI image layout `layout`.

    Raises KeyError when the layout has no such tag."""
    index = json.loads((layout / "index.json").read_text())
    for m in index["manifests"]:
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            manifest = json.loads(_blob(layout, m["digest"]))
            return dict(json.loads(_blob(layout, manifest["config"]["digest"]))["config"])
    raise KeyError(f"{layout} has no image tagged {tag}")


def _blob(layout: Path, digest: str) -> str:
    algorithm, _, hexdigest = digest.partition(":")
    return (layout / "blobs" / algorithm / hexdigest).read_text()


def container_config(base: dict[str, Any], rootfs: Path, command: list[str], *,
                     binds: dict[str, str] | None = None, privileged: bool = False,
                     host_pid: bool = False, capabilities: list[str] | None = None,
                     entrypoint_len: int = 0) -> dict[str, Any]:
    """A runc config.json for one container of the unpacked image.

    `base`: umoci's config.json for the image; `rootfs`: its unpacked root,
    shared read-only by every container (writes go to `binds` and to tmpfs
    on /tmp and /run); `command` replaces the image's Cmd (the first
    `entrypoint_len` args of base's process.args are the Entrypoint);
    `binds`: host path → container path; host network always. With
    `privileged`: `capabilities` (default held_capabilities()), all devices,
    /sys read-write, the host's /sys/fs/cgroup, nothing masked."""
    c = copy.deepcopy(base)
    c["root"] = {"path": str(rootfs), "readonly": True}
    process = c["process"]
    process["args"] = process["args"][:entrypoint_len] + command
    process["terminal"] = False
    linux = c.setdefault("linux", {})
    dropped = {"network"} | ({"pid"} if host_pid else set())
    linux["namespaces"] = [n for n in linux.get("namespaces", []) if n["type"] not in dropped]
    mounts = [m for m in c.get("mounts", []) if not (privileged and m["destination"] in
                                                      ("/sys", "/sys/fs/cgroup"))]
    mounts += [{"destination": d, "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "nodev", "mode=1777"]} for d in ("/tmp", "/run")]
    # Host networking: the host's name resolution, as Docker gives it.
    mounts += [{"destination": f"/etc/{f}", "type": "bind", "source": f"/etc/{f}",
                "options": ["rbind", "ro"]} for f in ("hosts", "resolv.conf")]
    if privileged:
        mounts += [
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "rw"]},
            {"destination": "/sys/fs/cgroup", "type": "bind", "source": "/sys/fs/cgroup",
             "options": ["rbind", "rw"]},
        ]
        caps = capabilities if capabilities is not None else held_capabilities()
        process["capabilities"] = {k: list(caps) for k in
                                   ("bounding", "effective", "inheritable", "permitted",
                                    "ambient")}
        process["noNewPrivileges"] = False
        linux["resources"] = {"devices": [{"allow": True, "access": "rwm"}]}
        linux.pop("maskedPaths", None)
        linux.pop("readonlyPaths", None)
    mounts += [{"destination": inside, "type": "bind", "source": outside,
                "options": ["rbind", "rw"]} for outside, inside in (binds or {}).items()]
    c["mounts"] = mounts
    return c


class Runc:
    """runc with a state directory of its own; every container it started is
    killed and deleted by close()."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.state = work / "runc-state"
        self.state.mkdir(parents=True, exist_ok=True)
        self.started: list[str] = []

    def _bundle(self, name: str, config: dict[str, Any]) -> Path:
        bundle = self.work / "bundles" / name
        bundle.mkdir(parents=True, exist_ok=True)
        (bundle / "config.json").write_text(json.dumps(config, indent=1))
        return bundle

    def run(self, name: str, config: dict[str, Any],
            timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run a container in the foreground to its end: its exit code and output."""
        bundle = self._bundle(name, config)
        self.started.append(name)
        try:
            return subprocess.run([RUNC, "--root", str(self.state), "run", "--bundle",
                                   str(bundle), name], stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=timeout)
        finally:
            self._delete(name)

    def start(self, name: str, config: dict[str, Any], log: Path) -> None:
        """Start a container detached, its stdout and stderr into `log`.

        Raises subprocess.CalledProcessError when runc cannot create it."""
        bundle = self._bundle(name, config)
        self.started.append(name)
        with log.open("ab") as out:
            subprocess.run([RUNC, "--root", str(self.state), "run", "--detach", "--bundle",
                            str(bundle), name], stdin=subprocess.DEVNULL, stdout=out,
                           stderr=out, check=True, timeout=60)

    def running(self, name: str) -> bool:
        result = subprocess.run([RUNC, "--root", str(self.state), "state", name],
                                capture_output=True, text=True, timeout=30)
        return result.returncode == 0 and json.loads(result.stdout)["status"] == "running"

    def _delete(self, name: str) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run([RUNC, "--root", str(self.state), "delete", "--force", name],
                           capture_output=True, timeout=30)

    def close(self) -> None:
        for name in reversed(self.started):
            self._delete(name)
        self.started.clear()
