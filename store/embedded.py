"""The embedded store: a single master's registry, kept in memory and in a file.

Every write is appended to `<dir>/registry.log` as one JSON line and flushed
before the call returns, so a restarted master finds what it wrote. The log is
compacted (rewritten from the live keys) when it is opened.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable
from pathlib import Path

from juggler.store.interface import Delete, Put, StoreError


class EmbeddedStore:
    def __init__(self, directory: str | Path | None = None) -> None:
        self._data: dict[str, bytes] = {}
        self._file = None
        self._path: Path | None = None
        if directory is not None:
            self._path = Path(directory) / "registry.log"
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._load()
            self._compact()
            self._file = open(self._path, "a", encoding="utf-8")  # noqa: SIM115

    @property
    def path(self) -> Path | None:
        """The registry file (None when kept in memory only)."""
        return self._path

    def _load(self) -> None:
        assert self._path is not None
        if not self._path.exists():
            return
        with open(self._path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    # A torn last line after a crash is expected; anything else is not.
                    if f.readline():
                        raise StoreError(f"{self._path}:{n}: corrupt registry entry") from None
                    break
                if entry["op"] == "put":
                    self._data[entry["k"]] = base64.b64decode(entry["v"])
                else:
                    self._data.pop(entry["k"], None)

    def _compact(self) -> None:
        assert self._path is not None
        tmp = self._path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for k, v in sorted(self._data.items()):
                f.write(json.dumps({"op": "put", "k": k, "v": base64.b64encode(v).decode()}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path)

    def _append(self, entry: dict[str, str]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(entry) + "\n")
            self._file.flush()

    async def get(self, key: str) -> bytes | None:
        return self._data.get(key)

    async def put(self, key: str, value: bytes, fence: object = None) -> None:
        self._append({"op": "put", "k": key, "v": base64.b64encode(value).decode()})
        self._data[key] = value

    async def delete(self, key: str, fence: object = None) -> None:
        if key in self._data:
            self._append({"op": "del", "k": key})
            del self._data[key]

    async def batch(self, ops: Iterable[Put | Delete], fence: object = None) -> None:
        """Apply `ops` in order, all at once. There is no election with one master,
        so `fence` is accepted and has nothing to check."""
        ops = list(ops)
        for op in ops:
            if isinstance(op, Put):
                self._append({"op": "put", "k": op.key, "v": base64.b64encode(op.value).decode()})
            else:
                self._append({"op": "del", "k": op.key})
        for op in ops:
            if isinstance(op, Put):
                self._data[op.key] = op.value
            else:
                self._data.pop(op.key, None)

    async def range(self, prefix: str) -> list[tuple[str, bytes]]:
        return sorted((k, v) for k, v in self._data.items() if k.startswith(prefix))

    async def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
