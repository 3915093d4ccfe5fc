"""What a task's processes may do, as Docker's flags say it: capabilities
(`--cap-add`, `--cap-drop`) and security options (`--security-opt`). Pure, no
I/O: the task check (common/task_check.py), the container spec
(container/spec.py), the CLI and the Docker API all read the same rules.

Capability names are capability.h's without the `CAP_` prefix, as
container/capabilities.py applies them. A task starts from Docker's default
set (`DEFAULT`, moby's oci/caps/defaults.go) and changes it as moby's
`TweakCapabilities` (daemon/pkg/oci/caps/utils.go) does:

    --cap-add ALL        every capability but those dropped (even with --cap-drop ALL)
    --cap-drop ALL       only the added ones
    otherwise            DEFAULT − dropped + added

Names are taken in any case, with or without `CAP_` (moby's
NormalizeLegacyCapabilities); an unknown one is refused with moby's message.

Security options: only no_new_privs is a task option (`no-new-privileges`,
off unless asked, as Docker). Of Docker's other options, those that ask for
what every juggler task already is are accepted and change nothing; the rest
are refused, saying why (`parse_security_opts`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from juggler.common import task_defaults as d
from juggler.common import ulimits
from juggler.common.ulimits import Ulimit

ALL = "ALL"

# capability.h numbering.
NUMBERS: dict[str, int] = {
    "CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4,
    "KILL": 5, "SETGID": 6, "SETUID": 7, "SETPCAP": 8, "LINUX_IMMUTABLE": 9,
    "NET_BIND_SERVICE": 10, "NET_BROADCAST": 11, "NET_ADMIN": 12, "NET_RAW": 13,
    "IPC_LOCK": 14, "IPC_OWNER": 15, "SYS_MODULE": 16, "SYS_RAWIO": 17, "SYS_CHROOT": 18,
    "SYS_PTRACE": 19, "SYS_PACCT": 20, "SYS_ADMIN": 21, "SYS_BOOT": 22, "SYS_NICE": 23,
    "SYS_RESOURCE": 24, "SYS_TIME": 25, "SYS_TTY_CONFIG": 26, "MKNOD": 27, "LEASE": 28,
    "AUDIT_WRITE": 29, "AUDIT_CONTROL": 30, "SETFCAP": 31, "MAC_OVERRIDE": 32,
    "MAC_ADMIN": 33, "SYSLOG": 34, "WAKE_ALARM": 35, "BLOCK_SUSPEND": 36, "AUDIT_READ": 37,
    "PERFMON": 38, "BPF": 39, "CHECKPOINT_RESTORE": 40,
}

# Docker's default set (moby oci/caps/defaults.go), the bounding set of every task.
DEFAULT: frozenset[str] = frozenset({
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
    "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
})


class PrivilegeError(ValueError):
    """A capability or a security option juggler cannot take; str(): why."""


def normalize(name: str) -> str:
    """"CAP_NET_ADMIN" from "net_admin", "NET_ADMIN" or "cap_net_admin"; "ALL"
    stays "ALL". Raises PrivilegeError for a name capability.h does not have
    (moby's words: `unknown capability: "CAP_X"`)."""
    word = name.strip().upper()
    if word == ALL:
        return ALL
    if not word.startswith("CAP_"):
        word = "CAP_" + word
    if word.removeprefix("CAP_") not in NUMBERS:
        raise PrivilegeError(f'unknown capability: "{word}"')
    return word


def normalize_all(names: Iterable[str]) -> tuple[str, ...]:
    """Each name normalized, duplicates dropped, first order kept. Raises PrivilegeError."""
    out: list[str] = []
    for name in names:
        word = normalize(name)
        if word not in out:
            out.append(word)
    return tuple(out)


def effective(add: Iterable[str], drop: Iterable[str],
              basics: frozenset[str] = DEFAULT) -> frozenset[str]:
    """The capability set (names without CAP_) of a task with `--cap-add add`
    and `--cap-drop drop`, from `basics` (moby's TweakCapabilities; see the
    module docstring). Raises PrivilegeError for an unknown name."""
    adds = {n.removeprefix("CAP_") for n in normalize_all(add)}
    drops = {n.removeprefix("CAP_") for n in normalize_all(drop)}
    if ALL in adds:
        return frozenset(NUMBERS) - drops
    if ALL in drops:
        return frozenset(adds)
    return (basics - drops) | adds


def cli_lists(add: Iterable[str], drop: Iterable[str]) -> tuple[list[str], list[str]]:
    """What the docker CLI sends for `--cap-add`/`--cap-drop` (docker/cli's
    EffectiveCapAddCapDrop): names normalized to CAP_X, ALL alone when given,
    a capability both added and dropped only added, each list sorted.
    Raises PrivilegeError for an unknown name (the CLI refuses it early)."""
    adds, drops = set(normalize_all(add)), set(normalize_all(drop))
    if ALL in adds:
        adds = {ALL}
    if ALL in drops:
        drops = {ALL}
    return sorted(adds), sorted(drops - adds)


# -- --security-opt -------------------------------------------------------------------

# Go's strconv.ParseBool, which moby's parseSecurityOpt uses for "no-new-privileges=…".
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")

# Options that ask for what every juggler task already is: accepted, nothing to do.
_AS_JUGGLER_IS = {
    "seccomp": ("unconfined",),    # juggler applies no seccomp filter
    "apparmor": ("unconfined",),   # nor an AppArmor profile
    "label": ("disable",),         # nor SELinux labels
}
_REFUSED = {
    "seccomp": "juggler applies no seccomp filter (not Docker's default profile either), so "
               "it cannot apply a profile; only seccomp=unconfined is accepted",
    "apparmor": "juggler applies no AppArmor profile; only apparmor=unconfined is accepted",
    "label": "juggler applies no SELinux labels; only label=disable is accepted",
    "systempaths": "juggler always masks /proc and /sys paths as Docker's defaults; it cannot "
                   "unmask them",
    "writable-cgroups": "juggler mounts no cgroup filesystem in a container",
}


@dataclass(frozen=True)
class SecurityOpts:
    no_new_privileges: bool = False


def parse_security_opts(options: Iterable[str]) -> SecurityOpts:
    """Docker's `--security-opt` values (HostConfig.SecurityOpt), as moby's
    parseSecurityOpt reads them: "no-new-privileges" or
    "no-new-privileges=<bool>" (also with ':' — Docker's deprecated separator;
    <bool> as Go's ParseBool; the last one wins); "seccomp=unconfined",
    "apparmor=unconfined", "label=disable" and "disable" change nothing (a
    juggler task has no seccomp filter, AppArmor profile or SELinux label).
    Raises PrivilegeError naming the option for everything else: another
    seccomp profile, AppArmor profile or SELinux label, "systempaths=unconfined",
    "writable-cgroups", a bad boolean, an unknown option (moby's message
    `invalid --security-opt 2: "x"`)."""
    nnp = False
    for opt in options:
        if opt == "no-new-privileges":
            nnp = True
            continue
        if opt in ("disable", "label=disable", "label:disable"):
            continue
        sep = "=" if "=" in opt else ":" if ":" in opt else ""
        if not sep:
            if opt in _REFUSED:
                raise PrivilegeError(f"--security-opt {opt}: {_REFUSED[opt]}")
            raise PrivilegeError(f'invalid --security-opt 1: "{opt}"')
        key, _, value = opt.partition(sep)
        if key == "no-new-privileges":
            if value not in _TRUE + _FALSE:
                raise PrivilegeError(f'invalid --security-opt 2: "{opt}"')
            nnp = value in _TRUE
        elif value in _AS_JUGGLER_IS.get(key, ()):
            continue
        elif key in _REFUSED:
            raise PrivilegeError(f"--security-opt {opt}: {_REFUSED[key]}")
        else:
            raise PrivilegeError(f'invalid --security-opt 2: "{opt}"')
    return SecurityOpts(no_new_privileges=nnp)


# -- Docker's flags as a task's labels -------------------------------------------------


def task_labels(*, init: bool = False, security_opt: Iterable[str] = (),
                cap_add: Iterable[str] = (), cap_drop: Iterable[str] = (),
                ulimit_list: Iterable[Ulimit] = ()) -> dict[str, str]:
    """The juggler.* labels (common/task_defaults.py) that carry Docker's
    --init, --security-opt, --cap-add, --cap-drop and --ulimit to the agent;
    only those that differ from the default are given. Raises PrivilegeError
    for a security option or capability name juggler cannot take."""
    labels: dict[str, str] = {}
    if init:
        labels[d.INIT_LABEL] = "true"
    if parse_security_opts(security_opt).no_new_privileges:
        labels[d.NO_NEW_PRIVILEGES_LABEL] = "true"
    for name, caps in ((d.CAP_ADD_LABEL, cap_add), (d.CAP_DROP_LABEL, cap_drop)):
        words = normalize_all(caps)
        if words:
            labels[name] = ",".join(words)
    limits = ulimits.merge(ulimit_list)
    if limits:
        labels[d.ULIMITS_LABEL] = ulimits.label_value(limits)
    return labels
