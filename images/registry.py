"""A Docker Registry HTTP API v2 client (what `docker pull` speaks).

    resolve(ref)  GET /v2/<name>/manifests/<tag|digest>, with every manifest type
                  accepted; a manifest list / OCI index is resolved to this host's
                  platform (config.host_platform) and its manifest fetched.
    stream(…)     GET /v2/<name>/blobs/<digest> handed to a consumer (the layer
                  unpacker) as it arrives, sha256 checked as it goes; a mismatch
                  raises DigestMismatch once consumed, and the caller never
                  renames what the consumer made into the store.

    tags(ref)     GET /v2/<name>/tags/list, following `Link: <…>; rel="next"` pages.

Docker Hub mirrors (`mirrors`, images/mirrors.py): a Hub reference is resolved
at each mirror in order, then at Hub; the first that serves its manifest
serves the whole pull (`Manifest.source` names it; a blob that then fails
there fails the pull, as Docker's does once layers started). Any error at a
mirror moves on to the next (Docker's rule for mirrors); if Hub fails too, its
error says what each mirror answered. `tags` tries the same places.

Auth is the challenge flow: a request answered 401 carries `WWW-Authenticate`;
`Basic` → retry with the credentials; `Bearer realm=…,service=…,scope=…` → GET
the realm (with the credentials as basic auth when there are any, anonymously
otherwise) for a token and retry with it. Tokens are cached per host and
repository. Scheme: plain http for loopback registries (as Docker) and for the
ones the operator marks insecure; https otherwise.

The HTTP is the standard library's http.client run in threads (asyncio.to_thread):
no new dependency, TLS from the ssl module, and a blob's bytes are hashed and
written by the thread that reads them. Cancellation: a cancelled pull sets an
event the reading thread checks between chunks.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import json
import os
import re
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TypeVar

from juggler.images import config as image_config
from juggler.images.mirrors import Mirror, candidates
from juggler.images.reference import Reference, is_loopback

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFESTS = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEXES = (DOCKER_LIST, OCI_INDEX)
ACCEPT = ", ".join((*MANIFESTS, *INDEXES))
CHUNK = 1 << 20
MAX_MANIFEST = 4 << 20
MAX_TAG_PAGES = 100

Progress = Callable[[int], None]
T = TypeVar("T")


class RegistryError(Exception):
    """A pull failed; the message says what and where, for a person."""


class NotFound(RegistryError):
    pass


class Unauthorized(RegistryError):
    pass


class Unreachable(RegistryError):
    pass


class DigestMismatch(RegistryError):
    pass


class Cancelled(RegistryError):
    pass


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)  # never in a log line or a traceback's locals

    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


@dataclass
class Manifest:
    digest: str  # of the image manifest itself (after resolving an index)
    media_type: str
    body: dict
    raw: bytes
    source: Reference | None = None  # where it came from: a mirror, or the image's registry

    @property
    def config(self) -> dict:
        return self.body["config"]

    @property
    def layers(self) -> list[dict]:
        return list(self.body.get("layers", []))


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="…",service="…"` → ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="?([^",]*)"?', rest)}
    return scheme.lower(), params


def load_docker_config(path: Path | None = None) -> dict[str, Credentials]:
    """Credentials from a Docker config.json (`auths: {host: {auth: b64(user:pass)}}`)."""
    if path is None:
        base = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
        path = Path(base) / "config.json"
    try:
        auths = json.loads(path.read_text()).get("auths", {})
    except (OSError, ValueError):
        return {}
    out = {}
    for host, entry in auths.items():
        user, password = entry.get("username", ""), entry.get("password", "")
        if entry.get("auth"):
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        host = urllib.parse.urlparse(host).netloc or host.split("/")[0]
        if host in ("index.docker.io", "registry-1.docker.io"):
            host = "docker.io"
        out[host] = Credentials(user, password)
    return out


@dataclass
class RegistryClient:
    credentials: dict[str, Credentials] = field(default_factory=dict)  # by registry
    insecure: frozenset[str] = frozenset()  # registries spoken to over plain http
    mirrors: tuple[Mirror, ...] = ()  # Docker Hub's, tried in order before Hub
    timeout: float = 60.0
    platform: tuple[str, str, str] = field(default_factory=image_config.host_platform)
    _tokens: dict[tuple[str, str], str] = field(default_factory=dict)

    def scheme(self, registry: str) -> str:
        for m in self.mirrors:  # a mirror's URL says its scheme
            if m.host == registry:
                return m.scheme
        return "http" if registry in self.insecure or is_loopback(registry) else "https"

    def _from_first(self, ref: Reference, attempt: Callable[[Reference], T]) -> T:
        """`attempt(source)` at each mirror of `ref`, then at its own registry: the
        first answer. A mirror's error moves on; the last place's error is raised,
        with what the mirrors said."""
        tried: list[str] = []
        for source in candidates(ref, self.mirrors):
            if source == ref:
                try:
                    return attempt(ref)
                except RegistryError as e:
                    if not tried or isinstance(e, Cancelled):
                        raise
                    raise type(e)(f"{e} (tried the mirrors first: {'; '.join(tried)})") \
                        from None
            try:
                return attempt(source)
            except Cancelled:
                raise
            except RegistryError as e:
                tried.append(f"{self.scheme(source.registry)}://{source.registry}: {e}")
        raise AssertionError("candidates() always ends with the reference itself")

    # -- manifests -----------------------------------------------------------------
    async def resolve(self, ref: Reference, cancel: threading.Event | None = None) -> Manifest:
        """The image manifest of `ref` for this host's platform, from the first
        place that serves it (`source`: a mirror, or `ref`'s registry)."""
        stop = cancel or threading.Event()

        def attempt(source: Reference) -> Manifest:
            if stop.is_set():
                raise Cancelled(f"{ref}: pull cancelled")
            return self._resolve(source, stop)

        return await asyncio.to_thread(self._from_first, ref, attempt)

    async def tags(self, ref: Reference, page: int = 1000) -> list[str]:
        """Every tag of `ref`'s repository (its tag or digest ignored), in the
        registry's order, asked `page` at a time; NotFound when the registry
        has no such repository."""
        return await asyncio.to_thread(self._from_first, ref,
                                       lambda source: self._tags(source, page))

    def _tags(self, ref: Reference, page: int) -> list[str]:
        path = f"/v2/{ref.repository}/tags/list?n={page}"
        out: list[str] = []
        for _ in range(MAX_TAG_PAGES):
            status, headers, resp = self._request(ref, "GET", path)
            try:
                if status == 404:
                    raise NotFound(f"{ref.name}: repository unknown: the registry "
                                   f"{ref.registry} has no {ref.repository}")
                _check(status, resp, ref)
                body = _json(resp.read(MAX_MANIFEST), f"the tags of {ref.name}")
            finally:
                resp.close()
            out += [t for t in body.get("tags") or [] if isinstance(t, str)]
            nxt = re.match(r'\s*<([^>]+)>\s*;\s*rel="?next"?', headers.get("link", ""))
            if not nxt:
                return out
            parts = urllib.parse.urlsplit(nxt.group(1))
            path = parts.path + (f"?{parts.query}" if parts.query else "")
        raise RegistryError(f"{ref.name}: more than {MAX_TAG_PAGES} pages of tags")

    def _resolve(self, ref: Reference, cancel: threading.Event) -> Manifest:
        media, raw = self._manifest(ref, ref.reference, cancel)
        body = _json(raw, f"the manifest of {ref}")
        media = body.get("mediaType") or media
        if media in INDEXES or "manifests" in body:
            entry = image_config.choose_platform(body.get("manifests", []), self.platform)
            if entry is None:
                have = ", ".join(image_config.platform_name(m.get("platform", {}))
                                 for m in body.get("manifests", []))
                raise NotFound(f"{ref}: no image for {image_config.platform_name(self.platform)}"
                               f" (the index has {have or 'nothing'})")
            media, raw = self._manifest(ref, entry["digest"], cancel)
            body = _json(raw, f"the manifest of {ref}")
            media = body.get("mediaType") or media
        if media not in MANIFESTS and "layers" not in body:
            raise RegistryError(f"{ref}: unsupported manifest type {media!r} (Docker schema 1 "
                                "images are not supported; push them again with a newer tool)")
        if "config" not in body:
            raise RegistryError(f"{ref}: the manifest has no config")
        return Manifest(digest=_sha256(raw), media_type=media, body=body, raw=raw, source=ref)

    def _manifest(self, ref: Reference, reference: str,
                  cancel: threading.Event) -> tuple[str, bytes]:
        path = f"/v2/{ref.repository}/manifests/{reference}"
        status, headers, resp = self._request(ref, "GET", path, {"Accept": ACCEPT})
        try:
            if status == 404:
                raise NotFound(f"{ref}: manifest unknown: the registry {ref.registry} has no "
                               f"{ref.repository}:{reference}" if not reference.startswith(
                                   "sha256:") else f"{ref}: manifest {reference} not found")
            _check(status, resp, ref)
            raw = resp.read(MAX_MANIFEST + 1)
            if len(raw) > MAX_MANIFEST:
                raise RegistryError(f"{ref}: the manifest is larger than {MAX_MANIFEST} bytes")
        finally:
            resp.close()
        if reference.startswith("sha256:") and _sha256(raw) != reference:
            raise DigestMismatch(f"{ref}: the manifest served for {reference} has digest "
                                 f"{_sha256(raw)}")
        return headers.get("content-type", "").split(";")[0].strip(), raw

    # -- blobs ---------------------------------------------------------------------
    async def blob_bytes(self, ref: Reference, digest: str, limit: int = 64 << 20) -> bytes:
        def fetch() -> bytes:
            status, _, resp = self._request(ref, "GET", f"/v2/{ref.repository}/blobs/{digest}")
            try:
                if status == 404:
                    raise NotFound(f"{ref}: blob {digest} not found in {ref.registry}")
                _check(status, resp, ref)
                data = resp.read(limit + 1)
            finally:
                resp.close()
            if len(data) > limit:
                raise RegistryError(f"{ref}: blob {digest} is larger than {limit} bytes")
            if _sha256(data) != digest:
                raise DigestMismatch(f"{ref}: blob {digest} arrived with digest {_sha256(data)}")
            return data
        return await asyncio.to_thread(fetch)

    async def stream(self, ref: Reference, digest: str, consume: Callable[[BinaryIO], T],
                     progress: Progress, cancel: threading.Event) -> T:
        """Fetch blob `digest` and hand it to `consume(file)` (in a thread) as it
        arrives; its sha256 is checked once consumed (DigestMismatch otherwise), so
        the caller must not trust what `consume` produced until this returns.
        `progress(n)` is called in the event loop with each chunk's size."""
        loop = asyncio.get_running_loop()

        def report(n: int) -> None:
            loop.call_soon_threadsafe(progress, n)

        def run() -> T:
            status, _, resp = self._request(ref, "GET", f"/v2/{ref.repository}/blobs/{digest}")
            try:
                if status == 404:
                    raise NotFound(f"{ref}: blob {digest} not found in {ref.registry}")
                _check(status, resp, ref)
                body = VerifyingReader(resp, digest, report, cancel, f"{ref}: blob {digest}")
                try:
                    result = consume(body)
                except (Cancelled, Unreachable):
                    raise
                except Exception:
                    body.finish()  # a corrupt blob is reported as such, not as bad tar
                    raise
                body.finish()
                return result
            finally:
                resp.close()

        return await asyncio.to_thread(run)

    # -- HTTP + auth -----------------------------------------------------------------
    def _request(self, ref: Reference, method: str, path: str,
                 headers: dict[str, str] | None = None
                 ) -> tuple[int, dict[str, str], http.client.HTTPResponse]:
        headers = dict(headers or {})
        key = (ref.registry, ref.repository)
        if key in self._tokens:
            headers["Authorization"] = self._tokens[key]
        url = f"{self.scheme(ref.registry)}://{ref.api_host}{path}"
        status, rheaders, resp = self._http(method, url, headers, ref)
        if status != 401:
            return status, rheaders, resp
        challenge = rheaders.get("www-authenticate", "")
        resp.read()
        resp.close()
        creds = self.credentials.get(ref.registry)
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            if creds is None:
                raise Unauthorized(f"{ref}: {ref.registry} wants a user name and password "
                                   "(none are configured for it)")
            self._tokens[key] = creds.basic()
        elif scheme == "bearer" and params.get("realm"):
            self._tokens[key] = "Bearer " + self._token(ref, params, creds)
        else:
            raise Unauthorized(f"{ref}: {ref.registry} refused access (401) with no usable "
                               f"challenge ({challenge or 'no WWW-Authenticate'})")
        headers["Authorization"] = self._tokens[key]
        status, rheaders, resp = self._http(method, url, headers, ref)
        if status == 401:
            resp.close()
            self._tokens.pop(key, None)
            who = f"as {creds.username!r}" if creds else "anonymously"
            raise Unauthorized(f"{ref}: {ref.registry} refused access {who} (401 Unauthorized)")
        return status, rheaders, resp

    def _token(self, ref: Reference, params: dict[str, str],
               creds: Credentials | None) -> str:
        query = {"scope": params.get("scope") or f"repository:{ref.repository}:pull"}
        if params.get("service"):
            query["service"] = params["service"]
        url = params["realm"] + ("&" if "?" in params["realm"] else "?") + \
            urllib.parse.urlencode(query)
        headers = {"Authorization": creds.basic()} if creds else {}
        status, _, resp = self._http("GET", url, headers, ref)
        try:
            body = resp.read(1 << 20)
        finally:
            resp.close()
        if status in (401, 403):
            who = f"for {creds.username!r}" if creds else "anonymously"
            raise Unauthorized(f"{ref}: the token service {urllib.parse.urlsplit(url).netloc} "
                               f"refused a token {who} ({status})")
        if status != 200:
            raise RegistryError(f"{ref}: the token service answered {status}")
        data = _json(body, "the token service's answer")
        token = data.get("token") or data.get("access_token")
        if not token:
            raise RegistryError(f"{ref}: the token service's answer holds no token")
        return str(token)

    def _http(self, method: str, url: str, headers: dict[str, str], ref: Reference,
              redirects: int = 5) -> tuple[int, dict[str, str], http.client.HTTPResponse]:
        parts = urllib.parse.urlsplit(url)
        try:
            if parts.scheme == "https":
                conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                    parts.netloc, timeout=self.timeout, context=ssl.create_default_context())
            else:
                conn = http.client.HTTPConnection(parts.netloc, timeout=self.timeout)
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            conn.request(method, target, headers={"User-Agent": "juggler", **headers})
            resp = conn.getresponse()
        except ssl.SSLError as e:
            raise Unreachable(f"{ref}: TLS with {parts.netloc} failed: {e} (a registry serving "
                              "plain http must be marked insecure)") from None
        except (OSError, http.client.HTTPException) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            if isinstance(e, socket.gaierror):
                reason = f"cannot resolve {parts.hostname}"
            raise Unreachable(f"{ref}: cannot reach the registry at {parts.scheme}://"
                              f"{parts.netloc}: {reason}") from None
        rheaders = {k.lower(): v for k, v in resp.getheaders()}
        if resp.status in (301, 302, 303, 307, 308) and rheaders.get("location"):
            resp.read()
            resp.close()
            if redirects == 0:
                raise RegistryError(f"{ref}: too many redirects from {parts.netloc}")
            nxt = urllib.parse.urljoin(url, rheaders["location"])
            if urllib.parse.urlsplit(nxt).netloc != parts.netloc:
                # Blob storage (S3, a CDN) gets no registry credentials.
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            return self._http("GET" if resp.status == 303 else method, nxt, headers, ref,
                              redirects - 1)
        return resp.status, rheaders, resp


class VerifyingReader:
    """A file object over a blob's bytes that hashes and counts them; `finish()`
    reads what the consumer left and raises DigestMismatch on a wrong digest."""

    def __init__(self, raw: BinaryIO, digest: str, report: Progress,
                 cancel: threading.Event, what: str) -> None:
        if not digest.startswith("sha256:"):
            raise RegistryError(f"{what}: unsupported digest algorithm")
        self.raw, self.digest, self.report, self.cancel, self.what = (
            raw, digest, report, cancel, what)
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        if self.cancel.is_set():
            raise Cancelled(f"{self.what}: pull cancelled")
        try:
            data = self.raw.read1(n if n > 0 else CHUNK)  # type: ignore[attr-defined]
        except (OSError, http.client.HTTPException) as e:
            raise Unreachable(f"{self.what}: the connection broke after {self.size} bytes: "
                              f"{e}") from None
        if data:
            self.hash.update(data)
            self.size += len(data)
            self.report(len(data))
        return data

    def finish(self) -> None:
        while self.read(CHUNK):
            pass
        got = "sha256:" + self.hash.hexdigest()
        if got != self.digest:
            raise DigestMismatch(f"{self.what} arrived with digest {got}: rejected "
                                 "(corrupted in transit or by the registry)")


def _check(status: int, resp: http.client.HTTPResponse, ref: Reference) -> None:
    if 200 <= status < 300:
        return
    body = resp.read(4096).decode(errors="replace")
    detail = body.strip()
    try:
        errors = json.loads(body).get("errors", [])
        detail = "; ".join(f"{e.get('code', '')}: {e.get('message', '')}" for e in errors)
    except (ValueError, AttributeError):
        pass
    if status == 403:
        raise Unauthorized(f"{ref}: {ref.registry} denied access (403): {detail}")
    if status == 404:
        raise NotFound(f"{ref}: not found in {ref.registry}: {detail}")
    raise RegistryError(f"{ref}: {ref.registry} answered {status}: {detail[:300]}")


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(raw: bytes, what: str) -> dict:
    try:
        value = json.loads(raw)
    except ValueError as e:
        raise RegistryError(f"{what} is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise RegistryError(f"{what} is not a JSON object")
    return value
