"""The master's HTTP port on a standby (master/http.py): its /api answers with
the leader's state, read from the leader's Operator API (a real gRPC server
on loopback standing in for the leader), says so, and answers 503 with the
reason while no leader is known; /metrics and the UI are served regardless."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import grpc

from juggler.common import servers
from juggler.master.http import MasterHttp
from juggler.v1 import common_pb2, operator_pb2, operator_pb2_grpc


class _Leader(operator_pb2_grpc.OperatorServicer):
    def __init__(self, address: str) -> None:
        self.address = address

    async def GetState(self, request: Any, context: Any) -> operator_pb2.GetStateResponse:
        return operator_pb2.GetStateResponse(
            agents=[operator_pb2.AgentView(
                info=common_pb2.AgentInfo(id="agent-1", hostname="leaders-agent"),
                state=operator_pb2.AGENT_ACTIVE)],
            leader=operator_pb2.GetLeaderResponse(address=self.address, self=self.address,
                                                  is_leader=True))


@dataclass
class _Standby:
    """What MasterHttp reads of a Master that does not lead."""
    address: str
    leader: str | None
    metrics_port: int = 0
    leading: bool = False
    election: Any = None
    state: Any = field(default=None)

    def leader_address(self) -> str | None:
        return self.leader


@asynccontextmanager
async def _leader() -> AsyncIterator[str]:
    server = grpc.aio.server()
    port = servers.listen(server, "127.0.0.1", 0)
    address = f"127.0.0.1:{port}"
    operator_pb2_grpc.add_OperatorServicer_to_server(_Leader(address), server)
    await server.start()
    try:
        yield address
    finally:
        await server.stop(grace=0)


async def _get(port: int, path: str) -> tuple[int, str, Any]:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}{path}") as r:
        body = await r.text()
        return r.status, r.content_type, (await r.json() if "json" in r.content_type else body)


def test_a_standby_answers_with_the_leaders_state() -> None:
    async def main() -> None:
        async with _leader() as leader:
            standby = _Standby(address="127.0.0.1:1", leader=leader)
            http = MasterHttp(standby)  # type: ignore[arg-type]
            port = await http.start("127.0.0.1", 0)
            standby.metrics_port = port
            try:
                status, _, state = await _get(port, "/api/state")
                assert status == 200, state
                assert [a["hostname"] for a in state["agents"]] == ["leaders-agent"]
                assert state["master"]["is_leader"] is False
                assert state["master"]["answered_by"] == leader
                assert state["master"]["leader"] == leader
                status, _, groups = await _get(port, "/prometheus/targets")
                assert status == 200
                assert {"targets": [f"127.0.0.1:{port}"],
                        "labels": {"job": "juggler-master"}} in groups
            finally:
                await http.stop()

    asyncio.run(main())


def test_without_a_leader_the_api_says_why_and_metrics_and_ui_still_answer() -> None:
    async def main() -> None:
        http = MasterHttp(_Standby(address="127.0.0.1:1", leader=None))  # type: ignore[arg-type]
        port = await http.start("127.0.0.1", 0)
        try:
            status, _, body = await _get(port, "/api/state")
            assert status == 503 and "no leading master" in body["error"]
            status, _, body = await _get(port, "/api/tasks/t1/logs")
            assert status == 503
            status, ctype, text = await _get(port, "/metrics")
            assert (status, ctype) == (200, "text/plain") and "# HELP" in text
            status, ctype, page = await _get(port, "/")
            assert (status, ctype) == (200, "text/html") and "/ui/ui.js" in page
            status, ctype, _ = await _get(port, "/ui/ui.js")
            assert status == 200 and "javascript" in ctype
        finally:
            await http.stop()

    asyncio.run(main())


def test_a_dead_leader_is_named_in_the_error() -> None:
    async def main() -> None:
        http = MasterHttp(_Standby(address="127.0.0.1:1",  # type: ignore[arg-type]
                                   leader="127.0.0.1:9"))
        port = await http.start("127.0.0.1", 0)
        try:
            status, _, body = await _get(port, "/api/state")
            assert status == 503 and "127.0.0.1:9 did not answer" in body["error"]
        finally:
            await http.stop()

    asyncio.run(main())


def test_api_apps_calls_only_the_apps_services_under_tls() -> None:
    from juggler.master.http import APPS_PRINCIPAL, apps_service

    url = "http://10.0.0.5:8080"
    other = common_pb2.FrameworkInfo(name="mine", webui_url=url, principal="alice")
    apps = common_pb2.FrameworkInfo(name="juggler-apps", webui_url=url, principal=APPS_PRINCIPAL)
    plain = common_pb2.FrameworkInfo(name="old", webui_url=url)
    # With TLS the master would present its certificate: the apps services only.
    assert [apps_service(f, True) for f in (other, apps, plain)] == [False, True, False]
    # Without, it has no identity to lend: every framework with a web URL.
    assert [apps_service(f, False) for f in (other, apps, plain)] == [True, True, True]
    assert not apps_service(common_pb2.FrameworkInfo(webui_url="file:///etc"), False)
