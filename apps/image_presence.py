"""Whether a container's image is on some agent, as POST /containers/create
asks before it creates anything (Docker never creates a container whose image
it does not have: moby's create answers 404 "No such image: REF", and the
docker CLI then pulls it through POST /images/create and creates again).

The pure part, `ImagePresence`, is a cache of what agents were seen to hold:
the references and image ids of their image lists and of the pulls made
through the Engine API, each trusted for `ttl` seconds. `decide` answers
SKIP (nothing to check: no image, or a root filesystem path), PRESENT (a
fresh entry names it) or ASK (only then does the shell, `check`, list the
agents' images). An entry that outlives the image (a `juggler rmi` straight
to an agent) costs nothing worse than juggler's older behaviour: the agent
pulls the image when the container is launched.
"""

from __future__ import annotations

import contextlib
import enum
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from juggler.apps.docker_errors import DockerError
from juggler.apps.docker_image_views import DockerImage, find, merge
from juggler.apps.image_cluster import ImageCluster
from juggler.common import logs
from juggler.images.reference import ReferenceError, parse

log = logs.get("juggler.apps.images")

KNOWN_SECONDS = 60.0   # how long an agent's image, once seen, is trusted present
_HEX = frozenset("0123456789abcdef")


class Decision(enum.Enum):
    SKIP = "skip"          # no image to check
    PRESENT = "present"    # known on some agent
    ASK = "ask"            # list the agents' images


def key(image: str) -> str:
    """The name `image` is cached under: its full reference
    ("busybox" → "docker.io/library/busybox:latest"), a full image id
    ("sha256:<64 hex>"), or "" for "sha256:<id prefix>". DockerError 400
    "invalid reference format" (moby's words) for none of these."""
    hexd = image.removeprefix("sha256:")
    if hexd and set(hexd) <= _HEX and (len(hexd) == 64 or hexd != image):
        # a full id; or "sha256:" and an id prefix, which only the agents'
        # lists resolve (a bare hex word is also a repository name: a reference)
        return f"sha256:{hexd}" if len(hexd) == 64 else ""
    try:
        ref = parse(image)
    except ReferenceError as e:
        raise DockerError(400, f"invalid reference format: {e}") from None
    # a digest names the image whatever the tag beside it (as Docker's pull)
    return f"{ref.name}@{ref.digest}" if ref.digest else str(ref)


def missing(image: str) -> DockerError:
    """Docker's 404 for an image no agent has: "No such image: busybox:latest"
    (moby's ErrImageDoesNotExist: the familiar name, ":latest" added when no
    tag or digest is given)."""
    try:
        name = parse(image).familiar()
    except ReferenceError:
        name = image
    return DockerError(404, f"No such image: {name}")


@dataclass
class ImagePresence:
    """The references and ids known present on some agent, with when each
    was last seen (seconds of `clock`)."""

    clock: Callable[[], float] = time.monotonic
    ttl: float = KNOWN_SECONDS
    seen: dict[str, float] = field(default_factory=dict)

    def decide(self, image: str) -> Decision:
        """SKIP for "" or an absolute path (a --rootfs container), PRESENT
        when a fresh entry names `image`, else ASK. Raises as key()."""
        if not image or image.startswith("/"):
            return Decision.SKIP
        name = key(image)
        at = self.seen.get(name) if name else None
        if at is not None and self.clock() - at < self.ttl:
            return Decision.PRESENT
        return Decision.ASK

    def learn(self, names: Iterable[str]) -> None:
        """References or ids (full forms) just seen on an agent."""
        now = self.clock()
        for name in names:
            if name:
                self.seen[name] = now

    def forget(self, names: Iterable[str]) -> None:
        """References or ids an agent no longer holds (an image deleted)."""
        for name in names:
            self.seen.pop(name, None)


def names(images: list[DockerImage]) -> set[str]:
    """Every name by which `images` (the agents' merged lists) can be given in
    full: their ids, their references, and "repository@digest" for each
    repository of an image pulled by a manifest digest."""
    out: set[str] = set()
    for i in images:
        out.add(i.id)
        for r in i.references:
            out.add(r)
            if i.digest:
                with contextlib.suppress(ReferenceError):
                    out.add(f"{parse(r).name}@{i.digest}")
    return out


def holds(images: list[DockerImage], image: str) -> bool:
    """Whether one of `images` is `image`: by a full name (names()), or by a
    unique id prefix (as `docker image inspect` resolves one). Raises as key()."""
    name = key(image)
    if name and name in names(images):
        return True
    try:
        find(images, image)
    except DockerError:
        return False
    return True


async def check(presence: ImagePresence, cluster: ImageCluster, image: str) -> None:
    """Raise Docker's 404 (missing()) when no agent of `cluster` holds
    `image`; return when one does, when nothing is to be checked, or when the
    agents cannot say (no master leads, no agent is active, none answers: the
    create goes ahead and the agent pulls the image at launch, as before).
    The agents' answer fills `presence`. Raises as key()."""
    if presence.decide(image) is not Decision.ASK:
        return
    try:
        images = merge(await cluster.images(await cluster.agents()))
    except DockerError as e:
        log.warning("cannot tell whether an agent has the image", image=image, error=e.message)
        return
    presence.learn(names(images))
    if not holds(images, image):
        raise missing(image)
