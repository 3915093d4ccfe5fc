"""Operator API calls from the CLI, following the leading master."""

from __future__ import annotations

from typing import Any

import grpc

from juggler.common import servers, tls
from juggler.common.leader import leader_of, parse_masters
from juggler.v1 import operator_pb2_grpc


class NoMaster(Exception):
    def __init__(self, masters: list[str], detail: str) -> None:
        # A TLS mismatch (tls.explain) is not a missing cluster: its own words say what to do.
        hint = ("" if tls.is_tls_problem(detail)
                else " (is a cluster running? start one with `juggler up`)")
        super().__init__(f"cannot reach a leading master at {','.join(masters)}: {detail}{hint}")


# The access refusals (common/access.py): said in one line, naming the rule.
REFUSALS = ("PERMISSION_DENIED", "UNAUTHENTICATED")


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
    """Operator.<method>(request) on the leader: standbys name it when they
    refuse. Raises NoMaster when none answers, Refused for an access refusal,
    grpc.RpcError for any other error."""
    candidates = parse_masters(masters)
    detail = ""
    tried: set[str] = set()
    i = 0
    while i < len(candidates):
        address = candidates[i]
        i += 1
        if address in tried:
            continue
        tried.add(address)
        try:
            with servers.sync_channel(address) as channel:
                stub = operator_pb2_grpc.OperatorStub(channel)
                return getattr(stub, method)(request, timeout=timeout)
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
            if leader and leader not in tried:
                candidates.insert(i, leader)
    raise NoMaster(candidates, detail)
