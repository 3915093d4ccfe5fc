"""Docker Hub mirrors (images/mirrors.py, RegistryClient's fallback): which
references go to mirrors, in which order, and what a failed pull says."""

from __future__ import annotations

import pytest

from juggler.images.mirrors import Mirror, MirrorError, candidates, parse_mirror, parse_mirrors
from juggler.images.reference import ReferenceError, parse, parse_name
from juggler.images.registry import Cancelled, NotFound, RegistryClient, Unreachable

M1, M2 = Mirror("http", "10.0.0.5:5000"), Mirror("https", "mirror.example")


@pytest.mark.parametrize(("text", "want"), [
    ("http://10.0.0.5:5000", Mirror("http", "10.0.0.5:5000")),
    ("http://10.0.0.5:5000/", Mirror("http", "10.0.0.5:5000")),
    ("https://Mirror.Example", Mirror("https", "mirror.example")),
    ("http://[::1]:5000", Mirror("http", "[::1]:5000")),
])
def test_mirror_urls_docker_accepts(text: str, want: Mirror) -> None:
    assert parse_mirror(text) == want


@pytest.mark.parametrize(("text", "why"), [
    ("10.0.0.5:5000", "unsupported scheme"),
    ("ftp://host", "unsupported scheme"),
    ("http://user:pw@host", "user name or password"),
    ("http://host/?x=1", "query or fragment"),
    ("http://host/#frag", "query or fragment"),
    ("http://host/prefix", "has a path"),
    ("http://host:99999", "not a valid URL"),
    ("http://", "no host"),
])
def test_mirror_urls_refused_with_the_reason(text: str, why: str) -> None:
    with pytest.raises(MirrorError, match=why):
        parse_mirror(text)


def test_duplicate_mirrors_are_tried_once_in_the_given_order() -> None:
    assert parse_mirrors(["https://mirror.example", "http://10.0.0.5:5000",
                          "https://mirror.example/"]) == (M2, M1)


@pytest.mark.parametrize("text", ["alpine:3.10", "library/alpine:3.10",
                                  "docker.io/library/alpine:3.10",
                                  "index.docker.io/library/alpine:3.10"])
def test_hub_official_images_go_to_each_mirror_then_hub(text: str) -> None:
    got = [str(r) for r in candidates(parse(text), (M1, M2))]
    assert got == ["10.0.0.5:5000/library/alpine:3.10", "mirror.example/library/alpine:3.10",
                   "docker.io/library/alpine:3.10"]


def test_hub_user_images_and_digests_are_mirrored_as_they_are() -> None:
    digest = "sha256:" + "a" * 64
    got = candidates(parse(f"user/app@{digest}"), (M1,))
    assert [str(r) for r in got] == [f"10.0.0.5:5000/user/app@{digest}",
                                     f"docker.io/user/app@{digest}"]


@pytest.mark.parametrize("text", ["quay.io/coreos/etcd:v3", "127.0.0.1:5000/busybox:x",
                                  "localhost/app"])
def test_other_registries_are_never_mirrored(text: str) -> None:
    assert candidates(parse(text), (M1, M2)) == [parse(text)]


def test_a_mirror_is_spoken_to_in_its_own_scheme() -> None:
    client = RegistryClient(mirrors=(M1, M2, Mirror("https", "127.0.0.1:6000")))
    assert client.scheme("10.0.0.5:5000") == "http"  # not loopback, not --insecure-registry
    assert client.scheme("mirror.example") == "https"
    assert client.scheme("127.0.0.1:6000") == "https"  # the URL says so, loopback or not
    assert client.scheme("10.0.0.6:5000") == "https"


def test_the_first_place_that_answers_serves_the_pull() -> None:
    client = RegistryClient(mirrors=(M1, M2))
    asked: list[str] = []

    def attempt(source):  # type: ignore[no-untyped-def]
        asked.append(source.registry)
        if source.registry == "10.0.0.5:5000":
            raise NotFound("manifest unknown")
        return source

    got = client._from_first(parse("alpine:3.10"), attempt)
    assert got.registry == "mirror.example" and got.repository == "library/alpine"
    assert asked == ["10.0.0.5:5000", "mirror.example"]  # Hub never asked


def test_when_every_place_fails_the_error_is_hubs_and_names_the_mirrors() -> None:
    client = RegistryClient(mirrors=(M1,))

    def attempt(source):  # type: ignore[no-untyped-def]
        if source.registry == "docker.io":
            raise Unreachable("cannot reach registry-1.docker.io")
        raise NotFound("the registry 10.0.0.5:5000 has no library/alpine:3.10")

    with pytest.raises(Unreachable) as e:
        client._from_first(parse("alpine:3.10"), attempt)
    assert str(e.value) == ("cannot reach registry-1.docker.io (tried the mirrors first: "
                            "http://10.0.0.5:5000: the registry 10.0.0.5:5000 has no "
                            "library/alpine:3.10)")


def test_a_cancelled_pull_does_not_move_on_to_the_next_mirror() -> None:
    client = RegistryClient(mirrors=(M1, M2))
    asked: list[str] = []

    def attempt(source):  # type: ignore[no-untyped-def]
        asked.append(source.registry)
        raise Cancelled("pull cancelled")

    with pytest.raises(Cancelled):
        client._from_first(parse("alpine"), attempt)
    assert asked == ["10.0.0.5:5000"]


def test_a_repository_alone_for_all_tags() -> None:
    assert str(parse_name("busybox")) == "docker.io/library/busybox"
    assert str(parse_name("127.0.0.1:5000/app")) == "127.0.0.1:5000/app"
    for text in ("busybox:1", "127.0.0.1:5000/app:x", "busybox@sha256:" + "b" * 64):
        with pytest.raises(ReferenceError, match="tag can't be used with --all-tags/-a"):
            parse_name(text)
