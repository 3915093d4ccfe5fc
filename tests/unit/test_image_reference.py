"""Image references parsed as Docker parses them; image configs applied to tasks."""

from __future__ import annotations

import pytest

from juggler.images import config
from juggler.images.reference import ReferenceError, is_loopback, parse
from juggler.v1 import common_pb2 as pb

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(("text", "registry", "repository", "tag", "digest"), [
    ("busybox", "docker.io", "library/busybox", "latest", ""),
    ("library/busybox:1.36", "docker.io", "library/busybox", "1.36", ""),
    ("docker.io/busybox", "docker.io", "library/busybox", "latest", ""),
    ("index.docker.io/user/app:v1", "docker.io", "user/app", "v1", ""),
    ("user/app", "docker.io", "user/app", "latest", ""),
    ("quay.io/coreos/etcd:v3.5", "quay.io", "coreos/etcd", "v3.5", ""),
    ("localhost/app", "localhost", "app", "latest", ""),
    ("localhost:5000/app@" + D, "localhost:5000", "app", "", D),
    ("127.0.0.1:5000/a/b/c:t@" + D, "127.0.0.1:5000", "a/b/c", "t", D),
    ("[::1]:5000/app", "[::1]:5000", "app", "latest", ""),
])
def test_parse_like_docker(text, registry, repository, tag, digest):
    ref = parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag,
                                                                   digest)
    assert parse(str(ref)) == ref


def test_hub_api_host_and_familiar_names():
    ref = parse("busybox")
    assert ref.api_host == "registry-1.docker.io"
    assert ref.familiar() == "busybox:latest"
    assert str(ref) == "docker.io/library/busybox:latest"
    assert parse("quay.io/x/y:1").api_host == "quay.io"
    assert parse("x@" + D).reference == D


@pytest.mark.parametrize(("text", "why"), [
    ("", "empty"),
    ("BusyBox", "lowercase"),
    ("busybox:", "tag"),
    ("busybox:-x", "tag"),
    ("x@sha256:abc", "digest"),
    ("x@sha256:" + "A" * 64, "digest"),
    ("a//b", "component"),
    ("host:5000/", "no repository"),
    ("-a", "component"),
])
def test_bad_references_say_why(text, why):
    with pytest.raises(ReferenceError, match=why):
        parse(text)


def test_loopback_registries():
    assert is_loopback("127.0.0.1:5000") and is_loopback("localhost") and is_loopback("[::1]:5")
    assert not is_loopback("registry-1.docker.io") and not is_loopback("10.0.0.1:5000")


def test_platform_choice_prefers_the_exact_variant():
    ms = [{"digest": "a", "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
          {"digest": "b", "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
          {"digest": "c", "platform": {"os": "linux", "architecture": "amd64"}},
          {"digest": "d", "platform": {"os": "unknown", "architecture": "unknown"}}]
    assert config.choose_platform(ms, ("linux", "arm", "v7"))["digest"] == "b"
    assert config.choose_platform(ms, ("linux", "amd64", ""))["digest"] == "c"
    assert config.choose_platform(ms, ("linux", "arm64", "")) is None


IMAGE = config.ImageConfig(entrypoint=["/entry"], cmd=["default", "args"],
                           env=["PATH=/img/bin", "A=image", "B=image"], working_dir="/srv",
                           user="app:app")


def task(**command) -> pb.TaskInfo:
    return pb.TaskInfo(task_id="t", command=pb.CommandInfo(**command),
                       container=pb.ContainerInfo(image="x"))


def test_no_task_command_runs_entrypoint_and_cmd():
    out = config.apply(task(), IMAGE)
    assert list(out.command.argv) == ["/entry", "default", "args"]
    assert dict(out.command.environment) == {"PATH": "/img/bin", "A": "image", "B": "image"}
    # The image's User as given: "user:group" is resolved as Docker does (users.py).
    assert out.command.working_directory == "/srv" and out.command.user == "app:app"


def test_task_argv_replaces_cmd_and_keeps_entrypoint_and_overrides_the_rest():
    out = config.apply(task(argv=["mine"], environment={"B": "task"}, working_directory="/w",
                            user="root"), IMAGE)
    assert list(out.command.argv) == ["/entry", "mine"]
    assert out.command.environment["B"] == "task" and out.command.environment["A"] == "image"
    assert out.command.working_directory == "/w" and out.command.user == "root"


def test_shell_task_replaces_entrypoint_and_cmd():
    out = config.apply(task(argv=["echo hi"], shell=True), IMAGE)
    assert list(out.command.argv) == ["echo hi"] and out.command.shell


def test_no_command_anywhere_is_an_error():
    with pytest.raises(config.ConfigError, match="no command"):
        config.apply(task(), config.ImageConfig())


def test_config_parse_reads_the_oci_fields():
    cfg = config.ImageConfig.parse(b'{"architecture":"amd64","os":"linux","config":{"Env":'
                                   b'["A=1"],"Cmd":["sh"],"WorkingDir":"/w","User":"1"},'
                                   b'"rootfs":{"type":"layers","diff_ids":["sha256:x"]}}')
    assert cfg.env == ["A=1"] and cfg.cmd == ["sh"] and cfg.working_dir == "/w"
    assert cfg.diff_ids == ["sha256:x"] and cfg.user == "1"
