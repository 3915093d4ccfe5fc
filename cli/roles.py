"""`juggler roles`, `juggler weights`, `juggler quota`: roles' weights and quota limits.

As Mesos's operator endpoints for them (https://mesos.apache.org/documentation/latest/weights/
and https://mesos.apache.org/documentation/latest/quota/):

- a role's **weight** (default 1; a positive number) divides its dominant share when DRF
  orders the roles, so a role of weight 3 is offered about three times what a role of
  weight 1 is when both want more; `ROLE=1` restores the default;
- a role's **quota limit** caps what the role is offered: what its frameworks are offered
  plus what their tasks use never goes above it; names the limit leaves out are unlimited,
  a limit of 0 is a limit, and a lower limit takes back nothing already held.

Amounts are written as in `--resources`: "cpus:4;mem:8192" (cpus in cores, mem and disk in
MiB). Bad input exits 2 before the master is asked; a master that refuses (its message), or
no master, exits 1.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable

import grpc

from juggler.cli import address as addr
from juggler.cli import operator
from juggler.common import ids
from juggler.common.resources import ResourceError, Resources
from juggler.v1 import common_pb2, operator_pb2

DEFAULT_ROLE = "*"  # the master's role for frameworks that name none


class UsageError(ValueError):
    """Bad input on the command line (exit 2); the message says what to write."""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("roles", help="list roles: weights, quota limits, what each holds",
                       description="List the roles that have a framework, a weight or a "
                                   "quota: their weight, quota limit, what their tasks use "
                                   "(ALLOCATED) and what they are offered (OFFERED), in "
                                   "cpus (cores), mem and disk (MiB), and their frameworks.")
    p.add_argument("--master", default=None, help="master address (default: what `up` wrote)")
    p.set_defaults(func=roles_main)

    q = sub.add_parser("weights", help="list or set roles' weights",
                       description="Without arguments, list every role's weight. With "
                                   "ROLE=WEIGHT pairs, set them (a positive number; 1 is the "
                                   "default): DRF divides a role's dominant share by its "
                                   "weight, as Mesos's /weights.")
    q.add_argument("--master", default=None, help="master address")
    q.add_argument("weights", nargs="*", metavar="ROLE=WEIGHT", help="e.g. dev=3 ops=1")
    q.set_defaults(func=weights_main)

    r = sub.add_parser("quota", help="list, set or remove roles' quota limits",
                       description='Without arguments, list the roles\' quota limits. '
                                   'ROLE "cpus:4;mem:8192" sets ROLE\'s limit (cpus in cores, '
                                   'mem and disk in MiB; names left out are unlimited, 0 is a '
                                   'limit): the role is never offered more than that in all, '
                                   'offered plus in use. ROLE --remove lifts it. ROLE alone '
                                   'shows that role.')
    r.add_argument("--master", default=None, help="master address")
    r.add_argument("role", nargs="?", metavar="ROLE", help="the role")
    r.add_argument("limit", nargs="?", metavar="LIMIT", help='e.g. "cpus:4;mem:8192"')
    r.add_argument("--remove", action="store_true", help="remove the role's quota limit")
    r.set_defaults(func=quota_main)


# -- parsing (before anything is sent) ------------------------------------------------


def check_role(role: str) -> str:
    """`role`, if the master would take it as a role name ("*", or 1 to 200 of
    [A-Za-z0-9_.-] not starting with '.' or '-'); else UsageError."""
    if role == DEFAULT_ROLE:
        return role
    try:
        return ids.check("role", role)
    except ids.InvalidId as e:
        raise UsageError(str(e)) from None


def parse_weights(pairs: Iterable[str]) -> dict[str, float]:
    """["dev=3", "ops=0.5"] → {"dev": 3.0, "ops": 0.5}.

    UsageError for a pair without '=', a bad role name, a role given twice, or
    a weight that is not a finite number > 0 (NaN, inf, 0, negative)."""
    weights: dict[str, float] = {}
    for pair in pairs:
        role, sep, text = pair.partition("=")
        if not sep:
            raise UsageError(f"{pair!r} is not ROLE=WEIGHT (e.g. dev=3)")
        check_role(role)
        if role in weights:
            raise UsageError(f"role {role} is given twice")
        try:
            weight = float(text)
        except ValueError:
            raise UsageError(f"role {role}: weight {text!r} is not a number") from None
        if not (math.isfinite(weight) and weight > 0):
            raise UsageError(f"role {role}: weight {text!r} must be a positive number")
        weights[role] = weight
    return weights


def parse_limit(text: str) -> dict[str, float]:
    """A quota limit in the `--resources` syntax, "cpus:4;mem:8192" → {"cpus":
    4.0, "mem": 8192.0}: cpus in cores, mem and disk in MiB, zero amounts kept
    (unlike Resources.parse, which drops them: a limit of 0 is a limit).

    UsageError for an entry that is not NAME:AMOUNT, an unknown name, an amount
    that is not a finite number ≥ 0, a name given twice, or no entry at all."""
    amounts: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        try:
            Resources.parse(part)  # the name, the number, finite and >= 0
        except ResourceError as e:
            raise UsageError(f"quota {text!r}: {e}") from None
        name, _, value = part.partition(":")
        name = name.strip()
        if name in amounts:
            raise UsageError(f"quota {text!r}: {name} is given twice")
        amounts[name] = float(value)
    if not amounts:
        raise UsageError(f'quota {text!r} gives no amount (e.g. "cpus:4;mem:8192")')
    return amounts


# -- rendering ----------------------------------------------------------------------


def _number(x: float) -> str:
    """Amounts are exact to the thousandth: 0.5 → "0.5", 8192 → "8192"."""
    return f"{x:.3f}".rstrip("0").rstrip(".")


def amounts(resources: Iterable[common_pb2.Resource]) -> str:
    """Resources in the `--resources` syntax, zero amounts shown, ports as
    ranges ("ports:[31000-31002]"); "-" for none."""
    from juggler.common.ranges import Ranges

    return ";".join(f"{r.name}:{Ranges.from_proto(r.ranges)}" if r.name == "ports"
                    else f"{r.name}:{_number(r.scalar)}"
                    for r in sorted(resources, key=lambda r: r.name)) or "-"


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def render_roles(roles: Iterable[operator_pb2.RoleView]) -> str:
    """One row a role: weight, quota limit, what its tasks use, what it is
    offered (cpus in cores, mem and disk in MiB), its frameworks' ids."""
    rows = [("ROLE", "WEIGHT", "QUOTA", "ALLOCATED", "OFFERED", "FRAMEWORKS")]
    rows += [(r.role, f"{r.weight:g}", amounts(r.quota), amounts(r.allocated),
              amounts(r.offered), ",".join(r.frameworks) or "-")
             for r in sorted(roles, key=lambda r: r.role)]
    return _table(rows)


def render_weights(roles: Iterable[operator_pb2.RoleView]) -> str:
    return _table([("ROLE", "WEIGHT"),
                   *((r.role, f"{r.weight:g}") for r in sorted(roles, key=lambda r: r.role))])


def render_quota(roles: Iterable[operator_pb2.RoleView]) -> str:
    rows = [("ROLE", "QUOTA", "ALLOCATED", "OFFERED")]
    rows += [(r.role, amounts(r.quota), amounts(r.allocated), amounts(r.offered))
             for r in sorted(roles, key=lambda r: r.role)]
    return _table(rows)


# -- commands -----------------------------------------------------------------------


def _roles(master: str) -> list[operator_pb2.RoleView]:
    return list(operator.call(master, "GetRoles", operator_pb2.GetRolesRequest()).roles)


def _failed(command: str, e: Exception) -> int:
    """No master, or the master refused (INVALID_ARGUMENT: its message): exit 1."""
    detail = e.details() if isinstance(e, grpc.RpcError) else str(e)  # type: ignore[attr-defined]
    print(f"juggler {command}: {detail}", file=sys.stderr)
    return 1


def roles_main(args: argparse.Namespace) -> int:
    try:
        print(render_roles(_roles(addr.resolve(args.master))))
    except (operator.NoMaster, grpc.RpcError) as e:
        return _failed("roles", e)
    return 0


def weights_main(args: argparse.Namespace) -> int:
    try:
        weights = parse_weights(args.weights)
    except UsageError as e:
        print(f"juggler weights: {e}", file=sys.stderr)
        return 2
    master = addr.resolve(args.master)
    try:
        if not weights:
            print(render_weights(_roles(master)))
            return 0
        operator.call(master, "UpdateWeights",
                      operator_pb2.UpdateWeightsRequest(weights=weights))
    except (operator.NoMaster, grpc.RpcError) as e:
        return _failed("weights", e)
    for role in sorted(weights):
        print(f"{role}: weight {weights[role]:g}")
    return 0


def quota_main(args: argparse.Namespace) -> int:
    try:
        if args.role is not None:
            check_role(args.role)
        if args.remove and (args.role is None or args.limit is not None):
            raise UsageError("--remove takes a ROLE and no limit: juggler quota ROLE --remove")
        limit = parse_limit(args.limit) if args.limit is not None else None
    except UsageError as e:
        print(f"juggler quota: {e}", file=sys.stderr)
        return 2
    master = addr.resolve(args.master)
    try:
        if limit is None and not args.remove:
            roles = _roles(master)
            shown = ([r for r in roles if r.role == args.role] if args.role is not None
                     else [r for r in roles if r.quota])
            print(render_quota(shown))
            return 0
        request = operator_pb2.UpdateQuotaRequest(role=args.role, remove=args.remove)
        request.limit.extend(common_pb2.Resource(name=n, scalar=v)
                             for n, v in sorted((limit or {}).items()))
        operator.call(master, "UpdateQuota", request)
    except (operator.NoMaster, grpc.RpcError) as e:
        return _failed("quota", e)
    print(f"{args.role}: quota removed" if args.remove
          else f"{args.role}: quota {amounts(request.limit)}")
    return 0
