"""Image references, parsed as Docker parses them (distribution/reference).

    busybox                      → docker.io/library/busybox:latest
    library/busybox:1.36         → docker.io/library/busybox:1.36
    quay.io/coreos/etcd          → quay.io/coreos/etcd:latest
    localhost:5000/app@sha256:…  → localhost:5000/app@sha256:… (no tag)

The first path component is a registry only if it holds a '.' or a ':' or is
`localhost` (Docker's rule); otherwise the registry is Docker Hub, whose API
lives at registry-1.docker.io, and a single-component name gains `library/`.
Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
HUB_API = "registry-1.docker.io"

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")
_SHA256 = re.compile(r"^sha256:[a-f0-9]{64}$")
_DOMAIN = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
                     r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:.]+\])"
                     r"(?::[0-9]+)?$")


class ReferenceError(ValueError):
    """Not a valid image reference; the message says why."""


@dataclass(frozen=True)
class Reference:
    registry: str  # "docker.io", "quay.io", "127.0.0.1:5000"
    repository: str  # "library/busybox"
    tag: str = ""
    digest: str = ""

    @property
    def api_host(self) -> str:
        """Where the registry's HTTP API answers (Docker Hub's differs from its name)."""
        return HUB_API if self.registry == DEFAULT_REGISTRY else self.registry

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        """What to ask the manifests endpoint for: the digest if pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def familiar(self) -> str:
        """The short form Docker prints: `busybox:latest`, `quay.io/x/y:1`."""
        name = self.name
        if self.registry == DEFAULT_REGISTRY:
            name = self.repository.removeprefix("library/")
        return f"{name}:{self.tag}" if self.tag else f"{name}@{self.digest}"

    @property
    def familiar_repository(self) -> str:
        if self.registry == DEFAULT_REGISTRY:
            return self.repository.removeprefix("library/")
        return self.name

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, self.tag, digest)


def parse(text: str) -> Reference:
    """Parse `text` as Docker does; raises ReferenceError with the reason."""
    if not text or text != text.strip():
        raise ReferenceError(f"invalid reference {text!r}: empty or surrounded by spaces")
    if len(text) > 4096:
        raise ReferenceError("invalid reference: longer than 4096 characters")
    rest, digest = text, ""
    if "@" in rest:
        rest, _, digest = rest.partition("@")
        if not _DIGEST.match(digest):
            raise ReferenceError(f"invalid reference {text!r}: {digest!r} is not a digest "
                                 "(algorithm:hex, e.g. sha256:<64 hex digits>)")
        if digest.startswith("sha256:") and not _SHA256.match(digest):
            raise ReferenceError(f"invalid reference {text!r}: a sha256 digest has 64 "
                                 "lowercase hex digits")
    tag = ""
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:  # a ':' after the last '/' starts the tag (not a port)
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG.match(tag):
            raise ReferenceError(f"invalid reference {text!r}: tag {tag!r} must be 1 to 128 "
                                 "letters, digits, '_', '.' or '-', not starting with '.' "
                                 "or '-'")
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        registry, path = first, remainder
        if not _DOMAIN.match(registry):
            raise ReferenceError(f"invalid reference {text!r}: {registry!r} is not a "
                                 "registry host[:port]")
        if registry == "index.docker.io":
            registry = DEFAULT_REGISTRY
    else:
        registry, path = DEFAULT_REGISTRY, rest
    if not path:
        raise ReferenceError(f"invalid reference {text!r}: no repository name")
    if path != path.lower():
        raise ReferenceError(f"invalid reference {text!r}: repository name must be lowercase")
    for component in path.split("/"):
        if not _COMPONENT.match(component):
            raise ReferenceError(f"invalid reference {text!r}: {component!r} is not a valid "
                                 "repository name component (lowercase letters, digits, and "
                                 "'.', '_', '-' between them)")
    if registry == DEFAULT_REGISTRY and "/" not in path:
        path = f"library/{path}"
    if len(registry) + 1 + len(path) > 255:
        raise ReferenceError(f"invalid reference {text!r}: name longer than 255 characters")
    if not tag and not digest:
        tag = DEFAULT_TAG
    return Reference(registry=registry, repository=path, tag=tag, digest=digest)


def is_loopback(host: str) -> bool:
    """Docker talks plain http to registries on loopback without being told."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    return name in ("localhost", "::1") or name.startswith("127.")


def parse_name(text: str) -> Reference:
    """A repository alone (`busybox`, `host:5000/app`), as `docker pull -a`
    wants it: ReferenceError if `text` has a tag or a digest (Docker's
    "tag can't be used with --all-tags/-a"). The result has neither."""
    ref = parse(text)
    last = text.rsplit("/", 1)[-1]
    if ref.digest or ":" in last:
        raise ReferenceError(f"{text}: tag can't be used with --all-tags/-a: give the "
                             f"repository alone ({ref.familiar_repository})")
    return Reference(ref.registry, ref.repository)
