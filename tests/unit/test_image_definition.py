"""The Dockerfile as scripts/build-image reads it (testing/dockerfile.py), and
the runc configs the image smoke test gives its containers
(testing/runc_containers.py): pure, no image needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from juggler.testing import dockerfile
from juggler.testing.runc_containers import container_config, held_capabilities

ROOT = Path(__file__).resolve().parents[2]


def test_the_repositorys_dockerfile_installs_what_agents_run() -> None:
    df = dockerfile.parse((ROOT / "Dockerfile").read_text())
    # CNI networks and published ports, --init's tini, compose's etcd, https pulls.
    assert {"python3", "python3-venv", "iproute2", "iptables", "containernetworking-plugins",
            "tini", "etcd-server", "ca-certificates"} <= set(df.packages)
    # Test and benchmark tools of scripts/setup stay out of the image.
    assert not {"busybox-static", "runc", "gcc", "skopeo", "docker-registry"} & set(df.packages)
    assert df.entrypoint[-1] == "juggler" and df.cmd == ["--help"]
    assert df.env["PATH"].startswith("/opt/juggler/bin:")


def test_instructions_join_continuations_and_drop_comments() -> None:
    text = ('# comment\nFROM debian:bookworm-slim\nARG PACKAGES="a b \\\n'
            '# inside\n c"\nRUN x \\\n && y\n\nENV A=1 B="two words"\n'
            'WORKDIR /w\nENTRYPOINT ["/e", "--"]\nCMD ["--help"]\n')
    assert dockerfile.instructions(text) == [
        ("FROM", "debian:bookworm-slim"), ("ARG", 'PACKAGES="a b  c"'), ("RUN", "x  && y"),
        ("ENV", 'A=1 B="two words"'), ("WORKDIR", "/w"), ("ENTRYPOINT", '["/e", "--"]'),
        ("CMD", '["--help"]')]
    df = dockerfile.parse(text)
    assert df == dockerfile.Dockerfile(packages=["a", "b", "c"],
                                       env={"A": "1", "B": "two words"}, workdir="/w",
                                       entrypoint=["/e", "--"], cmd=["--help"])
    assert dockerfile.umoci_config_args(df) == [
        "--config.env=A=1", "--config.env=B=two words", "--config.workingdir=/w",
        "--config.entrypoint=/e", "--config.entrypoint=--", "--config.cmd=--help"]


@pytest.mark.parametrize(("text", "message"), [
    ('ARG PACKAGES="a"\nCMD juggler --help', r"exec \(JSON\) form"),
    ('ARG PACKAGES="a"\nENV PATH /bin', "KEY=VALUE"),
    ('ARG PACKAGES="a"\nWORKDIR relative', "absolute"),
    ("FROM debian", "ARG PACKAGES"),
])
def test_forms_it_does_not_read_are_refused(text: str, message: str) -> None:
    with pytest.raises(dockerfile.DockerfileError, match=message):
        dockerfile.parse(text)


def test_dockerignore_patterns_cover_children_and_any_depth(tmp_path: Path) -> None:
    patterns = dockerfile.ignore_patterns(
        (ROOT / ".dockerignore").read_text())
    assert dockerfile.ignored(".venv/bin/python", patterns)
    assert dockerfile.ignored("agent/__pycache__/server.cpython-311.pyc", patterns)
    assert dockerfile.ignored("juggler.egg-info/PKG-INFO", patterns)
    assert dockerfile.ignored(".git", patterns)
    assert not dockerfile.ignored("agent/server.py", patterns)
    assert not dockerfile.ignored("master/ui/index.html", patterns)
    with pytest.raises(dockerfile.DockerfileError, match="exceptions"):
        dockerfile.ignore_patterns("build\n!build/keep\n")

    for path in ("a/b/c.py", "a/__pycache__/c.pyc", ".venv/x", "top.txt"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("")
    assert dockerfile.context_files(tmp_path, ["**/__pycache__", ".venv"]) == [
        "./a", "./top.txt", "./a/b", "./a/b/c.py"]


STATUS = "Name:\tpython\nCapBnd:\t000001ffffffffff\n"   # every capability up to 40
BASE = {
    "root": {"path": "rootfs"},
    "process": {"args": ["/usr/bin/tini", "--", "juggler", "--help"], "terminal": True,
                "capabilities": {"bounding": ["CAP_KILL"]}, "noNewPrivileges": True},
    "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
               {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]},
               {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                "options": ["ro"]}],
    "linux": {"namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
              "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"],
              "resources": {"devices": [{"allow": False, "access": "rwm"}]}},
}


def test_held_capabilities_read_the_bounding_set() -> None:
    caps = held_capabilities(STATUS)
    assert caps[0] == "CAP_CHOWN" and caps[-1] == "CAP_CHECKPOINT_RESTORE" and len(caps) == 41
    assert "CAP_SYS_RESOURCE" not in held_capabilities("CapBnd:\t000001fffeffffff\n")


def test_a_plain_container_keeps_the_images_confinement() -> None:
    c = container_config(BASE, Path("/img/rootfs"), ["master", "--port", "1"],
                         entrypoint_len=3)
    assert c["process"]["args"] == ["/usr/bin/tini", "--", "juggler", "master", "--port", "1"]
    assert c["process"]["terminal"] is False and c["process"]["noNewPrivileges"] is True
    assert c["root"] == {"path": "/img/rootfs", "readonly": True}
    assert [n["type"] for n in c["linux"]["namespaces"]] == ["pid", "ipc", "uts", "mount"]
    mounts = {m["destination"]: m for m in c["mounts"]}
    assert mounts["/sys/fs/cgroup"]["type"] == "cgroup"
    assert mounts["/tmp"]["type"] == "tmpfs" and mounts["/etc/resolv.conf"]["type"] == "bind"
    assert c["linux"]["maskedPaths"] == ["/proc/kcore"]
    assert BASE["process"]["args"][-1] == "--help"   # the base is not changed


def test_a_privileged_container_is_what_compose_gives_an_agent() -> None:
    c = container_config(BASE, Path("/img/rootfs"), ["agent"], privileged=True, host_pid=True,
                         binds={"/host/work": "/var/lib/juggler/agent"},
                         capabilities=held_capabilities(STATUS), entrypoint_len=3)
    assert [n["type"] for n in c["linux"]["namespaces"]] == ["ipc", "uts", "mount"]
    assert set(c["process"]["capabilities"]) == {"bounding", "effective", "inheritable",
                                                 "permitted", "ambient"}
    assert all(len(v) == 41 for v in c["process"]["capabilities"].values())
    assert c["process"]["noNewPrivileges"] is False
    assert c["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert "maskedPaths" not in c["linux"] and "readonlyPaths" not in c["linux"]
    mounts = {m["destination"]: m for m in c["mounts"]}
    assert mounts["/sys"]["options"][-1] == "rw"
    assert mounts["/sys/fs/cgroup"] == {"destination": "/sys/fs/cgroup", "type": "bind",
                                        "source": "/sys/fs/cgroup", "options": ["rbind", "rw"]}
    assert mounts["/var/lib/juggler/agent"]["source"] == "/host/work"
