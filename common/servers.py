"""What every juggler gRPC server carries: health service, reflection, metrics;
and how every juggler process listens and dials: over mutual TLS when the
process has a TLS configuration (common/tls.py), else in plain text."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from juggler.common import tls

MAX_MESSAGE = 64 * 1024 * 1024
OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
]


# gRPC binds with SO_REUSEPORT by default: a second server on a host:port in use
# would start without error and the kernel would split connections between the
# two (a second master answering for the first). Off: the bind fails instead.
SERVER_OPTIONS = [*OPTIONS, ("grpc.so_reuseport", 0)]


def new_server(interceptors: list[grpc.aio.ServerInterceptor] | None = None) -> grpc.aio.Server:
    return grpc.aio.server(options=SERVER_OPTIONS, interceptors=interceptors or None)


def listen(server: grpc.aio.Server, host: str, port: int) -> int:
    """Bind `server` to host:port (0: any free port), with TLS requiring client
    certificates when tls.current() is set; returns the port. Raises OSError
    saying so when the address cannot be had (in use, not this host's), or the
    TLS files cannot be read."""
    cfg = tls.current()
    try:
        if cfg is None:
            bound = server.add_insecure_port(f"{host}:{port}")
        else:
            bound = server.add_secure_port(f"{host}:{port}", tls.server_credentials(cfg))
    except tls.TLSError as e:
        raise OSError(str(e)) from e
    except RuntimeError:  # grpcio ≥ 1.6x raises where older ones returned 0
        bound = 0
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port}: the address is in use or not this "
                      "host's (another master or agent there?)")
    return bound


async def add_health_and_reflection(
    server: grpc.aio.Server, services: list[str]
) -> health.aio.HealthServicer:
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    for name in [*services, ""]:
        await servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        [*services, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    return servicer


def channel(address: str) -> grpc.aio.Channel:
    """An asyncio channel to host:port `address`: TLS (the server's name checked
    against the dialled host, this process's certificate presented) when
    tls.current() is set, else plain text. Raises tls.TLSError."""
    cfg = tls.current()
    if cfg is None:
        return grpc.aio.insecure_channel(address, options=OPTIONS)
    return grpc.aio.secure_channel(address, tls.channel_credentials(cfg), options=OPTIONS)


def sync_channel(address: str) -> grpc.Channel:
    """channel() for blocking code (the CLI, test harnesses)."""
    cfg = tls.current()
    if cfg is None:
        return grpc.insecure_channel(address, options=OPTIONS)
    return grpc.secure_channel(address, tls.channel_credentials(cfg), options=OPTIONS)
