"""A small TCP traffic tool, the same program on both ends of every path measured
(benchmarks/network.py): a server that echoes 1-byte requests and swallows bulk
streams, and two clients.

    python testing/traffic.py serve PORT
    python testing/traffic.py stream HOST PORT [--seconds S] [--chunk BYTES]
    python testing/traffic.py rr HOST PORT [--seconds S]

`serve` accepts connections forever; the first byte of a connection picks its
kind: b"S" a stream (everything after it is read and dropped), b"R" request/
response (each byte is sent back at once). `stream` prints {"bytes", "seconds",
"mbit_s"}: megabits per second sent through one connection in chunks of
--chunk bytes (default 128 KiB) for --seconds (default 3); `rr` prints
{"requests", "seconds", "per_s"}: 1-byte round trips one after another on one
connection (TCP_NODELAY on both ends), netperf's TCP_RR shape.

Standard library only: it runs in a task on the agent's host filesystem and in
a lab host's network namespace (`ip netns exec`) with the system Python.
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time


def _handle(conn: socket.socket) -> None:
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        kind = conn.recv(1)
        if kind == b"S":
            while conn.recv(1 << 20):
                pass
        elif kind == b"R":
            while True:
                data = conn.recv(1)
                if not data:
                    return
                conn.sendall(data)


def serve(port: int) -> None:
    """Listen on 0.0.0.0:port and serve every connection in its own thread."""
    with socket.create_server(("0.0.0.0", port), reuse_port=False) as server:
        while True:
            conn, _ = server.accept()
            threading.Thread(target=_handle, args=(conn,), daemon=True).start()


def stream(host: str, port: int, seconds: float, chunk: int) -> dict[str, float]:
    """Bytes pushed through one connection for `seconds`; megabits per second."""
    payload = b"x" * chunk
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(b"S")
        sent = 0
        t0 = time.perf_counter()
        end = t0 + seconds
        while time.perf_counter() < end:
            s.sendall(payload)
            sent += chunk
        s.shutdown(socket.SHUT_WR)
        s.recv(1)  # the server's close: every byte was read
        took = time.perf_counter() - t0
    return {"bytes": sent, "seconds": round(took, 3), "mbit_s": round(sent * 8 / took / 1e6, 1)}


def rr(host: str, port: int, seconds: float) -> dict[str, float]:
    """1-byte request/response round trips on one connection for `seconds`."""
    with socket.create_connection((host, port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"R")
        n = 0
        t0 = time.perf_counter()
        end = t0 + seconds
        while time.perf_counter() < end:
            s.sendall(b"a")
            if not s.recv(1):
                raise ConnectionError("the server closed the connection")
            n += 1
        took = time.perf_counter() - t0
    return {"requests": n, "seconds": round(took, 3), "per_s": round(n / took, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve")
    s.add_argument("port", type=int)
    for name in ("stream", "rr"):
        c = sub.add_parser(name)
        c.add_argument("host")
        c.add_argument("port", type=int)
        c.add_argument("--seconds", type=float, default=3.0)
        if name == "stream":
            c.add_argument("--chunk", type=int, default=128 * 1024)
    a = p.parse_args()
    if a.command == "serve":
        serve(a.port)
    elif a.command == "stream":
        print(json.dumps(stream(a.host, a.port, a.seconds, a.chunk)))
    else:
        print(json.dumps(rr(a.host, a.port, a.seconds)))


if __name__ == "__main__":
    main()
