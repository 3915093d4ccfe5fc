"""Following the leading master from any client (agents, frameworks, the CLI).

Standby masters refuse calls with UNAVAILABLE and name the leader in the
trailing metadata key `juggler-leader` (master/leader_gate.py).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import grpc

LEADER_KEY = "juggler-leader"


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
