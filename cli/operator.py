"""Operator API calls from the CLI, following the leading master."""

from __future__ import annotations

import time
from typing import Any

import grpc

from juggler.common import servers, tls
from juggler.common.leader import Dialling, find_leader_sync, leader_of, parse_masters
from juggler.v1 import operator_pb2_grpc


class NoMaster(Exception):
    def __init__(self, masters: list[str], detail: str) -> None:
        # A TLS mismatch (tls.explain) is not a missing cluster: its own words say what to do.
        hint = ("" if tls.is_tls_problem(detail)
                else " (is a cluster running? start one with `juggler up`)")
        super().__init__(f"cannot reach a leading master at {','.join(masters)}: {detail}{hint}")


# The access refusals (common/access.py): said in one line, naming the rule.
REFUSALS = ("PERMISSION_DENIED", "UNAUTHENTICATED")
# Seconds the CLI waits for the masters to say who leads (an election after
# the leader died or froze takes about a lease TTL, 5 s by default).
FIND_SECONDS = 8.0


class Refused(grpc.RpcError):
    """A master refused the call (PERMISSION_DENIED, UNAUTHENTICATED): still a
    grpc.RpcError (code(), details()), whose str is the master's one line
    ("permission denied: … (rule …)")."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def __str__(self) -> str:
        return self._details or self._code.name.lower().replace("_", " ")


def call(masters: str, method: str, request: Any, timeout: float = 10.0) -> Any:
    """Operator.<method>(request) on the leader. With several masters, each
    is asked who leads first (common/leader.py find_leader, for up to
    min(FIND_SECONDS, `timeout`) while an election is under way) and the
    leader is called first; then the others in order, going straight to a
    leader a standby names when it refuses. A master (other than the one
    found) whose connection is not set up within a second (frozen, or slow)
    is passed over, and called once more at the end with what is left of
    `timeout` (common/leader.py Dialling). Raises NoMaster when none
    answers, Refused for an access refusal, grpc.RpcError for any other
    error."""
    deadline = time.monotonic() + timeout
    candidates = parse_masters(masters)
    found = None
    if len(candidates) > 1:
        found = find_leader_sync(candidates, min(FIND_SECONDS, timeout))
    dialling = Dialling(candidates, found)
    detail = ""
    while (step := dialling.next()) is not None:
        address, check, again = step
        try:
            with servers.sync_channel(address) as channel:
                if check and not servers.sync_connects(channel):
                    detail = (f"no answer from {address} within {servers.CONNECT_SECONDS:g} s "
                              "(stopped or overloaded?)")
                    dialling.slow(address)
                    continue
                stub = operator_pb2_grpc.OperatorStub(channel)
                left = max(servers.CONNECT_SECONDS, deadline - time.monotonic())
                return getattr(stub, method)(request, timeout=left if again else timeout)
        except grpc.RpcError as e:
            if e.code().name in REFUSALS:  # type: ignore[attr-defined]
                raise Refused(e.code(), e.details() or "") from None  # type: ignore[attr-defined]
            if e.code() not in (grpc.StatusCode.UNAVAILABLE,  # type: ignore[attr-defined]
                                grpc.StatusCode.DEADLINE_EXCEEDED):
                raise
            detail = e.details() or e.code().name  # type: ignore[attr-defined]
            if e.code() == grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
                detail = tls.explain(address) or detail
            leader = leader_of(e)
            if leader:
                dialling.named(leader)
    raise NoMaster(dialling.candidates, detail)
