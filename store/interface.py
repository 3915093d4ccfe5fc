"""What the master needs of a store: a small ordered key-value space."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol


class StoreError(Exception):
    """The store refused or could not complete an operation."""


class NotRecorded(StoreError):
    """A service's decision was not (or may not have been) written to its
    store, so the service stopped acting on it (the apps service: it starts
    over from the store)."""


@dataclass(frozen=True)
class Put:
    key: str
    value: bytes


@dataclass(frozen=True)
class Delete:
    key: str


Op = Put | Delete


class Store(Protocol):
    """Writes may carry a `fence` (the leader's election key, store/etcd.py):
    the write then fails with NotLeader unless that key still holds. The
    embedded store serves a single master and has nothing to fence."""

    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes, fence: Any = None) -> None: ...

    async def delete(self, key: str, fence: Any = None) -> None: ...

    async def batch(self, ops: Iterable[Op], fence: Any = None) -> None:
        """Apply every op or none."""
        ...

    async def range(self, prefix: str) -> list[tuple[str, bytes]]:
        """Every (key, value) whose key starts with `prefix`, sorted by key."""
        ...

    async def close(self) -> None: ...
