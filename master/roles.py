"""Roles: the weights and quota limits operators set, kept in the registry
(roles/<role>, a RoleConfig) and applied to the allocator.

A collaborator of MasterState, pure like it. Weights follow Mesos's /weights:
a role's dominant share is divided by its weight when DRF orders roles, 1 by
default. Quota limits follow Mesos's quota limits: the role is never offered
more than the limit in all (offered plus in use); names the limit leaves out
are unlimited; a lower limit takes back nothing already held.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from juggler.common import ids
from juggler.common.resources import ResourceError, Resources
from juggler.master.allocator import Allocator
from juggler.master.commands import Allocate, CallError, Code, Command, Persist
from juggler.master.entries import DEFAULT_ROLE
from juggler.v1 import common_pb2, registry_pb2

DEFAULT_WEIGHT = 1.0


class RoleBook:
    """Roles' settings (`configs`, by role), applied to `allocator` as they
    change. Every update returns [Persist(roles/<role>), …, Allocate()]."""

    def __init__(self, allocator: Allocator) -> None:
        self.allocator = allocator
        self.configs: dict[str, registry_pb2.RoleConfig] = {}

    def weight(self, role: str) -> float:
        """The role's DRF weight (DEFAULT_WEIGHT when none was set)."""
        config = self.configs.get(role)
        return config.weight if config is not None and config.HasField("weight") \
            else DEFAULT_WEIGHT

    def quota(self, role: str) -> list[common_pb2.Resource]:
        """The role's quota limit (cpus in cores, mem and disk in MiB; zero
        amounts kept: a limit of 0 is a limit); [] for none."""
        config = self.configs.get(role)
        return list(config.quota) if config is not None else []

    def update_weights(self, weights: Mapping[str, float]) -> list[Command]:
        """Set each role's weight. CallError INVALID_ARGUMENT for an empty call,
        a bad role name or a weight that is not a positive finite number;
        nothing is applied then."""
        if not weights:
            raise CallError(Code.INVALID_ARGUMENT, "no weights given")
        for role, weight in weights.items():
            _check_role(role)
            if not (math.isfinite(weight) and weight > 0):
                raise CallError(Code.INVALID_ARGUMENT,
                                f"role {role}: weight {weight!r} must be a positive number")
        commands: list[Command] = []
        for role in sorted(weights):
            config = self._config(role)
            config.weight = float(weights[role])
            self.allocator.set_weight(role, config.weight)
            commands += self._persist(role)
        return [*commands, Allocate()]

    def update_quota(self, role: str, limit: Iterable[common_pb2.Resource],
                     remove: bool = False) -> list[Command]:
        """Set (or with `remove`, drop) the role's quota limit: amounts of cpus
        (cores), mem and disk (MiB). CallError INVALID_ARGUMENT for a bad role,
        an unknown or empty resource name, an amount that is not a number ≥ 0,
        a name given twice, or a limit given with `remove` (or neither)."""
        _check_role(role)
        limit = list(limit)
        if remove == bool(limit):
            raise CallError(Code.INVALID_ARGUMENT,
                            "give a quota limit, or remove the role's limit, not both")
        amounts: dict[str, float] = {}
        for r in limit:
            if r.name in amounts:
                raise CallError(Code.INVALID_ARGUMENT, f"quota: {r.name} is given twice")
            if 0 < r.scalar < 0.0005:
                raise CallError(Code.INVALID_ARGUMENT,
                                f"quota of role {role}: {r.name} {r.scalar:g} is below the "
                                "thousandth amounts are kept to (it would be a limit of 0)")
            amounts[r.name] = r.scalar
        try:
            # Checks the names and that each amount is a finite number >= 0 (a
            # zero amount is kept below: a limit of 0 is a limit).
            Resources(amounts)
        except ResourceError as e:
            raise CallError(Code.INVALID_ARGUMENT, f"quota of role {role}: {e}") from None
        config = self._config(role)
        del config.quota[:]
        if remove:
            self.allocator.set_quota_limit(role, None)
        else:
            config.quota.extend(common_pb2.Resource(name=k, scalar=v)
                                for k, v in sorted(amounts.items()))
            self.allocator.set_quota_limit(role, amounts)
        return [*self._persist(role), Allocate()]

    def recover(self, configs: Iterable[registry_pb2.RoleConfig]) -> None:
        """A new leader's roles, from the registry. A record the allocator
        refuses (written by a broken version) raises AllocatorError or
        ResourceError: the master stops rather than run with half its roles."""
        for config in configs:
            self.configs[config.role] = config
            if config.HasField("weight"):
                self.allocator.set_weight(config.role, config.weight)
            if config.quota:
                self.allocator.set_quota_limit(config.role,
                                               {r.name: r.scalar for r in config.quota})

    def _config(self, role: str) -> registry_pb2.RoleConfig:
        return self.configs.setdefault(role, registry_pb2.RoleConfig(role=role))

    def _persist(self, role: str) -> list[Command]:
        config = self.configs[role]
        if not config.HasField("weight") and not config.quota:
            del self.configs[role]
            return [Persist(f"roles/{role}", None)]
        return [Persist(f"roles/{role}", config.SerializeToString())]


def _check_role(role: str) -> None:
    if role == DEFAULT_ROLE:
        return
    try:
        ids.check("role", role)
    except ids.InvalidId as e:
        raise CallError(Code.INVALID_ARGUMENT, str(e)) from None
