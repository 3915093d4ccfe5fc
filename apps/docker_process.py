"""HostConfig's fields about the container's process — Init, SecurityOpt,
CapAdd, CapDrop, Ulimits — read from POST /containers/create and shown by
inspect (docker_views.py does the rest of both).

They are kept as the client gave them (the docker CLI already normalizes
CapAdd/CapDrop to "CAP_X", sorted) once checked as the task check will check
the labels they become (apps/container_tasks.py; common/task_privileges.py
and common/ulimits.py): an unknown capability, a security option juggler
cannot honour, a bad ulimit is refused with 400 and moby's (or juggler's)
words, before anything is created.
"""

from __future__ import annotations

from typing import Any

from juggler.apps.containers import ContainerConfig
from juggler.apps.docker_errors import DockerError
from juggler.common import task_privileges, ulimits


def _strings(host: dict[str, Any], key: str) -> list[str]:
    value = host.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DockerError(400, f"HostConfig.{key}: must be a list of strings")
    return list(value)


def _ulimit(item: Any) -> ulimits.Ulimit:
    if not isinstance(item, dict):
        raise DockerError(400, 'HostConfig.Ulimits: each item is {"Name", "Soft", "Hard"}, '
                               f"got {item!r}")
    name, soft, hard = item.get("Name"), item.get("Soft") or 0, item.get("Hard") or 0
    if not isinstance(name, str) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in (soft, hard)):
        raise DockerError(400, f"HostConfig.Ulimits: bad item {item!r} (Name a string, Soft "
                               "and Hard integers)")
    return ulimits.check(name, soft, hard)


def read(cfg: ContainerConfig, host: dict[str, Any]) -> None:
    """Set cfg.init, security_opt, cap_add, cap_drop, ulimits from HostConfig.
    Raises DockerError 400 for a wrong type or a value juggler cannot take."""
    init = host.get("Init")
    if init is not None and not isinstance(init, bool):
        raise DockerError(400, "HostConfig.Init: must be true, false or null")
    items = host.get("Ulimits") or []
    if not isinstance(items, list):
        raise DockerError(400, "HostConfig.Ulimits: must be a list")
    security, add, drop = (_strings(host, k) for k in ("SecurityOpt", "CapAdd", "CapDrop"))
    for field, caps in (("CapAdd", add), ("CapDrop", drop)):
        try:
            task_privileges.normalize_all(caps)
        except task_privileges.PrivilegeError as e:   # moby's validateCapabilities words
            raise DockerError(400, f"invalid {field}: {e}") from None
    try:
        limits = ulimits.merge(_ulimit(item) for item in items)
        task_privileges.task_labels(security_opt=security, cap_add=add, cap_drop=drop)
    except (task_privileges.PrivilegeError, ulimits.UlimitError) as e:
        raise DockerError(400, str(e)) from None
    cfg.init = init
    cfg.security_opt, cfg.cap_add, cfg.cap_drop = security, add, drop
    cfg.ulimits = [u.text() for u in limits]


def host_config(cfg: ContainerConfig) -> dict[str, Any]:
    """Inspect's HostConfig fields: as given at create, null when not (Init
    only when given, as Docker's *bool)."""
    out: dict[str, Any] = {
        "CapAdd": list(cfg.cap_add) or None, "CapDrop": list(cfg.cap_drop) or None,
        "SecurityOpt": list(cfg.security_opt) or None,
        "Ulimits": [ulimits.parse(u).docker() for u in cfg.ulimits] or None,
    }
    if cfg.init is not None:
        out["Init"] = cfg.init
    return out
