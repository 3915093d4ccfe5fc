"""The create's image check, decided in pure code (apps/image_presence.py): what
is skipped, what a fresh cache entry answers, when the agents are asked, and
Docker's 404 text."""

from __future__ import annotations

import pytest

from juggler.apps.docker_errors import DockerError
from juggler.apps.docker_image_views import DockerImage
from juggler.apps.image_presence import Decision, ImagePresence, holds, key, missing, names

ID = "sha256:" + "a1" * 32
DIGEST = "sha256:" + "d" * 64


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def image(*refs: str, digest: str = "") -> DockerImage:
    return DockerImage(id=ID, digest=digest, created="", size=0, layers=[], config={},
                       references=list(refs))


def test_no_image_and_rootfs_paths_are_not_checked() -> None:
    p = ImagePresence()
    assert p.decide("") is Decision.SKIP
    assert p.decide("/srv/rootfs") is Decision.SKIP


def test_a_fresh_entry_answers_and_an_old_one_asks_again() -> None:
    clock = Clock()
    p = ImagePresence(clock=clock, ttl=60)
    assert p.decide("busybox") is Decision.ASK
    p.learn(["docker.io/library/busybox:latest", ID])
    # every spelling of the same reference, and the full id, hit the cache
    for name in ("busybox", "busybox:latest", "library/busybox", "docker.io/library/busybox",
                 ID, ID.removeprefix("sha256:")):
        assert p.decide(name) is Decision.PRESENT, name
    assert p.decide("busybox:1.36") is Decision.ASK
    assert p.decide(ID[:19]) is Decision.ASK          # an id prefix: the agents resolve it
    clock.now += 61
    assert p.decide("busybox") is Decision.ASK
    p.learn(["docker.io/library/busybox:latest"])
    assert p.decide("busybox") is Decision.PRESENT
    p.forget(["docker.io/library/busybox:latest"])
    assert p.decide("busybox") is Decision.ASK


def test_a_bad_reference_is_dockers_400() -> None:
    with pytest.raises(DockerError) as e:
        ImagePresence().decide("Bad:Name")
    assert e.value.status == 400 and e.value.message.startswith("invalid reference format")


def test_key_is_the_full_reference_or_id() -> None:
    assert key("busybox") == "docker.io/library/busybox:latest"
    assert key("127.0.0.1:5000/app:1") == "127.0.0.1:5000/app:1"
    assert key(ID.removeprefix("sha256:")) == ID
    assert key(f"busybox:1@{DIGEST}") == f"docker.io/library/busybox@{DIGEST}"
    assert key("sha256:a1a1") == ""      # an id prefix: not a name to cache


def test_missing_speaks_as_moby() -> None:
    # moby ErrImageDoesNotExist: familiar name, ":latest" when no tag or digest
    assert missing("nosuch:3").body() == {"message": "No such image: nosuch:3"}
    assert missing("nosuch").message == "No such image: nosuch:latest"
    assert missing("docker.io/library/busybox").message == "No such image: busybox:latest"
    assert missing("127.0.0.1:5999/nope:1").message == "No such image: 127.0.0.1:5999/nope:1"
    assert missing("x").status == 404


def test_holds_by_reference_id_prefix_and_digest() -> None:
    images = [image("127.0.0.1:5000/app:1", digest=DIGEST)]
    assert holds(images, "127.0.0.1:5000/app:1")
    assert not holds(images, "127.0.0.1:5000/app")
    assert holds(images, ID)
    assert holds(images, ID.removeprefix("sha256:")[:12])
    assert holds(images, f"127.0.0.1:5000/app@{DIGEST}")
    assert not holds(images, f"127.0.0.1:5000/other@{DIGEST}")
    assert not holds(images, "nosuch:3")
    assert names(images) == {ID, "127.0.0.1:5000/app:1", f"127.0.0.1:5000/app@{DIGEST}"}
