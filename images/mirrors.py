"""Docker Hub mirrors, as Docker's daemon `registry-mirrors` (pure: no I/O).

An agent started with `--registry-mirror URL` (repeatable) pulls a Docker Hub
image (`alpine:3.10`, `library/x`, `user/x`, `docker.io/user/x`) from each
mirror in the order given, then from Docker Hub itself; an image of any other
registry is never mirrored. A mirror serves Hub's namespace as a pull-through
cache does, `library/` included: `alpine:3.10` is
`<mirror>/v2/library/alpine/manifests/3.10`. Whichever serves it, the image is
recorded under its Hub name (`docker.io/library/alpine:3.10`).

    parse_mirror("http://10.0.0.5:5000/") → Mirror("http", "10.0.0.5:5000")
    candidates(parse("alpine"), mirrors)  → [<mirror 1>/library/alpine:latest, …,
                                             docker.io/library/alpine:latest]

URL rules are Docker's (moby registry.ValidateMirror): http or https, no
user:password, no query or fragment. One difference, written down: a mirror
URL with a path (`https://host/prefix`) is refused; juggler addresses a
mirror by host[:port] alone, as pull-through caches are served.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from juggler.images.reference import DEFAULT_REGISTRY, Reference


class MirrorError(ValueError):
    """Not a usable mirror URL; the message says why."""


@dataclass(frozen=True)
class Mirror:
    scheme: str  # "http" | "https"
    host: str  # "10.0.0.5:5000", "[::1]:5000", "mirror.gcr.io"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def __str__(self) -> str:
        return self.url


def parse_mirror(text: str) -> Mirror:
    """`scheme://host[:port][/]` → Mirror; raises MirrorError with the reason."""
    value = text.strip()
    try:
        url = urllib.parse.urlsplit(value)
        url.port  # noqa: B018 — raises ValueError on a bad port
    except ValueError as e:
        raise MirrorError(f"invalid mirror: {text!r} is not a valid URL: {e}") from None
    if url.scheme not in ("http", "https"):
        raise MirrorError(f"invalid mirror: unsupported scheme {url.scheme!r} in {text!r} "
                          "(use http:// or https://)")
    if url.username is not None or url.password is not None:
        raise MirrorError(f"invalid mirror: user name or password in {url.hostname!r}'s URL: "
                          "put credentials in the agent's --registry-config")
    if url.query or url.fragment:
        raise MirrorError(f"invalid mirror: query or fragment at the end of {text!r}")
    if url.path not in ("", "/"):
        raise MirrorError(f"invalid mirror: {text!r} has a path ({url.path}); a mirror is "
                          "scheme://host[:port]")
    if not url.hostname:
        raise MirrorError(f"invalid mirror: no host in {text!r}")
    return Mirror(url.scheme, url.netloc.lower())


def parse_mirrors(texts: list[str] | tuple[str, ...]) -> tuple[Mirror, ...]:
    """Each of `texts` parsed, in order, duplicates dropped; MirrorError on a bad one."""
    out: list[Mirror] = []
    for text in texts:
        mirror = parse_mirror(text)
        if mirror not in out:
            out.append(mirror)
    return tuple(out)


def is_mirrored(ref: Reference) -> bool:
    """Whether mirrors serve `ref`: Docker Hub's images only."""
    return ref.registry == DEFAULT_REGISTRY


def candidates(ref: Reference, mirrors: tuple[Mirror, ...]) -> list[Reference]:
    """Where to try `ref`, in order: at each mirror (the mirror's host as the
    registry, the Hub repository path unchanged), then at its own registry."""
    if not is_mirrored(ref):
        return [ref]
    return [Reference(m.host, ref.repository, ref.tag, ref.digest) for m in mirrors] + [ref]
