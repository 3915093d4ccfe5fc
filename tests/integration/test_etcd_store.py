"""The etcd registry store against a real etcd: CRUD, prefixes, failover, fencing, batching."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from pathlib import Path

import pytest

from juggler.store.etcd import (
    MAX_TXN_OPS,
    Batcher,
    Delete,
    EtcdClient,
    EtcdStore,
    Fence,
    NotLeader,
    Put,
    parse_endpoints,
)
from juggler.store.interface import StoreError
from juggler.testing.etcd_server import EtcdNotInstalled, EtcdServer, etcd_server


def run(coro):  # pytest-asyncio is not a dependency
    return asyncio.run(coro)


def cluster_prefix() -> str:
    return f"/juggler/test-{uuid.uuid4().hex[:8]}/registry/"


async def revision(client: EtcdClient) -> int:
    return (await client.call(lambda c: c.get_prefix(b"/nothing/"))).header.revision


def test_put_get_delete_range(etcd: EtcdServer):
    async def main() -> None:
        store = EtcdStore.connect(etcd.endpoint, cluster_prefix())
        await store.put("frameworks/b", b"B")
        await store.put("frameworks/a", b"A")
        await store.put("agents/x", b"\x00\xff binary")
        await store.put("frameworks/a", b"A2")
        await store.put("frameworks/gone", b"G")
        await store.delete("frameworks/gone")
        assert await store.get("frameworks/a") == b"A2"
        assert await store.get("frameworks/gone") is None
        assert await store.get("missing") is None
        await store.delete("missing")  # deleting what is not there is no error
        assert await store.range("frameworks/") == [("frameworks/a", b"A2"),
                                                   ("frameworks/b", b"B")]
        assert await store.range("agents/") == [("agents/x", b"\x00\xff binary")]
        assert await store.range("nothing/") == []
        assert await store.range("") == [("agents/x", b"\x00\xff binary"),
                                         ("frameworks/a", b"A2"), ("frameworks/b", b"B")]
        await store.close()

    run(main())


def test_clusters_with_different_prefixes_do_not_see_each_other(etcd: EtcdServer):
    async def main() -> None:
        client = EtcdClient(etcd.endpoint)
        one, two = EtcdStore(client, cluster_prefix()), EtcdStore(client, cluster_prefix())
        await one.put("agents/a", b"1")
        await two.put("agents/b", b"2")
        assert await one.range("") == [("agents/a", b"1")]
        assert await two.range("") == [("agents/b", b"2")]
        assert await one.get("agents/b") is None
        await two.delete("agents/a")
        assert await one.get("agents/a") == b"1"
        await client.close()

    run(main())


def test_endpoints_are_parsed_and_checked():
    assert [str(e) for e in parse_endpoints("http://127.0.0.1:2379, https://etcd-1:2380,h:1")] \
        == ["http://127.0.0.1:2379", "https://etcd-1:2380", "http://h:1"]
    with pytest.raises(ValueError, match="bad etcd endpoint"):
        parse_endpoints("ftp://x:1")
    with pytest.raises(ValueError, match="no etcd endpoint"):
        parse_endpoints(" , ")


def refusing_port(stack: contextlib.ExitStack) -> int:
    """A loopback port bound and not listening, until `stack` closes: connections
    are refused, and no other process (another suite's etcd) can take it."""
    s = stack.enter_context(socket.socket())
    s.bind(("127.0.0.1", 0))
    return int(s.getsockname()[1])


def test_fails_over_to_the_next_endpoint_and_says_when_none_answers(etcd: EtcdServer):
    async def main(dead: str, also_dead: str) -> None:
        store = EtcdStore.connect(f"{dead},{etcd.endpoint}", cluster_prefix(), timeout=2.0)
        await store.put("k", b"v")
        assert await store.get("k") == b"v"
        assert str(store.client.endpoint) == etcd.endpoint  # it stays where it succeeded
        await store.close()

        nowhere = EtcdStore.connect(f"{dead},{also_dead}", cluster_prefix(), timeout=2.0)
        started = time.monotonic()
        with pytest.raises(StoreError, match=r"etcd unavailable: http://127\.0\.0\.1"):
            await nowhere.get("k")
        assert time.monotonic() - started < 5
        await nowhere.close()

    with contextlib.ExitStack() as stack:
        run(main(f"http://127.0.0.1:{refusing_port(stack)}",
                 f"http://127.0.0.1:{refusing_port(stack)}"))


def test_speaks_tls_with_a_client_certificate(tmp_path: Path):
    async def main(server: EtcdServer) -> None:
        assert server.tls is not None and server.endpoint.startswith("https://")
        store = EtcdStore.connect(server.endpoint, cluster_prefix(), ca_cert=server.tls.ca_cert,
                                  cert=server.tls.cert, key=server.tls.key)
        await store.put("agents/a", b"1")
        assert await store.range("") == [("agents/a", b"1")]
        await store.close()
        # Without the client certificate etcd refuses the handshake.
        anonymous = EtcdStore.connect(server.endpoint, cluster_prefix(),
                                      ca_cert=server.tls.ca_cert, timeout=2.0)
        with pytest.raises(StoreError):
            await anonymous.get("agents/a")
        await anonymous.close()

    try:
        with etcd_server(tmp_path, tls=True) as server:
            run(main(server))
    except EtcdNotInstalled as e:
        pytest.skip(str(e))


def test_fenced_writes_fail_once_the_fence_key_is_gone(etcd: EtcdServer):
    async def main() -> None:
        client = EtcdClient(etcd.endpoint)
        store = EtcdStore(client, cluster_prefix())
        leader_key = f"/juggler/test-{uuid.uuid4().hex[:8]}/election/1".encode()
        await client.call(lambda c: c.put(leader_key, b"master-1:5050"))
        created = (await client.call(lambda c: c.get(leader_key))).create_revision
        fence = Fence(leader_key, created)

        await store.put("agents/a", b"1", fence=fence)
        await store.batch([Put("agents/b", b"2"), Put("agents/c", b"3"), Delete("agents/a")],
                          fence=fence)
        assert await store.range("") == [("agents/b", b"2"), ("agents/c", b"3")]

        # The leader key re-created (a new term): the old fence no longer holds.
        await client.call(lambda c: c.delete(leader_key))
        await client.call(lambda c: c.put(leader_key, b"master-2:5050"))
        with pytest.raises(NotLeader, match="re-created at revision"):
            await store.put("agents/b", b"late", fence=fence)
        await client.call(lambda c: c.delete(leader_key))
        with pytest.raises(NotLeader, match="no longer exists"):
            await store.batch([Put("agents/d", b"4"), Delete("agents/c")], fence=fence)
        with pytest.raises(NotLeader):
            await store.delete("agents/b", fence=fence)
        # Nothing of the refused writes was applied.
        assert await store.range("") == [("agents/b", b"2"), ("agents/c", b"3")]
        await client.close()

    run(main())


def test_a_batch_is_one_transaction_and_keeps_the_last_op_per_key(etcd: EtcdServer):
    async def main() -> None:
        client = EtcdClient(etcd.endpoint)
        store = EtcdStore(client, cluster_prefix())
        before = await revision(client)
        await store.batch([Put("a", b"1"), Put("b", b"1"), Put("a", b"2"), Delete("b")])
        assert await revision(client) == before + 1  # one txn = one revision
        assert await store.range("") == [("a", b"2")]
        with pytest.raises(StoreError, match="max-txn-ops"):
            await store.batch([Put(f"k{i}", b"") for i in range(MAX_TXN_OPS + 1)])
        await client.close()

    run(main())


def test_batcher_turns_500_concurrent_puts_into_a_handful_of_transactions(etcd: EtcdServer):
    async def main() -> None:
        client = EtcdClient(etcd.endpoint)
        store = EtcdStore(client, cluster_prefix())
        batcher = Batcher(store)
        before = await revision(client)
        await asyncio.gather(*(batcher.put(f"agents/{i:04}", f"agent {i}".encode())
                               for i in range(500)))
        txns = await revision(client) - before  # every txn with writes is one etcd revision
        assert txns == batcher.txns
        assert -(-500 // MAX_TXN_OPS) <= txns <= 8, txns
        stored = await store.range("agents/")
        assert len(stored) == 500
        assert stored[123] == ("agents/0123", b"agent 123")

        # A burst arriving while a txn is in flight rides together in the next ones.
        first = asyncio.create_task(batcher.put("agents/first", b""))
        await asyncio.sleep(0)
        await asyncio.gather(first, *(batcher.delete(f"agents/{i:04}") for i in range(200)))
        assert batcher.txns - txns <= 4
        assert len(await store.range("agents/")) == 301
        await batcher.close()
        await client.close()

    run(main())


def test_a_deposed_leaders_batched_writes_all_fail(etcd: EtcdServer):
    async def main() -> None:
        client = EtcdClient(etcd.endpoint)
        store = EtcdStore(client, cluster_prefix())
        batcher = Batcher(store, Fence(b"/juggler/no-such-leader", 7))
        results = await asyncio.gather(*(batcher.put(f"f/{i}", b"x") for i in range(50)),
                                       return_exceptions=True)
        assert all(isinstance(r, NotLeader) for r in results)
        assert await store.range("") == []
        await batcher.close()
        await client.close()

    run(main())
