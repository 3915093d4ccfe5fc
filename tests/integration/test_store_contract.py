"""One contract, two stores: the embedded store (one master) and etcd (several)
must behave the same for everything the master does with its registry."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from juggler.store.embedded import EmbeddedStore
from juggler.store.etcd import EtcdStore
from juggler.store.interface import Delete, Put
from juggler.testing.etcd_server import EtcdNotInstalled, EtcdServer, etcd_server

Opener = Callable[[], Awaitable[object]]


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    try:
        with etcd_server(tmp_path_factory.mktemp("etcd")) as server:
            yield server
    except EtcdNotInstalled as e:
        pytest.skip(str(e))


@pytest.fixture(params=["embedded", "etcd"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens the same store again each time it is called (to test what persists)."""
    if request.param == "embedded":
        async def embedded() -> object:
            return EmbeddedStore(tmp_path / "registry")
        return embedded
    server: EtcdServer = request.getfixturevalue("etcd")
    prefix = f"/contract/{uuid.uuid4().hex}/"

    async def etcd_store() -> object:
        return EtcdStore.connect(server.endpoint, prefix)
    return etcd_store


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), 60))


def test_put_get_delete_range(open_store: Opener) -> None:
    async def body() -> None:
        store = await open_store()
        assert await store.get("agents/a1") is None  # type: ignore[attr-defined]
        await store.put("agents/a2", b"two")  # type: ignore[attr-defined]
        await store.put("agents/a1", b"one")  # type: ignore[attr-defined]
        await store.put("frameworks/f1", b"fw")  # type: ignore[attr-defined]
        await store.put("agents/a1", b"one again")  # type: ignore[attr-defined]
        assert await store.get("agents/a1") == b"one again"  # type: ignore[attr-defined]
        assert await store.range("agents/") == [  # type: ignore[attr-defined]
            ("agents/a1", b"one again"), ("agents/a2", b"two")]
        await store.delete("agents/a2")  # type: ignore[attr-defined]
        await store.delete("agents/never")  # type: ignore[attr-defined]
        assert await store.range("agents/") == [("agents/a1", b"one again")]  # type: ignore[attr-defined]
        assert await store.range("nothing/") == []  # type: ignore[attr-defined]
        await store.close()  # type: ignore[attr-defined]
    run(body)


def test_batch_applies_in_order_and_survives_reopening(open_store: Opener) -> None:
    async def body() -> None:
        store = await open_store()
        await store.batch([Put("k/1", b"a"), Put("k/2", b"b"), Delete("k/1"),  # type: ignore[attr-defined]
                           Put("k/3", b"c"), Put("k/3", b"c2")])
        await store.close()  # type: ignore[attr-defined]
        again = await open_store()
        assert await again.range("k/") == [("k/2", b"b"), ("k/3", b"c2")]  # type: ignore[attr-defined]
        await again.close()  # type: ignore[attr-defined]
    run(body)


def test_binary_values_round_trip(open_store: Opener) -> None:
    async def body() -> None:
        store = await open_store()
        blob = bytes(range(256)) * 64
        await store.put("blob", blob)  # type: ignore[attr-defined]
        assert await store.get("blob") == blob  # type: ignore[attr-defined]
        await store.close()  # type: ignore[attr-defined]
    run(body)
