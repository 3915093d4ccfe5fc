"""What the master needs of a store: a small ordered key-value space."""

from __future__ import annotations

from typing import Protocol


class StoreError(Exception):
    """The store refused or could not complete an operation."""


class Store(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def range(self, prefix: str) -> list[tuple[str, bytes]]:
        """Every (key, value) whose key starts with `prefix`, sorted by key."""
        ...

    async def close(self) -> None: ...
