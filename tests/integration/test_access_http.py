"""Principals and access rules on the HTTP APIs, with real daemons and real
clients: the apps service's Marathon REST API (the `marathon` client, which
sends `Authorization: token=T`), its Docker Engine API over TCP (the `docker`
SDK and the real `docker` CLI, each sending a bearer token from a Docker
config's "HttpHeaders") and over the unix socket (the peer's user name), and
the master's HTTP /api/*.

No agent: every call here is decided by the services' own state (an app's
definition, a created container), so refusals are compared with the state
before and after.
"""

from __future__ import annotations

import collections
import collections.abc
import json
import os
import shutil
import signal
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from juggler.common.tokens import create, digest
from juggler.testing import secure
from juggler.testing.daemons import Daemons
from juggler.testing.waiting import free_port, wait_for
from tests.conftest import needs_root

docker_sdk = pytest.importorskip("docker")
marathon = pytest.importorskip("marathon")
from marathon import MarathonClient  # noqa: E402
from marathon.exceptions import MarathonHttpError  # noqa: E402
from marathon.models import MarathonApp  # noqa: E402

# Its daemons speak plain text, with rules written for that (gRPC peers without
# a principal): tokens over HTTPS are what the rest of the TLS run uses.
pytestmark = pytest.mark.skipif(secure.enabled(), reason="tokens on plain-text HTTP, with "
                                "rules of its own (JUGGLER_TEST_TLS=1 runs every daemon TLS)")
DEADLINE = 60.0
TOKENS = {"alice": "alice-secret-token-1", "bob": "bob-secret-token-2",
          "admin": "admin-secret-token-3"}

APPS_RULES = {
    "apps_read": [
        {"principals": {"values": ["alice"]}, "app_ids": {"values": ["/team-a/*"]}},
        {"principals": {"values": ["admin", "root"]}, "app_ids": {"type": "ANY"}}],
    "apps_write": [
        {"principals": {"values": ["alice"]}, "app_ids": {"values": ["/team-a/*"]}},
        {"principals": {"values": ["admin", "root"]}, "app_ids": {"type": "ANY"}}],
    "docker_api": [{"principals": {"values": ["alice", "bob", "admin", "root", "nobody"]}}],
    "containers_read": [
        {"principals": {"values": ["alice"]}, "names": {"values": ["a-*"]}},
        {"principals": {"values": ["admin", "root"]}, "names": {"type": "ANY"}}],
    "containers_write": [
        {"principals": {"values": ["alice"]}, "names": {"values": ["a-*"]}},
        {"principals": {"values": ["admin", "root"]}, "names": {"type": "ANY"}}],
    # What apps and containers launch (apps/launch_access.py): alice runs them
    # as nobody, off the host's network.
    "run_tasks": [
        {"principals": {"values": ["alice"]}, "users": {"values": ["nobody"]}},
        {"principals": {"values": ["admin", "root"]}, "users": {"type": "ANY"}}],
    "run_host_network": [{"principals": {"values": ["admin", "root"]}, "roles": {"type": "ANY"}}],
    "run_host_filesystem": [{"principals": {"values": ["alice", "admin", "root"]},
                             "roles": {"type": "ANY"}}],
}
# The master: without TLS here, gRPC callers (the apps service, this test's
# harness asking GetLeader) have no principal: "NONE" lets them subscribe and
# view; of the principals, only alice may view the cluster.
MASTER_RULES = {
    "register_frameworks": [{"principals": {"type": "ANY"}, "roles": {"type": "ANY"}}],
    "run_tasks": [{"principals": {"type": "ANY"}, "users": {"type": "ANY"}}],
    "view_cluster": [{"principals": {"values": ["alice", "admin"]}},
                     {"principals": {"type": "NONE"}}],
    "apps_read": [
        {"principals": {"values": ["alice"]}, "app_ids": {"values": ["/team-a/*"]}},
        {"principals": {"values": ["admin"]}, "app_ids": {"type": "ANY"}}],
}


@dataclass
class Secured:
    daemons: Daemons
    url: str              # the apps service's REST (and Docker) API
    socket: str           # its Docker unix socket
    master_http: str      # the master's HTTP port's URL
    config_dirs: Path     # where Docker configs with a token are made

    def docker_config(self, who: str | None) -> str:
        """A DOCKER_CONFIG directory whose config.json sends `who`'s token."""
        d = self.config_dirs / (who or "anonymous")
        d.mkdir(exist_ok=True)
        headers = {"Authorization": f"Bearer {TOKENS[who]}"} if who else {}
        (d / "config.json").write_text(json.dumps({"HttpHeaders": headers}))
        return str(d)

    def sdk(self, who: str | None, monkeypatch: pytest.MonkeyPatch) -> Any:
        """The docker SDK over TCP, sending `who`'s token (its Docker config)."""
        monkeypatch.setenv("DOCKER_CONFIG", self.docker_config(who))
        return docker_sdk.DockerClient(base_url=self.url.replace("http://", "tcp://"),
                                       version="1.47", timeout=30)

    def cli(self, who: str | None, *args: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, DOCKER_CONFIG=self.docker_config(who),
                   DOCKER_HOST=self.url.replace("http://", "tcp://"))
        env.pop("DOCKER_TLS_VERIFY", None)
        return subprocess.run(["docker", *args], capture_output=True, text=True, env=env,
                              timeout=60)


def _write(path: Path, data: object) -> str:
    path.write_text(json.dumps(data))
    return str(path)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    needs_root()
    work = tmp_path_factory.mktemp("access-http")
    tokens = _write(work / "tokens.json", {"tokens": [
        {"principal": p, "sha256": digest(t)} for p, t in TOKENS.items()]})
    # A directory `nobody` may enter, for the socket (the test's tmp dirs are 0700).
    sockets = Path(tempfile.mkdtemp(prefix="h18-http-"))
    sockets.chmod(0o755)
    daemons = Daemons(work)
    try:
        metrics_port = free_port()
        daemons.start_master("--acls", _write(work / "master-acls.json", MASTER_RULES),
                             "--tokens", tokens, "--metrics-port", str(metrics_port))
        socket = str(sockets / "docker.sock")
        url = daemons.start_apps("--acls", _write(work / "apps-acls.json", APPS_RULES),
                                 "--tokens", tokens, "--docker-socket-group", "nogroup",
                                 docker_socket=socket)
        s = Secured(daemons, url, socket, f"http://127.0.0.1:{metrics_port}", work)
        # It answers containers once it leads.
        wait_for(lambda: _get(f"{url}/v2/apps", "admin")[0] == 200, DEADLINE,
                 what="the apps service to lead")
        yield s
    finally:
        daemons.close()
        shutil.rmtree(sockets, ignore_errors=True)


def _get(url: str, who: str | None = None) -> tuple[int, Any]:
    """GET url as `who` (a bearer token): (status, JSON body or text)."""
    request = urllib.request.Request(url)
    if who:
        request.add_header("Authorization", f"Bearer {TOKENS[who]}")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            status, raw, headers = r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        status, raw, headers = e.code, e.read(), e.headers
    except (urllib.error.URLError, ConnectionError):
        return 0, None
    try:
        body = json.loads(raw)
    except ValueError:
        body = raw.decode(errors="replace")
    if isinstance(body, dict):
        body["_www_authenticate"] = headers.get("WWW-Authenticate", "")
    return status, body


@pytest.fixture
def marathon_client_on_py311(monkeypatch: pytest.MonkeyPatch) -> None:
    """marathon 0.13's encoder names collections.Iterable (gone since 3.10)."""
    monkeypatch.setattr(collections, "Iterable", collections.abc.Iterable, raising=False)


def _app(**more: Any) -> MarathonApp:
    """An app alice may launch (as nobody, on the bridge network) unless `more` says otherwise."""
    fields: dict[str, Any] = {"user": "nobody", "networks": [{"mode": "container/bridge"}],
                              **more}
    return MarathonApp(cmd="sleep 1000", cpus=0.1, mem=16, instances=0, **fields)


def test_marathon_client_with_a_token(secured: Secured, marathon_client_on_py311: None) -> None:
    alice = MarathonClient(secured.url, auth_token=TOKENS["alice"])
    bob = MarathonClient(secured.url, auth_token=TOKENS["bob"])
    admin = MarathonClient(secured.url, auth_token=TOKENS["admin"])
    nobody = MarathonClient(secured.url)

    alice.create_app("/team-a/web", _app())
    assert alice.get_app("/team-a/web").id == "/team-a/web"
    admin.create_app("/team-b/db", _app())

    before = sorted(a.id for a in admin.list_apps())
    # Another group's app: 403 with the rule that refused it, nothing changed.
    with pytest.raises(MarathonHttpError) as e:
        alice.create_app("/team-b/web", _app())
    assert e.value.status_code == 403
    assert "permission denied" in e.value.error_message and "rule" in e.value.error_message
    with pytest.raises(MarathonHttpError) as e:
        alice.delete_app("/team-b/db")
    assert e.value.status_code == 403
    # A valid principal without the rule; no principal at all.
    with pytest.raises(MarathonHttpError) as e:
        bob.get_app("/team-a/web")
    assert e.value.status_code == 403
    with pytest.raises(MarathonHttpError) as e:
        nobody.create_app("/team-a/x", _app())
    assert e.value.status_code == 401
    assert sorted(a.id for a in admin.list_apps()) == before == ["/team-a/web", "/team-b/db"]

    # What an app launches is the caller's to run: alice may not run one as
    # root, nor on the host's network (403 naming the rule, nothing created).
    for app, rule in ((_app(user="root"), "no run_tasks rule allows principal 'alice' for "
                                          "user 'root'"),
                      (_app(networks=[{"mode": "host"}]), "no run_host_network rule allows "
                                                           "principal 'alice' for role '*'")):
        with pytest.raises(MarathonHttpError) as e:
            alice.create_app("/team-a/escape", app)
        assert e.value.status_code == 403 and rule in e.value.error_message
    assert sorted(a.id for a in admin.list_apps()) == before

    # Lists show what the caller may read.
    assert [a.id for a in alice.list_apps()] == ["/team-a/web"]
    assert bob.list_apps() == []
    status, body = _get(f"{secured.url}/v2/apps")
    assert status == 401 and body["_www_authenticate"].startswith("Bearer")


def test_docker_sdk_over_tcp_with_a_bearer_token(secured: Secured,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    alice, admin = secured.sdk("alice", monkeypatch), secured.sdk("admin", monkeypatch)
    alice.containers.create("busybox", ["true"], name="a-one", user="nobody")
    admin.containers.create("busybox", ["true"], name="b-one")
    before = sorted(c.name for c in admin.containers.list(all=True))

    # What a container launches is alice's to run: not as root (also the
    # default user), not on the host's network.
    for more, rule in (({"user": "root"}, "for user 'root'"), ({}, "for user 'root'"),
                       ({"user": "nobody", "network_mode": "host"}, "run_host_network")):
        with pytest.raises(docker_sdk.errors.APIError) as e:
            alice.containers.create("busybox", ["true"], name="a-escape", **more)
        assert e.value.status_code == 403 and rule in str(e.value.explanation)
    assert sorted(c.name for c in admin.containers.list(all=True)) == before
    # Nor exec as root in her own container (refused before the handler, which
    # would answer 409: it is not running).
    with pytest.raises(docker_sdk.errors.APIError) as e:
        alice.containers.get("a-one").exec_run("true", user="root")
    assert e.value.status_code == 403 and "for user 'root'" in str(e.value.explanation)
    with pytest.raises(docker_sdk.errors.APIError) as e:
        alice.containers.get("a-one").exec_run("true", user="nobody")
    assert e.value.status_code == 409

    with pytest.raises(docker_sdk.errors.APIError) as e:
        alice.containers.create("busybox", ["true"], name="b-two")
    assert e.value.status_code == 403 and "permission denied" in str(e.value.explanation)
    theirs = _by_id(alice, admin, "b-one")
    for act in (lambda: theirs.remove(force=True), lambda: theirs.rename("a-stolen"),
                theirs.reload, theirs.stop, lambda: theirs.exec_run("true"),
                alice.containers.prune):
        with pytest.raises(docker_sdk.errors.APIError) as e:
            act()
        assert e.value.status_code == 403
    assert sorted(c.name for c in admin.containers.list(all=True)) == before

    assert [c.name for c in alice.containers.list(all=True)] == ["a-one"]
    alice.containers.get("a-one").remove(force=True)
    assert sorted(c.name for c in admin.containers.list(all=True)) == ["b-one"]

    # Without a token: 401 (docker_api needs a principal).
    anonymous = secured.sdk(None, monkeypatch)
    with pytest.raises(docker_sdk.errors.APIError) as e:
        anonymous.containers.list()
    assert e.value.status_code == 401


def _by_id(alice: Any, admin: Any, name: str) -> Any:
    """`name`'s container as alice's client would address it by id (she may
    not inspect it: the model is built from admin's view)."""
    c = admin.containers.get(name)
    return alice.containers.prepare_model(c.attrs)


def test_docker_cli_sends_its_config_headers(secured: Secured) -> None:
    if shutil.which("docker") is None:
        pytest.skip("requires the docker CLI")
    made = secured.cli("alice", "create", "--name", "a-cli", "--user", "nobody", "busybox",
                       "true")
    assert made.returncode == 0, made.stderr
    refused = secured.cli("alice", "create", "--name", "b-cli", "--user", "nobody", "busybox",
                          "true")
    assert refused.returncode != 0
    assert "permission denied" in refused.stderr and "b-cli" in refused.stderr
    ps = secured.cli("alice", "ps", "-a", "--format", "{{.Names}}")
    assert ps.returncode == 0 and ps.stdout.split() == ["a-cli"], ps
    assert "b-cli" not in secured.cli("admin", "ps", "-a", "--format", "{{.Names}}").stdout
    assert secured.cli("alice", "rm", "a-cli").returncode == 0


def test_unix_socket_principal_is_the_peers_user(secured: Secured) -> None:
    root = docker_sdk.DockerClient(base_url=f"unix://{secured.socket}", version="1.47")
    root.containers.create("busybox", ["true"], name="root-made")
    try:
        if shutil.which("docker") is None or shutil.which("setpriv") is None:
            pytest.skip("requires the docker CLI and setpriv")
        # `nobody` may open the socket (its group) and use the API, but not
        # root's container.
        as_nobody = ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups",
                     "docker", "-H", f"unix://{secured.socket}"]
        env = dict(os.environ, DOCKER_CONFIG=str(secured.config_dirs / "nobody-config"),
                   HOME="/")
        ps = subprocess.run([*as_nobody, "ps", "-a", "--format", "{{.Names}}"],
                            capture_output=True, text=True, env=env, timeout=60)
        assert ps.returncode == 0 and ps.stdout.split() == [], ps
        rm = subprocess.run([*as_nobody, "rm", "root-made"], capture_output=True, text=True,
                            env=env, timeout=60)
        assert rm.returncode != 0 and "principal 'nobody'" in rm.stderr, rm
    finally:
        root.containers.get("root-made").remove(force=True)


def test_master_api_needs_view_cluster(secured: Secured) -> None:
    status, body = _get(f"{secured.master_http}/api/state", "alice")
    assert status == 200 and "frameworks" in body
    status, body = _get(f"{secured.master_http}/api/state", "bob")
    assert status == 403 and "view_cluster" in body["error"]
    status, body = _get(f"{secured.master_http}/api/tasks/x/logs", "bob")
    assert status == 403
    # The UI's page stays open (it asks for a token).
    status, _ = _get(f"{secured.master_http}/")
    assert status == 200


def test_master_apps_page_needs_apps_read_on_every_app(secured: Secured) -> None:
    # The master reads the apps service with its own rights: only who may
    # read every app sees them; alice (view_cluster, apps_read /team-a/*) not.
    status, body = _get(f"{secured.master_http}/api/apps", "alice")
    assert status == 403 and "apps_read" in body["error"] and "'/'" in body["error"], body
    status, body = _get(f"{secured.master_http}/api/apps", "admin")
    # (Without TLS the master has no principal of its own: the apps service
    # refuses it, which the page shows as that service's error.)
    assert status == 200 and len(body["services"]) == 1, body


def test_sighup_reloads_the_tokens(secured: Secured) -> None:
    carol = create(secured.config_dirs / "tokens.json", "carol")
    request = urllib.request.Request(f"{secured.url}/v2/apps",
                                     headers={"Authorization": f"Bearer {carol}"})

    def status() -> int:
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    assert status() == 401
    secured.daemons.send("apps", signal.SIGHUP)
    wait_for(lambda: status() == 200, DEADLINE, what="the new token to be taken")


def test_tokens_stay_out_of_logs_and_metrics(secured: Secured) -> None:
    status, metrics = _get(f"{secured.url}/metrics")
    assert status == 200 and "juggler_access_denied_total" in metrics
    logs = secured.daemons.logs()
    assert "access denied" in logs
    for token in TOKENS.values():
        assert token not in logs and token not in metrics


# -- the same over HTTPS: the principal of a client certificate ------------------------------


@dataclass
class SecuredTLS:
    url: str              # https://…: the apps service's REST and Docker API
    ca: Path
    certs: Path           # <principal>.crt / .key


@pytest.fixture(scope="module")
def secured_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredTLS]:
    needs_root()
    from juggler.common import tls

    work = tmp_path_factory.mktemp("access-https")
    ca = tls.make_ca(work / "ca")
    for who in ("master", "apps", "harness", "alice"):
        tls.issue(ca, who, ["127.0.0.1", "localhost"], work)

    def flags(who: str) -> list[str]:
        return tls.TLSConfig(ca / "ca.crt", work / f"{who}.crt", work / f"{who}.key").flags()

    tokens = _write(work / "tokens.json", {"tokens": [
        {"principal": p, "sha256": digest(t)} for p, t in TOKENS.items()]})
    master_rules = {
        "register_frameworks": [{"principals": {"values": ["apps"]}, "roles": {"type": "ANY"}}],
        "view_cluster": [{"principals": {"values": ["harness", "apps"]}}]}
    before = tls.current()
    # This process asks the master whether it serves (Daemons), as `harness`.
    tls.configure(tls.TLSConfig(ca / "ca.crt", work / "harness.crt", work / "harness.key"))
    daemons = Daemons(work)
    try:
        daemons.start_master("--acls", _write(work / "master-acls.json", master_rules),
                             *flags("master"))
        url = daemons.start_apps("--acls", _write(work / "apps-acls.json", APPS_RULES),
                                 "--tokens", tokens, *flags("apps"))
        s = SecuredTLS(url, ca / "ca.crt", work)
        assert url.startswith("https://"), url
        wait_for(lambda: _https(s, "GET", "/v2/apps", token="admin")[0] == 200, DEADLINE,
                 what="the apps service to lead")
        yield s
    finally:
        daemons.close()
        tls.configure(before)


def _https(s: SecuredTLS, method: str, path: str, body: Any = None, *,
           cert: str | None = None, token: str | None = None) -> tuple[int, Any]:
    import requests

    headers = {"Authorization": f"Bearer {TOKENS[token]}"} if token else {}
    try:
        r = requests.request(method, s.url + path, json=body, headers=headers, timeout=30,
                             verify=str(s.ca),
                             cert=(str(s.certs / f"{cert}.crt"), str(s.certs / f"{cert}.key"))
                             if cert else None)
    except requests.ConnectionError:
        return 0, None
    try:
        return r.status_code, r.json()
    except ValueError:
        return r.status_code, r.text


def test_a_client_certificate_names_the_principal(secured_tls: SecuredTLS,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    app = {"cmd": "sleep 1000", "cpus": 0.1, "mem": 16, "instances": 0, "user": "nobody",
           "networks": [{"mode": "container/bridge"}]}
    status, body = _https(secured_tls, "POST", "/v2/apps", {"id": "/team-a/tls", **app},
                          cert="alice")
    assert status == 201, body
    status, body = _https(secured_tls, "POST", "/v2/apps", {"id": "/team-b/tls", **app},
                          cert="alice")
    assert status == 403 and "principal 'alice'" in body["message"], body
    # A certificate of a principal without rules; a token over HTTPS; nothing.
    assert _https(secured_tls, "GET", "/v2/apps/team-a/tls", cert="harness")[0] == 403
    assert _https(secured_tls, "GET", "/v2/apps/team-a/tls", token="alice")[0] == 200
    assert _https(secured_tls, "GET", "/v2/apps/team-a/tls")[0] == 401

    # The docker SDK with alice's certificate (requests would trust these
    # variables' bundle over the session's CA: requests issue 3829).
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(variable, raising=False)
    tls_config = docker_sdk.tls.TLSConfig(
        client_cert=(str(secured_tls.certs / "alice.crt"), str(secured_tls.certs / "alice.key")),
        ca_cert=str(secured_tls.ca), verify=True)
    client = docker_sdk.DockerClient(base_url=secured_tls.url.replace("https://", "tcp://"),
                                     tls=tls_config, version="1.47", timeout=30)
    client.containers.create("busybox", ["true"], name="a-tls", user="nobody")
    with pytest.raises(docker_sdk.errors.APIError) as e:
        client.containers.create("busybox", ["true"], name="b-tls", user="nobody")
    assert e.value.status_code == 403
    assert [c.name for c in client.containers.list(all=True)] == ["a-tls"]
