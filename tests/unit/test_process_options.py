"""Docker's --init, --security-opt, --cap-add, --cap-drop, --ulimit and -t's TERM,
without a container: the rules (moby's and go-units', cited in
common/task_privileges.py and common/ulimits.py), the labels they travel as,
the task check, the container spec, the process spec exec and health checks
share, the CLI's create body and task, and the Docker API's create and inspect."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from juggler.apps import container_tasks, docker_process
from juggler.apps import docker_views as views
from juggler.apps.containers import Container, ContainerConfig
from juggler.apps.docker_errors import DockerError
from juggler.cli import containers, process_flags
from juggler.cli.main import parser
from juggler.cli.run import build_task
from juggler.common import task_check, task_privileges, ulimits
from juggler.common.task_privileges import DEFAULT, NUMBERS, PrivilegeError
from juggler.common.ulimits import Ulimit, UlimitError
from juggler.container import capabilities, docker_init
from juggler.container.process import ProcessSpec
from juggler.container.spec import ContainerSpec, SpecError
from juggler.v1 import common_pb2 as pb

# -- capabilities -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["net_admin", "NET_ADMIN", "cap_net_admin", "CAP_NET_ADMIN",
                                  " Cap_Net_Admin "])
def test_capability_names_as_docker_takes_them(name: str) -> None:
    assert task_privileges.normalize(name) == "CAP_NET_ADMIN"
    assert task_privileges.normalize("all") == "ALL"


def test_an_unknown_capability_is_refused_in_moby_s_words() -> None:
    with pytest.raises(PrivilegeError, match='unknown capability: "CAP_NET_FOO"'):
        task_privileges.normalize("net_foo")


@pytest.mark.parametrize(("add", "drop", "expected"), [
    ([], [], DEFAULT),
    (["NET_ADMIN"], [], DEFAULT | {"NET_ADMIN"}),
    ([], ["chown", "CAP_KILL"], DEFAULT - {"CHOWN", "KILL"}),
    (["SYS_PTRACE"], ["ALL"], {"SYS_PTRACE"}),
    ([], ["ALL"], set()),
    (["ALL"], ["SYS_ADMIN"], set(NUMBERS) - {"SYS_ADMIN"}),
    (["ALL"], ["ALL"], set(NUMBERS)),           # moby: add ALL is looked at first
    (["NET_ADMIN"], ["NET_ADMIN"], DEFAULT | {"NET_ADMIN"}),   # added after the drop
])
def test_the_capability_set_follows_moby_s_tweak_rule(add: list[str], drop: list[str],
                                                     expected: set[str]) -> None:
    assert task_privileges.effective(add, drop) == frozenset(expected)


def test_the_cli_sends_what_the_docker_cli_sends() -> None:
    assert task_privileges.cli_lists(["sys_ptrace", "net_admin", "NET_ADMIN"], ["chown"]) == (
        ["CAP_NET_ADMIN", "CAP_SYS_PTRACE"], ["CAP_CHOWN"])
    assert task_privileges.cli_lists(["ALL", "net_admin"], ["all", "kill"]) == (["ALL"], [])
    assert task_privileges.cli_lists(["kill"], ["kill", "chown"]) == (["CAP_KILL"],
                                                                      ["CAP_CHOWN"])


# -- --security-opt -------------------------------------------------------------------


@pytest.mark.parametrize(("options", "nnp"), [
    ([], False),
    (["no-new-privileges"], True),
    (["no-new-privileges=true"], True),
    (["no-new-privileges:true"], True),        # Docker's deprecated separator
    (["no-new-privileges=1"], True),
    (["no-new-privileges:false"], False),
    (["no-new-privileges", "no-new-privileges=false"], False),   # the last one wins
    (["seccomp=unconfined", "apparmor=unconfined", "label=disable", "disable"], False),
])
def test_security_options_juggler_takes(options: list[str], nnp: bool) -> None:
    assert task_privileges.parse_security_opts(options).no_new_privileges is nnp


@pytest.mark.parametrize(("option", "words"), [
    ("seccomp=/etc/profile.json", "juggler applies no seccomp filter"),
    ("seccomp={}", "only seccomp=unconfined is accepted"),
    ("apparmor=docker-default", "juggler applies no AppArmor profile"),
    ("label=type:svirt_lxc_net_t", "juggler applies no SELinux labels"),
    ("systempaths=unconfined", "cannot unmask them"),
    ("writable-cgroups=true", "no cgroup filesystem"),
    ("no-new-privileges=maybe", 'invalid --security-opt 2: "no-new-privileges=maybe"'),
    ("nonsense", 'invalid --security-opt 1: "nonsense"'),
    ("what=ever", 'invalid --security-opt 2: "what=ever"'),
])
def test_security_options_juggler_refuses_say_why(option: str, words: str) -> None:
    with pytest.raises(PrivilegeError) as e:
        task_privileges.parse_security_opts([option])
    assert words in str(e.value)


# -- ulimits --------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "limit"), [
    ("nofile=1024", Ulimit("nofile", 1024, 1024)),           # hard defaults to soft
    ("nofile=1024:2048", Ulimit("nofile", 1024, 2048)),
    ("core=0", Ulimit("core", 0, 0)),
    ("nproc=-1", Ulimit("nproc", -1, -1)),
    ("memlock=64:-1", Ulimit("memlock", 64, -1)),            # soft ≤ unlimited hard
])
def test_ulimits_as_go_units_parses_them(text: str, limit: Ulimit) -> None:
    assert ulimits.parse(text) == limit
    assert ulimits.parse(limit.text()) == limit


@pytest.mark.parametrize(("text", "words"), [
    ("nofile", "invalid ulimit argument: nofile"),
    ("as=10", "invalid ulimit type: as"),
    ("files=10", "invalid ulimit type: files"),
    ("nofile=1:2:3", "too many limit value arguments"),
    ("nofile=20:10", "soft limit must be less than or equal to hard limit: 20 > 10"),
    ("nofile=-1:10", "soft: -1 (unlimited), hard: 10"),
    ("nofile=ten", "invalid ulimit value 'ten'"),
    ("nofile=-5", "invalid ulimit value '-5'"),
])
def test_bad_ulimits_are_refused(text: str, words: str) -> None:
    with pytest.raises(UlimitError) as e:
        ulimits.parse(text)
    assert words in str(e.value)


def test_a_ulimit_given_twice_keeps_the_last() -> None:
    assert ulimits.parse_list("nofile=1,core=0,nofile=2:3") == (
        Ulimit("nofile", 2, 3), Ulimit("core", 0, 0))
    assert ulimits.label_value([Ulimit("core", 0, 0)]) == "core=0:0"


# -- labels and the task check -----------------------------------------------------------


def task(**labels: str) -> pb.TaskInfo:
    t = pb.TaskInfo(task_id="t.1", command=pb.CommandInfo(argv=["true"]))
    t.resources.append(pb.Resource(name="cpus", scalar=0.1))
    t.labels.update(labels)
    return t


def test_labels_default_to_docker_s_defaults() -> None:
    labels = task_check.task_labels({})
    assert (labels.init, labels.no_new_privileges, labels.cap_add, labels.cap_drop,
            labels.ulimits) == (False, False, (), (), ())


@pytest.mark.parametrize(("label", "value", "words"), [
    ("juggler.init", "maybe", "must be true or false"),
    ("juggler.no_new_privileges", "2", "must be true or false"),
    ("juggler.cap_add", "NET_ADMIN,BOGUS", 'unknown capability: "CAP_BOGUS"'),
    ("juggler.cap_drop", "chown;kill", "unknown capability"),
    ("juggler.ulimits", "nofile=10:5", "10 > 5"),
    ("juggler.ulimits", "stack", "invalid ulimit argument"),
])
def test_the_task_check_refuses_bad_values_naming_the_label(label: str, value: str,
                                                            words: str) -> None:
    with pytest.raises(task_check.TaskError) as e:
        task_check.check(task(**{label: value}))
    assert e.value.field == f'labels["{label}"]'
    assert words in str(e.value) and "task 't.1'" in str(e.value)


def test_docker_s_flags_become_labels() -> None:
    labels = task_privileges.task_labels(
        init=True, security_opt=["no-new-privileges"], cap_add=["net_admin"],
        cap_drop=["ALL"], ulimit_list=[Ulimit("nofile", 10, 20)])
    assert labels == {"juggler.init": "true", "juggler.no_new_privileges": "true",
                      "juggler.cap_add": "CAP_NET_ADMIN", "juggler.cap_drop": "ALL",
                      "juggler.ulimits": "nofile=10:20"}
    assert task_privileges.task_labels(security_opt=["no-new-privileges=false"]) == {}
    task_check.check(task(**labels))


# -- the container spec and the process spec -----------------------------------------------


def test_a_task_gets_docker_s_defaults() -> None:
    spec = ContainerSpec.from_task(task())
    assert not spec.init and not spec.no_new_privileges
    assert spec.capabilities == DEFAULT and spec.rlimits == ()
    process = ProcessSpec.of_container(spec)
    assert process.capabilities == capabilities.DEFAULT_MASK == 0xA80425FB
    assert not process.no_new_privileges and process.rlimits == ()


def test_the_spec_carries_the_options_to_every_process_of_the_container() -> None:
    spec = ContainerSpec.from_task(task(**{
        "juggler.init": "true", "juggler.no_new_privileges": "yes",
        "juggler.cap_add": "sys_ptrace", "juggler.cap_drop": "NET_RAW,chown",
        "juggler.ulimits": "nofile=100:200,core=0"}))
    assert spec.init and spec.no_new_privileges
    assert spec.capabilities == (DEFAULT - {"NET_RAW", "CHOWN"}) | {"SYS_PTRACE"}
    assert spec.rlimits == (Ulimit("nofile", 100, 200), Ulimit("core", 0, 0))
    process = ProcessSpec.of_container(spec, ["sh"])   # as exec and health checks have it
    assert capabilities.names(process.capabilities) == spec.capabilities
    assert process.no_new_privileges
    assert process.rlimits == (("nofile", 100, 200), ("core", 0, 0))
    assert ProcessSpec.from_json(process.to_json()) == process


def test_a_process_request_without_the_new_fields_gets_the_defaults() -> None:
    old = {"argv": ["true"], "env": {}, "cwd": "/", "user": "", "home_from_task": False,
           "death_signal": 0}
    process = ProcessSpec.from_json(old)
    assert process.capabilities == capabilities.DEFAULT_MASK
    assert not process.no_new_privileges and process.rlimits == ()


def test_a_bad_label_fails_the_spec() -> None:
    with pytest.raises(SpecError):
        ContainerSpec.from_task(task(**{"juggler.cap_add": "bogus"}))


def test_a_terminal_gets_term_xterm_unless_the_task_set_term() -> None:
    t = task()
    assert "TERM" not in ContainerSpec.from_task(t).env
    t.container.tty = True
    assert ContainerSpec.from_task(t).env["TERM"] == "xterm"
    t.command.environment["TERM"] = "vt100"   # the task's (or its image's) wins
    assert ContainerSpec.from_task(t).env["TERM"] == "vt100"


def test_init_says_what_is_missing_on_an_agent_without_tini(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docker_init, "SEARCH", ())
    with pytest.raises(OSError) as e:
        docker_init.Init.find(str(tmp_path))
    assert "--init needs tini-static on the agent" in str(e.value)
    assert "apt-get install tini" in str(e.value)
    binary = tmp_path / "tini-static"
    binary.write_text("")
    binary.chmod(0o755)
    init = docker_init.Init.find(str(tmp_path))
    assert init.host_path == str(binary)
    # On the host's filesystem (nothing staged) the host's binary runs the command.
    assert init.command(["sleep", "1"]) == [str(binary), "--", "sleep", "1"]


# -- the CLI ---------------------------------------------------------------------------


def _run_args(*argv: str) -> argparse.Namespace:
    return parser().parse_args(["run", *argv])


FLAGS = ("--init", "--security-opt", "no-new-privileges", "--cap-add", "net_admin",
         "--cap-add", "SYS_PTRACE", "--cap-drop", "chown", "--ulimit", "nofile=10:20",
         "--ulimit", "core=0")


def test_the_create_body_carries_the_flags_as_the_docker_cli_does() -> None:
    args = _run_args(*FLAGS, "busybox", "true")
    host = containers.create_body(args, *containers.split_command(args))["HostConfig"]
    assert host == {"Init": True, "SecurityOpt": ["no-new-privileges"],
                    "CapAdd": ["CAP_NET_ADMIN", "CAP_SYS_PTRACE"], "CapDrop": ["CAP_CHOWN"],
                    "Ulimits": [{"Name": "nofile", "Hard": 20, "Soft": 10},
                                {"Name": "core", "Hard": 0, "Soft": 0}]}
    plain = _run_args("busybox", "true")
    assert containers.create_body(plain, *containers.split_command(plain))["HostConfig"] == {}


def test_a_task_run_carries_the_flags_as_labels() -> None:
    args = _run_args(*FLAGS, "-t", "--", "true")
    labels = build_task(args, "t.1", "", ["true"]).labels
    ours = ("juggler.init", "juggler.no_new_privileges", "juggler.cap_add", "juggler.cap_drop",
            "juggler.ulimits")
    assert {k: v for k, v in labels.items() if k in ours} == {
        "juggler.init": "true", "juggler.no_new_privileges": "true",
        "juggler.cap_add": "CAP_NET_ADMIN,CAP_SYS_PTRACE", "juggler.cap_drop": "CAP_CHOWN",
        "juggler.ulimits": "nofile=10:20,core=0:0"}


@pytest.mark.parametrize("flags", [("--ulimit", "nofile=2:1"), ("--cap-add", "bogus"),
                                   ("--security-opt", "seccomp=x.json")])
def test_bad_flags_fail_before_anything_runs(flags: tuple[str, str]) -> None:
    with pytest.raises(ValueError):
        process_flags.labels(_run_args(*flags, "--", "true"))


# -- the Docker API --------------------------------------------------------------------


def test_create_keeps_them_and_inspect_shows_them() -> None:
    cfg = views.config_from_create({"Image": "busybox", "HostConfig": {
        "Init": True, "SecurityOpt": ["no-new-privileges:true"], "CapAdd": ["net_admin"],
        "CapDrop": ["ALL"], "Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 20},
                                        {"Name": "nofile", "Soft": 30, "Hard": 40}]}})
    assert cfg.init is True and cfg.security_opt == ["no-new-privileges:true"]
    assert (cfg.cap_add, cfg.cap_drop, cfg.ulimits) == (["net_admin"], ["ALL"],
                                                        ["nofile=30:40"])
    c = Container(id="a" * 64, name="web", created=1.0, config=cfg, task_id="a" * 12 + ".1")
    host = views.inspect(c, "fw")["HostConfig"]
    assert (host["Init"], host["SecurityOpt"], host["CapAdd"], host["CapDrop"]) == (
        True, ["no-new-privileges:true"], ["net_admin"], ["ALL"])
    assert host["Ulimits"] == [{"Name": "nofile", "Hard": 40, "Soft": 30}]
    labels = container_tasks.task_for(c, "agent-1").labels
    assert (labels["juggler.init"], labels["juggler.no_new_privileges"]) == ("true", "true")
    assert (labels["juggler.cap_add"], labels["juggler.cap_drop"]) == ("CAP_NET_ADMIN", "ALL")
    assert labels["juggler.ulimits"] == "nofile=30:40"


def test_inspect_of_a_container_without_them_is_docker_s() -> None:
    c = Container(id="b" * 64, name="db", created=1.0, config=ContainerConfig(image="x"))
    host = views.inspect(c, "fw")["HostConfig"]
    assert "Init" not in host   # Docker's *bool, omitted when not given
    assert (host["SecurityOpt"], host["CapAdd"], host["CapDrop"], host["Ulimits"]) == (
        None, None, None, None)
    labels = container_tasks.task_for(c, "agent-1").labels
    assert not any(k in labels for k in ("juggler.init", "juggler.no_new_privileges",
                                         "juggler.cap_add", "juggler.ulimits"))


def test_a_stored_config_from_before_reads_with_the_defaults() -> None:
    record = ContainerConfig(image="x").record()
    for key in ("init", "security_opt", "cap_add", "cap_drop", "ulimits"):
        del record[key]
    cfg = ContainerConfig.from_record(record)
    assert cfg.init is None and cfg.cap_add == [] and cfg.ulimits == []


@pytest.mark.parametrize(("host", "words"), [
    ({"Init": "yes"}, "HostConfig.Init"),
    ({"CapAdd": "NET_ADMIN"}, "HostConfig.CapAdd: must be a list of strings"),
    ({"Ulimits": [["nofile", 1, 2]]}, "HostConfig.Ulimits"),
    ({"Ulimits": [{"Name": "nofile", "Soft": "1", "Hard": 2}]}, "HostConfig.Ulimits"),
])
def test_wrong_types_are_refused(host: dict, words: str) -> None:
    with pytest.raises(DockerError) as e:
        docker_process.read(ContainerConfig(), host)
    assert e.value.status == 400 and words in e.value.message

