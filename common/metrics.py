"""Prometheus metrics: every process serves /metrics on its own HTTP port."""

from __future__ import annotations

from prometheus_client import start_http_server


def serve(host: str, port: int) -> int:
    """Start the /metrics endpoint; returns the bound port (0 picks a free one)."""
    server, _thread = start_http_server(port, addr=host)
    return int(server.server_port)
