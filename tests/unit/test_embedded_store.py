"""The embedded registry store: a key-value space that survives restarts and torn writes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from juggler.store.embedded import EmbeddedStore
from juggler.store.interface import StoreError


def run(coro):  # pytest-asyncio is not a dependency
    return asyncio.run(coro)


async def fill(store: EmbeddedStore) -> None:
    await store.put("frameworks/b", b"B")
    await store.put("frameworks/a", b"A")
    await store.put("agents/x", b"\x00\xff binary")
    await store.put("frameworks/a", b"A2")  # overwrite
    await store.put("frameworks/gone", b"G")
    await store.delete("frameworks/gone")


async def contents(store: EmbeddedStore) -> list[tuple[str, bytes]]:
    return await store.range("")


EXPECTED = [("agents/x", b"\x00\xff binary"), ("frameworks/a", b"A2"), ("frameworks/b", b"B")]


@pytest.mark.parametrize("on_disk", [False, True])
def test_put_get_delete_range(tmp_path: Path, on_disk: bool):
    async def main() -> None:
        store = EmbeddedStore(tmp_path if on_disk else None)
        await fill(store)
        assert await store.get("frameworks/a") == b"A2"
        assert await store.get("frameworks/gone") is None
        assert await store.get("missing") is None
        await store.delete("missing")  # deleting what is not there is no error
        assert await store.range("frameworks/") == [("frameworks/a", b"A2"),
                                                   ("frameworks/b", b"B")]
        assert await store.range("agents/") == [("agents/x", b"\x00\xff binary")]
        assert await store.range("nothing/") == []
        assert await contents(store) == EXPECTED
        await store.close()

    run(main())


def test_survives_reopening_the_directory(tmp_path: Path):
    async def write() -> None:
        store = EmbeddedStore(tmp_path)
        await fill(store)
        await store.close()

    async def read_and_write_more() -> None:
        store = EmbeddedStore(tmp_path)
        assert await contents(store) == EXPECTED
        await store.delete("frameworks/b")
        await store.put("agents/y", b"Y")
        await store.close()

    async def read_again() -> list[tuple[str, bytes]]:
        store = EmbeddedStore(tmp_path)
        try:
            return await contents(store)
        finally:
            await store.close()

    run(write())
    run(read_and_write_more())
    assert run(read_again()) == [("agents/x", b"\x00\xff binary"), ("agents/y", b"Y"),
                                 ("frameworks/a", b"A2")]


def test_writes_are_on_disk_before_the_call_returns(tmp_path: Path):
    async def main() -> None:
        store = EmbeddedStore(tmp_path)
        await store.put("k", b"v")
        # What a crash right now leaves on disk already holds it (no close(), no flush()).
        (tmp_path / "copy").mkdir()
        (tmp_path / "copy" / "registry.log").write_bytes((tmp_path / "registry.log").read_bytes())
        reopened = EmbeddedStore(tmp_path / "copy")
        assert await reopened.get("k") == b"v"
        await reopened.close()
        await store.close()

    run(main())


def test_a_torn_last_line_is_ignored_on_reopen(tmp_path: Path):
    async def write() -> None:
        store = EmbeddedStore(tmp_path)
        await fill(store)
        await store.close()

    run(write())
    log = tmp_path / "registry.log"
    with open(log, "a", encoding="utf-8") as f:  # the master died in the middle of a put
        f.write('{"op": "put", "k": "frameworks/c", "v": "Q')

    async def reopen() -> None:
        store = EmbeddedStore(tmp_path)
        assert await contents(store) == EXPECTED
        await store.put("frameworks/c", b"C")  # and the store goes on working
        await store.close()
        store = EmbeddedStore(tmp_path)
        assert await store.get("frameworks/c") == b"C"
        assert len(await contents(store)) == 4
        await store.close()

    run(reopen())


def test_a_corrupt_line_in_the_middle_is_an_error(tmp_path: Path):
    async def write() -> None:
        store = EmbeddedStore(tmp_path)
        await fill(store)
        await store.close()

    run(write())
    log = tmp_path / "registry.log"
    lines = log.read_text(encoding="utf-8").splitlines(keepends=True)
    assert len(lines) > 2
    lines.insert(1, '{"op": "put", "k": "fr\x00garbage\n')
    log.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(StoreError, match=r"registry.log:2: corrupt"):
        EmbeddedStore(tmp_path)
    # Nothing was compacted away: the evidence is still there for a person to look at.
    assert log.read_text(encoding="utf-8") == "".join(lines)
