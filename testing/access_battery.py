"""The access battery's cluster (tests/integration/test_access_battery.py):
real master, agents and apps service with mutual TLS, a rules file and a
tokens file made here, the four kinds of caller, and what a refusal must not
change.

The callers (issue 18):
- "none":    no credentials, plain text (against TLS servers);
- "anonymous": no credentials over TLS: no client certificate, no token;
- "other":   a certificate of principal `allowed` from another CA (gRPC and
             HTTP alike: the handshake is refused);
- "denied":  a valid certificate (gRPC) or token (HTTP) of principal `denied`,
             which no rule names;
- "allowed": principal `allowed`, which the rules give exactly what each call
             of the battery needs (RULES);
- "socket":  (HTTP only) this process, root, over the Docker unix socket.
The daemons are principals `master`, `agent` and `apps`, allowed everything.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from juggler.common import tls
from juggler.common.tokens import digest
from juggler.testing.daemons import Daemons
from juggler.testing.rootfs import make_busybox_rootfs
from juggler.testing.waiting import wait_for
from juggler.v1 import agent_pb2, agent_pb2_grpc, operator_pb2, operator_pb2_grpc

CALLERS = ("none", "anonymous", "other", "denied", "allowed")
# HTTP: root over the apps service's unix socket too (its principal is the
# peer's user name, which the rules do not name: a principal without the rule).
HTTP_CALLERS = ("none", "anonymous", "other", "denied", "socket", "allowed")
HOSTS = ("127.0.0.1", "localhost")
ANY = {"type": "ANY"}
ROLE = "battery"
SPARE = "spare"            # the agent DrainAgent/UpAgent act on (it runs nothing)
PROBE = "battery-probe"    # the hostname AgentChannel.Connect claims
TOKENS = {"allowed": "battery-allowed-token", "denied": "battery-denied-token"}
DEADLINE = 60.0


def _only(who: str, key: str = "", values: list[str] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"principals": {"values": [who]}}
    if key:
        entry[key] = {"values": values} if values is not None else ANY
    return entry


def rules() -> dict[str, Any]:
    """The daemons may do everything; `allowed` exactly what its calls need;
    `denied` nothing (deny by default)."""
    daemons = {"principals": {"values": ["master", "agent", "apps"]}}
    objects = {"register_agents": "agents", "register_frameworks": "roles",
               "run_tasks": "users", "run_host_network": "roles",
               "run_host_filesystem": "roles", "write_host_filesystem": "roles",
               "teardown_frameworks": "framework_principals",
               "kill_tasks": "framework_principals", "view_cluster": "",
               "drain_agents": "agents", "update_quotas": "roles", "update_weights": "roles",
               "access_sandboxes": "framework_principals",
               "launch_nested_container_sessions": "framework_principals",
               "manage_images": "", "apps_read": "app_ids", "apps_write": "app_ids",
               "containers_read": "names", "containers_write": "names", "docker_api": ""}
    out: dict[str, Any] = {"permissive": False}
    for action, key in objects.items():
        out[action] = [dict(daemons, **({key: ANY} if key else {}))]
    allowed = {
        "register_agents": _only("allowed", "agents", [PROBE]),
        "register_frameworks": _only("allowed", "roles", [ROLE]),
        "run_tasks": _only("allowed", "users", ["root"]),
        # ROLE: its framework's tasks; "*": the apps service's role, for the
        # apps it launches on its caller's behalf (host network and
        # filesystem: Marathon's defaults; apps/launch_access.py).
        "run_host_filesystem": _only("allowed", "roles", [ROLE, "*"]),
        "run_host_network": _only("allowed", "roles", ["*"]),
        "view_cluster": _only("allowed"),
        "drain_agents": _only("allowed", "agents", [SPARE]),
        "update_quotas": _only("allowed", "roles", [ROLE]),
        "update_weights": _only("allowed", "roles", [ROLE]),
        "access_sandboxes": _only("allowed", "framework_principals", ["allowed"]),
        "launch_nested_container_sessions": _only("allowed", "framework_principals",
                                                  ["allowed"]),
        "manage_images": _only("allowed"),
        # "/": the root group (GET/DELETE /v2/groups, the event stream), exactly.
        "apps_read": _only("allowed", "app_ids", ["/battery/*", "/"]),
        "apps_write": _only("allowed", "app_ids", ["/battery/*", "/"]),
        "docker_api": _only("allowed"),
        "containers_read": _only("allowed", "names", ["battery-*"]),
        "containers_write": _only("allowed", "names", ["battery-*"]),
    }
    for action, entry in allowed.items():
        out[action].append(entry)
    return out


@dataclass
class Outcome:
    """What a call got: a gRPC status code name ("OK" for none), an HTTP
    status (as text), "TRANSPORT" (the connection or handshake refused) or
    "TIMEOUT" (no answer within the request's 30 s)."""
    code: str
    detail: str = ""


@dataclass
class Battery:
    d: Daemons
    certs: Path
    other: Path
    url: str                 # the apps service's HTTPS URL (REST and Docker API)
    rootfs: Path             # a busybox tree: Docker containers' "Image"
    socket: Path             # the apps service's Docker unix socket
    agent_api: str = ""      # a1's Agent API address
    agent_id: str = ""       # a1's id (the live task's agent)
    spare_id: str = ""
    fid: str = ""            # the setup framework (principal allowed)
    sid: str = ""
    task_id: str = "live"
    made: dict[str, int] = field(default_factory=dict)
    observers: dict[str, grpc.Channel] = field(default_factory=dict)

    # -- credentials --------------------------------------------------------------------

    def cfg(self, who: str) -> tls.TLSConfig:
        if who == "other":
            return tls.TLSConfig(self.certs / "ca.crt", self.other / "allowed.crt",
                                 self.other / "allowed.key")
        return tls.TLSConfig(self.certs / "ca.crt", self.certs / f"{who}.crt",
                             self.certs / f"{who}.key")

    def channel(self, who: str, address: str) -> grpc.Channel:
        if who == "none":
            return grpc.insecure_channel(address)
        if who == "anonymous":
            return grpc.secure_channel(address, grpc.ssl_channel_credentials(
                (self.certs / "ca.crt").read_bytes()))
        return grpc.secure_channel(address, tls.channel_credentials(self.cfg(who)))

    def _observer(self, address: str) -> grpc.Channel:
        """`allowed`'s channel to `address` that state() reads through (kept open)."""
        if address not in self.observers:
            self.observers[address] = self.channel("allowed", address)
        return self.observers[address]

    def fresh(self, what: str) -> str:
        """A name not used before in this battery ("battery-new-3")."""
        self.made[what] = self.made.get(what, 0) + 1
        return f"battery-{what}-{self.made[what]}"

    # -- HTTP ---------------------------------------------------------------------------

    def http(self, who: str, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[Outcome, Any]:
        """One request to the apps service as `who` (a token for allowed and
        denied; the other CA's certificate for "other"; plain HTTP for "none";
        HTTPS without a certificate or token for "anonymous").
        Reads the status line and headers only for streams (event streams,
        attach, exec start), else the body (JSON when it parses)."""
        ctx = ssl.create_default_context(cafile=str(self.certs / "ca.crt"))
        if who == "other":
            ctx.load_cert_chain(str(self.other / "allowed.crt"), str(self.other / "allowed.key"))
        host, _, port = self.url.removeprefix("https://").rpartition(":")
        conn: http.client.HTTPConnection
        if who == "socket":
            conn = _UnixConnection(str(self.socket))
        elif who == "none":
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
        else:
            conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=30)
        sent = dict(headers or {})
        if who in TOKENS:
            sent["Authorization"] = f"Bearer {TOKENS[who]}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=data, headers=sent)
            r = conn.getresponse()
            streaming = r.status < 300 and (r.getheader("Content-Type", "").startswith(
                ("text/event-stream", "application/vnd.docker.raw-stream",
                 "application/vnd.docker.multiplexed-stream")) or path.endswith("/events"))
            raw = b"" if streaming else r.read()
            status = r.status
        except TimeoutError as e:
            return Outcome("TIMEOUT", str(e)), None
        except (ssl.SSLError, ConnectionError) as e:   # RemoteDisconnected is one
            return Outcome("TRANSPORT", f"{type(e).__name__}: {e}"), None
        finally:
            conn.close()
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        detail = parsed.get("message", "") if isinstance(parsed, dict) else str(parsed)[:300]
        return Outcome(str(status), str(detail)), parsed

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        """A request as `allowed` that must succeed (2xx): its JSON."""
        outcome, parsed = self.http("allowed", method, path, body)
        assert outcome.code.startswith("2"), (method, path, outcome)
        return parsed

    # -- the state a refusal must not change ---------------------------------------------

    def state(self) -> dict[str, Any]:
        """The master's and the agent's state, the apps and deployments, the
        containers: the fields that change only when something is done (no
        offers, heartbeats, timestamps, usage)."""
        operator = operator_pb2_grpc.OperatorStub(self._observer(self.d.master))
        s = operator.GetState(operator_pb2.GetStateRequest(), timeout=30)
        roles = operator.GetRoles(operator_pb2.GetRolesRequest(), timeout=30).roles
        a = agent_pb2_grpc.AgentStub(self._observer(self.agent_api)).GetState(
            agent_pb2.GetAgentStateRequest(), timeout=30)
        apps = self.ok("GET", "/v2/apps")["apps"]
        deployments = self.ok("GET", "/v2/deployments")
        containers = self.ok("GET", "/containers/json?all=1")
        return {
            "agents": sorted((x.info.id, x.info.hostname, x.state, x.maintenance)
                             for x in s.agents),
            "frameworks": sorted((f.info.id, f.info.principal, tuple(f.info.roles), f.state,
                                  f.connected) for f in s.frameworks),
            "roles": sorted((r.role, r.weight, tuple(sorted((q.name, q.scalar) for q in r.quota)),
                             tuple(sorted(r.frameworks))) for r in roles),
            "tasks": sorted((t.info.task_id, t.framework_id, t.state) for t in s.tasks),
            "agent tasks": sorted((t.task_id, t.framework_id, t.state) for t in a.tasks),
            "executors": sorted((e.task_id, e.state, e.kill_requested) for e in a.executors),
            "apps": sorted((x["id"], x.get("instances"), x.get("version"),
                            json.dumps(x.get("cmd")), x.get("tasksRunning")) for x in apps),
            "deployments": sorted((x["id"], tuple(x.get("affectedApps", [])))
                                  for x in deployments),
            "containers": sorted((c["Id"], tuple(c["Names"]), c["State"]) for c in containers),
        }

    def settled(self) -> None:
        """Wait until no deployment runs but the one that never ends (the
        waiting app's, when it exists)."""
        wait_for(lambda: all(x.get("affectedApps") == ["/battery/waiting"]
                             for x in self.ok("GET", "/v2/deployments")),
                 timeout=DEADLINE, what="the apps service's deployments to end")


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def make_certificates(work: Path) -> tuple[Path, Path]:
    """The cluster's CA and certificates (work/certs), and another CA with
    a certificate of principal `allowed` (work/other)."""
    certs, other = work / "certs", work / "other"
    tls.make_ca(certs)
    for who in ("master", "agent", "apps", "allowed", "denied"):
        tls.issue(certs, who, HOSTS, certs)
    tls.make_ca(other)
    tls.issue(other, "allowed", HOSTS, other)
    return certs, other


@contextlib.contextmanager
def battery_cluster(work: Path) -> Iterator[Battery]:
    """The daemons (a master; agents a1 and spare; an apps service with its
    Docker API on the REST port and a unix socket), this process's own TLS
    configuration being `allowed`'s while it lasts."""
    certs, other = make_certificates(work)
    acls = work / "acls.json"
    acls.write_text(json.dumps(rules()))
    tokens = work / "tokens.json"
    tokens.write_text(json.dumps({"tokens": [{"principal": p, "sha256": digest(t)}
                                             for p, t in TOKENS.items()]}))
    d = Daemons(work)
    previous = tls.current()
    tls.configure(tls.TLSConfig(certs / "ca.crt", certs / "allowed.crt", certs / "allowed.key"))

    def flags(who: str) -> tuple[str, ...]:
        cfg = tls.TLSConfig(certs / "ca.crt", certs / f"{who}.crt", certs / f"{who}.key")
        return (*cfg.flags(), "--acls", str(acls))

    try:
        d.start_master(*flags("master"), "--allocation-interval", "0.2")
        d.start_agent("a1", *flags("agent"))
        d.start_agent(SPARE, *flags("agent"), resources="cpus:1;mem:256;disk:256")
        url = d.start_apps(*flags("apps"), "--tokens", str(tokens),
                           docker_socket=str(work / "docker.sock"))
        assert url.startswith("https://"), url
        d.wait_agents(2)
        b = Battery(d, certs, other, url, make_busybox_rootfs(work / "rootfs"),
                    work / "docker.sock")
        for view in d.agents():
            if view.info.hostname == "a1":
                b.agent_api, b.agent_id = view.info.address, view.info.id
            elif view.info.hostname == SPARE:
                b.spare_id = view.info.id
        wait_for(lambda: b.http("allowed", "GET", "/v2/apps")[0].code == "200",
                 timeout=DEADLINE, what="the apps service to lead")
        try:
            yield b
        finally:
            for ch in b.observers.values():
                ch.close()
    finally:
        try:
            d.close()
        finally:
            tls.configure(previous)
