"""Access rules through a STANDBY apps service (apps/rest_access.py,
apps/rest_proxy.py), with real daemons over TLS: one master, two apps
services electing a leader on a real etcd, the same rules and tokens on
both. The standby names its caller (a bearer token over HTTPS, the Docker
socket's user), refuses what its rules refuse, and forwards the rest with its
own `apps` certificate and the caller's principal, for which the leader
decides with its state; lists come back filtered, `juggler ps` works.

No agent: every call here is decided by the services' own state (created
containers, app definitions), so refusals are compared with the state before
and after.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from juggler.common.tokens import digest
from juggler.testing import secure
from juggler.testing.daemons import Daemons
from juggler.testing.waiting import wait_for
from tests.conftest import needs_root

docker_sdk = pytest.importorskip("docker")
requests = pytest.importorskip("requests")

pytestmark = pytest.mark.skipif(secure.enabled(), reason="its own CA and rules "
                                "(JUGGLER_TEST_TLS=1 runs every daemon with the suite's)")
DEADLINE = 60.0
TOKENS = {"alice": "alice-standby-token-1", "admin": "admin-standby-token-2"}
RULES = {
    "docker_api": [{"principals": {"values": ["alice", "admin", "root"]}}],
    "containers_read": [
        {"principals": {"values": ["alice"]}, "names": {"values": ["a-*"]}},
        {"principals": {"values": ["root"]}, "names": {"values": ["r-*"]}},
        {"principals": {"values": ["admin"]}, "names": {"type": "ANY"}}],
    "containers_write": [
        {"principals": {"values": ["alice"]}, "names": {"values": ["a-*"]}},
        {"principals": {"values": ["root"]}, "names": {"values": ["r-*"]}},
        {"principals": {"values": ["admin"]}, "names": {"type": "ANY"}}],
    "apps_read": [
        {"principals": {"values": ["alice"]}, "app_ids": {"values": ["/team-a/*"]}},
        {"principals": {"values": ["admin"]}, "app_ids": {"type": "ANY"}}],
    "apps_write": [
        {"principals": {"values": ["alice"]}, "app_ids": {"values": ["/team-a/*"]}},
        {"principals": {"values": ["admin"]}, "app_ids": {"type": "ANY"}}],
    # What apps and containers launch (apps/launch_access.py).
    "run_tasks": [
        {"principals": {"values": ["alice"]}, "users": {"values": ["nobody"]}},
        {"principals": {"values": ["admin", "root"]}, "users": {"type": "ANY"}}],
    "run_host_network": [{"principals": {"values": ["admin", "root"]}, "roles": {"type": "ANY"}}],
    "run_host_filesystem": [{"principals": {"values": ["alice", "admin", "root"]},
                             "roles": {"type": "ANY"}}],
}


@dataclass
class Pair:
    leader: str           # https://…: the leading apps service
    standby: str          # https://…: the standby (REST and Docker API)
    socket: str           # the standby's Docker unix socket
    ca: Path
    certs: Path           # <principal>.crt / .key
    work: Path

    def sdk(self, who: str, monkeypatch: pytest.MonkeyPatch) -> Any:
        """The docker SDK over HTTPS to the standby, sending `who`'s token
        (a Docker config's HttpHeaders), no client certificate."""
        config = self.work / f"docker-{who}"
        config.mkdir(exist_ok=True)
        (config / "config.json").write_text(json.dumps(
            {"HttpHeaders": {"Authorization": f"Bearer {TOKENS[who]}"}}))
        monkeypatch.setenv("DOCKER_CONFIG", str(config))
        for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # requests issue 3829
            monkeypatch.delenv(variable, raising=False)
        tls_config = docker_sdk.tls.TLSConfig(ca_cert=str(self.ca), verify=True)
        return docker_sdk.DockerClient(base_url=self.standby.replace("https://", "tcp://"),
                                       tls=tls_config, version="1.47", timeout=30)

    def call(self, url: str, path: str, *, token: str | None = None, cert: str | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {TOKENS[token]}"
        r = requests.get(url + path, headers=sent, timeout=30, verify=str(self.ca),
                         cert=(str(self.certs / f"{cert}.crt"), str(self.certs / f"{cert}.key"))
                         if cert else None)
        try:
            return r.status_code, r.json()
        except ValueError:
            return r.status_code, r.text


def _write(path: Path, data: object) -> str:
    path.write_text(json.dumps(data))
    return str(path)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, etcd: Any) -> Iterator[Pair]:
    needs_root()
    from juggler.common import tls

    work = tmp_path_factory.mktemp("access-standby")
    ca = tls.make_ca(work / "ca")
    for who in ("master", "apps", "harness"):
        tls.issue(ca, who, ["127.0.0.1", "localhost"], work)

    def flags(who: str) -> list[str]:
        return tls.TLSConfig(ca / "ca.crt", work / f"{who}.crt", work / f"{who}.key").flags()

    tokens = _write(work / "tokens.json", {"tokens": [
        {"principal": p, "sha256": digest(t)} for p, t in TOKENS.items()]})
    rules = _write(work / "apps-acls.json", RULES)
    master_rules = {
        "register_frameworks": [{"principals": {"values": ["apps"]}, "roles": {"type": "ANY"}}],
        "view_cluster": [{"principals": {"values": ["harness", "apps"]}}]}
    ha = ["--etcd", etcd.endpoint, "--etcd-prefix", f"/h18-standby-{uuid.uuid4().hex[:8]}/",
          "--lease-ttl", "2", "--acls", rules, "--tokens", tokens, *flags("apps")]
    before = tls.current()
    tls.configure(tls.TLSConfig(ca / "ca.crt", work / "harness.crt", work / "harness.key"))
    daemons = Daemons(work)
    try:
        daemons.start_master("--acls", _write(work / "master-acls.json", master_rules),
                             *flags("master"))
        p = Pair("", "", str(work / "docker.sock"), ca / "ca.crt", work, work)

        def leader_of(url: str) -> str | None:
            try:
                status, body = p.call(url, "/v2/leader")
            except requests.ConnectionError:
                return None
            return body.get("leader") if status == 200 else None

        p.leader = daemons.start_apps(*ha, name="apps-1")
        host = p.leader.split("://", 1)[1]
        wait_for(lambda: leader_of(p.leader) == host, DEADLINE, what="apps-1 to lead")
        p.standby = daemons.start_apps(*ha, name="apps-2", docker_socket=p.socket)
        wait_for(lambda: leader_of(p.standby) == host, DEADLINE,
                 what="apps-2 to stand by, naming apps-1")
        yield p
    finally:
        daemons.close()
        tls.configure(before)


def _names(client: Any) -> list[str]:
    return sorted(c.name for c in client.containers.list(all=True))


def _refused(act: Any, who: str) -> None:
    with pytest.raises(docker_sdk.errors.APIError) as e:
        act()
    assert e.value.status_code == 403, e.value
    assert f"principal '{who}'" in str(e.value.explanation), e.value.explanation


def test_a_token_over_https_through_the_standby(pair: Pair,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    alice, admin = pair.sdk("alice", monkeypatch), pair.sdk("admin", monkeypatch)
    alice.containers.create("busybox", ["true"], name="a-one", user="nobody")
    admin.containers.create("busybox", ["true"], name="b-one")
    assert alice.containers.get("a-one").name == "a-one"       # inspect, by name
    before = _names(admin)
    # Refused by the standby's own check (the name of a create, its user) ...
    _refused(lambda: alice.containers.create("busybox", ["true"], name="b-two",
                                             user="nobody"), "alice")
    _refused(lambda: alice.containers.create("busybox", ["true"], name="a-root"), "alice")
    # ... and by the leader, which alone knows the name behind an id: it
    # decides as alice, not as the standby's `apps`.
    theirs = alice.containers.prepare_model(admin.containers.get("b-one").attrs)
    for act in (theirs.reload, lambda: theirs.remove(force=True),
                lambda: theirs.rename("a-stolen")):
        _refused(act, "alice")
    assert _names(admin) == before == ["a-one", "b-one"]
    # The list, read whole from the leader and filtered.
    assert _names(alice) == ["a-one"]

    # Marathon's API the same way.
    app = {"cmd": "sleep 1000", "cpus": 0.1, "mem": 16, "instances": 0, "user": "nobody",
           "networks": [{"mode": "container/bridge"}]}
    for who, app_id, more, status in (("alice", "/team-a/root", {"user": "root"}, 403),
                                      ("alice", "/team-a/web", {}, 201),
                                      ("admin", "/team-b/db", {}, 201)):
        r = requests.post(f"{pair.standby}/v2/apps", json={"id": app_id, **app, **more},
                          headers={"Authorization": f"Bearer {TOKENS[who]}"},
                          verify=str(pair.ca), timeout=30)
        # (The root app: refused by the leader, deciding as alice.)
        assert r.status_code == status, r.text
    status, body = pair.call(pair.standby, "/v2/apps", token="alice")
    assert status == 200 and [a["id"] for a in body["apps"]] == ["/team-a/web"]
    status, body = pair.call(pair.standby, "/v2/apps/team-b/db", token="alice")
    assert status == 403 and "principal 'alice'" in body["message"], body


def test_the_unix_socket_user_through_the_standby(pair: Pair,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    root = docker_sdk.DockerClient(base_url=f"unix://{pair.socket}", version="1.47",
                                   timeout=30)
    root.containers.create("busybox", ["true"], name="r-one")
    assert root.containers.get("r-one").name == "r-one"
    _refused(lambda: root.containers.create("busybox", ["true"], name="x-root"), "root")
    admin = pair.sdk("admin", monkeypatch)
    admin.containers.create("busybox", ["true"], name="b-sock")
    status, listed = pair.call(pair.leader, "/containers/json?all=1", token="admin")
    assert status == 200
    others = [c for c in listed if c["Names"] != ["/r-one"]]
    assert others, listed
    for c in others:   # by id: root may not inspect them
        theirs = root.containers.prepare_model(c)
        _refused(theirs.reload, "root")
        _refused(lambda theirs=theirs: theirs.remove(force=True), "root")
    status, after = pair.call(pair.leader, "/containers/json?all=1", token="admin")
    assert sorted(c["Id"] for c in after) == sorted(c["Id"] for c in listed)
    assert _names(root) == ["r-one"]

    # `juggler ps` through the standby's socket.
    home = pair.work / "home"
    home.mkdir(exist_ok=True)
    ps = subprocess.run([sys.executable, "-m", "juggler.cli.main", "ps", "-a",
                         "-H", f"unix://{pair.socket}", "--format", "{{.Names}}"],
                        capture_output=True, text=True, timeout=60,
                        env={**os.environ, "JUGGLER_HOME": str(home)})
    assert ps.returncode == 0 and ps.stdout.split() == ["r-one"], ps


def test_only_the_apps_service_names_a_callers_principal(pair: Pair) -> None:
    """X-Juggler-Principal from a token, another certificate, or through the
    standby: 403, at the leader and at the standby alike."""
    forged = {"X-Juggler-Principal": "admin", "X-Marathon-Via": "x"}
    for url in (pair.leader, pair.standby):
        status, body = pair.call(url, "/containers/json", token="alice", headers=forged)
        assert status == 403 and "X-Juggler-Principal" in body["message"], body
    status, body = pair.call(pair.leader, "/containers/json", cert="harness", headers=forged)
    assert status == 403, body
    # The apps certificate may, as the standby does: the leader answers as alice.
    status, body = pair.call(pair.leader, "/containers/json?all=1", cert="apps",
                             headers={"X-Juggler-Principal": "alice",
                                      "X-Marathon-Via": "test"})
    assert status == 200, body
    assert body == pair.call(pair.leader, "/containers/json?all=1", token="alice")[1]
    assert all(c["Names"][0].startswith("/a-") for c in body), body
