"""The etcd back-end of the registry store (design.md rule 6), on `aetcd`.

Several clusters share one etcd: every key of a store lives under its prefix
(`/juggler/<cluster>/registry/` by convention; the election uses a sibling
prefix, `/juggler/<cluster>/election/`, so a registry `range("")` never sees it).

Fencing: `put`, `delete` and `batch` take an optional `Fence`, the leader's
election key and its create revision. The write is then one transaction that
first compares the key's create revision with the fence's; a deposed leader's
key is gone (or re-created with another revision), so its late writes fail
with `NotLeader` and change nothing.

Batching: `Batcher` coalesces the writes issued while a transaction is in
flight (group commit) into the next transaction, up to etcd's `--max-txn-ops`
(128 by default) keys each, so a burst of registrations costs a handful of
round trips instead of one each.

Failover: `EtcdClient` holds one aetcd client per endpoint and moves to the
next endpoint when a call fails with UNAVAILABLE or times out. Every write here
is idempotent (put/delete of whole values), so retrying one whose reply was
lost is safe.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypeVar
from urllib.parse import urlsplit

import aetcd
import grpc
from aetcd import rpc
from aetcd import transactions as tx

from juggler.common import logs
from juggler.store.interface import Delete, Op, Put, StoreError

T = TypeVar("T")

# etcd's default --max-txn-ops: more operations in one txn are refused.
MAX_TXN_OPS = 128
# etcd's default --max-request-bytes is 1.5 MiB; keep a batch well under it.
MAX_TXN_BYTES = 1024 * 1024

# Errors after which the same call may succeed on another endpoint.
_RETRYABLE = (aetcd.ConnectionFailedError, aetcd.ConnectionTimeoutError, asyncio.TimeoutError)

log = logs.get("store.etcd")


class NotLeader(StoreError):
    """A fenced write found that its leader no longer holds the election key."""


class Fence(NamedTuple):
    """The leader's election key (full etcd key) and the revision that created it."""

    key: bytes
    create_revision: int


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    tls: bool

    def __str__(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"


def parse_endpoints(spec: str | Sequence[str]) -> list[Endpoint]:
    """`"http://a:2379,https://b:2379"` (or a list, or bare `host:port`) → endpoints."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    endpoints = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        url = urlsplit(item if "://" in item else f"http://{item}")
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"bad etcd endpoint {item!r}: expected http(s)://host:port")
        endpoints.append(Endpoint(url.hostname, url.port or 2379, url.scheme == "https"))
    if not endpoints:
        raise ValueError("no etcd endpoint given (expected http://host:port[,...])")
    return endpoints


class _Client(aetcd.Client):
    """aetcd.Client can only open plaintext channels; this one can also speak TLS."""

    def __init__(self, endpoint: Endpoint, credentials: grpc.ChannelCredentials | None,
                 **kwargs: object) -> None:
        super().__init__(host=endpoint.host, port=endpoint.port, **kwargs)  # type: ignore[arg-type]
        self._credentials = credentials

    async def connect(self) -> None:
        if self._credentials is None:
            return await super().connect()
        if self._connected.is_set():
            return None
        # Unlike the plaintext path, nothing here awaits: no other task can interleave.
        self.channel = grpc.aio.secure_channel(f"{self._host}:{self._port}", self._credentials,
                                               options=list(self._options.items()))
        self.kvstub = rpc.KVStub(self.channel)
        self.clusterstub = rpc.ClusterStub(self.channel)
        self.leasestub = rpc.LeaseStub(self.channel)
        self.maintenancestub = rpc.MaintenanceStub(self.channel)
        self._watcher = aetcd.Watcher(rpc.WatchStub(self.channel), timeout=self._timeout,
                                      metadata=self.metadata)
        self._connected.set()
        return None


class EtcdClient:
    """One logical connection to an etcd cluster, failing over between its endpoints.

    `timeout` bounds every call on one endpoint (a paused etcd otherwise hangs
    a call forever). TLS is used for `https://` endpoints or when `ca_cert` is
    given; `cert`/`key` add a client certificate.
    """

    def __init__(self, endpoints: str | Sequence[str], *, ca_cert: str | None = None,
                 cert: str | None = None, key: str | None = None,
                 timeout: float = 5.0) -> None:
        self.endpoints = parse_endpoints(endpoints)
        if (cert is None) != (key is None):
            raise ValueError("etcd client TLS needs both a certificate and its key")
        self.timeout = timeout
        credentials = None
        if ca_cert or cert or any(e.tls for e in self.endpoints):
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(ca_cert), private_key=_read(key),
                certificate_chain=_read(cert))
        # Registries of many agents exceed gRPC's default 4 MiB reply limit.
        options = {"grpc.max_receive_message_length": -1}
        self._clients = [_Client(e, credentials, options=options) for e in self.endpoints]
        self._current = 0

    @property
    def endpoint(self) -> Endpoint:
        """The endpoint calls go to now."""
        return self.endpoints[self._current]

    async def call(self, fn: Callable[[aetcd.Client], Awaitable[T]], *,
                   timeout: float | None = None) -> T:
        """Run `fn(client)` on the current endpoint, moving on to the next ones on failure."""
        errors = []
        for _ in range(len(self._clients)):
            index = self._current
            try:
                return await asyncio.wait_for(fn(self._clients[index]), timeout or self.timeout)
            except _RETRYABLE as e:
                errors.append(f"{self.endpoints[index]}: {_describe(e)}")
                if len(self._clients) > 1 and self._current == index:
                    self._current = (index + 1) % len(self._clients)
                    log.warning("etcd endpoint failed, trying the next",
                                failed=str(self.endpoints[index]), next=str(self.endpoint),
                                error=_describe(e))
            except aetcd.ClientError as e:
                raise StoreError(f"etcd at {self.endpoints[index]}: {_describe(e)}") from e
        raise StoreError("etcd unavailable: " + "; ".join(errors))

    async def close(self) -> None:
        for client in self._clients:
            await client.close()


class EtcdStore:
    """The Store protocol (store/interface.py) over etcd, under `prefix`."""

    def __init__(self, client: EtcdClient, prefix: str, *, max_txn_ops: int = MAX_TXN_OPS,
                 owns_client: bool = False) -> None:
        if not prefix.endswith("/"):
            raise ValueError(f"store prefix {prefix!r} must end with '/'")
        self.client = client
        self.prefix = prefix
        self.max_txn_ops = max_txn_ops
        self._owns_client = owns_client

    @classmethod
    def connect(cls, endpoints: str | Sequence[str], prefix: str, *, ca_cert: str | None = None,
                cert: str | None = None, key: str | None = None,
                timeout: float = 5.0) -> EtcdStore:
        """A store with its own client (closed with the store). No I/O until the first call."""
        client = EtcdClient(endpoints, ca_cert=ca_cert, cert=cert, key=key, timeout=timeout)
        return cls(client, prefix, owns_client=True)

    def _key(self, key: str) -> bytes:
        return (self.prefix + key).encode()

    async def get(self, key: str) -> bytes | None:
        kv = await self.client.call(lambda c: c.get(self._key(key)))
        return None if kv is None else bytes(kv.value)

    async def put(self, key: str, value: bytes, fence: Fence | None = None) -> None:
        if fence is None:
            await self.client.call(lambda c: c.put(self._key(key), value))
        else:
            await self.batch([Put(key, value)], fence)

    async def delete(self, key: str, fence: Fence | None = None) -> None:
        if fence is None:
            await self.client.call(lambda c: c.delete(self._key(key)))
        else:
            await self.batch([Delete(key)], fence)

    async def range(self, prefix: str) -> list[tuple[str, bytes]]:
        full = self._key(prefix)
        result = await self.client.call(lambda c: c.get_prefix(full, sort_order="ascend"))
        cut = len(self.prefix.encode())
        return [(bytes(kv.key)[cut:].decode(), bytes(kv.value)) for kv in result.kvs]

    async def batch(self, ops: Iterable[Op], fence: Fence | None = None) -> None:
        """Apply `ops` in one transaction: all or nothing, fenced if `fence` is given.

        etcd refuses two writes to one key in a txn, so only the last op on
        each key is kept (the result is the same as applying them in order).
        """
        last: dict[str, Op] = {}
        for op in ops:
            last.pop(op.key, None)
            last[op.key] = op
        if len(last) > self.max_txn_ops:
            raise StoreError(f"a batch of {len(last)} keys exceeds etcd's --max-txn-ops "
                             f"({self.max_txn_ops}): split it (Batcher does)")
        success = [tx.Put(self._key(op.key), op.value) if isinstance(op, Put)
                   else tx.Delete(self._key(op.key)) for op in last.values()]
        compare = [] if fence is None else [tx.Create(fence.key) == fence.create_revision]
        failure = [] if fence is None else [tx.Get(fence.key)]
        ok, responses = await self.client.call(
            lambda c: c.transaction(compare=compare, success=success, failure=failure))
        if not ok:
            assert fence is not None
            holder = responses[0] if responses else []
            now = (f"was re-created at revision {holder[0][1].create_revision}" if holder
                   else "no longer exists")
            raise NotLeader(f"not the leader: election key {fence.key.decode()!r} (created at "
                            f"revision {fence.create_revision}) {now}; write refused")

    async def close(self) -> None:
        if self._owns_client:
            await self.client.close()


class Batcher:
    """Coalesces writes into few transactions (group commit), all under one fence.

    Each `put`/`delete` returns once the transaction holding it committed, or
    raises what that transaction raised (`NotLeader` for every write of a
    deposed leader). Writes issued while a transaction is in flight, or within
    `window` seconds of the first of them, go together into the next one. A
    Batcher serves one leadership term: make a new one with the new fence.
    """

    def __init__(self, store: EtcdStore, fence: Fence | None = None, *,
                 max_ops: int | None = None, max_bytes: int = MAX_TXN_BYTES,
                 window: float = 0.0) -> None:
        self.store = store
        self.fence = fence
        self.max_ops = max_ops or store.max_txn_ops
        self.max_bytes = max_bytes
        self.window = window
        self.txns = 0  # transactions sent, for metrics and tests
        # key -> (last op on it, every caller waiting for it); insertion-ordered.
        self._pending: dict[str, tuple[Op, list[asyncio.Future[None]]]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def put(self, key: str, value: bytes) -> None:
        await self._submit(Put(key, value))

    async def delete(self, key: str) -> None:
        await self._submit(Delete(key))

    async def _submit(self, op: Op) -> None:
        if self._closed:
            raise StoreError("batcher is closed")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        _, waiters = self._pending.pop(op.key, (op, []))
        waiters.append(future)
        self._pending[op.key] = (op, waiters)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="etcd-batcher")
        self._wake.set()
        await future

    def _take(self) -> list[tuple[Op, list[asyncio.Future[None]]]]:
        taken, size = [], 0
        for key in list(self._pending):
            op, _ = self._pending[key]
            op_size = len(key) + len(self.store.prefix) + (
                len(op.value) if isinstance(op, Put) else 0)
            if taken and (len(taken) >= self.max_ops or size + op_size > self.max_bytes):
                break
            taken.append(self._pending.pop(key))
            size += op_size
        return taken

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            # Let every writer already scheduled enqueue before the first txn leaves.
            await asyncio.sleep(self.window)
            while self._pending:
                taken = self._take()
                self.txns += 1
                try:
                    await self.store.batch([op for op, _ in taken], self.fence)
                except Exception as e:
                    for _, waiters in taken:
                        for w in waiters:
                            if not w.done():
                                w.set_exception(e)
                else:
                    for _, waiters in taken:
                        for w in waiters:
                            if not w.done():
                                w.set_result(None)

    async def close(self, *, flush: bool = True) -> None:
        """Stop; with `flush`, after writing what is pending. A deposed leader's
        pending writes would be refused anyway: `flush=False` fails them at once."""
        self._closed = True
        if not flush:
            pending, self._pending = self._pending, {}
            for _, waiters in pending.values():
                for w in waiters:
                    if not w.done():
                        w.set_exception(NotLeader("the batcher was closed: no longer leading"))
        while self._pending:
            waiters = [w for _, ws in self._pending.values() for w in ws]
            await asyncio.gather(*waiters, return_exceptions=True)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


def _read(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as f:
        return f.read()


def _describe(e: BaseException) -> str:
    if isinstance(e, asyncio.TimeoutError):
        return "timed out"
    return str(e) or type(e).__name__
