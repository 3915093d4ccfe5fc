"""A real image registry on loopback, and real images in it, for image tests.

`start_registry` runs Debian's `docker-registry serve CONFIG` on a free
127.0.0.1 port with a filesystem store in a temporary directory (optionally
behind htpasswd basic auth). `ImageBuilder` makes OCI images with `umoci`
(layers from directories, or verbatim tar archives for what umoci would not
write itself, e.g. an opaque directory) and `Registry.push` copies them in
with `skopeo`. `build_test_images` makes the standard set the image tests use:

    base:1        busybox + /etc/motd, /data/keep, /opq/old1, /opq/old2
    multi:1       base + layer deleting /etc/motd (a whiteout) and adding
                  /layer2 + a layer making /opq opaque with only /opq/new
    sibling:1     base + /sibling (shares base's layer)
    configured:1  base + /srv, with Env, Cmd, WorkingDir and User set
    multiarch:1   an OCI index: linux/amd64 and linux/arm64 images, each with
                  /arch holding its architecture

`RegistryProxy` is a tiny HTTP server in front of a registry that can play a
token-auth registry (its own token service), corrupt one blob, or stall a
blob halfway through.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import http.server
import io
import json
import os
import shutil
import socketserver
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from juggler.testing.processes import terminate
from juggler.testing.rootfs import make_busybox_rootfs
from juggler.testing.waiting import free_port, listens

TOOLS = ("docker-registry", "skopeo", "umoci")
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class ToolsMissing(RuntimeError):
    """The registry, skopeo or umoci is not installed."""


def needs_tools() -> None:
    """Raise ToolsMissing unless docker-registry, skopeo and umoci are on PATH."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise ToolsMissing(f"requires {', '.join(missing)} "
                           "(Debian packages; scripts/setup installs them)")


def run(*argv: str | Path, cwd: Path | None = None) -> str:
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=cwd,
                       timeout=300)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, argv))} exited {r.returncode}:\n"
                             f"{r.stdout}\n{r.stderr}")
    return r.stdout


@dataclass
class Registry:
    address: str  # host:port
    process: subprocess.Popen[bytes]
    root: Path
    auth: tuple[str, str] | None = None

    def push(self, layout: Path, tag: str, name: str) -> str:
        """Copy `layout:tag` to `<registry>/name`; returns the pushed reference."""
        dest = f"{self.address}/{name}"
        argv = ["skopeo", "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false",
                f"oci:{layout}:{tag}", f"docker://{dest}"]
        if self.auth:
            argv[4:4] = ["--dest-creds", f"{self.auth[0]}:{self.auth[1]}"]
        run(*argv)
        return dest

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.address, timeout=30)
        hdrs = dict(headers or {})
        if self.auth:
            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            hdrs["Authorization"] = f"Basic {token}"
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def manifest_digest(self, name: str, tag: str) -> tuple[str, int, str]:
        accept = ", ".join([OCI_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json"])
        status, headers, body = self.request("GET", f"/v2/{name}/manifests/{tag}",
                                             headers={"Accept": accept})
        assert status == 200, (status, body)
        return ("sha256:" + hashlib.sha256(body).hexdigest(), len(body),
                headers.get("content-type", ""))

    def put_index(self, name: str, tag: str, entries: list[tuple[str, str]]) -> None:
        """PUT an OCI index whose manifests are `name:<tag>` for each (tag, arch)."""
        manifests = []
        for src_tag, arch in entries:
            digest, size, media = self.manifest_digest(name, src_tag)
            manifests.append({"mediaType": media, "digest": digest, "size": size,
                              "platform": {"architecture": arch, "os": "linux"}})
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                           "manifests": manifests}).encode()
        status, _, text = self.request("PUT", f"/v2/{name}/manifests/{tag}", body=body,
                                       headers={"Content-Type": OCI_INDEX})
        assert status == 201, (status, text)

    def stop(self) -> None:
        terminate(self.process)


def _serves(address: str, pid: int) -> bool:
    """Whether process `pid` serves the registry API at `address` (and not some
    other process on this host that took the port first)."""
    try:
        conn = http.client.HTTPConnection(address, timeout=5)
        conn.request("GET", "/v2/")
        status = conn.getresponse().status
        conn.close()
    except OSError:
        return False
    return status in (200, 401) and listens(pid, int(address.rsplit(":", 1)[1]))


def start_registry(root: Path, auth: tuple[str, str] | None = None) -> Registry:
    """A docker-registry on 127.0.0.1 storing in `root`; with `auth`, htpasswd basic auth."""
    root.mkdir(parents=True, exist_ok=True)
    htpasswd = root / "htpasswd"
    if auth:
        run("htpasswd", "-Bbc", htpasswd, auth[0], auth[1])
    for attempt in range(3):  # a free port can be taken (by another suite) before it binds
        try:
            return _start_registry(root, auth, htpasswd)
        except AssertionError as e:
            if attempt == 2 or "address already in use" not in str(e):
                raise
    raise AssertionError("unreachable")


def _start_registry(root: Path, auth: tuple[str, str] | None, htpasswd: Path) -> Registry:
    port = free_port()
    lines = ["version: 0.1", "log:", "  level: error", "  accesslog:", "    disabled: true",
             "storage:", "  filesystem:", f"    rootdirectory: {root / 'data'}",
             "  delete:", "    enabled: true", "http:", f"  addr: 127.0.0.1:{port}",
             "  secret: juggler-tests"]
    if auth:
        lines += ["auth:", "  htpasswd:", "    realm: juggler-tests", f"    path: {htpasswd}"]
    config = root / "config.yml"
    config.write_text("\n".join(lines) + "\n")
    log_path = root / "registry.log"
    offset = log_path.stat().st_size if log_path.exists() else 0
    log = open(log_path, "ab")  # noqa: SIM115
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not _serves(address, proc.pid):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError(f"docker-registry did not serve /v2/ on {address}:\n"
                                 + log_path.read_bytes()[offset:][-2000:].decode(
                                     errors="replace"))
        time.sleep(0.05)
    return Registry(address=address, process=proc, root=root, auth=auth)


class ImageBuilder:
    """OCI images in one OCI layout directory, made with umoci."""

    def __init__(self, layout: Path) -> None:
        self.layout = layout
        self.work = layout.parent / f"{layout.name}.work"
        self.work.mkdir(parents=True, exist_ok=True)
        if not (layout / "index.json").exists():
            run("umoci", "init", "--layout", layout)

    def image(self, tag: str) -> str:
        return f"{self.layout}:{tag}"

    def new(self, tag: str, arch: str = "") -> None:
        run("umoci", "new", "--image", self.image(tag))
        if arch:
            run("umoci", "config", "--image", self.image(tag), "--architecture", arch,
                "--os", "linux")

    def copy(self, src: str, dst: str) -> None:
        # A new tag for the same manifest (umoci tag).
        run("umoci", "tag", "--image", self.image(src), dst)

    def add_layer(self, tag: str, change: Callable[[Path], None]) -> None:
        """Unpack `tag`, let `change(rootfs)` edit the tree, repack as a new layer."""
        bundle = self.work / f"bundle-{tag}-{time.monotonic_ns()}"
        run("umoci", "unpack", "--image", self.image(tag), bundle)
        change(bundle / "rootfs")
        run("umoci", "repack", "--image", self.image(tag), bundle)
        shutil.rmtree(bundle)

    def add_tar_layer(self, tag: str, members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
        """Add a layer verbatim from tar members (umoci raw add-layer)."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for info, data in members:
                info.size = len(data) if info.isfile() else 0
                tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
        path = self.work / f"layer-{time.monotonic_ns()}.tar"
        path.write_bytes(buf.getvalue())
        run("umoci", "raw", "add-layer", "--image", self.image(tag), path)
        path.unlink()

    def config(self, tag: str, *flags: str) -> None:
        run("umoci", "config", "--image", self.image(tag), *flags)


# The "configured" image's creation time: long before any pull, so that a
# listing showing the pull time instead is caught.
CONFIGURED_CREATED = "2021-06-01T12:00:00Z"


def tar_file(name: str, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = mode
    info.mtime = 1_700_000_000
    return info


def tar_dir(name: str, mode: int = 0o755) -> tarfile.TarInfo:
    info = tar_file(name, mode)
    info.type = tarfile.DIRTYPE
    return info


@dataclass
class TestImages:
    __test__ = False
    registry: Registry
    layout: Path
    refs: dict[str, str] = field(default_factory=dict)


def _base(rootfs: Path) -> None:
    make_busybox_rootfs(rootfs)
    (rootfs / "etc" / "motd").write_text("from layer 1\n")
    (rootfs / "data").mkdir()
    (rootfs / "data" / "keep").write_text("kept\n")
    (rootfs / "opq").mkdir()
    (rootfs / "opq" / "old1").write_text("old\n")
    (rootfs / "opq" / "old2").write_text("old\n")


def _layer2(rootfs: Path) -> None:
    (rootfs / "etc" / "motd").unlink()
    (rootfs / "layer2").write_text("layer 2\n")


def build_test_images(registry: Registry, work: Path) -> TestImages:
    b = ImageBuilder(work / "layout")
    b.new("base")
    b.add_layer("base", _base)
    images = TestImages(registry=registry, layout=b.layout)
    images.refs["base"] = registry.push(b.layout, "base", "base:1")

    b.copy("base", "multi")
    b.add_layer("multi", _layer2)
    b.add_tar_layer("multi", [(tar_dir("opq"), b""), (tar_file("opq/.wh..wh..opq"), b""),
                              (tar_file("opq/new"), b"new\n")])
    images.refs["multi"] = registry.push(b.layout, "multi", "multi:1")

    b.copy("base", "sibling")
    b.add_layer("sibling", lambda r: (r / "sibling").write_text("sibling\n"))
    images.refs["sibling"] = registry.push(b.layout, "sibling", "sibling:1")

    b.copy("base", "configured")
    b.add_layer("configured", lambda r: (r / "srv").mkdir())
    b.config("configured", "--config.env", "GREETING=hello from the image",
             "--config.env", "PATH=/bin:/usr/bin", "--config.workingdir", "/srv",
             "--config.user", "nobody", "--created", CONFIGURED_CREATED,
             "--config.cmd", "sh", "--config.cmd", "-c",
             "--config.cmd", "echo $GREETING; pwd; id -u")
    images.refs["configured"] = registry.push(b.layout, "configured", "configured:1")

    for arch in ("amd64", "arm64"):
        b.copy("base", f"arch-{arch}")
        b.config(f"arch-{arch}", "--architecture", arch, "--os", "linux")
        b.add_layer(f"arch-{arch}", lambda r, a=arch: (r / "arch").write_text(f"{a}\n"))
        registry.push(b.layout, f"arch-{arch}", f"multiarch:{arch}")
    registry.put_index("multiarch", "1", [("amd64", "amd64"), ("arm64", "arm64")])
    images.refs["multiarch"] = f"{registry.address}/multiarch:1"
    return images


# -- a proxy that plays token auth, corrupts or stalls blobs ---------------------------


class RegistryProxy:
    """HTTP server in front of `upstream` (host:port).

    token:   (user, password) → answers 401 with a Bearer challenge unless the
             request carries a token it issued from its /token endpoint, which
             wants those credentials (basic auth) — Docker Hub's flow.
    corrupt: a blob digest whose body is served with one byte flipped.
    stall:   a blob digest served halfway, then held until `release` is set; then
             the connection is closed, or, with `finish_after_release`, the rest is sent.
    """

    def __init__(self, upstream: str, token: tuple[str, str] | None = None) -> None:
        self.upstream = upstream
        self.token_creds = token
        self.corrupt: str = ""
        self.stall: str = ""
        self.finish_after_release = False
        self.release = threading.Event()
        self.stalled = threading.Event()
        self.issued: set[str] = set()
        self.requests: list[str] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                proxy._handle(self, "GET")

            def do_HEAD(self) -> None:
                proxy._handle(self, "HEAD")

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                # Pulls that fail or are cancelled hang up mid-blob: expected here.
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)  # type: ignore[arg-type]

        self.server = Server(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def _send(self, h: http.server.BaseHTTPRequestHandler, status: int,
              headers: dict[str, str], body: bytes = b"") -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if body:
            h.wfile.write(body)

    def _handle(self, h: http.server.BaseHTTPRequestHandler, method: str) -> None:
        self.requests.append(h.path)
        if self.token_creds is not None:
            if h.path.startswith("/token"):
                want = base64.b64encode(":".join(self.token_creds).encode()).decode()
                if h.headers.get("Authorization") != f"Basic {want}":
                    self._send(h, 401, {"Content-Type": "application/json"},
                               b'{"errors":[{"code":"UNAUTHORIZED","message":"bad creds"}]}')
                    return
                token = base64.b64encode(os.urandom(12)).decode()
                self.issued.add(token)
                self._send(h, 200, {"Content-Type": "application/json"},
                           json.dumps({"token": token, "expires_in": 300}).encode())
                return
            auth = h.headers.get("Authorization", "")
            if not (auth.startswith("Bearer ") and auth[7:] in self.issued):
                repo = h.path.split("/")[2] if h.path.count("/") > 2 else ""
                challenge = (f'Bearer realm="http://{self.address}/token",'
                             f'service="juggler-test",scope="repository:{repo}:pull"')
                self._send(h, 401, {"WWW-Authenticate": challenge,
                                    "Content-Type": "application/json"},
                           b'{"errors":[{"code":"UNAUTHORIZED","message":"auth required"}]}')
                return
        conn = http.client.HTTPConnection(self.upstream, timeout=60)
        headers = {k: v for k, v in h.headers.items() if k.lower() in ("accept", "range")}
        conn.request(method, h.path, headers=headers)
        resp = conn.getresponse()
        body = resp.read() if method == "GET" else b""
        status = resp.status
        if status in (301, 302, 307):  # follow upstream redirects ourselves
            conn.close()
            self._send(h, status, {"Location": resp.getheader("Location", "")})
            return
        out_headers = {k: v for k, v in resp.getheaders()
                       if k.lower() in ("content-type", "docker-content-digest", "etag")}
        conn.close()
        digest = h.path.rsplit("/", 1)[-1]
        if method == "GET" and "/blobs/" in h.path and digest == self.corrupt and body:
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        if method == "GET" and "/blobs/" in h.path and digest == self.stall and body:
            h.send_response(status)
            for k, v in out_headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            self.stalled.set()
            self.release.wait(120)
            if self.finish_after_release:
                h.wfile.write(body[len(body) // 2:])
                h.wfile.flush()
            h.close_connection = True
            return
        if method == "HEAD":
            out_headers["Content-Length-Upstream"] = resp.getheader("Content-Length", "0")
        self._send(h, status, out_headers, body)


@contextmanager
def proxy_for(registry: Registry, token: tuple[str, str] | None = None
              ) -> Iterator[RegistryProxy]:
    p = RegistryProxy(registry.address, token=token)
    try:
        yield p
    finally:
        p.close()
