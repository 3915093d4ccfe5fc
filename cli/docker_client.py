"""A small client of the Docker Engine API (the apps service's, apps/docker_api.py,
or any other), over a unix socket or TCP, for the `juggler` CLI's container verbs.

Synchronous (http.client): every call is one request on its own connection;
the CLI calls it from a thread where it also streams from an agent. Paths are
Docker's unversioned ones (the server answers them at its own API version).

Errors, as the docker CLI reports them:
- DockerError(status, message): the server refused (Docker's JSON error body,
  `{"message": ...}`); str() is "Error response from daemon: <message>";
- DockerUnreachable: nothing answers at the address (str() says where and why).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from juggler.cli import credentials

__all__ = ["DockerClient", "DockerError", "DockerUnreachable", "parse_host"]

CALL_SECONDS = 30.0
PING_SECONDS = 2.0


class DockerError(Exception):
    """The server answered with an error: `status` (HTTP) and Docker's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"Error response from daemon: {message}")
        self.status = status
        self.message = message


class DockerUnreachable(Exception):
    """No server answers at the address."""


@dataclass(frozen=True)
class Host:
    """Where the API listens: a unix socket path, or host and port."""

    url: str
    path: str = ""
    host: str = ""
    port: int = 0


def parse_host(url: str) -> Host:
    """Docker's -H forms: unix:///path, tcp://host:port, http://host:port, a bare
    /path (a socket) or host:port. Raises ValueError."""
    text = url.strip()
    if text.startswith("/"):
        return Host(f"unix://{text}", path=text)
    if "://" not in text:
        text = f"tcp://{text}"
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme == "unix":
        path = parsed.path or parsed.netloc
        if not path:
            raise ValueError(f"{url!r}: no socket path (unix:///path/to/docker.sock)")
        return Host(f"unix://{path}", path=path)
    if parsed.scheme in ("tcp", "http", "https"):
        if not parsed.hostname:
            raise ValueError(f"{url!r}: no host (tcp://host:port)")
        port = parsed.port or (2376 if parsed.scheme == "https" else 2375)
        return Host(f"tcp://{parsed.hostname}:{port}", host=parsed.hostname, port=port)
    raise ValueError(f"{url!r}: unsupported protocol {parsed.scheme!r} (unix:// or tcp://)")


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class DockerClient:
    """Calls to one Docker Engine API. `timeout`: seconds per call (None: no
    limit, for calls that wait: start, stop, wait)."""

    def __init__(self, url: str, timeout: float | None = CALL_SECONDS) -> None:
        self.host = parse_host(url)
        self.url = self.host.url
        self.timeout = timeout

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        if self.host.path:
            return _UnixConnection(self.host.path, timeout)
        # Over TCP with the CLI's TLS: HTTPS, the CLI's certificate presented
        # (as docker --tlsverify); the token is sent too.
        ctx = credentials.ssl_context()
        if ctx is not None:
            return http.client.HTTPSConnection(self.host.host, self.host.port,
                                               timeout=timeout, context=ctx)
        return http.client.HTTPConnection(self.host.host, self.host.port, timeout=timeout)

    def call(self, method: str, path: str, query: dict[str, Any] | None = None,
             body: Any = None, *, timeout: float | None = -1.0) -> tuple[int, Any]:
        """(status, decoded JSON body or None). `timeout`: seconds (None: no
        limit; by default the client's). Raises DockerError for a status of 400
        or more, DockerUnreachable when nothing answers."""
        conn, response = self._send(method, path, query, body, timeout)
        return self._finish(conn, response, method, path)

    def _send(self, method: str, path: str, query: dict[str, Any] | None, body: Any,
              timeout: float | None) -> tuple[http.client.HTTPConnection,
                                              http.client.HTTPResponse]:
        """Send a request and read the answer's status line and headers."""
        wait = self.timeout if timeout is not None and timeout < 0 else timeout
        if query:
            pairs = {k: _query_value(v) for k, v in query.items() if v is not None}
            path = f"{path}?{urllib.parse.urlencode(pairs)}"
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        # The token on the socket too: a standby apps service passes it on to
        # the leader (the socket's user it cannot pass on).
        headers.update(credentials.auth_headers())
        conn = self._connection(wait)
        try:
            conn.request(method, path, body=data, headers=headers)
            return conn, conn.getresponse()
        except BaseException as e:
            conn.close()
            raise self._unreachable(e, method, path) from None

    def _unreachable(self, e: BaseException, method: str, path: str) -> BaseException:
        if isinstance(e, ConnectionRefusedError | FileNotFoundError | PermissionError):
            return DockerUnreachable(f"cannot reach the containers service (a Docker Engine "
                                     f"API) at {self.url}: {e.strerror or e}")
        if isinstance(e, OSError | http.client.HTTPException):
            why = ""
            if not self.host.path:   # TCP: TLS on one side only, a certificate refused?
                from juggler.common import tls
                why = tls.explain(f"{self.host.host}:{self.host.port}")
            return DockerUnreachable(f"the containers service at {self.url} failed to answer "
                                     f"{method} {path}: {why or e or type(e).__name__}")
        return e

    def _finish(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse,
                method: str, path: str) -> tuple[int, Any]:
        """Read the body; raise DockerError for a status of 400 or more."""
        try:
            raw = response.read()
        except BaseException as e:
            raise self._unreachable(e, method, path) from None
        finally:
            conn.close()
        decoded: Any = None
        if raw:
            try:
                decoded = json.loads(raw)
            except ValueError:
                decoded = raw.decode(errors="replace")
        if response.status >= 400:
            message = decoded.get("message") if isinstance(decoded, dict) else None
            raise DockerError(response.status, str(message or decoded or response.reason))
        return response.status, decoded

    # -- the calls the CLI makes --------------------------------------------------------
    def ping(self, timeout: float = PING_SECONDS) -> bool:
        """Whether a Docker Engine API answers (GET /_ping)."""
        try:
            self.call("GET", "/_ping", timeout=timeout)
        except (DockerUnreachable, DockerError):
            return False
        return True

    def create(self, body: dict[str, Any], name: str = "") -> dict[str, Any]:
        """POST /containers/create: {"Id": ..., "Warnings": [...]}."""
        return self.call("POST", "/containers/create", {"name": name or None}, body)[1]

    def pull(self, name: str, tag: str, on_message: Callable[[dict[str, Any]], None]) -> None:
        """POST /images/create?fromImage=&tag= (`tag`: a tag or a digest):
        each of Docker's JSON progress messages to `on_message` as it comes,
        an error message included (the stream ends there). Raises as call()
        for an HTTP error."""
        path = "/images/create"
        conn, response = self._send("POST", path, {"fromImage": name, "tag": tag or None},
                                    None, None)
        if response.status >= 400:
            self._finish(conn, response, "POST", path)   # raises DockerError
        try:
            for line in response:
                with contextlib.suppress(ValueError):
                    message = json.loads(line)
                    if isinstance(message, dict):
                        on_message(message)
        except (OSError, http.client.HTTPException) as e:
            raise self._unreachable(e, "POST", path) from None
        finally:
            conn.close()

    def start(self, ref: str) -> bool:
        """False when it was running already (304)."""
        return self.call("POST", f"/containers/{_q(ref)}/start", timeout=None)[0] != 304

    def stop(self, ref: str, timeout: int | None = None) -> bool:
        return self.call("POST", f"/containers/{_q(ref)}/stop", {"t": timeout},
                         timeout=None)[0] != 304

    def restart(self, ref: str, timeout: int | None = None) -> None:
        self.call("POST", f"/containers/{_q(ref)}/restart", {"t": timeout}, timeout=None)

    def kill(self, ref: str, signal: str = "") -> None:
        self.call("POST", f"/containers/{_q(ref)}/kill", {"signal": signal or None})

    def remove(self, ref: str, force: bool = False) -> None:
        self.call("DELETE", f"/containers/{_q(ref)}", {"force": force or None},
                  timeout=None)

    def rename(self, ref: str, name: str) -> None:
        self.call("POST", f"/containers/{_q(ref)}/rename", {"name": name})

    def wait(self, ref: str, condition: str = "") -> dict[str, Any]:
        """POST /containers/{id}/wait: {"StatusCode": n, "Error": ...}; blocks."""
        return self.call("POST", f"/containers/{_q(ref)}/wait",
                         {"condition": condition or None}, timeout=None)[1]

    def wait_begin(self, ref: str, condition: str) -> Callable[[], dict[str, Any]]:
        """POST /containers/{id}/wait up to its headers (the service holds the
        waiter from then on: a run that starts and ends at once, even removed
        with --rm, is not missed, as the docker CLI waits before it starts).
        Returns what reads the answer (blocking). Raises as call()."""
        path = f"/containers/{_q(ref)}/wait"
        conn, response = self._send("POST", path, {"condition": condition}, None, None)
        if response.status >= 400:
            self._finish(conn, response, "POST", path)   # raises DockerError
        return lambda: self._finish(conn, response, "POST", path)[1]

    def attach_begin(self, ref: str) -> Callable[[], None]:
        """POST /containers/{id}/attach?stream=1 without stdin, stdout or
        stderr, up to its headers: the service knows from then on that a
        client waits to attach to the container's next run, as the docker CLI
        attaches before it starts (the run then holds its output for that
        client: apps/containers_state.attach_waits). Returns what ends it.
        Raises as call()."""
        path = f"/containers/{_q(ref)}/attach"
        conn, response = self._send("POST", path, {"stream": 1}, None, None)
        if response.status >= 400:
            self._finish(conn, response, "POST", path)   # raises DockerError
        def end() -> None:
            response.close()   # holds the socket once the connection handed it over
            conn.close()

        return end

    def inspect(self, ref: str) -> dict[str, Any]:
        return self.call("GET", f"/containers/{_q(ref)}/json")[1]

    def list(self, *, all: bool = False, limit: int = -1,
             filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"all": all or None, "limit": limit if limit > 0 else None}
        if filters:
            # Docker's CLI sends {"name": {"web": true}}; servers take lists too.
            query["filters"] = json.dumps({k: dict.fromkeys(v, True)
                                           for k, v in filters.items()})
        return self.call("GET", "/containers/json", query)[1] or []

    def top(self, ref: str, ps_args: str = "") -> dict[str, Any]:
        return self.call("GET", f"/containers/{_q(ref)}/top",
                         {"ps_args": ps_args or None})[1]

    def exec_create(self, ref: str, body: dict[str, Any]) -> str:
        return self.call("POST", f"/containers/{_q(ref)}/exec", body=body)[1]["Id"]

    def exec_start_detached(self, exec_id: str) -> None:
        self.call("POST", f"/exec/{_q(exec_id)}/start", body={"Detach": True, "Tty": False})


def _q(ref: str) -> str:
    return urllib.parse.quote(ref, safe="")


def _query_value(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    return str(v)
