"""Docker's `run`/`create` flags about the container's process: `--init`,
`--security-opt`, `--cap-add`, `--cap-drop`, `--ulimit`.

With the containers service they go into the create body as the docker CLI
sends them (`host_config`: HostConfig.Init, SecurityOpt, CapAdd and CapDrop
normalized as docker/cli's EffectiveCapAddCapDrop does, Ulimits) and the
service checks them; as a task (`juggler run` without the service) they
become the task's labels (`labels`), which the master checks on Accept.
Both raise ValueError (common/task_privileges.PrivilegeError,
common/ulimits.UlimitError) with Docker's words for what cannot be taken.
"""

from __future__ import annotations

import argparse
from typing import Any

from juggler.common import task_privileges, ulimits


def add_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--init", action="store_true",
                   help="run an init (tini) as pid 1 that passes signals on and reaps "
                        "orphaned processes")
    p.add_argument("--security-opt", action="append", default=[], metavar="OPTION",
                   help="security option (repeatable): no-new-privileges[=true|false] "
                        "(default off, as docker); seccomp=unconfined, apparmor=unconfined "
                        "and label=disable are what juggler does anyway; others are refused")
    p.add_argument("--cap-add", action="append", default=[], metavar="CAP",
                   help="add a Linux capability to Docker's default set (repeatable; "
                        "NET_ADMIN or CAP_NET_ADMIN, ALL)")
    p.add_argument("--cap-drop", action="append", default=[], metavar="CAP",
                   help="drop a Linux capability (repeatable; ALL)")
    p.add_argument("--ulimit", action="append", default=[], metavar="NAME=SOFT[:HARD]",
                   help="resource limit (repeatable), e.g. nofile=1024:2048; -1 is unlimited "
                        "(default: the agent's own limits)")


def _ulimits(args: argparse.Namespace) -> tuple[ulimits.Ulimit, ...]:
    return ulimits.merge(ulimits.parse(text) for text in args.ulimit)


def host_config(args: argparse.Namespace) -> dict[str, Any]:
    """HostConfig fields for the flags given (none for flags not given, as
    the docker CLI). Raises ValueError for a bad --ulimit or capability."""
    host: dict[str, Any] = {}
    if args.init:
        host["Init"] = True
    if args.security_opt:
        host["SecurityOpt"] = list(args.security_opt)
    if args.cap_add or args.cap_drop:
        add, drop = task_privileges.cli_lists(args.cap_add, args.cap_drop)
        if add:
            host["CapAdd"] = add
        if drop:
            host["CapDrop"] = drop
    limits = _ulimits(args)
    if limits:
        host["Ulimits"] = [u.docker() for u in limits]
    return host


def labels(args: argparse.Namespace) -> dict[str, str]:
    """The task labels for the flags given. Raises ValueError."""
    add, drop = task_privileges.cli_lists(args.cap_add, args.cap_drop)
    return task_privileges.task_labels(init=args.init, security_opt=args.security_opt,
                                       cap_add=add, cap_drop=drop, ulimit_list=_ulimits(args))
