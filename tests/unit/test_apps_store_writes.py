"""How the apps service's shell writes its decisions (apps/service.py
_carry_out): a decision over more keys than an etcd transaction takes goes in
several fenced transactions; a failed write ends the instance's acting (it
starts over from the store) and nothing more is written or sent. The store is
an in-memory stand-in with etcd's limit on keys per transaction (etcd itself:
tests/integration/test_apps_store_failure.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from juggler.apps.commands import Persist
from juggler.apps.service import AppsConfig, AppsService
from juggler.store.interface import NotRecorded, StoreError


class LimitedStore:
    """Batches of at most `max_txn_ops` keys, as EtcdStore's; `fail` raises."""

    def __init__(self, max_txn_ops: int) -> None:
        self.max_txn_ops = max_txn_ops
        self.batches: list[list[str]] = []
        self.fail: Exception | None = None

    async def batch(self, ops: Any, fence: object = None) -> None:
        ops = list(ops)
        if self.fail is not None:
            raise self.fail
        if len(ops) > self.max_txn_ops:
            raise StoreError(f"a batch of {len(ops)} keys exceeds --max-txn-ops")
        self.batches.append([op.key for op in ops])


def service(store: LimitedStore) -> AppsService:
    s = AppsService(AppsConfig(master="127.0.0.1:1"), store)
    s.acting = True
    return s


def test_a_decision_over_more_keys_than_a_transaction_takes_is_split() -> None:
    store = LimitedStore(max_txn_ops=3)
    s = service(store)
    writes = {f"instances/i{n}": {"n": n} for n in range(7)}
    asyncio.run(s._carry_out([Persist(writes)]))
    assert [len(b) for b in store.batches] == [3, 3, 1]
    assert sorted(k for b in store.batches for k in b) == sorted(writes)
    assert s.acting and not s.lost.is_set()


@pytest.mark.parametrize("error", [StoreError("etcd unavailable"), OSError(28, "No space")])
def test_a_failed_write_ends_acting_and_nothing_more_is_written(error: Exception) -> None:
    store = LimitedStore(max_txn_ops=128)
    s = service(store)
    store.fail = error
    with pytest.raises(NotRecorded):
        asyncio.run(s._carry_out([Persist({"containers/x": None})]))
    assert not s.acting and s.lost.is_set()
    store.fail = None
    with pytest.raises(NotRecorded):   # a decision made after it: not written either
        asyncio.run(s._carry_out([Persist({"containers/y": None})]))
    assert store.batches == []


class OrderedFramework:
    """A stand-in for the SDK's Framework that records when each call
    reached "the master"; a Decline takes a while to get there."""

    def __init__(self) -> None:
        self.reached: list[str] = []

    async def decline(self, offer_ids: list[str], refuse_seconds: float) -> None:
        await asyncio.sleep(0.05)
        self.reached.append(f"decline {refuse_seconds:g}")

    async def revive(self) -> None:
        self.reached.append("revive")

    async def suppress(self) -> None:
        self.reached.append("suppress")


def test_a_revive_reaches_the_master_after_the_declines_of_its_decision() -> None:
    """A Decline (refusing an agent for REFUSE_IDLE) and a Revive in one
    decision: the Revive, which clears refusal filters, must not overtake the
    Decline, or the filter it should have cleared stays for 120 s."""
    from juggler.apps.commands import Decline, Revive, Suppress
    from juggler.apps.state import REFUSE_IDLE

    s = service(LimitedStore(max_txn_ops=128))
    fw = OrderedFramework()
    s.framework = fw  # type: ignore[assignment]
    asyncio.run(s._carry_out([Suppress(), Decline(["o1"], REFUSE_IDLE), Revive()]))
    assert fw.reached == ["decline 120", "suppress", "revive"]
    assert s.state.suppressed is False
