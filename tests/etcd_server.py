"""A real, throw-away etcd for integration tests.

    with etcd_server(tmp_path) as etcd:        # outside pytest: raises EtcdNotInstalled
        EtcdClient(etcd.endpoint)

    from tests.etcd_server import etcd_fixture  # noqa: F401   in a test module: the
    def test_x(etcd): ...                       # `etcd` fixture, skipped if etcd is missing

Client and peer ports are free ports on 127.0.0.1; the server is up when its
/health says so, within a deadline. `pause()`/`resume()` (SIGSTOP/SIGCONT)
make it unreachable without losing its state.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

START_TIMEOUT = 30.0


class EtcdNotInstalled(RuntimeError):
    pass


def etcd_binary() -> str:
    path = os.environ.get("JUGGLER_ETCD") or shutil.which("etcd")
    if not path:
        raise EtcdNotInstalled("etcd is not installed (Debian/Ubuntu: apt-get install "
                               "etcd-server; or set JUGGLER_ETCD to the etcd binary)")
    return path


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class EtcdServer:
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/health", timeout=1) as r:
                return json.load(r).get("health") == "true"
        except (OSError, ValueError):
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def pause(self) -> None:
        """SIGSTOP: etcd keeps its sockets but answers nothing, as if the network were cut."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.resume()
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def _start(binary: str, base: Path) -> EtcdServer:
    client_port, peer_port = _free_ports(2)
    data_dir = base / f"etcd-{client_port}"
    log_path = base / f"etcd-{client_port}.log"
    client_url, peer_url = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [binary, "--name", "default", "--data-dir", str(data_dir),
             "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
             "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
             "--initial-cluster", f"default={peer_url}"],
            stdout=log, stderr=subprocess.STDOUT,
            # Leave the caller's ETCD_* settings out: they would override the flags above.
            env={k: v for k, v in os.environ.items() if not k.startswith("ETCD_")})
    server = EtcdServer(client_port, peer_port, data_dir, log_path, process)
    deadline = time.monotonic() + START_TIMEOUT
    while not server.healthy():
        if process.poll() is not None:
            raise RuntimeError(f"etcd exited with {process.returncode}:\n{server.log()}")
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"etcd not healthy after {START_TIMEOUT}s:\n{server.log()}")
        time.sleep(0.05)
    return server


@contextlib.contextmanager
def etcd_server(base: Path | None = None) -> Iterator[EtcdServer]:
    """Start etcd on free loopback ports, yield it healthy, stop it and remove its data."""
    binary = etcd_binary()
    with contextlib.ExitStack() as stack:
        if base is None:
            base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="juggler-etcd-")))
        for attempt in range(3):  # a free port can be taken before etcd binds it
            try:
                server = _start(binary, base)
                break
            except RuntimeError as e:
                if attempt == 2 or "address already in use" not in str(e):
                    raise
        try:
            yield server
        finally:
            server.stop()
            shutil.rmtree(server.data_dir, ignore_errors=True)


@pytest.fixture(scope="module", name="etcd")
def etcd_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    """A real etcd for the test module; the test is skipped if etcd is not installed."""
    try:
        etcd_binary()
    except EtcdNotInstalled as e:
        pytest.skip(str(e))
    with etcd_server(tmp_path_factory.mktemp("etcd")) as server:
        yield server
