"""The Engine API's image shapes (apps/docker_image_views.py) from agents'
listings: Docker's ImageSummary and ImageInspect, names, DELETE's conflicts
and answer, a pull's reference and its progress messages."""

from __future__ import annotations

import base64
import json

import pytest

from juggler.apps import docker_image_views as views
from juggler.apps.docker_errors import DockerError
from juggler.images.reference import parse
from juggler.v1 import agent_pb2

ID_A = "sha256:" + "a" * 64
ID_B = "sha256:" + "b" * 64
DIGEST = "sha256:" + "d" * 64
CONFIG = {"architecture": "amd64", "os": "linux", "created": "2024-01-02T03:04:05.5Z",
          "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"], "WorkingDir": "/srv",
                     "User": "nobody", "Labels": {"team": "x"}, "StopSignal": "SIGQUIT",
                     "ExposedPorts": {"80/tcp": {}}},
          "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "1" * 64]}}


def image(image_id: str, *refs: str, containers: int = 0) -> agent_pb2.Image:
    img = agent_pb2.Image(id=image_id, digest=DIGEST, references=refs,
                          created="2024-01-02T03:04:05.5Z", size=4321, containers=containers,
                          layers=[agent_pb2.ImageLayer(diff_id="sha256:" + "1" * 64)])
    if "config" in agent_pb2.Image.DESCRIPTOR.fields_by_name:
        img.config = json.dumps(CONFIG)
    return img


def merged(*listings: tuple[str, list[agent_pb2.Image]]) -> list[views.DockerImage]:
    return views.merge(list(listings))


def test_an_image_on_several_agents_is_listed_once_with_every_name() -> None:
    images = merged(("a1", [image(ID_A, "docker.io/library/busybox:x", containers=1)]),
                    ("a2", [image(ID_A, "docker.io/library/busybox:y"),
                            image(ID_B, "127.0.0.1:5000/app:1")]))
    assert [i.id for i in images] == [ID_A, ID_B]
    summary = views.image_summary(images[0])
    assert summary["RepoTags"] == ["busybox:x", "busybox:y"]
    assert summary["RepoDigests"] == [f"busybox@{DIGEST}"]
    assert {k: summary[k] for k in ("Id", "ParentId", "Created", "Size", "SharedSize",
                                    "Containers")} == {
        "Id": ID_A, "ParentId": "", "Created": 1704164645, "Size": 4321, "SharedSize": -1,
        "Containers": 1}


def test_inspect_has_dockers_shape_and_the_image_config() -> None:
    (img,) = merged(("a1", [image(ID_A, "127.0.0.1:5000/app:1")]))
    got = views.image_inspect(img)
    assert got["Id"] == ID_A and got["RepoTags"] == ["127.0.0.1:5000/app:1"]
    assert got["Created"] == "2024-01-02T03:04:05.5Z"
    assert (got["Architecture"], got["Os"], got["Size"]) == ("amd64", "linux", 4321)
    assert got["RootFS"] == {"Type": "layers", "Layers": ["sha256:" + "1" * 64]}
    c = got["Config"]
    assert (c["Cmd"], c["Env"], c["WorkingDir"], c["User"], c["Entrypoint"]) == (
        ["sh"], ["PATH=/bin"], "/srv", "nobody", None)
    assert (c["Labels"], c["StopSignal"], c["ExposedPorts"]) == (
        {"team": "x"}, "SIGQUIT", {"80/tcp": {}})
    assert views.image_summary(img)["Labels"] == {"team": "x"}


def test_filters_reference_dangling_and_label() -> None:
    tagged, untagged = merged(("a1", [image(ID_A, "docker.io/library/busybox:x"),
                                      image(ID_B)]))
    f = views.parse_filters('{"reference": {"busybox": true}}')
    assert views.matches(tagged, f) and not views.matches(untagged, f)
    f = views.parse_filters('{"dangling": ["true"]}')
    assert views.matches(untagged, f) and not views.matches(tagged, f)
    if "config" in agent_pb2.Image.DESCRIPTOR.fields_by_name:
        assert views.matches(tagged, views.parse_filters('{"label": ["team=x"]}'))
        assert not views.matches(tagged, views.parse_filters('{"label": ["team=y"]}'))
    with pytest.raises(DockerError, match="invalid filter 'since'") as e:
        views.parse_filters('{"since": ["x"]}')
    assert e.value.status == 400


def test_names_resolve_as_dockers_and_an_unknown_one_is_404() -> None:
    images = merged(("a1", [image(ID_A, "docker.io/library/busybox:latest"),
                            image(ID_B, "127.0.0.1:5000/app:1")]))
    assert views.find(images, "busybox") == (images[0], "docker.io/library/busybox:latest")
    assert views.find(images, "bbbbbb")[0] is images[1]
    assert views.find(images, ID_B) == (images[1], "")
    with pytest.raises(DockerError) as e:
        views.find(images, "busybox:nope")
    assert (e.value.status, e.value.message) == (404, "No such image: busybox:nope")


def test_removing_the_last_name_of_an_image_in_use_needs_force() -> None:
    (img,) = merged(("a1", [image(ID_A, "docker.io/library/busybox:x", containers=1)]),
                    ("a2", [image(ID_A, "docker.io/library/busybox:x")]))
    with pytest.raises(DockerError) as e:
        views.removal(img, "docker.io/library/busybox:x", force=False)
    assert e.value.status == 409
    assert e.value.message == ('conflict: unable to remove repository reference "busybox:x" '
                               '(must force) - a container on a1 is using its referenced '
                               f'image {"a" * 12}')
    assert views.removal(img, "docker.io/library/busybox:x", force=True) == [
        ("a1", "docker.io/library/busybox:x"), ("a2", "docker.io/library/busybox:x")]


def test_removing_by_id_conflicts_as_dockers() -> None:
    (used,) = merged(("a1", [image(ID_A, "docker.io/library/busybox:x", containers=1)]))
    with pytest.raises(DockerError, match=r"\(cannot be forced\) - image is being used by "
                                          "running container on a1"):
        views.removal(used, "", force=True)
    (shared,) = merged(("a1", [image(ID_A, "docker.io/library/busybox:x",
                                     "127.0.0.1:5000/app:1")]))
    with pytest.raises(DockerError, match=r"\(must be forced\) - image is referenced in "
                                          "multiple repositories"):
        views.removal(shared, "", force=False)
    assert views.removal(shared, "", force=True) == [("a1", ID_A)]
    (tags,) = merged(("a1", [image(ID_A, "docker.io/library/busybox:x",
                                   "docker.io/library/busybox:y")]))
    assert views.removal(tags, "", force=False) == [("a1", ID_A)]  # one repository


def test_removal_report_untags_then_deletes() -> None:
    (img,) = merged(("a1", [image(ID_A, "docker.io/library/busybox:x")]))
    layer = "sha256:" + "1" * 64
    assert views.removal_report(img, "docker.io/library/busybox:x", [ID_A, layer, ID_A]) == [
        {"Untagged": "busybox:x"}, {"Untagged": f"busybox@{DIGEST}"},
        {"Deleted": ID_A}, {"Deleted": layer}]
    assert views.removal_report(img, "docker.io/library/busybox:x", []) == [
        {"Untagged": "busybox:x"}]


@pytest.mark.parametrize(("from_image", "tag", "want", "every_tag"), [
    ("busybox", "x", "docker.io/library/busybox:x", False),
    ("127.0.0.1:5000/app", "1", "127.0.0.1:5000/app:1", False),
    ("busybox", DIGEST, f"docker.io/library/busybox@{DIGEST}", False),
    ("busybox:x", "", "docker.io/library/busybox:x", False),
    ("busybox", "", "docker.io/library/busybox:latest", True),
    ("127.0.0.1:5000/app", "", "127.0.0.1:5000/app:latest", True),
])
def test_pull_reference_from_fromimage_and_tag(from_image: str, tag: str, want: str,
                                               every_tag: bool) -> None:
    ref, every = views.pull_reference(from_image, tag)
    assert (str(ref), every) == (want, every_tag)


def test_a_bad_reference_is_400_with_dockers_words() -> None:
    with pytest.raises(DockerError, match=r"invalid reference format: .*lowercase") as e:
        views.pull_reference("Busybox", "x")
    assert e.value.status == 400


def test_registry_auth_from_the_header() -> None:
    header = base64.urlsafe_b64encode(json.dumps(
        {"username": "bob", "password": "pw", "serveraddress": "x"}).encode()).decode()
    assert views.registry_auth(header.rstrip("=")) == ("bob", "pw")
    assert views.registry_auth("") == ("", "")
    assert views.registry_auth(base64.b64encode(b"{}").decode()) == ("", "")


def test_pull_messages_as_dockers_progress_stream() -> None:
    layer = "sha256:" + "c" * 64
    msgs = views.PullMessages(parse("busybox:x"), ["a1"])

    def p(status: str, current: int = 0, total: int = 0) -> agent_pb2.PullImageProgress:
        return agent_pb2.PullImageProgress(layer=layer, status=status, current=current,
                                           total=total)

    out = msgs.update("a1", p("waiting", 0, 100))
    assert out == [{"status": "Pulling from library/busybox", "id": "x"},
                   {"status": "Pulling fs layer", "progressDetail": {}, "id": "c" * 12}]
    mb = 1 << 20
    (down,) = msgs.update("a1", p("downloading", 0, 4 * mb))
    assert down == {"status": "Downloading", "id": "c" * 12,
                    "progressDetail": {"current": 0, "total": 4 * mb},
                    "progress": f"[>{' ' * 50}]       0B/4.19MB"}
    # Every 512 KiB, as Docker's progress reader, and when the layer is whole.
    assert msgs.update("a1", p("downloading", 100_000, 4 * mb)) == []
    (down,) = msgs.update("a1", p("downloading", 2 * mb, 4 * mb))
    assert down["progress"] == f"[{'=' * 25}>{' ' * 25}]    2.1MB/4.19MB"
    assert msgs.update("a1", p("downloading", 2 * mb + 1, 4 * mb)) == []
    assert len(msgs.update("a1", p("downloading", 4 * mb, 4 * mb))) == 1
    assert msgs.update("a1", p("pull complete", 100, 100)) == [
        {"status": "Pull complete", "progressDetail": {}, "id": "c" * 12}]
    done = agent_pb2.Image(id=ID_A, digest=DIGEST)
    assert msgs.update("a1", agent_pb2.PullImageProgress(status="done", image=done)) == []
    assert msgs.finish([done], newer=True) == [
        {"status": f"Digest: {DIGEST}"},
        {"status": "Status: Downloaded newer image for busybox:x"}]
    assert msgs.finish([done], newer=False)[-1] == {
        "status": "Status: Image is up to date for busybox:x"}


def test_with_several_agents_each_layer_line_names_its_agent() -> None:
    msgs = views.PullMessages(parse("127.0.0.1:5000/app:1"), ["a1", "a2"])
    out = msgs.update("a2", agent_pb2.PullImageProgress(layer="sha256:" + "e" * 64,
                                                        status="already exists"))
    assert out[0] == {"status": "Pulling from app", "id": "1"}
    assert out[1] == {"status": "Already exists", "progressDetail": {}, "id": f"a2: {'e' * 12}"}
