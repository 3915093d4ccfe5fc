"""One check of a TaskInfo, for the master (Accept) and the agent's side (the
container spec): pure, no I/O.

Everything that can be known about a task without its agent is checked here, so
a bad task is refused when a framework launches it, naming the field, instead
of failing later on the agent. What only the agent knows (an image's layers, a
user in the image's /etc/passwd, a working directory that exists) is checked
where it is used. Defaults and limits live in common/task_defaults.py.

    check(task)                   raises TaskError(field, message)
    check_health_check(task)      the health_check part alone (HealthCheckError)
    task_labels(labels, task_id)  the juggler.* labels, parsed, defaults applied
    parse_signal(text)            a signal's number from "SIGHUP", "hup" or "1"

`TaskError.field` is the proto path of the offending field, as a framework
author would write it: `container.hostname`, `labels["juggler.pids_max"]`,
`health_check.http.port`, `command.environment["A=B"]`.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from juggler.common import ids, network_check, task_privileges, ulimits
from juggler.common import task_defaults as d
from juggler.common.resources import ResourceError, Resources
from juggler.common.ulimits import Ulimit
from juggler.images import reference
from juggler.v1 import common_pb2

_HOSTNAME = re.compile(rf"^[A-Za-z0-9]([A-Za-z0-9-]{{0,{d.HOSTNAME_MAX - 2}}}[A-Za-z0-9])?$")
_USER_NAME = re.compile(rf"^[A-Za-z0-9._][A-Za-z0-9._-]{{0,{d.USER_NAME_MAX - 1}}}$")
_DECIMAL = re.compile(r"^[0-9]+$")


class TaskError(ValueError):
    """A task that cannot run as given.

    `field`: the proto path of the offending field (`container.hostname`,
    `labels["juggler.pids_max"]`); str(error): what is wrong and what to do,
    naming the task."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class HealthCheckError(TaskError):
    """The task's health check cannot be run as described."""


def check(task: common_pb2.TaskInfo) -> None:
    """Check everything about `task` that does not need its agent.

    Raises TaskError (HealthCheckError for the health_check fields), naming the
    first offending field, for: a task_id that is empty or breaks common/ids.py;
    resources that do not parse (common/resources.py) or ask for no cpus and no
    mem; no command.argv and no container.image; an empty or NUL-holding argv
    element; `shell` with other than one string; container.image together with
    container.rootfs; an image reference Docker would refuse; a relative or
    NUL-holding container.rootfs or command.working_directory; a hostname that
    is not one DNS label; an unknown network mode, a network_name or port
    mappings common/network_check.py refuses; a user that is neither a
    portable user name nor a numeric uid; an environment variable whose name is
    empty or holds '=' or NUL, or whose value holds NUL; a secret_environment
    name that is not one of the environment's variables; a `juggler.*` label
    that is unknown or out of its range (task_labels); a health check that
    sets no kind, an empty command, a port out of 1-65535, an unknown scheme, a
    path not starting with '/', or a negative or non-finite duration (delay,
    interval, timeout, grace period); a kill grace period that is negative or
    not finite, a kill signal parse_signal refuses; a container.writable_layer
    that breaks the task id rule, or on a task with neither container.image nor
    container.rootfs (the host's filesystem has no layer to keep); a
    juggler.memory_swap below the memory limit or without one. Returns None.
    """
    tid = task.task_id
    if not tid:
        raise TaskError("task_id", "the task has no task_id")
    try:
        ids.check("task id", tid)
    except ids.InvalidId as e:
        raise TaskError("task_id", str(e)) from None
    where = f"task {tid!r}"

    try:
        resources = Resources.from_proto(task.resources)
    except ResourceError as e:
        raise TaskError("resources", f"{where}: resources: {e}") from None
    if resources.get("cpus") <= 0 and resources.get("mem") <= 0:
        raise TaskError("resources", f"{where} asks for no cpus and no mem (resources: give "
                        "cpus or mem above 0)")

    command, container = task.command, task.container
    _check_argv(where, "command", command.argv, command.shell, required=not container.image,
                required_hint="or container.image to run the image's own command")

    if container.image:
        if container.rootfs:
            raise TaskError("container.rootfs", f"{where}: give container.image or "
                            "container.rootfs, not both")
        try:
            reference.parse(container.image)
        except reference.ReferenceError as e:
            raise TaskError("container.image", f"{where}: container.image: {e}") from None
    if container.rootfs:
        _check_absolute(where, "container.rootfs", container.rootfs, "an absolute path")
    if command.working_directory:
        _check_absolute(where, "command.working_directory", command.working_directory,
                        "absolute")
    if container.hostname and not _HOSTNAME.match(container.hostname):
        raise TaskError("container.hostname", f"{where}: container.hostname "
                        f"{container.hostname!r} is not a valid hostname (letters, digits and "
                        f"'-', not at either end, at most {d.HOSTNAME_MAX})")
    network = network_check.problem(container, resources.ports)
    if network is not None:
        raise TaskError(network[0], f"{where}: {network[1]}")

    _check_user(where, command.user)
    for name, value in command.environment.items():
        _check_variable(where, name, value)
    for name in command.secret_environment:
        if name not in command.environment:
            raise TaskError("command.secret_environment",
                            f"{where}: command.secret_environment names {name!r}, which is not "
                            "one of command.environment's variables")

    if container.writable_layer:
        _check_writable_layer(where, container)

    labels = task_labels(task.labels, tid)
    if labels.memory_swap is not None:
        _check_memory_swap(where, labels.memory_swap, resources.get("mem"))
    check_health_check(task)

    if task.kill_policy.signal:
        try:
            parse_signal(task.kill_policy.signal, "kill_policy.signal")
        except TaskError as e:
            raise TaskError(e.field, f"{where}: {e}") from None
    if task.kill_policy.HasField("grace_period_seconds"):
        grace = task.kill_policy.grace_period_seconds
        if not (math.isfinite(grace) and grace >= 0):
            raise TaskError("kill_policy.grace_period_seconds",
                            f"{where}: kill_policy.grace_period_seconds must be a number of "
                            f"seconds ≥ 0 (0 kills at once), got {grace}")


def _check_argv(where: str, field: str, argv: Sequence[str], shell: bool, *, required: bool,
                required_hint: str, error: type[TaskError] = TaskError) -> None:
    if not argv:
        if shell or required:
            raise error(f"{field}.argv", f"{where}: the {field} is empty (set {field}.argv"
                        + (f", {required_hint})" if required_hint else ")"))
        return
    for i, arg in enumerate(argv):
        if "\0" in arg:
            raise error(f"{field}.argv[{i}]", f"{where}: {field}.argv[{i}] holds a NUL byte")
    if not argv[0]:
        raise error(f"{field}.argv[0]", f"{where}: the {field} is empty ({field}.argv[0] is "
                    "an empty string)")
    if shell and len(argv) != 1:
        raise error(f"{field}.argv", f"{where}: {field}: a shell command is one string "
                    f"(run by /bin/sh -c), got {len(argv)}")


def _check_absolute(where: str, field: str, path: str, what: str) -> None:
    if not path.startswith("/"):
        raise TaskError(field, f"{where}: {field} must be {what}, got {path!r}")
    if "\0" in path:
        raise TaskError(field, f"{where}: {field} holds a NUL byte")


def _check_writable_layer(where: str, container: common_pb2.ContainerInfo) -> None:
    name = container.writable_layer
    try:
        ids.check("container.writable_layer", name)
    except ids.InvalidId as e:
        raise TaskError("container.writable_layer", f"{where}: {e}") from None
    if not container.image and not container.rootfs:
        raise TaskError("container.writable_layer", f"{where}: container.writable_layer "
                        f"{name!r} needs container.image or container.rootfs (a task on the "
                        "host's filesystem has no layer of its own to keep)")


def _check_memory_swap(where: str, swap: int, mem_mib: float) -> None:
    """Docker's --memory-swap rules (moby's verifyPlatformContainerResources):
    it needs a memory limit, and is at least that limit unless -1."""
    field = _label_field(d.MEMORY_SWAP_LABEL)
    memory = round(mem_mib * 2**20)
    if memory <= 0:
        raise TaskError(field, f"{where}: label {d.MEMORY_SWAP_LABEL} needs a memory limit "
                        "(resources: mem), as docker's --memory-swap needs --memory")
    if swap != d.UNLIMITED_SWAP and swap < memory:
        raise TaskError(field, f"{where}: label {d.MEMORY_SWAP_LABEL} is memory + swap in "
                        f"bytes: at least the memory limit ({memory} bytes, mem {mem_mib:g} "
                        f"MiB), or -1 for unlimited swap; got {swap}")


def _signal_names() -> dict[str, int]:
    """Signal names without "SIG", upper case → number: task_defaults.SIGNALS,
    and RTMIN+n / RTMAX-n as Docker's signal map spells the real-time ones."""
    names = dict(d.SIGNALS)
    low, high = d.SIGNALS["RTMIN"], d.SIGNALS["RTMAX"]
    for n in range(1, high - low):
        names[f"RTMIN+{n}"] = low + n
        names[f"RTMAX-{n}"] = high - n
    return names


_SIGNALS = _signal_names()
# Number → the name to show: the first name in SIGNALS (not an alias), RTMIN+n.
_NAMES = {number: name for name, number in reversed(list(_SIGNALS.items()))
          if "-" not in name}


def parse_signal(text: str, field: str = "signal") -> int:
    """The number of the signal `text` names: a name in any case, with or
    without "SIG" ("SIGTERM", "term", "RTMIN+3"), or a decimal number from 1 to
    64 (Docker's ParseSignal and ValidSignalForPlatform). Raises TaskError
    (`field`) for anything else, an empty text included."""
    word = text.strip()
    if _DECIMAL.match(word):
        number = int(word)
        if 1 <= number <= d.MAX_SIGNAL:
            return number
    else:
        number = _SIGNALS.get(word.upper().removeprefix("SIG"), 0)
        if number:
            return number
    raise TaskError(field, f"{field} {text!r} is not a signal: give a name (SIGTERM, TERM, "
                    f"SIGINT, ...) or a number from 1 to {d.MAX_SIGNAL}")


def signal_name(number: int) -> str:
    """"SIGTERM" for 15, "SIGRTMIN+3" for 37, "signal 99" for what has no name."""
    name = _NAMES.get(number)
    return f"SIG{name}" if name else f"signal {number}"


def _check_user(where: str, user: str) -> None:
    """As `docker run -u` takes it (container/users.py resolves it): USER or
    USER:GROUP, each a name or a number (a uid, a gid); either may be empty."""
    if not user:
        return
    name, _, group = user.partition(":")
    for part, what in ((name, "user"), (group, "group")):
        if not part:
            continue
        if _DECIMAL.match(part):
            if int(part) > d.MAX_UID:
                raise TaskError("command.user", f"{where}: command.user {user!r}: {part} is "
                                f"not a{' uid' if what == 'user' else ' gid'} (0 to "
                                f"{d.MAX_UID})")
        elif not _USER_NAME.match(part):
            raise TaskError("command.user", f"{where}: command.user {user!r}: {part!r} is not "
                            f"a {what} name (letters, digits, '.', '_' and '-', not starting "
                            f"with '-', at most {d.USER_NAME_MAX}) or a number; give USER or "
                            "USER:GROUP")


def _check_variable(where: str, name: str, value: str) -> None:
    field = f"command.environment[{json.dumps(name)}]"
    if not name:
        raise TaskError(field, f"{where}: command.environment has a variable with no name")
    if "=" in name or "\0" in name:
        raise TaskError(field, f"{where}: environment variable name {name!r} must not hold "
                        "'=' or a NUL byte")
    if "\0" in value:
        raise TaskError(field, f"{where}: environment variable {name} holds a NUL byte")


# -- labels -------------------------------------------------------------------


@dataclass(frozen=True)
class TaskLabels:
    """The juggler.* labels of a task, defaults applied (see task_defaults)."""

    pids_max: int = d.DEFAULT_PIDS_MAX
    log_max_bytes: int = d.DEFAULT_LOG_MAX_BYTES
    log_max_files: int = d.DEFAULT_LOG_MAX_FILES
    interactive: bool = False
    cpu_shares: int | None = None  # None: from cpus (container/spec.py)
    cpu_quota: bool = True
    memory_swap: int | None = None  # bytes of memory + swap, -1 unlimited; None: no swap
    hold_output: int = 0  # seconds the output waits for an attach; 0: none
    init: bool = False
    no_new_privileges: bool = False
    cap_add: tuple[str, ...] = ()  # normalized: "CAP_NET_ADMIN", "ALL"
    cap_drop: tuple[str, ...] = ()
    ulimits: tuple[Ulimit, ...] = ()


def task_labels(labels: Mapping[str, str], task_id: str = "") -> TaskLabels:
    """Parse the juggler.* labels the agent and the executor understand.

    Raises TaskError, field `labels["<name>"]`, for an unknown juggler.* label
    or a value out of its range (a capability capability.h does not name, a
    ulimit go-units' rules refuse: common/task_privileges.py, ulimits.py); the
    message names the task when `task_id` is given."""
    where = f"task {task_id!r}: " if task_id else ""
    for name in labels:
        if name.startswith(d.LABEL_PREFIX) and name not in d.LABELS:
            close = difflib.get_close_matches(name, d.LABELS, n=1, cutoff=0.85)
            hint = f"did you mean {close[0]}? " if close else ""
            raise TaskError(_label_field(name), f"{where}label {name} is not one juggler "
                            f"knows ({hint}known: {', '.join(d.LABELS)}; other labels must "
                            f"not start with '{d.LABEL_PREFIX}')")
    return TaskLabels(
        pids_max=_int_label(where, labels, d.PIDS_MAX_LABEL, d.DEFAULT_PIDS_MAX, 1,
                            d.MAX_PIDS_MAX),
        log_max_bytes=_int_label(where, labels, d.LOG_MAX_BYTES_LABEL, d.DEFAULT_LOG_MAX_BYTES,
                                 d.MIN_LOG_MAX_BYTES),
        log_max_files=_int_label(where, labels, d.LOG_MAX_FILES_LABEL, d.DEFAULT_LOG_MAX_FILES,
                                 0),
        interactive=_bool_label(where, labels, d.INTERACTIVE_LABEL),
        cpu_shares=_optional_int_label(where, labels, d.CPU_SHARES_LABEL, d.MIN_CPU_SHARES,
                                       d.MAX_CPU_SHARES),
        cpu_quota=_bool_label(where, labels, d.CPU_QUOTA_LABEL, default=True),
        memory_swap=_swap_label(where, labels),
        hold_output=_int_label(where, labels, d.HOLD_OUTPUT_LABEL, 0, 0,
                               d.MAX_HOLD_OUTPUT_SECONDS),
        init=_bool_label(where, labels, d.INIT_LABEL),
        no_new_privileges=_bool_label(where, labels, d.NO_NEW_PRIVILEGES_LABEL),
        cap_add=_caps_label(where, labels, d.CAP_ADD_LABEL),
        cap_drop=_caps_label(where, labels, d.CAP_DROP_LABEL),
        ulimits=_ulimits_label(where, labels),
    )


def _label_field(name: str) -> str:
    return f"labels[{json.dumps(name)}]"


def _int_label(where: str, labels: Mapping[str, str], name: str, default: int, minimum: int,
               maximum: int | None = None) -> int:
    value = _optional_int_label(where, labels, name, minimum, maximum)
    return default if value is None else value


def _optional_int_label(where: str, labels: Mapping[str, str], name: str, minimum: int,
                        maximum: int | None = None) -> int | None:
    raw = labels.get(name)
    if raw is None:
        return None
    value = int(raw) if _DECIMAL.match(raw) else None
    if value is None or value < minimum or (maximum is not None and value > maximum):
        if minimum == 1 and maximum is not None:
            want = f"a positive integer (at most {maximum})"
        elif minimum == 1:
            want = "a positive integer"
        elif maximum is not None:
            want = f"an integer from {minimum} to {maximum}"
        else:
            want = f"an integer ≥ {minimum}"
        raise TaskError(_label_field(name), f"{where}label {name} must be {want}, got {raw!r}")
    return value


def _swap_label(where: str, labels: Mapping[str, str]) -> int | None:
    raw = labels.get(d.MEMORY_SWAP_LABEL)
    if raw is None:
        return None
    word = raw.strip()
    if word == str(d.UNLIMITED_SWAP):
        return d.UNLIMITED_SWAP
    if _DECIMAL.match(word) and int(word) > 0:
        return int(word)
    raise TaskError(_label_field(d.MEMORY_SWAP_LABEL), f"{where}label {d.MEMORY_SWAP_LABEL} "
                    f"must be bytes of memory + swap (a positive integer) or -1 for "
                    f"unlimited swap, got {raw!r}")


def _caps_label(where: str, labels: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = labels.get(name, "")
    try:
        return task_privileges.normalize_all(w for w in raw.split(",") if w.strip())
    except task_privileges.PrivilegeError as e:
        raise TaskError(_label_field(name), f"{where}label {name}: {e} (give capability "
                        "names, comma-separated, with or without CAP_, or ALL)") from None


def _ulimits_label(where: str, labels: Mapping[str, str]) -> tuple[Ulimit, ...]:
    try:
        return ulimits.parse_list(labels.get(d.ULIMITS_LABEL, ""))
    except ulimits.UlimitError as e:
        raise TaskError(_label_field(d.ULIMITS_LABEL), f"{where}label {d.ULIMITS_LABEL}: {e} "
                        "(give name=soft[:hard], comma-separated)") from None


def _bool_label(where: str, labels: Mapping[str, str], name: str,
                default: bool = False) -> bool:
    raw = labels.get(name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in d.TRUE_WORDS:
        return True
    if word in d.FALSE_WORDS:
        return False
    if word == "":
        return default
    raise TaskError(_label_field(name), f"{where}label {name} must be true or false "
                    f"({'/'.join(d.TRUE_WORDS)} or {'/'.join(d.FALSE_WORDS)}), got {raw!r}")


# -- health check ---------------------------------------------------------------


def check_health_check(task: common_pb2.TaskInfo) -> None:
    """Check the task's health_check (none is fine); raises HealthCheckError."""
    if not task.HasField("health_check"):
        return
    hc = task.health_check
    where = f"task {task.task_id!r}"
    kind = hc.WhichOneof("check")
    if kind is None:
        raise HealthCheckError("health_check", f"{where}: health_check sets none of command, "
                               "http, tcp")
    if kind == "command":
        _check_argv(where, "health_check.command", hc.command.argv, hc.command.shell,
                    required=True, required_hint="", error=HealthCheckError)
    else:
        port = getattr(hc, kind).port
        if not 0 < port <= d.MAX_PORT:
            raise HealthCheckError(f"health_check.{kind}.port", f"{where}: health_check."
                                   f"{kind}.port must be 1 to {d.MAX_PORT}, got {port}")
    if kind == "http":
        if hc.http.scheme and hc.http.scheme not in d.HEALTH_HTTP_SCHEMES:
            raise HealthCheckError("health_check.http.scheme", f"{where}: health_check.http."
                                   f"scheme must be http or https, got {hc.http.scheme!r}")
        if hc.http.path and not hc.http.path.startswith("/"):
            raise HealthCheckError("health_check.http.path", f"{where}: health_check.http.path "
                                   f"must start with '/', got {hc.http.path!r}")
        if any(c.isspace() or not c.isprintable() for c in hc.http.path):
            raise HealthCheckError("health_check.http.path", f"{where}: health_check.http.path "
                                   f"{hc.http.path!r} holds a space or a control character "
                                   "(percent-encode it)")
    for name, zero in (("delay_seconds", "the default"), ("interval_seconds", "the default"),
                       ("timeout_seconds", "the default"),
                       ("grace_period_seconds", "no grace period")):
        value = getattr(hc, name)
        if not math.isfinite(value):
            raise HealthCheckError(f"health_check.{name}", f"{where}: health_check.{name} is "
                                   f"not a finite number ({value})")
        if value < 0:
            raise HealthCheckError(f"health_check.{name}", f"{where}: health_check.{name} is "
                                   f"negative ({value:g}); give seconds, or 0 for {zero}")
