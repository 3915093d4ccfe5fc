"""Which apps services /prometheus/targets lists (master/http_sd.py): one
seen serving /metrics stays listed while its framework is registered, even
when it stops answering (so Prometheus sees `up` 0 rather than losing it).
The rule is pure; the last test runs it in MasterHttp against a real HTTP
server that is then stopped."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from juggler.master import http_sd
from juggler.master.http import MasterHttp
from juggler.v1 import common_pb2, operator_pb2

A = ("fw-1", "http://127.0.0.1:8080")
B = ("fw-2", "http://127.0.0.1:8081")


def test_only_registered_frameworks_not_known_to_serve_are_probed() -> None:
    assert http_sd.to_probe([A, B], set()) == [A, B]
    assert http_sd.to_probe([A, B, B], {A}) == [B]
    assert http_sd.to_probe([("fw-3", "mailto:x"), ("fw-4", "")], set()) == []


def test_a_service_seen_serving_stays_while_registered_answering_or_not() -> None:
    serving = http_sd.apps_serving([A, B], set(), answered={A})
    assert serving == {A}
    # A stops answering: it is not probed again, and stays.
    assert http_sd.to_probe([A, B], serving) == [B]
    assert http_sd.apps_serving([A, B], serving, answered=set()) == {A}


def test_a_framework_gone_or_with_a_new_url_is_forgotten() -> None:
    assert http_sd.apps_serving([B], {A}, answered=set()) == set()
    moved = ("fw-1", "http://127.0.0.1:9090")  # a new leader re-registered fw-1
    assert http_sd.apps_serving([moved], {A}, answered=set()) == set()
    assert http_sd.to_probe([moved], {A}) == [moved]


@dataclass
class _Master:
    """What MasterHttp reads of a Master."""
    address: str = "127.0.0.1:1"
    metrics_port: int = 0
    leading: bool = True
    election: Any = None
    state: Any = field(default=None)

    def leader_address(self) -> str | None:
        return self.address


class _Http(MasterHttp):
    """MasterHttp answering with a given leader's state, read anew each time."""
    response = operator_pb2.GetStateResponse()

    async def state(self) -> operator_pb2.GetStateResponse:
        return self.response


def _frameworks(url: str, state: int) -> operator_pb2.GetStateResponse:
    return operator_pb2.GetStateResponse(frameworks=[operator_pb2.FrameworkView(
        info=common_pb2.FrameworkInfo(id="apps-fw", name="apps", webui_url=url), state=state)])


def test_a_stopped_apps_service_stays_a_target_until_its_framework_is_torn_down() -> None:
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text="juggler_apps_is_leader 1.0\n", content_type="text/plain")

    async def targets(port: int) -> list[str]:
        async with aiohttp.ClientSession() as s, \
                s.get(f"http://127.0.0.1:{port}/prometheus/targets") as r:
            groups = await r.json()
        return [t for g in groups if g["labels"]["job"] == "juggler-apps" for t in g["targets"]]

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        apps_port = int(runner.addresses[0][1])
        url = f"http://127.0.0.1:{apps_port}"
        http.response = _frameworks(url, operator_pb2.FRAMEWORK_SUBSCRIBED)
        port = await http.start("127.0.0.1", 0)
        try:
            assert await targets(port) == [f"127.0.0.1:{apps_port}"]
            await runner.cleanup()  # the service stops answering
            assert await targets(port) == [f"127.0.0.1:{apps_port}"]
            http.response = _frameworks(url, operator_pb2.FRAMEWORK_DISCONNECTED)
            assert await targets(port) == [f"127.0.0.1:{apps_port}"]
            http.response = _frameworks(url, operator_pb2.FRAMEWORK_TORN_DOWN)
            assert await targets(port) == []
            http.response = _frameworks(url, operator_pb2.FRAMEWORK_SUBSCRIBED)
            assert await targets(port) == []  # unknown again, probed, not answering
        finally:
            await http.stop()
            await runner.cleanup()

    http = _Http(_Master())  # type: ignore[arg-type]
    asyncio.run(main())
