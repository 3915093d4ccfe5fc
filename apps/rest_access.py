"""Principals and access rules on the apps service's HTTP APIs: Marathon's
REST API and Docker's Engine API (one aiohttp application, on the REST port
and the Docker unix socket).

Who calls (the principal):
- on TCP (HTTP or HTTPS): common.principals.http_principal — a verified
  client certificate's common name, else the token of `Authorization:
  Bearer T` or Marathon's `Authorization: token=T`, looked up in the tokens
  file (common/tokens.py);
- on the Docker unix socket: the peer's user name (SO_PEERCRED, then the
  password database; the uid as text when it has no name). As Docker's own
  socket model: whoever may open the socket (mode 0660, --docker-socket-group)
  is that user; a header there is ignored.

What it needs: apps/access_targets.py (pure) from the method and path, then
the body or the state (ids in a posted definition, a container's name behind
its id, a deployment's apps). Every check must allow, else nothing reaches
the handler (nothing is applied). What is launched is checked against the
caller too (apps/launch_access.py: run_tasks on the user, run_host_network,
run_host_filesystem on the role), as the master checks a scheduler's Accept
— the master itself sees only the apps service's principal: a Docker
create's body here, before the handler; the app definitions a Marathon
write would deploy (after PATCH merges, rollbacks, group changes) in the
handler, through rest_backend.LAUNCH_GUARD, just before the deployment is
made (403, nothing applied).
- 401 with `WWW-Authenticate: Bearer realm="juggler"` when a check refuses
  a caller without a principal (no certificate, no token, or a token the
  file does not hold: error="invalid_token");
- 403 otherwise. Bodies: Marathon's {"message": "permission denied: … (rule
  …)"} on Marathon's paths, Docker's {"message": …} (exactly
  application/json, which the docker CLI prints) on Docker's.
Refusals are logged and counted by common/access.py (juggler_access_denied_total).
Lists are filtered to what the caller may read, with the pure rules (an item
left out is not a refusal: neither logged nor counted).

Standbys (several apps services, one leading: apps/rest_proxy.py) enforce
too; every apps service is started with the same --acls and --tokens
(`juggler up` gives them the same). A standby names its caller as above and
refuses what its rules refuse before passing anything on; what only the
state can tell (a container's name behind its id, a deployment's apps) it
cannot resolve — its state is the leader's to hold — so it passes the
request to the leader with its own identity, its `apps` client certificate,
and the caller's principal in `X-Juggler-Principal` (percent-encoded; absent
for a caller without one). The leader honours that header only from a peer
whose verified certificate names the principal `apps` (FORWARDER) and
decides as that caller: every check, with its state, and the list filtered.
The header from anyone else (a token, another certificate, the Docker
socket) is refused (403): no one else may speak for a caller. Lists are
filtered once more on the standby (the leader's JSON is read whole for the
filtered lists, not streamed: same rules, so nothing more is removed);
streams (logs, events, wait, stats) pass through as they come and need only
the request's checks. A standby without TLS has no identity the leader can
verify: it passes on the caller's bearer token only, and answers 503 to a
caller it knows by the socket's user (call the leader, or turn TLS on).
Nothing is applied on a refusal, by either.

Without rules (no --acls), nothing is checked or filtered. Tokens never
reach a log line: only principals are logged.
"""

from __future__ import annotations

import json
import pwd
import socket
import struct
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from juggler.apps.access_targets import (
    Check,
    Target,
    body_app_ids,
    docker_target,
    filter_list,
    rest_target,
)
from juggler.apps.launch_access import app_checks, container_checks
from juggler.common import tls
from juggler.common.access import AccessControl, Denied
from juggler.common.principals import http_principal, token_of
from juggler.common.tokens import INVALID, Tokens

__all__ = ["ACCESS", "FORWARDER", "PRINCIPAL", "PRINCIPAL_HEADER", "WHOLE", "Forged",
           "HttpAccess", "access_middleware", "caller", "peer_user"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REALM = 'Bearer realm="juggler"'
# The principal of the apps services' certificates (cli/up_tls.py): the only
# peer that may name the caller of a request it forwards, in PRINCIPAL_HEADER.
FORWARDER = "apps"
PRINCIPAL_HEADER = "X-Juggler-Principal"
VIA_HEADER = "X-Marathon-Via"   # rest_proxy's mark on a request it forwards
# What the middleware leaves on a request for the proxy (apps/rest_proxy.py):
# the caller's principal (str | None), and whether the answer is a list to
# filter (read whole, not streamed). web.RequestKey where aiohttp has it (3.12+).
_KEY: Any = getattr(web, "RequestKey", None)
PRINCIPAL: Any = _KEY("juggler_principal", object) if _KEY else "juggler.principal"
WHOLE: Any = _KEY("juggler_whole_answer", bool) if _KEY else "juggler.whole_answer"


@dataclass
class HttpAccess:
    """The rules and tokens one HTTP server answers by."""

    rules: AccessControl
    tokens: Tokens | None = None

    def lookup(self, token: str) -> str | None:
        return self.tokens.lookup(token) if self.tokens is not None else None


ACCESS = web.AppKey("http_access", HttpAccess)


def peer_user(request: web.Request) -> tuple[bool, str | None]:
    """(True, user name) for a request over a unix socket (SO_PEERCRED's uid;
    the uid as text when it has no name; None when the kernel does not say),
    (False, None) for any other transport."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family != socket.AF_UNIX:
        return False, None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return True, None
    _, uid, _ = struct.unpack("3i", raw)
    try:
        return True, pwd.getpwuid(uid).pw_name
    except KeyError:
        return True, str(uid)


class Forged(Exception):
    """A request naming a principal in PRINCIPAL_HEADER from a peer that is
    not FORWARDER by its certificate."""


def caller(unix: bool, socket_user: str | None, certificate: str | None,
           token_principal: str | None, named: str | None, via: bool) -> str | None:
    """Who a request acts for. Pure. `unix`: it came over the Docker socket,
    whose peer is `socket_user`; `certificate`: the common name of the peer's
    verified certificate (None without one); `token_principal`: its token's
    principal; `named`: PRINCIPAL_HEADER's value as sent (None: absent);
    `via`: it carries rest_proxy's X-Marathon-Via.

    A request from FORWARDER's certificate that is forwarded (via, or
    naming someone) acts for the named principal, or for no one when none is
    named; any other acts for its socket user, its certificate's principal,
    else its token's. Raises Forged when someone else names a principal."""
    if certificate == FORWARDER and not unix and (via or named is not None):
        return urllib.parse.unquote(named) if named else None
    if named is not None:
        raise Forged(f"permission denied: only the apps service (principal {FORWARDER!r}, "
                     f"by its certificate) may set {PRINCIPAL_HEADER}")
    if unix:
        return socket_user
    return certificate or token_principal


def principal_of(request: web.Request, access: HttpAccess) -> str | None:
    """The principal a request acts for (`caller`). Raises Forged."""
    unix, user = peer_user(request)
    certificate = None if unix else http_principal(request, lambda _token: None)
    token = token_of(request.headers.get("Authorization", ""))
    return caller(unix, user, certificate,
                  access.lookup(token) if token and not unix and not certificate else None,
                  request.headers.get(PRINCIPAL_HEADER), VIA_HEADER in request.headers)


def _docker_rest(path: str) -> str | None:
    from juggler.apps.docker_api import _PATH

    m = _PATH.match(path)
    return m.group("rest") if m else None


def _refusal(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """{"message": …} as exactly application/json: Marathon's shape, and
    Docker's (the docker CLI prints the message only under that type)."""
    body = json.dumps({"message": message}).encode()
    return web.Response(body=body, status=status,
                        headers={"Content-Type": "application/json", **(headers or {})})


def _unauthenticated(request: web.Request, denied: Denied) -> web.Response:
    presented = token_of(request.headers.get("Authorization", "")) is not None
    challenge = REALM + (', error="invalid_token"' if presented else "")
    why = (INVALID if presented   # the rule's words would only mislead here
           else "no principal: send a client certificate or Authorization: Bearer TOKEN "
                f"({denied.message})")
    return _refusal(401, f"authentication required: {why}",
                    {"WWW-Authenticate": challenge})


async def _body(request: web.Request) -> Any:
    """The request's JSON (None when it is not JSON; the handler reads the
    same cached bytes and refuses it in its own words)."""
    try:
        raw = await request.read()
        return json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        return None


async def _resolved(request: web.Request, target: Target) -> list[Check]:
    """The checks the body or the state adds (access_targets.Target.resolve)."""
    kind, ref, action = target.resolve, target.ref, target.action
    if not kind:
        return []
    if kind in ("app_body", "apps_body", "group_body"):
        return [Check(action, o) for o in body_app_ids(kind, await _body(request), ref or "/")]
    if kind == "create_body":
        from juggler.apps.docker_errors import DockerError
        from juggler.apps.docker_views import config_from_create

        try:
            config = config_from_create(await _body(request))
        except (DockerError, TypeError, ValueError, AttributeError):
            return []   # the handler refuses the body (400): nothing is created
        return container_checks(config, _service_role(request))
    backend: Any = request.app.get(_backend_key())
    if not getattr(backend, "leading", True):
        return []   # a standby's state is not the leader's: the leader resolves and decides
    state = getattr(backend, "state", None)
    if kind == "task_ids":
        body = await _body(request)
        ids = body.get("ids") if isinstance(body, dict) else None
        instances = getattr(state, "instances", {})
        apps = {instances[i].app_id for i in ids if isinstance(i, str) and i in instances} \
            if isinstance(ids, list) else set()
        return [Check(action, a) for a in sorted(apps)]
    if kind == "deployment":
        d = getattr(state, "deployments", {}).get(ref)
        apps = list(d.affected_apps) if d is not None else list(
            (getattr(state, "ended", {}).get(ref) or {}).get("affectedApps", []))
        return [Check(action, a) for a in apps]
    containers = getattr(backend, "containers", None)
    if containers is None:
        return []
    if kind == "container":
        from juggler.apps.containers import ContainerError

        try:
            checks = [Check(action, containers.find(ref).name.lstrip("/"))]
        except ContainerError:
            return []   # the handler answers 404/400
        if request.method == "POST" and request.path.endswith("/exec"):
            # docker exec -u USER: a new process as that user, the caller's
            # to run (as the agent's Exec checks of its own caller, here
            # `apps`); without -u it runs as the container's, checked at create.
            body = await _body(request)
            user = body.get("User") if isinstance(body, dict) else None
            if user:
                checks.append(Check("run_tasks", str(user)))
        return checks
    if kind == "exec":
        from juggler.apps.docker_errors import DockerError
        from juggler.apps.docker_exec import EXECS

        try:
            e = request.app[EXECS].get(ref)
        except (DockerError, KeyError):
            return []
        return [Check(action, e.container.name.lstrip("/"))]
    if kind == "prune":
        return [Check(action, c.name.lstrip("/")) for c in containers.containers.values()]
    raise ValueError(f"unknown resolve kind {kind!r}")


def _backend_key() -> Any:
    from juggler.apps.rest_backend import BACKEND

    return BACKEND


def _service_role(request: web.Request) -> str:
    """The apps service's --role (the role of what it launches: the object
    of run_host_* for an app without a `role` and for every container)."""
    backend: Any = request.app.get(_backend_key())
    try:
        role = backend.info().get("role") if backend is not None else None
    except Exception:  # a backend that cannot say: the default role
        role = None
    return str(role or "*")


def _launch_guard(access: HttpAccess, principal: str | None,
                  role: str) -> Callable[[list[Any]], None]:
    """rest_backend.LAUNCH_GUARD for one request: every app definition a
    deployment would launch must pass launch_access.app_checks for the
    caller, else Reply 403 (Marathon's {"message": "permission denied: …
    (rule …)"}) before anything is applied."""
    from juggler.apps.rest_backend import Reply

    def guard(apps: list[Any]) -> None:
        try:
            for app in apps:
                for check in app_checks(app, role):
                    access.rules.require(check.action, principal, check.obj)
        except Denied as denied:
            raise Reply(403, {"message": denied.message}) from None
    return guard


async def _filtered(response: web.StreamResponse, kind: str, access: HttpAccess,
                    principal: str | None, read: str) -> web.StreamResponse:
    if response.status != 200:
        return response
    # A list that cannot be read here is not passed on unfiltered.
    if not isinstance(response, web.Response) or not isinstance(response.body, bytes) \
            or response.headers.get("Content-Encoding"):
        return _refusal(500, "the list could not be filtered by the access rules")
    try:
        body = json.loads(response.body)
    except ValueError:
        return _refusal(500, "the list could not be filtered by the access rules")
    rules = access.rules.rules
    assert rules is not None
    kept = filter_list(kind, body, lambda obj: rules.check(read, principal, obj).allowed)
    response.body = json.dumps(kept).encode()
    return response


def _proxied_without_principal(request: web.Request, docker_rest: str | None) -> bool:
    """Whether this standby would pass the request to the leader while it
    cannot vouch for the caller: no TLS (no certificate of its own the leader
    could verify) and a caller known by the socket's user, not by a token."""
    from juggler.apps.rest_proxy import LOCAL_PATHS

    backend: Any = request.app.get(_backend_key())
    if backend is None or getattr(backend, "leading", True) or tls.current() is not None:
        return False
    if token_of(request.headers.get("Authorization", "")) is not None:
        return False
    local = docker_rest in ("/_ping", "/version") if docker_rest is not None \
        else request.path in LOCAL_PATHS
    return not local


def _wants_text(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "text/plain" in accept and "json" not in accept


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The principal, the checks and the filtering of the module's docstring."""
    access = request.app.get(ACCESS)
    if access is None or not access.rules.enabled:
        return await handler(request)
    rest = _docker_rest(request.path)
    docker = rest is not None
    if docker:
        target = docker_target(request.method, rest or "/", dict(request.query))
    else:
        target = rest_target(request.method, request.path, _wants_text(request))
    if target.open:
        return await handler(request)
    try:
        principal = principal_of(request, access)
    except Forged as e:
        return _refusal(403, str(e))
    if principal is not None and _proxied_without_principal(request, rest):
        return _refusal(503, "this apps service is a standby without TLS: it passes requests "
                             "on to the leader with their bearer token only, not the socket's "
                             "user; send Authorization: Bearer TOKEN, or call the leader")
    request[PRINCIPAL] = principal
    request[WHOLE] = bool(target.filter)
    if not docker:
        from juggler.apps.rest_backend import LAUNCH_GUARD

        request[LAUNCH_GUARD] = _launch_guard(access, principal, _service_role(request))
    try:
        for check in target.checks:
            access.rules.require(check.action, principal, check.obj)
        resolved = await _resolved(request, target)
        leader_resolves = bool(target.resolve) and not resolved and \
            not getattr(request.app.get(_backend_key()), "leading", True)
        if principal is None and not target.checks and not resolved and not leader_resolves:
            # /v2/info, the lists, unknown paths, bodies naming nothing: a
            # caller without a principal only where the rules let one read
            # the whole tree.
            resolved.append(Check("apps_read", "/"))
        for check in resolved:
            access.rules.require(check.action, principal, check.obj)
    except Denied as denied:
        if principal is None:
            return _unauthenticated(request, denied)
        return _refusal(403, denied.message)
    response = await handler(request)
    if target.filter:
        read = "containers_read" if docker else "apps_read"
        return await _filtered(response, target.filter, access, principal, read)
    return response
