"""Image configs and platforms: pure, no I/O.

The agent resolves an image's config into the copy of the TaskInfo it writes to
the executor's spec (`apply`), so the executor needs no image knowledge: it
gets a plain command plus `ExecutorSpec.layers`. Docker's rules:

- argv: a task command given as argv replaces the image's Cmd and runs after
  its Entrypoint (`docker run IMAGE ARGS`); a shell command (`command.shell`)
  replaces both, as Mesos does for `sh -c` tasks; no task command at all runs
  Entrypoint + Cmd.
- env: the image's Env, then the task's variables over it.
- working directory and user: the task's when set, else the image's.
"""

from __future__ import annotations

import json
import platform as _platform
from dataclasses import dataclass, field

from juggler.v1 import common_pb2

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
         "armv7l": "arm", "armv6l": "arm", "i686": "386", "i386": "386",
         "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def host_platform() -> tuple[str, str, str]:
    """(os, architecture, variant) in OCI words for this host."""
    machine = _platform.machine()
    variant = {"armv7l": "v7", "armv6l": "v6"}.get(machine, "")
    return ("linux", _ARCH.get(machine, machine), variant)


def platform_name(p: dict | tuple) -> str:
    if isinstance(p, tuple):
        os_, arch, variant = p
    else:
        os_, arch, variant = p.get("os", "?"), p.get("architecture", "?"), p.get("variant", "")
    return f"{os_}/{arch}" + (f"/{variant}" if variant else "")


def choose_platform(manifests: list[dict], want: tuple[str, str, str]) -> dict | None:
    """The index entry for platform `want`: exact variant first, then any variant
    (arm64 images often say v8 or nothing). Attestation manifests are skipped."""
    os_, arch, variant = want
    candidates = [m for m in manifests
                  if m.get("platform", {}).get("os") == os_
                  and m.get("platform", {}).get("architecture") == arch]
    for m in candidates:
        if m.get("platform", {}).get("variant", "") == variant:
            return m
    return candidates[0] if candidates else None


@dataclass(frozen=True)
class ImageConfig:
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    working_dir: str = ""
    user: str = ""
    # The signal `docker stop` sends first ("SIGQUIT", "15"), as the image
    # gives it; "" for none.
    stop_signal: str = ""
    diff_ids: list[str] = field(default_factory=list)
    created: str = ""
    os: str = ""
    architecture: str = ""

    @classmethod
    def parse(cls, raw: bytes | str | dict) -> ImageConfig:
        data = raw if isinstance(raw, dict) else json.loads(raw)
        c = data.get("config") or {}
        return cls(entrypoint=list(c.get("Entrypoint") or []), cmd=list(c.get("Cmd") or []),
                   env=list(c.get("Env") or []), working_dir=c.get("WorkingDir") or "",
                   user=c.get("User") or "", stop_signal=c.get("StopSignal") or "",
                   diff_ids=list((data.get("rootfs") or {}).get("diff_ids") or []),
                   created=data.get("created") or "", os=data.get("os") or "",
                   architecture=data.get("architecture") or "")


class ConfigError(ValueError):
    pass


def apply(task: common_pb2.TaskInfo, image: ImageConfig) -> common_pb2.TaskInfo:
    """A copy of `task` whose command is the image's config overridden by the task's."""
    out = common_pb2.TaskInfo()
    out.CopyFrom(task)
    cmd = out.command
    given = list(task.command.argv)
    if task.command.shell:
        argv = given  # spec.py turns it into /bin/sh -c
    elif given:
        argv = list(image.entrypoint) + given
    else:
        argv = list(image.entrypoint) + list(image.cmd)
    if not argv:
        raise ConfigError(f"task {task.task_id!r}: no command: the task gives none and the "
                          "image has neither Entrypoint nor Cmd")
    del cmd.argv[:]
    cmd.argv.extend(argv)
    env = {}
    for item in image.env:
        name, _, value = item.partition("=")
        if name:
            env[name] = value
    env.update(task.command.environment)
    cmd.environment.clear()
    cmd.environment.update(env)
    if not cmd.working_directory and image.working_dir:
        cmd.working_directory = image.working_dir
    if not cmd.user and image.user:
        # As given ("user", "uid:gid", ...): container/users.py resolves every
        # form Docker does.
        cmd.user = image.user
    return out
