"""A real, throw-away etcd for integration tests (one member, or a cluster).

    with etcd_server(tmp_path) as etcd:        # outside pytest: raises EtcdNotInstalled
        EtcdClient(etcd.endpoint)

    def test_x(etcd): ...                       # in tests: the `etcd` fixture (conftest),
                                                # skipped if etcd is missing

Client and peer ports are free ports on 127.0.0.1; the server is up when its
/health says so, within a deadline. `pause()`/`resume()` (SIGSTOP/SIGCONT)
make it unreachable without losing its state. `etcd_server(tls=True)` serves
https with client-certificate auth, from a throw-away CA made with `openssl`.

    with etcd_cluster(tmp_path, members=3) as etcd:   # three members, one cluster
        EtcdClient(etcd.endpoints)                    # "http://127.0.0.1:A,http://…:B,…"
        etcd.members[0].process.kill(); etcd.members[0].restart()

A cluster's members keep their command lines: one that was killed starts again
as itself, on its data dir (a fault campaign's kill -9 and restart).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from juggler.testing.processes import terminate
from juggler.testing.waiting import free_ports, listens

START_TIMEOUT = 60.0


class EtcdNotInstalled(RuntimeError):
    pass


def etcd_binary() -> str:
    path = os.environ.get("JUGGLER_ETCD") or shutil.which("etcd")
    if not path:
        raise EtcdNotInstalled("etcd is not installed (Debian/Ubuntu: apt-get install "
                               "etcd-server; or set JUGGLER_ETCD to the etcd binary)")
    return path


@dataclass(frozen=True)
class TLSFiles:
    ca_cert: str
    cert: str  # serves as both the server's and the client's certificate
    key: str


def make_tls_files(directory: Path) -> TLSFiles:
    """A CA and one certificate for 127.0.0.1 signed by it (needs the `openssl` command)."""
    if not shutil.which("openssl"):
        raise EtcdNotInstalled("openssl is not installed: cannot make test certificates")
    d = directory
    d.mkdir(parents=True, exist_ok=True)
    ext = d / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                   "extendedKeyUsage=serverAuth,clientAuth\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=juggler test CA", "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"))
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", str(d / "etcd.key"), "-out", str(d / "etcd.csr"))
    openssl("x509", "-req", "-in", str(d / "etcd.csr"), "-CA", str(d / "ca.crt"),
            "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2",
            "-extfile", str(ext), "-out", str(d / "etcd.crt"))
    return TLSFiles(str(d / "ca.crt"), str(d / "etcd.crt"), str(d / "etcd.key"))


@dataclass
class EtcdServer:
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    tls: TLSFiles | None = None

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.client_port}"

    def healthy(self) -> bool:
        context = None
        if self.tls is not None:
            context = ssl.create_default_context(cafile=self.tls.ca_cert)
            context.load_cert_chain(self.tls.cert, self.tls.key)
        try:
            with urllib.request.urlopen(f"{self.endpoint}/health", timeout=1,
                                        context=context) as r:
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
            terminate(self.process)


def _start(binary: str, base: Path, tls: TLSFiles | None) -> EtcdServer:
    client_port, peer_port = free_ports(1, 1)
    data_dir = base / f"etcd-{client_port}"
    log_path = base / f"etcd-{client_port}.log"
    scheme = "https" if tls else "http"
    client_url, peer_url = f"{scheme}://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    tls_flags = [] if tls is None else [
        "--cert-file", tls.cert, "--key-file", tls.key, "--trusted-ca-file", tls.ca_cert,
        "--client-cert-auth"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [binary, "--name", "default", "--data-dir", str(data_dir),
             "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
             "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
             "--initial-cluster", f"default={peer_url}", *tls_flags],
            stdout=log, stderr=subprocess.STDOUT,
            # Leave the caller's ETCD_* settings out: they would override the flags above.
            env={k: v for k, v in os.environ.items() if not k.startswith("ETCD_")})
    server = EtcdServer(client_port, peer_port, data_dir, log_path, process, tls)
    deadline = time.monotonic() + START_TIMEOUT
    # Healthy, and this etcd: another one (another suite's) may have taken the port.
    while not (server.healthy() and listens(process.pid, client_port)):
        if process.poll() is not None:
            raise RuntimeError(f"etcd exited with {process.returncode}:\n{server.log()}")
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"etcd not healthy after {START_TIMEOUT}s:\n{server.log()}")
        time.sleep(0.05)
    return server


@contextlib.contextmanager
def etcd_server(base: Path | None = None, *, tls: bool = False) -> Iterator[EtcdServer]:
    """Start etcd on free loopback ports, yield it healthy, stop it and remove its data."""
    binary = etcd_binary()
    with contextlib.ExitStack() as stack:
        if base is None:
            base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="juggler-etcd-")))
        files = make_tls_files(base / "tls") if tls else None
        for attempt in range(3):  # a free port can be taken before etcd binds it
            try:
                server = _start(binary, base, files)
                break
            except RuntimeError as e:
                if attempt == 2 or "address already in use" not in str(e):
                    raise
        try:
            yield server
        finally:
            server.stop()
            shutil.rmtree(server.data_dir, ignore_errors=True)


# -- a cluster of members ------------------------------------------------------------------------
@dataclass
class EtcdMember:
    """One member of an `etcd_cluster`: `argv` is its command line, kept so
    that a member killed (a fault campaign's kill -9) starts again as itself,
    on its data dir."""

    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    argv: list[str]
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

    def alive(self) -> bool:
        return self.process.poll() is None

    def restart(self) -> None:
        """Start the member again with its own command line (after it exited)."""
        if self.alive():
            return
        self.process = _spawn(self.argv, self.log_path)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            terminate(self.process)


@dataclass
class EtcdCluster:
    """`members` of one etcd cluster; `endpoints` is the comma-separated
    client URLs, as juggler's --etcd takes them."""

    members: list[EtcdMember]

    @property
    def endpoints(self) -> str:
        return ",".join(m.endpoint for m in self.members)

    def healthy(self) -> bool:
        """Every member answers /health true (a quorum and a leader)."""
        return all(m.healthy() for m in self.members)

    def stop(self) -> None:
        for m in self.members:
            m.stop()


def _spawn(argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if not k.startswith("ETCD_")})


def _start_cluster(binary: str, base: Path, n: int) -> EtcdCluster:
    ports = free_ports(*([1] * (2 * n)))
    names = [f"m{i + 1}" for i in range(n)]
    peers = {name: f"http://127.0.0.1:{ports[2 * i + 1]}" for i, name in enumerate(names)}
    initial = ",".join(f"{name}={url}" for name, url in peers.items())
    token = f"juggler-{ports[0]}"
    members = []
    for i, name in enumerate(names):
        client_url = f"http://127.0.0.1:{ports[2 * i]}"
        data_dir, log_path = base / f"etcd-{name}", base / f"etcd-{name}.log"
        argv = [binary, "--name", name, "--data-dir", str(data_dir),
                "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
                "--listen-peer-urls", peers[name], "--initial-advertise-peer-urls", peers[name],
                "--initial-cluster", initial, "--initial-cluster-token", token,
                "--initial-cluster-state", "new"]
        members.append(EtcdMember(name, ports[2 * i], ports[2 * i + 1], data_dir, log_path,
                                  argv, _spawn(argv, log_path)))
    cluster = EtcdCluster(members)
    deadline = time.monotonic() + START_TIMEOUT
    while not (cluster.healthy()
               and all(listens(m.process.pid, m.client_port) for m in members)):
        dead = [m for m in members if not m.alive()]
        if dead or time.monotonic() > deadline:
            cluster.stop()
            why = (f"etcd member {dead[0].name} exited with {dead[0].process.returncode}"
                   if dead else f"etcd cluster not healthy after {START_TIMEOUT}s")
            raise RuntimeError(f"{why}:\n" + "\n".join(m.log() for m in members))
        time.sleep(0.05)
    return cluster


@contextlib.contextmanager
def etcd_cluster(base: Path | None = None, members: int = 3) -> Iterator[EtcdCluster]:
    """Start an etcd cluster of `members` members on free loopback ports (plain
    http), yield it once every member is healthy, stop it and remove its data.
    Raises EtcdNotInstalled, or RuntimeError when it does not come up."""
    binary = etcd_binary()
    with contextlib.ExitStack() as stack:
        if base is None:
            base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="juggler-etcd-")))
        base.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):  # a free port can be taken before etcd binds it
            try:
                cluster = _start_cluster(binary, base, members)
                break
            except RuntimeError as e:
                if attempt == 2 or "address already in use" not in str(e):
                    raise
                for m in range(members):
                    shutil.rmtree(base / f"etcd-m{m + 1}", ignore_errors=True)
        try:
            yield cluster
        finally:
            cluster.stop()
            for m in cluster.members:
                shutil.rmtree(m.data_dir, ignore_errors=True)
