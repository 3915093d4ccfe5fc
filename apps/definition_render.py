"""`AppDefinition` → Marathon's JSON (`render_app`; parse_app(render_app(a))
== a), and PATCH: one Marathon JSON object's fields over another's
(`patch_app`). Pure: no I/O. juggler's upgradeStrategy extensions are
rendered only when they are not the default (definition_model.py).
"""

from __future__ import annotations

from typing import Any

from juggler.apps.definition_model import (
    _INT32_MAX,
    DEFAULT_MIN_HEALTHY_SECONDS,
    DEFAULT_PROGRESS_DEADLINE_SECONDS,
    AppDefinition,
    Container,
    HealthCheckDef,
    InvalidDefinition,
    UpgradeStrategy,
)
from juggler.apps.definition_ports import render_networks, render_port_mappings

# -- rendering ----------------------------------------------------------------------


def _num(x: float) -> int | float:
    """Whole numbers as JSON integers (Marathon's int fields, and 128 rather
    than 128.0); parse_app reads either back as the same float."""
    return int(x) if float(x).is_integer() and abs(x) <= _INT32_MAX else x


def render_app(app: AppDefinition) -> dict[str, Any]:
    """The definition as Marathon's JSON, every Marathon field present with
    its value (juggler's extensions only when they are not the default).
    parse_app(render_app(a)) == a.

    Fields with no value (cmd, args, user, container, role,
    taskKillGracePeriodSeconds; acceptedResourceRoles when empty) are left
    out, as Marathon ≥ 1.4 leaves out unset options. Every key is one
    Marathon's Python client (`marathon.models.MarathonApp`) accepts."""
    out: dict[str, Any] = {"id": app.id}
    if app.cmd is not None:
        out["cmd"] = app.cmd
    if app.args is not None:
        out["args"] = list(app.args)
    if app.user is not None:
        out["user"] = app.user
    out.update(instances=app.instances, cpus=_num(app.cpus), mem=_num(app.mem),
               disk=_num(app.disk), gpus=app.gpus, env=dict(app.env), labels=dict(app.labels))
    if app.container is not None or app.port_mappings:
        out["container"] = _render_container(app.container or Container(type="MESOS"))
        if app.port_mappings:
            out["container"]["portMappings"] = render_port_mappings(app.port_mappings)
    out["healthChecks"] = [_render_health_check(hc) for hc in app.health_checks]
    out["constraints"] = [c.render() for c in app.constraints]
    if app.accepted_resource_roles:
        out["acceptedResourceRoles"] = list(app.accepted_resource_roles)
    if app.role is not None:
        out["role"] = app.role
    out["dependencies"] = list(app.dependencies)
    out["upgradeStrategy"] = _render_upgrade_strategy(app.upgrade_strategy)
    u = app.unreachable_strategy
    out["unreachableStrategy"] = {
        "inactiveAfterSeconds": _num(u.inactive_after_seconds),
        "expungeAfterSeconds": _num(u.expunge_after_seconds),
    } if u.enabled else "disabled"
    out["killSelection"] = app.kill_selection
    out["backoffSeconds"] = _num(app.backoff_seconds)
    out["backoffFactor"] = _num(app.backoff_factor)
    out["maxLaunchDelaySeconds"] = _num(app.max_launch_delay_seconds)
    if app.task_kill_grace_period_seconds is not None:
        out["taskKillGracePeriodSeconds"] = _num(app.task_kill_grace_period_seconds)
    out["portDefinitions"] = [
        {"port": p.port, "protocol": p.protocol}
        | ({"name": p.name} if p.name is not None else {}) | {"labels": dict(p.labels)}
        for p in app.port_definitions]
    out["requirePorts"] = app.require_ports
    out["networks"] = render_networks(app.networks)
    return out


def _render_container(c: Container) -> dict[str, Any]:
    out: dict[str, Any] = {"type": c.type, "volumes": []}
    image = c.image if c.image is not None else c.rootfs
    if image is not None:
        out["docker"] = {"image": image, "forcePullImage": c.force_pull_image,
                         "privileged": False, "parameters": []}
    return out


def _render_health_check(hc: HealthCheckDef) -> dict[str, Any]:
    out: dict[str, Any] = {"protocol": hc.protocol}
    if hc.protocol == "COMMAND":
        out["command"] = {"value": hc.command}
    if hc.protocol in ("HTTP", "HTTPS"):
        out["path"] = hc.path
    if hc.port_index is not None:
        out["portIndex"] = hc.port_index
    if hc.port is not None:
        out["port"] = hc.port
    out.update(gracePeriodSeconds=_num(hc.grace_period_seconds),
               intervalSeconds=_num(hc.interval_seconds),
               timeoutSeconds=_num(hc.timeout_seconds),
               maxConsecutiveFailures=hc.max_consecutive_failures,
               delaySeconds=_num(hc.delay_seconds))
    if hc.protocol in ("HTTP", "HTTPS"):
        out["ignoreHttp1xx"] = hc.ignore_http1xx
    return out


def _render_upgrade_strategy(s: UpgradeStrategy) -> dict[str, Any]:
    out: dict[str, Any] = {"minimumHealthCapacity": _num(s.minimum_health_capacity),
                           "maximumOverCapacity": _num(s.maximum_over_capacity)}
    if s.min_healthy_seconds != DEFAULT_MIN_HEALTHY_SECONDS:
        out["minHealthySeconds"] = _num(s.min_healthy_seconds)
    if s.progress_deadline_seconds != DEFAULT_PROGRESS_DEADLINE_SECONDS:
        out["progressDeadlineSeconds"] = _num(s.progress_deadline_seconds)
    if not s.auto_revert:
        out["autoRevert"] = False
    return out


# -- PATCH --------------------------------------------------------------------------


def patch_app(current: dict[str, Any], patch: Any) -> dict[str, Any]:
    """PATCH /v2/apps/{id} and PUT with partial=true: the fields of `patch`
    replace those of `current` (both Marathon JSON objects). Raises
    InvalidDefinition when `patch` is not an object.

    Shallow: a field given replaces the whole field (`env`, `container`, …).
    A null field is a field left out (Marathon's AppUpdate), so it keeps the
    current value. Giving `cmd` drops the current `args` and giving `args`
    drops the current `cmd` (an app has one or the other). Neither argument
    is changed."""
    if not isinstance(patch, dict):
        raise InvalidDefinition([{"path": "/", "errors": ["must be a JSON object"]}])
    given = {k: v for k, v in patch.items() if v is not None}
    out = dict(current)
    if "cmd" in given and "args" not in given:
        out.pop("args", None)
    if "args" in given and "cmd" not in given:
        out.pop("cmd", None)
    out.update(given)
    return out
