"""The one task check (common/task_check.py): a table of tasks, each good one
accepted, each bad one refused naming the field a framework author must fix.
The right value of each case is the test."""

from __future__ import annotations

import math

import pytest

from juggler.common import task_check
from juggler.common.task_check import HealthCheckError, TaskError, TaskLabels, task_labels
from juggler.common.task_defaults import (
    DEFAULT_LOG_MAX_BYTES,
    DEFAULT_LOG_MAX_FILES,
    DEFAULT_PIDS_MAX,
    LABELS,
)
from juggler.container.spec import ContainerSpec, SpecError
from juggler.v1 import common_pb2 as pb

HC = pb.HealthCheck


def _secret(t: pb.TaskInfo, *names: str) -> pb.TaskInfo:
    t.command.secret_environment.extend(names)
    return t


def task(**kw) -> pb.TaskInfo:
    """web.1: `echo hi` under sh with 0.5 cpus and 32 MiB; keywords set fields
    (dotted paths as `container__image`), labels and env through dicts."""
    t = pb.TaskInfo(task_id="web.1", command=pb.CommandInfo(argv=["echo hi"], shell=True))
    for name, value in kw.pop("resources", {"cpus": 0.5, "mem": 32}).items():
        t.resources.append(pb.Resource(name=name, scalar=value))
    t.labels.update(kw.pop("labels", {}))
    t.command.environment.update(kw.pop("env", {}))
    if "argv" in kw:
        del t.command.argv[:]
        t.command.argv.extend(kw.pop("argv"))
    for key, value in kw.items():
        *path, last = key.split("__")
        target = t
        for part in path:
            target = getattr(target, part)
        if hasattr(value, "CopyFrom"):
            getattr(target, last).CopyFrom(value)
        else:
            setattr(target, last, value)
    return t


# -- accepted: every valid case of test_container_spec, test_container_hardening,
# test_health and test_task_stdio, and more --------------------------------------

GOOD = {
    "shell command": task(),
    "plain argv": task(argv=["sleep", "10"], command__shell=False),
    "environment": task(env={"FOO": "bar", "PATH": "/opt/bin", "EMPTY": ""}),
    "a task id the task cannot override": task(env={"JUGGLER_TASK_ID": "other"}),
    "cpus only": task(resources={"cpus": 1}),
    "mem only": task(resources={"mem": 16}),
    "cpus, no mem, an empty disk": task(resources={"cpus": 0.001, "disk": 0}),
    "a task id with _ . - and capitals": task(task_id="My_App.Task-7"),
    "a task id of 200 characters": task(task_id="a" * 200),
    "a hostname": task(container__hostname="db-1"),
    "a hostname of 63": task(container__hostname="h" * 63),
    "host network, rootfs, workdir, user": task(
        container__network=pb.NETWORK_HOST, container__rootfs="/images/busybox",
        command__working_directory="/tmp", command__user="nobody"),
    "network none": task(container__network=pb.NETWORK_NONE),
    "grace 0": task(kill_policy=pb.KillPolicy(grace_period_seconds=0)),
    "grace 30": task(kill_policy=pb.KillPolicy(grace_period_seconds=30)),
    "pids_max 50": task(argv=["true"], command__shell=False, labels={"juggler.pids_max": "50"}),
    "log labels": task(labels={"juggler.log_max_bytes": "4096", "juggler.log_max_files": "5"}),
    "log_max_files 0": task(labels={"juggler.log_max_files": "0"}),
    "interactive true": task(labels={"juggler.interactive": "true"}),
    "interactive False": task(labels={"juggler.interactive": "False"}),
    "interactive 1": task(labels={"juggler.interactive": "1"}),
    "the framework's own labels": task(labels={"app": "web", "juggler": "x",
                                               "jugglerx.y": "z", "com.example/v": "1"}),
    "an image and no command (its Entrypoint/Cmd)": task(argv=[], command__shell=False,
                                                         container__image="busybox"),
    "an image with arguments": task(argv=["-c", "echo"], command__shell=False,
                                    container__image="127.0.0.1:5000/app:1"),
    "an image pinned by digest": task(container__image="quay.io/x/y@sha256:" + "a" * 64),
    "a tty": task(container__tty=True),
    "user root": task(command__user="root"),
    "uid 0": task(command__user="0"),
    "uid 1000": task(command__user="1000"),
    "user www-data": task(command__user="www-data"),
    "user _apt": task(command__user="_apt"),
    "user app.1": task(command__user="app.1"),
    "uid:gid": task(command__user="1000:1000"),
    "name:group": task(command__user="app:staff"),
    "name:gid": task(command__user="app:50"),
    "uid:group": task(command__user="1000:staff"),
    "user:": task(command__user="app:"),
    ":group": task(command__user=":staff"),
    "a command health check, defaults": task(health_check=HC(
        command=HC.Command(argv=["true"], shell=True))),
    "a tcp check with every field": task(health_check=HC(
        tcp=HC.Tcp(port=80), delay_seconds=0.5, interval_seconds=0.2, timeout_seconds=1,
        consecutive_failures=1, kill_when_unhealthy=True, grace_period_seconds=300)),
    "a check with a grace period of 0.5 s": task(health_check=HC(
        tcp=HC.Tcp(port=80), grace_period_seconds=0.5)),
    "an http check": task(health_check=HC(http=HC.Http(port=8080, path="/health?x=1",
                                                       scheme="https"))),
    "an http check on port 65535": task(health_check=HC(http=HC.Http(port=65535))),
    "a command check as argv": task(health_check=HC(
        command=HC.Command(argv=["test", "-f", "/tmp/ok"]))),
}


@pytest.mark.parametrize("t", GOOD.values(), ids=GOOD.keys())
def test_good_tasks_pass(t: pb.TaskInfo) -> None:
    task_check.check(t)


@pytest.mark.parametrize("t", [t for t in GOOD.values() if not t.container.image],
                         ids=[k for k, t in GOOD.items() if not t.container.image])
def test_good_tasks_make_a_container(t: pb.TaskInfo) -> None:
    ContainerSpec.from_task(t)


# -- refused, each naming its field ----------------------------------------------

BAD = [
    # (what, task, field)
    ("no task id", task(task_id=""), "task_id"),
    ("a task id with a space", task(task_id="web 1"), "task_id"),
    ("a task id starting with '.'", task(task_id=".web"), "task_id"),
    ("a task id of 201 characters", task(task_id="a" * 201), "task_id"),
    ("an unknown resource", task(resources={"cpus": 1, "gpus": 1}), "resources"),
    ("a negative resource", task(resources={"cpus": -1, "mem": 32}), "resources"),
    ("a NaN resource", task(resources={"cpus": math.nan}), "resources"),
    ("no resources", task(resources={}), "resources"),
    ("only disk", task(resources={"disk": 100}), "resources"),
    ("no command, no image", task(argv=[]), "command.argv"),
    ("no command, no image, no shell", task(argv=[], command__shell=False), "command.argv"),
    ("an empty argv[0]", task(argv=["", "x"], command__shell=False), "command.argv[0]"),
    ("a NUL in argv", task(argv=["echo", "a\0b"], command__shell=False), "command.argv[1]"),
    ("a shell command of two strings", task(argv=["echo", "hi"]), "command.argv"),
    ("a shell command with an image and no string", task(argv=[], container__image="busybox"),
     "command.argv"),
    ("an image and a rootfs", task(container__image="busybox", container__rootfs="/r"),
     "container.rootfs"),
    ("an image reference with capitals", task(container__image="BusyBox"), "container.image"),
    ("an image reference with a bad tag", task(container__image="busybox:-x"),
     "container.image"),
    ("an image reference with a short digest", task(container__image="busybox@sha256:abc"),
     "container.image"),
    ("a relative rootfs", task(container__rootfs="images/busybox"), "container.rootfs"),
    ("a NUL in the rootfs", task(container__rootfs="/images\0"), "container.rootfs"),
    ("a relative working directory", task(command__working_directory="tmp"),
     "command.working_directory"),
    ("a hostname with '_'", task(container__hostname="bad_name"), "container.hostname"),
    ("a hostname with a dot", task(container__hostname="a.b"), "container.hostname"),
    ("a hostname ending in '-'", task(container__hostname="web-"), "container.hostname"),
    ("a hostname of 64", task(container__hostname="h" * 64), "container.hostname"),
    ("an unknown network mode", task(container__network=7), "container.network"),
    ("a user:group:more", task(command__user="app:app:x"), "command.user"),
    ("a group with a space", task(command__user="app:my group"), "command.user"),
    ("a user starting with '-'", task(command__user="-app"), "command.user"),
    ("a user with a space", task(command__user="my app"), "command.user"),
    ("a user of 33 characters", task(command__user="u" * 33), "command.user"),
    ("a uid beyond uid_t", task(command__user=str(2**32)), "command.user"),
    ("an empty variable name", task(env={"": "x"}), 'command.environment[""]'),
    ("a variable name with '='", task(env={"A=B": "x"}), 'command.environment["A=B"]'),
    ("a NUL in a variable name", task(env={"A\0": "x"}), 'command.environment["A\\u0000"]'),
    ("a NUL in a value", task(env={"A": "x\0y"}), 'command.environment["A"]'),
    ("a secret that is not a variable", _secret(task(env={"A": "x"}), "TOKEN"),
     "command.secret_environment"),
    ("pids_max 0", task(labels={"juggler.pids_max": "0"}), 'labels["juggler.pids_max"]'),
    ("pids_max -3", task(labels={"juggler.pids_max": "-3"}), 'labels["juggler.pids_max"]'),
    ("pids_max lots", task(labels={"juggler.pids_max": "lots"}), 'labels["juggler.pids_max"]'),
    ("pids_max 1_000", task(labels={"juggler.pids_max": "1_000"}),
     'labels["juggler.pids_max"]'),
    ("pids_max above the kernel's", task(labels={"juggler.pids_max": str(2**22 + 1)}),
     'labels["juggler.pids_max"]'),
    ("log_max_bytes 100", task(labels={"juggler.log_max_bytes": "100"}),
     'labels["juggler.log_max_bytes"]'),
    ("log_max_bytes ten", task(labels={"juggler.log_max_bytes": "ten"}),
     'labels["juggler.log_max_bytes"]'),
    ("log_max_files -1", task(labels={"juggler.log_max_files": "-1"}),
     'labels["juggler.log_max_files"]'),
    ("interactive maybe", task(labels={"juggler.interactive": "maybe"}),
     'labels["juggler.interactive"]'),
    ("a misspelt label", task(labels={"juggler.pid_max": "50"}), 'labels["juggler.pid_max"]'),
    ("an unknown juggler label", task(labels={"juggler.gpu": "1"}), 'labels["juggler.gpu"]'),
    ("a health check of no kind", task(health_check=HC(delay_seconds=1)), "health_check"),
    ("an empty check command", task(health_check=HC(command=HC.Command(argv=[]))),
     "health_check.command.argv"),
    ("a check command of two shell strings",
     task(health_check=HC(command=HC.Command(argv=["a", "b"], shell=True))),
     "health_check.command.argv"),
    ("an empty check argv[0]", task(health_check=HC(command=HC.Command(argv=[""]))),
     "health_check.command.argv[0]"),
    ("tcp port 0", task(health_check=HC(tcp=HC.Tcp(port=0))), "health_check.tcp.port"),
    ("http port 70000", task(health_check=HC(http=HC.Http(port=70000))),
     "health_check.http.port"),
    ("an ftp check", task(health_check=HC(http=HC.Http(port=80, scheme="ftp"))),
     "health_check.http.scheme"),
    ("a relative check path", task(health_check=HC(http=HC.Http(port=80, path="health"))),
     "health_check.http.path"),
    ("a check path with a space", task(health_check=HC(http=HC.Http(port=80, path="/a b"))),
     "health_check.http.path"),
    ("a check path with CRLF", task(health_check=HC(http=HC.Http(port=80, path="/\r\nX: y"))),
     "health_check.http.path"),
    ("a negative check timeout",
     task(health_check=HC(tcp=HC.Tcp(port=80), timeout_seconds=-1)),
     "health_check.timeout_seconds"),
    ("an infinite check interval",
     task(health_check=HC(tcp=HC.Tcp(port=80), interval_seconds=math.inf)),
     "health_check.interval_seconds"),
    ("a NaN check delay", task(health_check=HC(tcp=HC.Tcp(port=80), delay_seconds=math.nan)),
     "health_check.delay_seconds"),
    ("a negative check grace",
     task(health_check=HC(tcp=HC.Tcp(port=80), grace_period_seconds=-0.5)),
     "health_check.grace_period_seconds"),
    ("an infinite check grace",
     task(health_check=HC(tcp=HC.Tcp(port=80), grace_period_seconds=math.inf)),
     "health_check.grace_period_seconds"),
    ("a NaN check grace",
     task(health_check=HC(tcp=HC.Tcp(port=80), grace_period_seconds=math.nan)),
     "health_check.grace_period_seconds"),
    ("a negative grace", task(kill_policy=pb.KillPolicy(grace_period_seconds=-1)),
     "kill_policy.grace_period_seconds"),
    ("an infinite grace", task(kill_policy=pb.KillPolicy(grace_period_seconds=math.inf)),
     "kill_policy.grace_period_seconds"),
    ("a NaN grace", task(kill_policy=pb.KillPolicy(grace_period_seconds=math.nan)),
     "kill_policy.grace_period_seconds"),
]


@pytest.mark.parametrize(("t", "field"), [(t, f) for _, t, f in BAD], ids=[w for w, _, _ in BAD])
def test_bad_tasks_are_refused_naming_the_field_and_the_task(t: pb.TaskInfo, field: str) -> None:
    with pytest.raises(TaskError) as info:
        task_check.check(t)
    assert info.value.field == field, str(info.value)
    if t.task_id:
        assert repr(t.task_id) in str(info.value)
    # The container spec refuses it the same way.
    with pytest.raises(SpecError) as spec_info:
        ContainerSpec.from_task(t)
    assert spec_info.value.field == field


def test_health_check_errors_are_their_own_kind() -> None:
    with pytest.raises(HealthCheckError):
        task_check.check(task(health_check=HC(tcp=HC.Tcp(port=0))))


@pytest.mark.parametrize(("t", "words"), [
    (task(resources={}), "asks for no cpus and no mem"),
    (task(argv=[]), "set command.argv, or container.image"),
    (task(labels={"juggler.pid_max": "5"}), "did you mean juggler.pids_max?"),
    (task(labels={"juggler.gpu": "1"}), "not one juggler knows (known: " + ", ".join(LABELS)),
    (task(labels={"juggler.log_max_file": "1"}), "did you mean juggler.log_max_files?"),
    (task(command__user="app:my group"), "give USER or USER:GROUP"),
    (task(labels={"juggler.log_max_bytes": "100"}), "must be an integer ≥ 1024, got '100'"),
    (task(labels={"juggler.pids_max": "0"}), "must be a positive integer"),
    (task(container__image="busybox", container__rootfs="/r"), "not both"),
])
def test_messages_say_what_to_do(t: pb.TaskInfo, words: str) -> None:
    with pytest.raises(TaskError) as info:
        task_check.check(t)
    assert words in str(info.value)


def test_labels_parse_with_defaults() -> None:
    assert task_labels({}) == TaskLabels(DEFAULT_PIDS_MAX, DEFAULT_LOG_MAX_BYTES,
                                         DEFAULT_LOG_MAX_FILES, False)
    assert task_labels({"juggler.pids_max": "50", "juggler.log_max_bytes": "4096",
                        "juggler.log_max_files": "0", "juggler.interactive": "YES",
                        "other": "x"}) == TaskLabels(50, 4096, 0, True)
    for word in ("0", "false", "no", "off", ""):
        assert task_labels({"juggler.interactive": word}).interactive is False


def test_an_image_task_resolved_by_the_agent_makes_a_container() -> None:
    t = task(container__image="busybox", command__user="www-data")
    spec = ContainerSpec.from_task(t, ("/var/lib/juggler/images/layers/a",))
    assert spec.layers == ("/var/lib/juggler/images/layers/a",) and spec.user == "www-data"
    with pytest.raises(SpecError, match="not resolved to layers") as info:
        ContainerSpec.from_task(t)
    assert info.value.field == "container.image"
