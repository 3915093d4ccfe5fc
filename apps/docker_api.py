"""The Docker Engine API (a subset of 1.47) over the apps service's containers,
so that the real `docker` CLI and Docker's SDKs drive a juggler cluster, as
they drove Docker Swarm (classic).

It lives in the REST API's aiohttp application (apps/rest.py calls
`add_docker_routes`), on the REST port and on a unix socket (`serve_unix`).
Every path answers bare and under `/v{version}/`; a version above 1.47 or
below 1.24 is refused with Docker's 400. Every Docker answer carries
`Api-Version: 1.47`, `Docker-Experimental: false`, `Ostype: linux` and
`Server: juggler/<version>`; errors are Docker's `{"message": …}` with
Docker's statuses (a DockerError or the service's ContainerError; exactly
`Content-Type: application/json`, which the Go client needs to read them).

    GET|HEAD /_ping   GET /version   GET /info   GET /events
    /containers/…      docker_containers.py (create, list, inspect, start, stop,
                       restart, kill, delete, rename, wait, top, stats, prune)
    …/logs             docker_logs.py
    …/attach, …/resize docker_stream.py (the hijacked connection, framing)
    …/exec, /exec/…    docker_exec.py
    /images/…          docker_images.py

On a standby (several apps services with etcd), `/_ping` and `/version` are
answered locally; attach and exec start (hijacked connections) answer 503
naming the leader; every other request goes to the leader through the REST
API's proxy (rest_proxy.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import grp
import json
import os
import platform
import re
import socket
import stat
import sys
import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from typing import Any, Protocol
from urllib.parse import urlsplit

import grpc
from aiohttp import web

from juggler.apps import cluster
from juggler.apps import docker_views as views
from juggler.apps.containers import CS, Container, ContainerConfig, ContainerError
from juggler.apps.containers_state import ContainersState
from juggler.apps.docker_errors import DockerError
from juggler.apps.rest_backend import Reply, store_failed
from juggler.common import logs
from juggler.common.fdio import SUN_PATH_MAX, bind_unix
from juggler.store.interface import StoreError
from juggler.v1 import operator_pb2

__all__ = ["API_VERSION", "MIN_API_VERSION", "DockerBackend", "add_docker_routes",
           "is_docker_path", "serve_unix"]

log = logs.get("apps.docker")

API_VERSION = "1.47"
MIN_API_VERSION = "1.24"
DISCONNECT_POLL = 0.5           # how often a long wait looks for its client being gone

# Docker's top-level paths: answered in Docker's dialect (errors, headers).
_ROOTS = ("_ping", "version", "info", "events", "containers", "exec", "images", "networks",
          "volumes", "system", "build", "swarm", "services", "nodes", "secrets", "configs",
          "plugins", "session", "distribution", "auth", "commit", "grpc")
_PATH = re.compile(r"^(?:/v(?P<version>[0-9]+\.[0-9]+))?(?P<rest>/(?:"
                   + "|".join(_ROOTS) + r")(?:/.*)?)$")
_LOCAL = frozenset({"/_ping", "/version"})
_HIJACKED = re.compile(r"^/(?:containers/[^/]+/attach|exec/[^/]+/start)$")


class DockerBackend(Protocol):
    """What the Docker API needs of the apps service (AppsService; the
    contract of issue 14). The coroutines raise ContainerError (Docker's
    status and message) and change nothing when they refuse."""

    containers: ContainersState       # read only here, but attach_waits (docker_stream.py)
    config: Any                       # .master: the masters' addresses
    framework_id: str
    leading: bool

    def leader_url(self) -> str | None: ...

    def info(self) -> dict[str, Any]: ...

    async def container_create(self, config: ContainerConfig, name: str = "") -> Container: ...

    async def container_start(self, ref: str) -> bool: ...

    async def container_stop(self, ref: str, timeout: float | None = None) -> bool: ...

    async def container_restart(self, ref: str, timeout: float | None = None) -> None: ...

    async def container_kill(self, ref: str, signal: str = "KILL") -> None: ...

    async def container_remove(self, ref: str, force: bool = False) -> None: ...

    async def container_rename(self, ref: str, new_name: str) -> None: ...

    async def container_wait(self, ref: str, condition: str = "not-running") -> int: ...

    async def until(self, predicate: Callable[[], bool], timeout: float) -> bool: ...


DOCKER = web.AppKey("docker_backend", DockerBackend)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# -- paths, versions, errors ------------------------------------------------------------------


def is_docker_path(path: str) -> bool:
    """Whether `path` is one of Docker's (bare or /v1.NN/), not Marathon's."""
    return _PATH.match(path) is not None


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def check_version(version: str) -> None:
    """Raise DockerError 400 with moby's text for a version out of range."""
    v = _version_tuple(version)
    if v > _version_tuple(API_VERSION):
        raise DockerError(400, f"client version {version} is too new. Maximum supported API "
                               f"version is {API_VERSION}")
    if v < _version_tuple(MIN_API_VERSION):
        raise DockerError(400, f"client version {version} is too old. Minimum supported API "
                               f"version is {MIN_API_VERSION}, please upgrade your client to a "
                               "newer version")


def api_version(request: web.Request) -> str:
    """The API version the client asked for (its path's), else ours."""
    m = _PATH.match(request.path)
    return (m.group("version") if m else None) or API_VERSION


def version_at_least(request: web.Request, version: str) -> bool:
    return _version_tuple(api_version(request)) >= _version_tuple(version)


def json_response(body: Any, status: int = 200) -> web.Response:
    """JSON with exactly `application/json` (the Go client reads error
    messages only under that content type)."""
    return web.Response(body=json.dumps(body).encode(), status=status,
                        headers={"Content-Type": "application/json"})


def _error(status: int, message: str) -> web.Response:
    return json_response({"message": message}, status)


def _juggler_version() -> str:
    try:
        return metadata.version("juggler")
    except metadata.PackageNotFoundError:
        return "unknown"


def _leader_for_docker(url: str | None) -> str:
    if not url:
        return "there is no leader now"
    netloc = urlsplit(url).netloc or url
    return f"the leader is at {netloc} (DOCKER_HOST=tcp://{netloc})"


@web.middleware
async def _docker(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Docker's dialect on Docker's paths: the version check, errors as
    Docker's bodies, and what a standby answers itself."""
    m = _PATH.match(request.path)
    if m is None:
        return await handler(request)
    rest = m.group("rest")
    try:
        if m.group("version"):
            check_version(m.group("version"))
        backend = request.app[DOCKER]
        if not backend.leading:
            if rest in _LOCAL and request.match_info.http_exception is None:
                return await request.match_info.handler(request)
            if _HIJACKED.match(rest):
                raise DockerError(503, "this apps service is a standby: attach and exec "
                                       f"stream from the leader only; "
                                       f"{_leader_for_docker(backend.leader_url())}")
        return await handler(request)
    except DockerError as e:
        return _error(e.status, e.message)
    except ContainerError as e:
        return _error(e.status, e.message)
    except Reply as e:   # the REST API's own answers (a standby with no leader: 503)
        message = e.body.get("message") if isinstance(e.body, dict) else None
        response = _error(e.status, str(message or e.body))
        response.headers.update(e.headers)   # X-Juggler-Not-Led (rest_proxy.py)
        return response
    except web.HTTPException as e:
        if e.status == 404:
            return _error(404, "page not found")
        if e.status == 405:
            return _error(405, f"{request.method} is not allowed on {rest}")
        raise
    except (asyncio.CancelledError, ConnectionError):
        raise
    except StoreError as e:
        return _error(503, store_failed(e))
    except grpc.aio.AioRpcError as e:
        log.warning("agent call failed", path=request.path, code=e.code().name,
                    details=e.details())
        return _error(500, f"{e.code().name}: {e.details()}")
    except Exception as e:
        log.exception("Docker API request failed", method=request.method, path=request.path)
        return _error(500, f"{type(e).__name__}: {e}")


async def _docker_headers(request: web.Request, response: web.StreamResponse) -> None:
    if _PATH.match(request.path) is None:
        return
    response.headers["Api-Version"] = API_VERSION
    response.headers["Docker-Experimental"] = "false"
    response.headers["Ostype"] = "linux"
    response.headers["Server"] = f"juggler/{_juggler_version()}"


def route(app: web.Application, method: str, path: str, handler: Handler) -> None:
    """`method path` bare and under /v{version}/ (a GET answers HEAD too)."""
    for where in (path, r"/v{version:[0-9]+\.[0-9]+}" + path):
        if method == "GET":
            app.router.add_get(where, handler)
        else:
            app.router.add_route(method, where, handler)


def add_docker_routes(app: web.Application, backend: DockerBackend) -> None:
    """Serve the Docker Engine API from `app` (the REST API's application,
    before it starts) over `backend`. Its middleware goes just before the
    REST API's standby proxy (rest_proxy._leader_only), else last."""
    from juggler.apps import docker_containers as containers
    from juggler.apps import docker_exec, docker_logs, docker_stream
    from juggler.apps.docker_images import add_image_routes
    from juggler.apps.image_cluster import ImageCluster

    app[DOCKER] = backend
    docker_exec.setup(app)
    docker_stream.setup(app)
    mws = app.middlewares
    at = next((i for i, m in enumerate(mws) if getattr(m, "__name__", "") == "_leader_only"),
              len(mws))
    mws.insert(at, _docker)
    app.on_response_prepare.append(_docker_headers)
    for method, path, handler in (
        ("GET", "/_ping", ping),
        ("GET", "/version", get_version),
        ("GET", "/info", get_info),
        ("GET", "/events", get_events),
        ("POST", "/containers/create", containers.create),
        ("POST", "/containers/prune", containers.prune),
        ("GET", "/containers/json", containers.list_containers),
        ("GET", "/containers/{id}/json", containers.inspect),
        ("POST", "/containers/{id}/start", containers.start),
        ("POST", "/containers/{id}/stop", containers.stop),
        ("POST", "/containers/{id}/restart", containers.restart),
        ("POST", "/containers/{id}/kill", containers.kill),
        ("DELETE", "/containers/{id}", containers.remove),
        ("POST", "/containers/{id}/rename", containers.rename),
        ("POST", "/containers/{id}/wait", containers.wait),
        ("GET", "/containers/{id}/top", containers.top),
        ("GET", "/containers/{id}/stats", containers.stats),
        ("GET", "/containers/{id}/logs", docker_logs.logs),
        ("POST", "/containers/{id}/attach", docker_stream.attach),
        ("POST", "/containers/{id}/resize", docker_stream.resize),
        ("POST", "/containers/{id}/exec", docker_exec.create),
        ("POST", "/exec/{id}/start", docker_exec.start),
        ("POST", "/exec/{id}/resize", docker_exec.resize),
        ("GET", "/exec/{id}/json", docker_exec.inspect),
        ("*", "/containers/{id}/{action}", containers.unimplemented),
        ("POST", "/commit", containers.unimplemented),
        ("POST", "/images/{name:.+}/tag", _unimplemented("tag")),
        ("POST", "/images/{name:.+}/push", _unimplemented("push")),
        ("GET", "/images/{name:.+}/history", _unimplemented("history")),
        ("GET", "/images/search", _unimplemented("search")),
        ("POST", "/images/load", _unimplemented("load")),
        ("GET", "/images/get", _unimplemented("save")),
        ("POST", "/images/prune", _unimplemented("image prune")),
        ("POST", "/build", _unimplemented("build")),
    ):
        route(app, method, path, handler)
    add_image_routes(app, ImageCluster(backend.config.master))


# -- request helpers -----------------------------------------------------------------------


def _unimplemented(verb: str) -> Handler:
    """Docker's image endpoints juggler does not implement: 501 saying which."""
    async def refuse(request: web.Request) -> web.Response:
        raise DockerError(501, f"juggler does not implement docker {verb}")
    return refuse



def backend_of(request: web.Request) -> DockerBackend:
    return request.app[DOCKER]


def flag(request: web.Request, name: str, default: bool = False) -> bool:
    """A boolean query parameter as moby reads it (httputils.BoolValue): "",
    "0", "no", "false", "none" are false, anything else true."""
    value = request.query.get(name)
    if value is None:
        return default
    return value.strip().lower() not in ("", "0", "no", "false", "none")


def int_query(request: web.Request, name: str) -> int | None:
    value = request.query.get(name, "")
    if value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise DockerError(400, f"invalid value for {name}: {value!r}") from None


def find(request: web.Request) -> Container:
    """The container the path names (name, id or unique id prefix).
    ContainerError 404, 400."""
    return backend_of(request).containers.find(request.match_info["id"])


async def until_disconnected(request: web.Request, coro: Awaitable[Any]) -> tuple[bool, Any]:
    """Await `coro` unless the client goes away first (aiohttp does not cancel
    a handler when its client leaves). (True, result) or (False, None)."""
    task = asyncio.ensure_future(coro)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL)
            if done:
                return True, task.result()
            if request.transport is None or request.transport.is_closing():
                return False, None
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def agents_view(backend: DockerBackend) -> list[operator_pb2.AgentView]:
    """The master's agents; [] when no master answers."""
    try:
        return await cluster.agents(backend.config.master)
    except (cluster.ClusterUnavailable, grpc.aio.AioRpcError) as e:
        log.warning("no agents from the master", error=str(e))
        return []


_AGENT_STATUS = {grpc.StatusCode.NOT_FOUND: 409, grpc.StatusCode.FAILED_PRECONDITION: 409,
                 grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.UNAVAILABLE: 503,
                 grpc.StatusCode.DEADLINE_EXCEEDED: 503}


def agent_error(c: Container, e: grpc.aio.AioRpcError) -> DockerError:
    """An agent's refusal as Docker's error about container `c`."""
    status = _AGENT_STATUS.get(e.code(), 500)
    if status == 503:
        return DockerError(503, f"the agent of container {c.name} ({c.hostname or c.agent_id}"
                                f" at {c.agent_address}) cannot be reached: {e.details()}")
    if status == 409:
        return DockerError(409, f"Container {c.id} is not running ({e.details()})")
    return DockerError(status, e.details() or e.code().name)


def total(view: operator_pb2.AgentView, name: str) -> float:
    """An agent's total of a scalar resource ("cpus", "mem" in MiB)."""
    return sum(r.scalar for r in view.total if r.name == name)


# -- system ----------------------------------------------------------------------------------


async def ping(request: web.Request) -> web.Response:
    return web.Response(text="OK", headers={
        "Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache",
        "Content-Type": "text/plain; charset=utf-8"})


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(
        machine, machine)


async def get_version(request: web.Request) -> web.Response:
    version = _juggler_version()
    details = {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "GitCommit": "",
               "GoVersion": f"python{sys.version.split()[0]}", "Os": "linux", "Arch": _arch(),
               "KernelVersion": platform.release(), "Experimental": "false", "BuildTime": ""}
    return json_response({
        "Platform": {"Name": "juggler"},
        "Components": [{"Name": "Engine", "Version": version, "Details": details}],
        "Version": version, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "", "GoVersion": details["GoVersion"], "Os": "linux", "Arch": _arch(),
        "KernelVersion": platform.release(), "BuildTime": "",
    })


async def _image_count(backend: DockerBackend) -> int:
    from juggler.apps.docker_image_views import merge
    from juggler.apps.image_cluster import ImageCluster

    images = ImageCluster(backend.config.master)
    try:
        return len(merge(await images.images(await images.agents())))
    except DockerError:
        return 0


def _cgroup_version() -> str:
    """This host's cgroup version ("2": the unified hierarchy at its root);
    the agents of a `juggler up` cluster share it."""
    return "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


async def get_info(request: web.Request) -> web.Response:
    """Docker's system info, for the cluster: containers by state, images
    over every agent, cpus and memory summed over the active agents, and the
    agents themselves in SystemStatus (as Swarm classic listed its nodes)."""
    backend = backend_of(request)
    facts = backend.info()
    containers = list(backend.containers.containers.values())
    running = sum(1 for c in containers if c.status == CS.RUNNING)
    agents, images = await asyncio.gather(agents_view(backend), _image_count(backend))
    active = [a for a in agents if a.state == operator_pb2.AGENT_ACTIVE]
    master = facts.get("master") or getattr(backend.config, "master", "")
    status: list[list[str]] = [["Cluster", f"juggler, masters {master}"],
                               ["Agents", str(len(active))]]
    for a in active:
        status.append([f" └ {a.info.hostname or a.info.id}", a.info.address])
        status.append(["  └ Resources", f"{total(a, 'cpus'):g} cpus, "
                                        f"{total(a, 'mem'):g} MiB"])
    version = _juggler_version()
    return json_response({
        "ID": backend.framework_id or "", "Name": facts.get("name") or socket.gethostname(),
        "Containers": len(containers), "ContainersRunning": running, "ContainersPaused": 0,
        "ContainersStopped": len(containers) - running, "Images": images,
        "Driver": "overlay2", "DriverStatus": [], "SystemStatus": status,
        "Plugins": {"Volume": [], "Network": ["bridge", "host", "none"], "Authorization": None,
                    "Log": ["json-file"]},
        "MemoryLimit": True, "SwapLimit": True, "CpuCfsPeriod": True, "CpuCfsQuota": True,
        "CPUShares": True, "CPUSet": False, "PidsLimit": True, "IPv4Forwarding": True,
        "BridgeNfIptables": True, "BridgeNfIp6tables": True, "Debug": False, "NFd": 0,
        "OomKillDisable": False, "NGoroutines": 0, "SystemTime": views.rfc3339(time.time()),
        "LoggingDriver": "json-file", "CgroupDriver": "cgroupfs",
        "CgroupVersion": _cgroup_version(), "NEventsListener": 0,
        "KernelVersion": platform.release(), "OperatingSystem": "juggler",
        "OSVersion": version, "OSType": "linux", "Architecture": platform.machine(),
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": [], "Mirrors": []},
        "NCPU": int(sum(total(a, "cpus") for a in active)),
        "MemTotal": int(sum(total(a, "mem") for a in active) * 2**20),
        "DockerRootDir": "", "HttpProxy": "", "HttpsProxy": "", "NoProxy": "",
        "Labels": [f"juggler.masters={master}",
                   f"juggler.framework={backend.framework_id or ''}"],
        "ExperimentalBuild": False, "ServerVersion": version,
        "Runtimes": {"juggler": {"path": "juggler-executor"}}, "DefaultRuntime": "juggler",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                  "ControlAvailable": False, "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": True, "Isolation": "", "InitBinary": "",
        "ContainerdCommit": {"ID": ""}, "RuncCommit": {"ID": ""}, "InitCommit": {"ID": ""},
        "SecurityOptions": ["name=seccomp,profile=none"], "Warnings": None,
    })


async def get_events(request: web.Request) -> web.StreamResponse:
    """GET /events: the stream opens and stays open (juggler does not publish
    Docker's container events yet); it ends at `until`, or when the client
    leaves. `docker stats` without arguments subscribes to it."""
    until = request.query.get("until", "")
    deadline = None
    if until:
        try:
            deadline = float(until)
        except ValueError:
            raise DockerError(400, f"invalid value for until: {until!r}") from None
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    while request.transport is not None and not request.transport.is_closing():
        if deadline is not None and time.time() >= deadline:
            break
        await asyncio.sleep(DISCONNECT_POLL)
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
    return response


# -- the unix socket ---------------------------------------------------------------------------


class UnixSocketSite(web.SockSite):
    """The API on a unix socket file; stopping removes the file (if it is
    still this site's)."""

    def __init__(self, runner: web.BaseRunner, sock: socket.socket, path: str) -> None:
        super().__init__(runner, sock)
        self.path = path
        self._inode = os.stat(path).st_ino

    @property
    def name(self) -> str:
        return f"http://unix:{self.path}:"

    async def stop(self) -> None:
        await super().stop()
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)


def _gid(group: str) -> int:
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise OSError(errno.EINVAL, f"no group {group!r}") from None


def _clear_stale(path: str) -> None:
    """Remove a socket file nothing listens on; OSError when a server does
    (EADDRINUSE) or the path is not a socket (EEXIST)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(2.0)
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    except OSError as e:
        raise OSError(e.errno or errno.EADDRINUSE, f"{path}: {e.strerror or e}") from None
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, f"{path}: a server already listens on this socket")


async def serve_unix(runner: web.AppRunner, path: str, group: str | None) -> UnixSocketSite:
    """Serve `runner`'s application on the unix socket `path` (mode 0660,
    owned by root and `group`: a name or a gid; None or "" keeps ours), as Docker's
    /var/run/docker.sock. A stale socket file (nothing listening) is
    replaced; the socket appears at `path` only once its mode and group are
    set (bound under a temporary name, then renamed). Raises OSError when a
    live server listens at `path`, when `path` is another kind of file, or
    for an unknown group."""
    gid = _gid(group) if group else -1
    if len(os.fsencode(os.path.abspath(path))) > SUN_PATH_MAX:
        # Bound through a directory fd it would work, but no client could
        # connect to it by its path (the `docker` CLI and SDK included).
        raise OSError(errno.ENAMETOOLONG,
                      f"{path}: a Unix socket's path holds at most {SUN_PATH_MAX} bytes "
                      "(sun_path); choose a shorter --docker-socket")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o755, exist_ok=True)
    _clear_stale(path)
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    # Bound through the directory's fd: only `path` must fit in sun_path.
    sock = bind_unix(directory, os.path.basename(temporary))
    try:
        os.chmod(temporary, 0o660)
        if gid >= 0:
            os.chown(temporary, -1, gid)
        os.rename(temporary, path)
    except BaseException:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    site = UnixSocketSite(runner, sock, path)
    await site.start()
    log.info("Docker API listening", socket=path, group=group)
    return site
