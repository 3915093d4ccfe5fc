"""What every juggler gRPC server carries: health service, reflection, metrics;
and how every juggler process listens and dials: over mutual TLS when the
process has a TLS configuration (common/tls.py), else in plain text."""

from __future__ import annotations

import asyncio
import threading

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from juggler.common import tls

MAX_MESSAGE = 64 * 1024 * 1024
# Clients (every channel() and sync_channel()) find a dead or frozen peer within
# about 4 s: a keepalive ping every 2 s, and a connection whose ping is not
# answered within 2 s is closed (a SIGSTOPped process's kernel keeps the TCP
# connection up, so nothing else would notice). In grpcio ≥ 1.5x the
# unanswered ping is timed by grpc.http2.ping_timeout_ms (default 60 s), not
# by grpc.keepalive_timeout_ms alone: both are set. grpc's connect timeout
# (20 s, which grpc.min_reconnect_backoff_ms would also lower) is left alone:
# a TLS handshake on a loaded machine may take seconds; clients that have
# another master to ask pass over a frozen one with connects() and the
# GetLeader deadline (common/leader.py) instead.
OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.keepalive_time_ms", 2_000),
    ("grpc.keepalive_timeout_ms", 2_000),
    ("grpc.http2.ping_timeout_ms", 2_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.keepalive_permit_without_calls", 1),
]
# Seconds a client waits for a new connection's handshake before it takes
# the peer for frozen (connects()).
CONNECT_SECONDS = 1.0


# Servers ping their clients less often. They must accept the clients' pings
# every 2 s: a server counts a ping that comes sooner than
# grpc.http2.min_ping_interval_without_data_ms after the last one as a
# strike, and after grpc.http2.max_ping_strikes (2) it closes the connection
# with GOAWAY "too_many_pings". gRPC binds with SO_REUSEPORT by default: a
# second server on a host:port in use would start without error and the
# kernel would split connections between the two (a second master answering
# for the first). Off: the bind fails instead.
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 1_000),
    ("grpc.so_reuseport", 0),
]


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


async def connects(ch: grpc.aio.Channel, timeout: float = CONNECT_SECONDS) -> bool:
    """Whether `ch` gets past setting up its connection within `timeout`
    seconds: True once it is READY, or when the attempt failed outright
    (refused, a TLS error: a call then fails at once, saying why); False when
    it is still connecting (a frozen process: its kernel accepts the TCP
    connection, the process never answers the handshake, and a call would
    wait for it up to its own deadline). Raises nothing."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    state = ch.get_state(try_to_connect=True)
    while state not in _SETTLED:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        try:
            await asyncio.wait_for(ch.wait_for_state_change(state), remaining)
        except TimeoutError:
            return False
        state = ch.get_state(try_to_connect=True)
    return True


def sync_connects(ch: grpc.Channel, timeout: float = CONNECT_SECONDS) -> bool:
    """connects() for a channel of sync_channel()."""
    settled = threading.Event()

    def seen(state: grpc.ChannelConnectivity) -> None:
        if state in _SETTLED:
            settled.set()

    ch.subscribe(seen, try_to_connect=True)
    try:
        return settled.wait(timeout)
    finally:
        ch.unsubscribe(seen)


_SETTLED = (grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.TRANSIENT_FAILURE,
            grpc.ChannelConnectivity.SHUTDOWN)
