"""Mutual TLS as users meet it: `juggler up --tls` and the CLI, Docker and
HTTPS clients against it; each way a TLS connection can be wrong is refused
with a message that says which; plain text on an open address needs
--insecure."""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from juggler.common import tls
from tests.conftest import free_port, juggler_up, needs_root, wait_for

TLS_FILES = ("ca.crt", "cli.crt", "cli.key", "token")


def _juggler(*args: str, home: Path, env: dict[str, str] | None = None,
             timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("JUGGLER_TLS_", "JUGGLER_TOKEN", "JUGGLER_MASTER"))}
    return subprocess.run([sys.executable, "-m", "juggler.cli.main", *args],
                          capture_output=True, text=True, timeout=timeout,
                          env={**clean, "JUGGLER_HOME": str(home), **(env or {})})


def _as(cfg: tls.TLSConfig) -> dict[str, str]:
    return {"JUGGLER_TLS_CA": str(cfg.ca), "JUGGLER_TLS_CERT": str(cfg.cert),
            "JUGGLER_TLS_KEY": str(cfg.key)}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, str]]:
    """`juggler up --tls` with an operator's own CA (--tls-ca-dir): (JUGGLER_HOME,
    work dir, master address)."""
    needs_root()
    tmp = tmp_path_factory.mktemp("tls")
    home, work = tmp / "home", tmp / "work"
    tls.make_ca(tmp / "own-ca", name="operators' CA")
    flags = ["--tls", "--tls-ca-dir", str(tmp / "own-ca"), "--work-dir", str(work),
             "--port", str(free_port()), "--metrics-port", str(free_port()),
             "--apps-port", str(free_port()), "--docker-socket", str(tmp / "docker.sock")]
    with juggler_up(*flags, home=home) as (_, line):
        yield home, work, line.split(" at ")[1].split()[0]
    assert not any((home / "tls" / f).exists() for f in TLS_FILES), "up left the CLI's files"


def test_a_tls_cluster_works_as_a_plain_one(secured: tuple[Path, Path, str]) -> None:
    home, work, master = secured
    assert {p.name for p in (home / "tls").iterdir()} == set(TLS_FILES)
    own_ca = tls.load(work.parent / "own-ca" / "ca.crt")
    for component in ("master", "agent", "apps", "cli"):
        tls.load(work / "tls" / f"{component}.crt").verify_directly_issued_by(own_ca)
    assert not (work / "tls" / "ca.key").exists()   # the operator's key stays where it is
    run = _juggler("run", "-q", "--", "echo", "hi", home=home)
    assert (run.returncode, run.stdout) == (0, "hi\n"), run.stderr
    # The agent's API (logs, exec) over TLS too: the CLI dials the agent.
    started = _juggler("run", "-d", "--name", "tls-logs", "--", "sh", "-c",
                       "echo hello; sleep 600", home=home)
    assert started.returncode == 0, started.stderr
    wait_for(lambda: "hello" in _juggler("logs", "tls-logs", home=home).stdout, 60,
             what="the task's output through the agent")
    done = _juggler("exec", "tls-logs", "echo", "from-exec", home=home)
    assert (done.returncode, done.stdout) == (0, "from-exec\n"), done.stderr
    assert _juggler("rm", "-f", "tls-logs", home=home).returncode == 0
    ps = _juggler("ps", "-a", home=home)
    assert ps.returncode == 0 and ps.stdout.startswith("CONTAINER ID"), ps.stderr
    apps = _juggler("app", "ls", home=home)
    assert apps.returncode == 0 and apps.stdout.startswith("ID"), apps.stderr
    docker = shutil.which("docker")
    if docker:
        sock = (home / "docker").read_text().strip()
        got = subprocess.run([docker, "-H", sock, "ps", "-a"], capture_output=True, text=True,
                             timeout=60)
        assert got.returncode == 0 and got.stdout.startswith("CONTAINER ID"), got.stderr
    # The HTTP APIs are HTTPS and trust the CLI's certificate; plain text is refused.
    apps_url = (home / "apps").read_text().strip()
    assert apps_url.startswith("https://")
    cli = tls.TLSConfig(*(home / "tls" / f for f in TLS_FILES[:3]))
    with urllib.request.urlopen(apps_url + "/v2/apps", timeout=10,
                                context=tls.client_ssl_context(cli)) as r:
        assert r.status == 200
    with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
        urllib.request.urlopen(apps_url.replace("https", "http") + "/v2/apps", timeout=10)
    assert (work / "tls" / "cli.key").stat().st_mode & 0o077 == 0
    # The master's HTTP port (web UI, /api, /metrics) too.
    status = _juggler("status", home=home)
    assert status.returncode == 0, status.stderr
    ui = next(line.split()[-1] for line in status.stdout.splitlines()
              if line.startswith("web UI"))
    assert ui.startswith("https://")
    with urllib.request.urlopen(ui + "metrics", timeout=10,
                                context=tls.client_ssl_context(cli)) as r:
        assert b"juggler_" in r.read()
    assert master.startswith("127.0.0.1:")


def test_a_plain_text_client_is_told_the_master_speaks_tls(
        secured: tuple[Path, Path, str], tmp_path: Path) -> None:
    home, _, master = secured
    got = _juggler("agents", "--master", master, home=tmp_path)
    assert got.returncode != 0
    assert f"{master} speaks TLS and this client plain text" in got.stderr
    apps = (home / "apps").read_text().strip().removeprefix("https://")
    got = _juggler("app", "ls", "--apps", f"http://{apps}", home=tmp_path)
    assert got.returncode != 0
    assert f"{apps} speaks TLS and this client plain text" in got.stderr
    got = _juggler("ps", "-H", f"tcp://{apps}", home=tmp_path)   # its Docker API
    assert got.returncode != 0
    assert f"{apps} speaks TLS and this client plain text" in got.stderr


def test_client_certificates_from_another_ca_or_expired_are_refused_saying_so(
        secured: tuple[Path, Path, str], tmp_path: Path) -> None:
    home, work, master = secured
    ca = work.parent / "own-ca"
    tls.make_ca(tmp_path / "other")
    stranger = tls.issue(tmp_path / "other", "admin", [], tmp_path / "other")
    got = _juggler("agents", "--master", master, home=tmp_path,
                   env=_as(tls.TLSConfig(ca / "ca.crt", stranger.cert, stranger.key)))
    assert got.returncode != 0
    assert f"certificate {stranger.cert} is not signed by its CA" in got.stderr
    # The server refuses it (not only the CLI's own check): a raw handshake
    # that presents it is closed, and the diagnosis says by whom.
    why = tls.explain(master, tls.TLSConfig(tmp_path / "other" / "ca.crt", stranger.cert,
                                            stranger.key))
    assert "comes from another CA" in why    # the master's certificate, seen from the other CA
    expired = tls.issue(ca, "admin", [], tmp_path / "old", days=-1)
    got = _juggler("agents", "--master", master, home=tmp_path, env=_as(expired))
    assert got.returncode != 0
    assert f"certificate {expired.cert} is not valid now" in got.stderr
    assert _juggler("agents", "--master", master, home=home).returncode == 0


def _master(tmp: Path, name: str, *flags: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "juggler.cli.main", "master", "--port",
                             str(port), "--metrics-port", "-1", "--work-dir", str(tmp / name),
                             *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def listening() -> bool:
        assert proc.poll() is None, proc.communicate()
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_for(listening, timeout=60, what=f"master {name} listening")
    return proc, f"127.0.0.1:{port}"


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    try:
        return proc.communicate(timeout=20)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[1]


def _flags(cfg: tls.TLSConfig) -> list[str]:
    return ["--tls-ca", str(cfg.ca), "--tls-cert", str(cfg.cert), "--tls-key", str(cfg.key)]


def test_servers_a_client_must_not_trust_are_refused_saying_why(tmp_path: Path) -> None:
    """A TLS client against a plain-text master, a master whose certificate
    another CA signed, one whose names do not include the dialled host, and
    one whose certificate expired."""
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    tls.make_ca(ours)
    tls.make_ca(theirs)
    client = tls.issue(ours, "admin", [], ours, name="cli")
    servers = {
        "plain": [],
        "other-ca": _flags(tls.issue(theirs, "master", ["127.0.0.1"], theirs)),
        "wrong-name": _flags(tls.issue(ours, "master", ["master.example"], ours)),
        "expired": _flags(tls.issue(ours, "master", ["127.0.0.1"], ours, name="old", days=-1)),
        "good": _flags(tls.issue(ours, "master", ["127.0.0.1"], ours, name="good")),
    }
    want = {"plain": "speaks plain text and this client TLS",
            "other-ca": "is not signed by this client's CA",
            "wrong-name": "does not name '127.0.0.1'",
            "expired": "has expired"}
    started = {name: _master(tmp_path, name, *flags) for name, flags in servers.items()}
    try:
        for name, (_, address) in started.items():
            got = _juggler("agents", "--master", address, home=tmp_path, env=_as(client))
            if name == "good":
                assert got.returncode == 0, got.stderr
                continue
            assert got.returncode != 0, name
            assert want[name] in got.stderr, (name, got.stderr)
    finally:
        for proc, _ in started.values():
            _stop(proc)


def test_plain_text_on_an_open_address_needs_insecure(tmp_path: Path) -> None:
    port = free_port()
    refused = subprocess.run([sys.executable, "-m", "juggler.cli.main", "master", "--host",
                              "0.0.0.0", "--port", str(port), "--metrics-port", "-1",
                              "--work-dir", str(tmp_path / "m")],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert "refusing to listen on 0.0.0.0 in plain text" in refused.stderr
    assert "--tls-cert" in refused.stderr and "--insecure" in refused.stderr
    proc, address = _master(tmp_path, "open", "--host", "0.0.0.0", "--insecure")
    try:
        got = _juggler("agents", "--master", address, home=tmp_path)
        assert got.returncode == 0, got.stderr
    finally:
        err = _stop(proc)
    assert "WARNING: listening on 0.0.0.0 in plain text (--insecure)" in err

