"""The container verbs of the `juggler` CLI, without a cluster: `ps` as docker
prints it (the expected tables are docker 28's output for the same API
answer), filters, Docker's flag spellings and sizes, the create request, which
path `juggler run` takes, and the small parsers around them."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from juggler.cli import address, container_table, containers, stats
from juggler.cli.attach import detach_keys
from juggler.cli.main import parser
from juggler.cli.terminal import tty_refused
from juggler.v1 import agent_pb2

NOW = 1_800_000_000.0

WEB = {"Id": "a" * 64, "Names": ["/web"], "Image": "busybox",
       "Command": "sh -c 'while true; do echo hello world; sleep 1; done'",
       "Created": int(NOW) - 200, "Ports": [], "Labels": {"b": "2", "a": "1"},
       "State": "running", "Status": "Up 3 minutes"}
DB = {"Id": "c" * 64, "Names": ["/db"], "Image": "alpine:3.10", "Command": "true",
      "Created": int(NOW) - 4000, "Ports": [], "Labels": {}, "State": "exited",
      "Status": "Exited (137) 1 minute ago (OOM-killed)"}


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


# -- docker ps ----------------------------------------------------------------------------

def test_ps_table_is_docker_s() -> None:
    out = container_table.render([WEB, DB], now=NOW)
    assert out == (
        "CONTAINER ID   IMAGE         COMMAND                  CREATED             STATUS"
        "                                   PORTS     NAMES\n"
        "aaaaaaaaaaaa   busybox       \"sh -c 'while true; …\"   3 minutes ago       "
        "Up 3 minutes                                       web\n"
        "cccccccccccc   alpine:3.10   \"true\"                   About an hour ago   "
        "Exited (137) 1 minute ago (OOM-killed)             db")


def test_ps_no_trunc_keeps_ids_and_commands_whole() -> None:
    _, row = container_table.render([WEB], now=NOW, trunc=False).split("\n")
    assert row.startswith("a" * 64 + "   busybox   ")
    assert "\"sh -c 'while true; do echo hello world; sleep 1; done'\"" in row


def test_ps_quiet_and_custom_formats(utc: None) -> None:
    assert container_table.render([WEB, DB], quiet=True, now=NOW) == \
        "aaaaaaaaaaaa\ncccccccccccc"
    assert container_table.render([WEB, DB], fmt="{{.Names}}", now=NOW) == "web\ndb"
    assert container_table.render([WEB, DB], fmt="{{json .Labels}} {{.Names}}", now=NOW) == \
        '"a=1,b=2" web\n"" db'
    table = container_table.render(
        [WEB, DB], fmt="table {{.ID}}\\t{{.Names}}\\t{{.Labels}}\\t{{.CreatedAt}}", now=NOW)
    assert table == ("CONTAINER ID   NAMES     LABELS    CREATED AT\n"
                     "aaaaaaaaaaaa   web       a=1,b=2   2027-01-15 07:56:40 +0000 UTC\n"
                     "cccccccccccc   db                  2027-01-15 06:53:20 +0000 UTC")
    assert container_table.render([WEB], fmt="{{.State}} {{.Status}} {{.RunningFor}}",
                                  now=NOW) == "running Up 3 minutes 3 minutes ago"
    assert container_table.render([], fmt="table {{.Names}}", now=NOW) == "NAMES"


def test_ps_json_is_docker_s_line_per_container(utc: None) -> None:
    line = container_table.render([DB], fmt="json", now=NOW)
    assert line == ('{"Command":"\\"true\\"","CreatedAt":"2027-01-15 06:53:20 +0000 UTC",'
                    '"ID":"cccccccccccc","Image":"alpine:3.10","Labels":"","LocalVolumes":"0",'
                    '"Mounts":"","Names":"db","Networks":"","Platform":null,"Ports":"",'
                    '"RunningFor":"About an hour ago","Size":"0B","State":"exited",'
                    '"Status":"Exited (137) 1 minute ago (OOM-killed)"}')


def test_ps_on_a_terminal_is_a_rich_table_with_the_status_in_colour() -> None:
    out = container_table.render([WEB, DB], now=NOW, terminal=True)
    assert "CONTAINER ID" in out and "\x1b[1m" in out          # a bold header
    assert "\x1b[32mUp 3 minutes" in out                      # running: green
    assert "\x1b[31mExited (137)" in out                      # a failure: red


@pytest.mark.parametrize(("seconds", "text"), [
    (0.5, "Less than a second"), (1, "1 second"), (59, "59 seconds"), (60, "About a minute"),
    (119, "About a minute"), (120, "2 minutes"), (3599, "59 minutes"), (3600, "About an hour"),
    (5399, "About an hour"), (5400, "2 hours"), (47 * 3600, "47 hours"),
    (48 * 3600, "2 days"), (14 * 86400, "2 weeks"), (60 * 86400, "2 months"),
    (730 * 86400, "2 years"),
])
def test_human_duration_is_go_units(seconds: float, text: str) -> None:
    assert container_table.human_duration(seconds) == text


def test_command_is_quoted_as_go_quotes() -> None:
    assert container_table.go_quote('say "hi"\\\n\t') == '"say \\"hi\\"\\\\\\n\\t"'
    assert container_table.go_quote("é…\x01") == '"é…\\x01"'
    assert container_table.ellipsis("abcdef", 4) == "abc…"
    assert container_table.ellipsis("abcd", 4) == "abcd"


@pytest.mark.parametrize(("image", "trunc", "shown"), [
    ("", True, "<no image>"), ("", False, "<no image>"),
    ("busybox@sha256:" + "1" * 64, True, "busybox"),
    ("busybox@sha256:" + "1" * 64, False, "busybox@sha256:" + "1" * 64),
    ("docker.io/library/alpine:3.10", True, "alpine:3.10"),
    ("docker.io/user/app:1", True, "user/app:1"),
    ("host:5000/app:1", True, "host:5000/app:1"),
    ("/srv/rootfs", True, "/srv/rootfs"),
])
def test_image_column_is_docker_s(image: str, trunc: bool, shown: str) -> None:
    assert container_table.context(dict(WEB, Image=image), NOW, trunc)["Image"] == shown


def test_names_drop_the_slash_and_links() -> None:
    c = dict(WEB, Names=["/web", "/other/alias"])
    assert container_table.context(c, NOW)["Names"] == "web"
    assert container_table.context(dict(WEB, Names=["/a", "/b"]), NOW, trunc=False)["Names"] \
        == "a,b"


# -- filters ---------------------------------------------------------------------------

def test_filters_are_key_value_pairs_passed_on() -> None:
    f = container_table.parse_filters(["name=web", "status=running", "name=db", "label=a=b"])
    assert f == {"name": ["web", "db"], "status": ["running"], "label": ["a=b"]}
    with pytest.raises(container_table.FilterError) as e:
        container_table.parse_filters(["name"])
    assert str(e.value) == "bad format of filter (expected name=value)"


# -- Docker's run flags ---------------------------------------------------------------

@pytest.mark.parametrize(("text", "size"), [
    ("64m", 64 << 20), ("64M", 64 << 20), ("1g", 1 << 30), ("1.5G", 3 << 29),
    ("512k", 512 << 10), ("1024b", 1024), ("100", 100), ("64MiB", 64 << 20), ("2mb", 2 << 20),
])
def test_memory_sizes_are_docker_s(text: str, size: int) -> None:
    assert containers.ram_bytes(text) == size


def test_bad_memory_sizes_say_why() -> None:
    # docker 28: invalid argument "12x" for "-m, --memory" flag: invalid suffix: 'x'
    with pytest.raises(argparse.ArgumentTypeError, match="invalid suffix: 'x'"):
        containers.ram_bytes("12x")
    with pytest.raises(argparse.ArgumentTypeError, match="invalid size: 'lots'"):
        containers.ram_bytes("lots")
    assert containers.memory_swap("-1") == -1


def test_env_file_is_read_as_docker_reads_it(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROM_SHELL", "shell value")
    monkeypatch.delenv("UNSET_ONE", raising=False)
    f = tmp_path / "env"
    f.write_text("# a comment\n\nA=1\n  B=two words \nFROM_SHELL\nUNSET_ONE\nC=x=y\n")
    assert containers.parse_env_file(str(f)) == [
        ("A", "1"), ("B", "two words "), ("FROM_SHELL", "shell value"), ("C", "x=y")]
    f.write_text("BAD NAME=1\n")
    with pytest.raises(ValueError, match="variable 'BAD NAME' contains whitespaces"):
        containers.parse_env_file(str(f))
    with pytest.raises(ValueError, match="open /no/such/file: no such file or directory"):
        containers.parse_env_file("/no/such/file")


def _run_args(*argv: str) -> argparse.Namespace:
    return parser().parse_args(["run", *argv])


@pytest.mark.parametrize(("argv", "image", "command"), [
    (["busybox"], "busybox", []),
    (["-it", "busybox", "sh"], "busybox", ["sh"]),
    (["busybox", "ls", "-l", "/"], "busybox", ["ls", "-l", "/"]),
    (["--", "echo", "hi"], "", ["echo", "hi"]),
    (["--image", "busybox", "echo", "hi"], "busybox", ["echo", "hi"]),
    (["--image", "busybox", "--", "echo", "hi"], "busybox", ["echo", "hi"]),
    (["--rootfs", "/r", "--", "sh"], "", ["sh"]),
])
def test_image_and_command_as_docker_and_as_before(argv: list[str], image: str,
                                                   command: list[str]) -> None:
    assert containers.split_command(_run_args(*argv)) == (image, command)


def test_create_body_is_docker_s(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROM_SHELL", "v")
    args = _run_args("-d", "--name", "web", "-e", "A=1", "-e", "FROM_SHELL", "-w", "/tmp",
                     "-u", "nobody", "--hostname", "h", "--cpu-shares", "256", "--cpus", "0.5",
                     "-m", "64m", "--memory-swap", "-1", "--pids-limit", "20", "-l", "k=v",
                     "--network", "host", "--restart", "on-failure:2", "--stop-signal",
                     "SIGINT", "--stop-timeout", "3", "-t", "busybox", "sh", "-c", "x")
    image, command = containers.split_command(args)
    body = containers.create_body(args, image, command)
    assert body == {
        "Image": "busybox", "Cmd": ["sh", "-c", "x"], "Env": ["A=1", "FROM_SHELL=v"],
        "Labels": {"k": "v"}, "Tty": True, "OpenStdin": False, "StdinOnce": False,
        "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
        "WorkingDir": "/tmp", "User": "nobody", "Hostname": "h", "StopSignal": "SIGINT",
        "StopTimeout": 3,
        "HostConfig": {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2},
                       "NanoCpus": 500000000, "CpuShares": 256, "Memory": 64 << 20,
                       "MemorySwap": -1, "PidsLimit": 20, "NetworkMode": "host"},
    }


def test_create_body_keeps_juggler_s_own_forms(tmp_path: Path) -> None:
    args = _run_args("--rm", "--mem", "32M", "--grace-period", "1.5", "--rootfs",
                     str(tmp_path), "-i", "--", "cat")
    body = containers.create_body(args, *containers.split_command(args), attach=True,
                                  stop_timeout=args.grace_period)
    assert body["Image"] == str(tmp_path)          # a root filesystem: an absolute path
    assert body["Cmd"] == ["cat"] and body["StopTimeout"] == 1.5
    assert body["HostConfig"] == {"AutoRemove": True, "Memory": 32 << 20}
    assert body["OpenStdin"] and body["AttachStdin"] and body["StdinOnce"]
    bare = _run_args("--", "echo", "hi")
    assert containers.create_body(bare, *containers.split_command(bare))["Image"] == ""


def test_restart_count_must_be_a_number() -> None:
    args = _run_args("--restart", "on-failure:x", "busybox")
    with pytest.raises(ValueError, match="maximum retry count must be an integer"):
        containers.create_body(args, "busybox", [])


# -- which service, which path ---------------------------------------------------------

@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("JUGGLER_HOME", str(tmp_path))
    for name in ("JUGGLER_MASTER", "JUGGLER_DOCKER"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_the_docker_host_is_flag_env_file_then_default(home: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    assert address.docker_host_source(None) == (address.DEFAULT_DOCKER, "default")
    address.write_docker("unix:///x/docker.sock")
    assert address.docker_host_source(None) == ("unix:///x/docker.sock", "file")
    monkeypatch.setenv("JUGGLER_DOCKER", "tcp://h:2375")
    assert address.docker_host_source(None) == ("tcp://h:2375", "env")
    assert address.docker_host_source("unix:///y") == ("unix:///y", "flag")
    # Whose the file is, and when `up` removes it: tests/unit/test_cluster_pointers.py.


def test_a_named_master_is_not_mixed_with_a_service_found_by_default(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    address.write_docker("unix:///x/docker.sock")
    assert containers.service(None, None) is not None             # what `up` wrote
    assert containers.service(None, "10.0.0.1:5050") is None       # --master: a task
    monkeypatch.setenv("JUGGLER_MASTER", "10.0.0.1:5050")
    assert containers.service(None, None) is None                  # $JUGGLER_MASTER too
    got = containers.service("unix:///y", None)                    # unless -H names one
    assert got is not None and got.url == "unix:///y"
    monkeypatch.setenv("JUGGLER_DOCKER", "tcp://h:2375")
    got = containers.service(None, None)
    assert got is not None and got.url == "tcp://h:2375"


def test_run_refuses_restart_with_rm_as_docker(capsys: pytest.CaptureFixture[str]) -> None:
    args = _run_args("--rm", "--restart", "always", "busybox")
    assert args.func(args) == 125
    assert "conflicting options: cannot specify both --restart and --rm" in \
        capsys.readouterr().err


def test_container_flags_without_the_service_say_what_is_needed(
        home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
        ) -> None:
    monkeypatch.setenv("JUGGLER_MASTER", "127.0.0.1:1")
    args = _run_args("-d", "--restart", "always", "busybox", "sleep", "9")
    assert args.func(args) == 125
    err = capsys.readouterr().err
    assert "-d, --restart need a container" in err and "juggler up" in err
    assert "-H or $JUGGLER_DOCKER" in err
    args = _run_args("-d", "--role", "x", "busybox", "true")
    assert args.func(args) == 125
    assert "--role does not go with -d" in capsys.readouterr().err
    args = _run_args("-d", "--secret-env", "X=1", "--writable-host-fs", "--", "true")
    assert args.func(args) == 125
    err = capsys.readouterr().err
    assert "--secret-env, --writable-host-fs do not go with -d" in err
    assert "the containers service" in err and "-H" not in err


# -- small parsers ---------------------------------------------------------------------

def test_detach_keys_are_docker_s_spelling() -> None:
    assert detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert detach_keys("ctrl-a,x") == b"\x01x"
    assert detach_keys("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_") == bytes([0, 27, 28, 29,
                                                                            30, 31])
    with pytest.raises(argparse.ArgumentTypeError, match="Unknown character: 'ctrl-1'"):
        detach_keys("ctrl-1")


@pytest.mark.parametrize(("message", "code"), [
    ('exec: "nosuch": executable file not found in $PATH', 127),
    ("exec '/no/such/binary': No such file or directory", 127),
    ("exec '/etc/passwd': Permission denied", 126),
    ("image busybox:nope: manifest unknown", 125),
])
def test_run_exit_codes_for_a_failed_start_are_docker_s(message: str, code: int) -> None:
    assert containers.run_exit_code(message) == code


def test_logs_timestamps_are_refused_until_agents_record_them(
        capsys: pytest.CaptureFixture[str]) -> None:
    args = parser().parse_args(["logs", "-t", "web"])
    assert args.func(args) == 1
    assert "not supported yet" in capsys.readouterr().err


# -- docker stats --------------------------------------------------------------------

def test_stats_table_is_docker_s() -> None:
    assert stats.bytes_size(1536) == "1.5KiB"
    assert stats.bytes_size(64 << 20) == "64MiB"
    assert stats.bytes_size(2_047_000) == "1.952MiB"
    target = containers.Target(ref="web", task_id="aaaaaaaaaaaa.1", framework_id="f",
                               agent_address="h:1", tty=False, open_stdin=False, running=True,
                               state="running", container={"Id": "a" * 64, "Name": "/web"})
    usage = agent_pb2.TaskUsage(memory_bytes=16 << 20, memory_limit_bytes=64 << 20, pids=3)
    stopped = containers.Target(ref="db", task_id="", framework_id="f", agent_address="",
                                tty=False, open_stdin=False, running=False, state="exited",
                                container={"Id": "c" * 64, "Name": "/db"})
    table = stats.docker_table([stats.docker_row(target, usage, 12.345),
                                stats.docker_row(stopped, None, None)])
    assert table.split("\n") == [
        "CONTAINER ID   NAME      CPU %     MEM USAGE / LIMIT   MEM %     NET I/O   "
        "BLOCK I/O   PIDS",
        "aaaaaaaaaaaa   web       12.35%    16MiB / 64MiB       25.00%    --        --"
        "          3",
        "cccccccccccc   db        0.00%     0B / 0B             0.00%     --        --"
        "          0"]


def test_tasks_is_what_ps_printed_before() -> None:
    from juggler.cli.tasks import render
    from juggler.v1 import common_pb2, operator_pb2

    view = operator_pb2.TaskView(info=common_pb2.TaskInfo(
        task_id="t1", command=common_pb2.CommandInfo(argv=["sleep", "9"])),
        state=common_pb2.TASK_RUNNING, agent_hostname="a1")
    header, row = render([view], NOW).split("\n")
    assert header.split() == ["TASK", "ID", "STATE", "AGENT", "COMMAND", "AGE"]
    assert row.split() == ["t1", "RUNNING", "a1", "sleep", "9", "-"]


def test_the_verbs_are_registered() -> None:
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    for verb in ("run", "create", "start", "stop", "restart", "kill", "rm", "rename", "wait",
                 "inspect", "top", "stats", "logs", "exec", "attach", "ps", "tasks"):
        assert verb in sub.choices, verb


# -- run: the waiter before the start ------------------------------------------------

def test_run_waits_before_it_starts_so_a_run_removed_at_once_is_not_missed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """docker run's order: the attach and the wait are registered (their
    headers came back) before the start, so a `--rm` run that ends and is removed before the
    start's answer still gives its exit code (it gave "No such container")."""
    import asyncio

    from juggler.cli import container_run

    calls: list[str] = []

    class Service:
        def attach_begin(self, cid: str):  # type: ignore[no-untyped-def]
            calls.append("attach")
            return lambda: calls.append("attach ended")

        def wait_begin(self, cid: str, condition: str):  # type: ignore[no-untyped-def]
            calls.append(f"wait {condition}")
            return lambda: {"StatusCode": 3, "Error": None}

        def start(self, cid: str) -> bool:
            calls.append("start")
            return True

    async def removed_at_once(docker: object, cid: str) -> None:
        calls.append("target")
        return None   # gone: nothing to stream

    monkeypatch.setattr(container_run, "_run_target", removed_at_once)
    code = asyncio.run(container_run.attached(Service(), "c" * 64, interactive=False,  # type: ignore[arg-type]
                                              tty=False, auto_remove=True, quiet=True))
    # The attach (so this run holds its output for this client) and the wait
    # first, as docker run does.
    assert (code, calls) == (3, ["attach", "wait removed", "start", "target", "attach ended"])


@pytest.mark.parametrize("args", [["run", "-it", "busybox", "sh"],
                                  ["exec", "-it", "web", "sh"]])
def test_a_terminal_with_stdin_attached_needs_one(args: list[str]) -> None:
    # Docker's check (the docker CLI's CheckTty): refused before anything is
    # asked of a cluster, exit 1.
    r = subprocess.run([sys.executable, "-m", "juggler.cli.main", *args], text=True,
                       capture_output=True, stdin=subprocess.DEVNULL, timeout=60,
                       env=dict(os.environ, JUGGLER_MASTER="127.0.0.1:1"))
    assert (r.returncode, r.stderr) == (1, "juggler: the input device is not a TTY\n")
    assert tty_refused(tty=True, interactive=False) == ""     # -t alone, or -d: no stdin
