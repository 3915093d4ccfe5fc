"""Secret environment values: shown as "<secret>" everywhere but to the task.

`CommandInfo.secret_environment` names variables of `CommandInfo.environment`
whose values are secret (a token, a password). The task gets the values;
every view of the task that leaves the framework that launched it — the
master's Operator API and HTTP state (and so the web UI), the agent's
GetState, the Docker API's inspect, the log lines of every process — shows
`REDACTED` instead. Pure functions; no I/O.

Log lines: `log_processor` (a structlog processor, common/logs.py) redacts
every TaskInfo, CommandInfo or ExecutorSpec passed as a field, and replaces
any value `register`ed by this process (the executor registers its task's
secrets) wherever it appears in a field, as CI systems mask their secrets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from juggler.v1 import common_pb2, executor_pb2

REDACTED = "<secret>"
# Values shorter than this are not masked in free text: "1" or "a" would
# blank every number and letter of a log line.
MIN_MASKED_LENGTH = 4

_registered: set[str] = set()


def environment(env: Mapping[str, str], secret: Iterable[str]) -> dict[str, str]:
    """`env` with the values of the names in `secret` replaced by REDACTED."""
    names = set(secret)
    return {k: (REDACTED if k in names else v) for k, v in env.items()}


def env_list(items: Iterable[str], secret: Iterable[str]) -> list[str]:
    """Docker's "NAME=VALUE" list with the values of `secret` names redacted."""
    names = set(secret)
    out = []
    for item in items:
        name, sep, _ = item.partition("=")
        out.append(f"{name}={REDACTED}" if sep and name in names else item)
    return out


def command(cmd: common_pb2.CommandInfo) -> common_pb2.CommandInfo:
    """`cmd` itself when it holds no secret, else a redacted copy."""
    names = [n for n in cmd.secret_environment if n in cmd.environment]
    if not names:
        return cmd
    out = common_pb2.CommandInfo()
    out.CopyFrom(cmd)
    for name in names:
        out.environment[name] = REDACTED
    return out


def task(info: common_pb2.TaskInfo) -> common_pb2.TaskInfo:
    """`info` itself when its command holds no secret, else a redacted copy."""
    redacted = command(info.command)
    if redacted is info.command:
        return info
    out = common_pb2.TaskInfo()
    out.CopyFrom(info)
    out.command.CopyFrom(redacted)
    return out


def executor_spec(spec: executor_pb2.ExecutorSpec) -> executor_pb2.ExecutorSpec:
    redacted = task(spec.task)
    if redacted is spec.task:
        return spec
    out = executor_pb2.ExecutorSpec()
    out.CopyFrom(spec)
    out.task.CopyFrom(redacted)
    return out


def values(cmd: common_pb2.CommandInfo) -> list[str]:
    """The secret values `cmd` holds."""
    return [cmd.environment[n] for n in cmd.secret_environment if n in cmd.environment]


def register(secret_values: Iterable[str]) -> None:
    """Mask these values in every log line of this process from now on
    (those shorter than MIN_MASKED_LENGTH excepted)."""
    _registered.update(v for v in secret_values if len(v) >= MIN_MASKED_LENGTH)


def mask(text: str) -> str:
    """`text` with every registered value replaced by REDACTED."""
    for value in sorted(_registered, key=len, reverse=True):
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def _redact(value: Any) -> Any:
    if isinstance(value, common_pb2.TaskInfo):
        return task(value)
    if isinstance(value, common_pb2.CommandInfo):
        return command(value)
    if isinstance(value, executor_pb2.ExecutorSpec):
        return executor_spec(value)
    if _registered and isinstance(value, str):
        return mask(value)
    return value


def log_processor(_logger: Any, _method: str,
                  event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: every field redacted (see the module's doc)."""
    for key, value in list(event_dict.items()):
        event_dict[key] = _redact(value)
    return event_dict
