"""Operator API calls from the CLI, following the leading master."""

from __future__ import annotations

from typing import Any

import grpc

from juggler.common.leader import leader_of, parse_masters
from juggler.v1 import operator_pb2_grpc


class NoMaster(Exception):
    def __init__(self, masters: list[str], detail: str) -> None:
        super().__init__(f"cannot reach a leading master at {','.join(masters)}: {detail} "
                         "(is a cluster running? start one with `juggler up`)")


def call(masters: str, method: str, request: Any, timeout: float = 10.0) -> Any:
    """Operator.<method>(request) on the leader: standbys name it when they refuse."""
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
            with grpc.insecure_channel(address) as channel:
                stub = operator_pb2_grpc.OperatorStub(channel)
                return getattr(stub, method)(request, timeout=timeout)
        except grpc.RpcError as e:
            if e.code() not in (grpc.StatusCode.UNAVAILABLE,  # type: ignore[attr-defined]
                                grpc.StatusCode.DEADLINE_EXCEEDED):
                raise
            detail = e.details() or e.code().name  # type: ignore[attr-defined]
            leader = leader_of(e)
            if leader and leader not in tried:
                candidates.insert(i, leader)
    raise NoMaster(candidates, detail)
