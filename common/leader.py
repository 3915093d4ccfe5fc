"""Following the leading master from any client (agents, frameworks, the CLI).

Standby masters refuse calls with UNAVAILABLE and name the leader in the
trailing metadata key `juggler-leader` (master/leader_gate.py). A client that
lost its leader says which in `juggler-lost-leader` on its next calls, and a
standby that still knows that very master as the leader holds the call until
the election is over instead of refusing it at once.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import grpc

LEADER_KEY = "juggler-leader"
LOST_LEADER_KEY = "juggler-lost-leader"
# On a stream opened ahead of a failover to the master that would lead next: the
# leader it stands by for. Its first message is sent once that leader is lost.
STANDBY_FOR_KEY = "juggler-standby-for"


def parse_masters(spec: str | Sequence[str]) -> list[str]:
    """"host:port[,host:port...]" (or a list) → addresses, in order, without duplicates."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for item in (i.strip() for i in items):
        if item and item not in out:
            out.append(item)
    if not out:
        raise ValueError("no master address given")
    return out


def backoff(attempt: int, base: float = 0.1, cap: float = 10.0) -> float:
    """Exponential backoff with full jitter: many clients must not retry in lockstep."""
    return random.uniform(0, min(cap, base * 2 ** min(attempt, 16)))


def leader_of(error: grpc.aio.AioRpcError | grpc.RpcError) -> str | None:
    """The leader a standby master named in its refusal, if any."""
    try:
        if error.code() != grpc.StatusCode.UNAVAILABLE:  # type: ignore[union-attr]
            return None
        metadata = error.trailing_metadata() or ()  # type: ignore[union-attr]
    except Exception:
        return None
    for key, value in metadata:
        if key == LEADER_KEY and value:
            return str(value)
    return None


def from_standby(error: grpc.aio.AioRpcError | grpc.RpcError) -> bool:
    """Whether a refusal came from a live standby master (which may know no leader yet)."""
    try:
        metadata = error.trailing_metadata() or ()  # type: ignore[union-attr]
    except Exception:
        return False
    return any(key == LEADER_KEY for key, _ in metadata)


class LeaderFollower:
    """Which master to dial next, and after how long (pure; time is passed in).

    - A standby's refusal names the leader: go there at once, unless that very
      address failed within the last second (standbys name a dead leader until
      its lease runs out).
    - A live standby that knows no leader yet: ask the next master soon, with
      jitter (an election takes about a lease TTL).
    - Nobody answered: try the next master at once; after a whole round in
      which no master answered, back off exponentially with full jitter
      (thousands of agents must not reconnect in lockstep). A round in which a
      standby answered is not silent: an election is under way.
    - A session that got registered resets the backoff. When it broke without
      an answer (the leader's process or host is gone, or the network blinked),
      its master is the `lost` leader: `metadata()` names it on every call
      until the next registration, so that a standby that cannot reach it
      either holds the call until it knows a new leader (master/leader_gate.py)
      instead of naming the dead one; one that can sends the client back.
    """

    def __init__(self, masters: str | Sequence[str], *, cap: float = 5.0) -> None:
        self.masters = parse_masters(masters)
        self.cap = cap
        self._index = 0
        self._silent_rounds = 0
        self._answered_in_round = False
        self._failed_at: dict[str, float] = {}
        self.lost: str | None = None

    def session_broke(self, address: str, now: float) -> None:
        """Start from a registered session with `address` that broke without an
        answer (for a client that makes a new follower for each reconnection)."""
        if address not in self.masters:
            self.masters.append(address)
        self._index = self.masters.index(address)
        self.ended(now, answered=False, leader=None, registered=True)

    def follow_succession(self, masters: Sequence[str]) -> None:
        """The masters in the order they would lead, as the leader just registered
        with tells it (itself first): after losing it, dial the next one first,
        the standby the election will most likely pick. Masters known only from
        the configured list keep their order after those."""
        order = [m for m in dict.fromkeys(masters) if m]
        if not order:
            return
        current = self.address
        self.masters = order + [m for m in self.masters if m not in order]
        self._index = self.masters.index(current) if current in self.masters else 0

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Metadata for the next call: the leader this client lost, if any."""
        return ((LOST_LEADER_KEY, self.lost),) if self.lost else ()

    @property
    def address(self) -> str:
        return self.masters[self._index % len(self.masters)]

    def successor(self) -> str | None:
        """The master dialled first if the current one is lost (None: there is no other)."""
        if len(self.masters) < 2:
            return None
        return self.masters[(self._index + 1) % len(self.masters)]

    def ended(self, now: float, *, answered: bool, leader: str | None,
              registered: bool) -> float:
        """The current session ended; returns the delay before dialling `address`."""
        address = self.address
        if registered:
            self._silent_rounds = 0
            self.lost = None if answered else address
        if answered:
            self._answered_in_round = True
        else:
            self._failed_at[address] = now
        if leader and leader != address and now - self._failed_at.get(leader, -1e9) > 1.0:
            if leader not in self.masters:
                self.masters.append(leader)
            self._index = self.masters.index(leader)
            return 0.0
        self._index += 1
        wrapped = self._index % len(self.masters) == 0
        answered_in_round = self._answered_in_round
        if wrapped:
            self._answered_in_round = False
        if answered:
            return random.uniform(0.05, 0.3)
        if wrapped:
            if answered_in_round:
                self._silent_rounds = 0
                return random.uniform(0.05, 0.3)
            self._silent_rounds += 1
            return backoff(self._silent_rounds, base=0.1, cap=self.cap)
        return 0.0
