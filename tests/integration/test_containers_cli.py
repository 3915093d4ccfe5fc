"""The `juggler` CLI's container verbs, end to end.

Two layers:

- Oracle (no root): the real `docker` CLI and `juggler` read the same Docker
  Engine API answer (a canned one, served on a unix socket by this test) and
  must print the same bytes: `ps` in every format, `inspect`, `-f` templates,
  and the same errors.
- A real cluster (root): a master, an agent and the apps service serving its
  Docker API on a unix socket; every verb through `juggler`, the interactive
  ones (`run -it`, Ctrl-P Ctrl-Q, `attach`, `exec -it`) in tmux, waiting on
  the screen with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from juggler.testing.rootfs import make_busybox_rootfs
from tests.conftest import needs_root, wait_for

DEADLINE = 60.0
JUGGLER = [sys.executable, "-m", "juggler.cli.main"]


def run_cli(argv: list[str], env: dict[str, str], timeout: float = DEADLINE,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                          input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL)


# -- the oracle: docker and juggler on the same answers -----------------------------------

NOW = int(time.time())
# Ages are printed as "N days ago" by both clients at two moments a fraction of
# a second apart: half a day from the next boundary, so the two always agree
# (a minute granularity flaked when a minute turned between the two calls).
DAY = 86400
LISTED = [
    {"Id": "a" * 64, "Names": ["/web"], "Image": "busybox", "ImageID": "",
     "Command": "sh -c 'while true; do echo hello world; sleep 1; done'",
     "Created": NOW - 3 * DAY - DAY // 2, "Ports": [], "Labels": {"b": "2", "a": "1"},
     "State": "running",
     "Status": "Up 3 minutes", "HostConfig": {"NetworkMode": "none"},
     "NetworkSettings": {"Networks": {}}, "Mounts": []},
    {"Id": "c" * 64, "Names": ["/db"], "Image": "alpine:3.10", "ImageID": "",
     "Command": "true", "Created": NOW - 4 * DAY - DAY // 2, "Ports": [], "Labels": {},
     "State": "exited",
     "Status": "Exited (137) 1 minute ago (OOM-killed)", "HostConfig": {},
     "NetworkSettings": {"Networks": {}}, "Mounts": []},
]
INSPECTED = {
    "Id": "a" * 64, "Created": "2024-01-01T00:00:00.000000000Z", "Path": "sh",
    "Args": ["-c", "x<y"],
    "State": {"Status": "running", "Running": True, "Pid": 1234, "ExitCode": 0, "Error": ""},
    "Name": "/web", "RestartCount": 0,
    "Config": {"Image": "busybox", "Labels": {"b": "2", "a": "1"}, "Env": ["A=1"]},
    "HostConfig": {"NanoCpus": 500000000, "Memory": 67108864},
}


@pytest.fixture(scope="module")
def canned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Docker Engine API on a unix socket that answers with LISTED and
    INSPECTED (and Docker's 404 for any other container)."""
    from aiohttp import web

    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not installed")
    sock = str(tmp_path_factory.mktemp("canned") / "docker.sock")

    def answer(body: Any, status: int = 200) -> web.Response:
        return web.Response(body=json.dumps(body).encode(), status=status,
                            headers={"Content-Type": "application/json",
                                     "Api-Version": "1.47"})

    async def ping(_: web.Request) -> web.Response:
        return web.Response(text="OK", headers={"Api-Version": "1.47"})

    async def listing(request: web.Request) -> web.Response:
        every = request.query.get("all") in ("1", "true") or "limit" in request.query
        return answer([c for c in LISTED if every or c["State"] == "running"])

    async def inspect(request: web.Request) -> web.Response:
        if request.match_info["ref"] in ("web", "a" * 64):
            return answer(INSPECTED)
        return answer({"message": f"No such container: {request.match_info['ref']}"}, 404)

    async def top(request: web.Request) -> web.Response:
        if request.match_info["ref"] != "web":
            return answer({"message": f"No such container: {request.match_info['ref']}"}, 404)
        return answer({"Titles": ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"],
                       "Processes": [["root", "4242", "4200", "0", "10:00", "?", "00:00:00",
                                      "sh -c while true; do echo hello world; sleep 1; done"],
                                     ["root", "4300", "4242", "0", "10:01", "?", "00:00:00",
                                      "sleep 1"]]})

    async def other(request: web.Request) -> web.Response:
        return answer({"message": f"No such container: {request.path.split('/')[-2]}"}, 404)

    app = web.Application()
    for prefix in ("", "/v{version}"):
        app.router.add_get(prefix + "/_ping", ping)
        app.router.add_get(prefix + "/containers/json", listing)
        app.router.add_get(prefix + "/containers/{ref}/json", inspect)
        app.router.add_get(prefix + "/containers/{ref}/top", top)
    app.router.add_route("*", "/{tail:.*}", other)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)

    async def serve() -> None:
        await runner.setup()
        await web.UnixSite(runner, sock).start()

    loop.run_until_complete(serve())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"unix://{sock}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@pytest.mark.parametrize("args", [
    ["ps"], ["ps", "-a"], ["ps", "--no-trunc"], ["ps", "-q"], ["ps", "--format", "json"],
    ["ps", "--format", "table {{.ID}}\\t{{.Names}}\\t{{.Labels}}\\t{{.CreatedAt}}"],
    ["ps", "--format", "{{json .Labels}} {{.Names}} {{.Command}}"],
    ["ps", "--format", "table"],
    ["ps", "-a", "-f", "status=exited", "--format", "{{.ID}} {{.Status}}"],
    ["inspect", "web"],
    ["top", "web"],
    ["inspect", "-f", "{{.State.Pid}} {{.Name}} {{json .Config.Labels}} {{.Config.Labels}} "
                      "{{.Args}} {{json .Args}}", "web"],
])
def test_same_output_as_docker(canned: str, args: list[str]) -> None:
    env = dict(os.environ, DOCKER_HOST=canned, TZ="UTC")
    docker = run_cli(["docker", *args], env)
    ours = run_cli([*JUGGLER, *args[:1], "-H", canned, *args[1:]], env)
    assert (ours.returncode, ours.stdout) == (docker.returncode, docker.stdout), ours.stderr


@pytest.mark.parametrize("args", [
    ["inspect", "-f", "{{.Nope}}", "web"],
    ["stop", "web", "nosuch"],
    ["rm", "nosuch"],
    ["wait", "nosuch"],
    ["top", "nosuch"],
    ["inspect", "web", "nosuch"],
])
def test_same_errors_as_docker(canned: str, args: list[str]) -> None:
    env = dict(os.environ, DOCKER_HOST=canned)
    docker = run_cli(["docker", *args], env)
    ours = run_cli([*JUGGLER, *args[:1], "-H", canned, *args[1:]], env)
    assert ours.returncode == docker.returncode
    assert ours.stderr.strip().splitlines()[-1] == docker.stderr.strip().splitlines()[-1]


# -- a real cluster with the containers service --------------------------------------------

@dataclass
class Swarm:
    env: dict[str, str]
    master: str
    socket: str
    rootfs: Path
    work: Path

    def juggler(self, *args: str, check: bool = False, timeout: float = DEADLINE,
                stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        r = run_cli([*JUGGLER, *args], self.env, timeout, stdin)
        if check and r.returncode != 0:
            raise AssertionError(f"juggler {' '.join(args)} exited {r.returncode}:\n"
                                 f"{r.stdout}\n{r.stderr}")
        return r

    def inspect(self, ref: str) -> dict[str, Any]:
        return json.loads(self.juggler("inspect", ref, check=True).stdout)[0]

    def state(self, ref: str) -> str:
        r = self.juggler("inspect", "-f", "{{.State.Status}}", ref)
        return r.stdout.strip() if r.returncode == 0 else "gone"

    def row(self, name: str, *flags: str) -> str | None:
        out = self.juggler("ps", *flags, check=True).stdout
        return next((line for line in out.splitlines() if line.endswith(f" {name}")), None)


@pytest.fixture(scope="module")
def swarm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swarm]:
    from juggler.cli.docker_client import DockerClient
    from juggler.testing.daemons import Daemons

    needs_root()
    work = tmp_path_factory.mktemp("swarm")
    daemons = Daemons(work)
    sock = work / "docker.sock"
    try:
        master = daemons.start_master()
        daemons.start_agent("a1", resources="cpus:4;mem:2048;disk:2048")
        daemons.wait_agents(1)
        daemons.start_apps(docker_socket=str(sock))
        docker = DockerClient(f"unix://{sock}", timeout=5)
        wait_for(lambda: docker.ping() and _lists(docker), DEADLINE,
                 what="the apps service's Docker API to answer, leading")
        home = work / "home"
        home.mkdir()
        env = dict(os.environ, JUGGLER_HOME=str(home), JUGGLER_MASTER=master,
                   JUGGLER_DOCKER=f"unix://{sock}", DOCKER_HOST=f"unix://{sock}",
                   TERM="xterm")
        yield Swarm(env=env, master=master, socket=str(sock),
                    rootfs=make_busybox_rootfs(work / "rootfs"), work=work)
    finally:
        daemons.close()


def _lists(docker: Any) -> bool:
    from juggler.cli.docker_client import DockerError

    try:
        docker.list(all=True)
    except DockerError:
        return False
    return True


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@pytest.mark.root
def test_run_d_ps_inspect_logs_stop_start_rm(swarm: Swarm) -> None:
    name = unique("web")
    r = swarm.juggler("run", "-d", "--name", name, "--rootfs", str(swarm.rootfs), "--",
                      "sh", "-c", "echo written > /kept; i=0; while :; do echo tick $i; "
                      "i=$((i+1)); sleep 0.2; done", check=True)
    cid = r.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid), r.stdout
    # ps: Docker's header and a row that says Up
    header = swarm.juggler("ps", check=True).stdout.splitlines()[0]
    assert header.split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS",
                              "PORTS", "NAMES"]
    row = wait_for(lambda: swarm.row(name), DEADLINE, what="ps to list it")
    assert row.startswith(cid[:12] + " ") and re.search(r"\bUp ", row), row
    assert cid[:12] in swarm.juggler("ps", "-q", check=True).stdout.split()
    assert name in swarm.juggler("ps", "--format", "{{.Names}}", check=True).stdout.split()
    lines = swarm.juggler("ps", "-a", "--format", "json", check=True).stdout.splitlines()
    assert any(json.loads(line)["Names"] == name for line in lines)
    # inspect: Docker's shape, by name, by id, by a prefix
    info = swarm.inspect(name)
    assert info["Id"] == cid and info["Name"] == f"/{name}" and info["State"]["Running"]
    assert swarm.inspect(cid[:8])["Id"] == cid
    assert swarm.state(cid) == "running"
    # logs: what it wrote
    wait_for(lambda: "tick 2" in swarm.juggler("logs", name).stdout, DEADLINE,
             what="its output")
    # stop: exited, with the code of SIGTERM's end; start: its file is still there
    assert swarm.juggler("stop", "-t", "1", name, check=True).stdout == f"{name}\n"
    assert swarm.state(name) == "exited"
    assert re.search(r"\bExited \(\d+\) ", swarm.row(name, "-a") or ""), swarm.row(name, "-a")
    assert swarm.juggler("start", name, check=True).stdout == f"{name}\n"
    assert swarm.state(name) == "running"
    kept = swarm.juggler("exec", name, "cat", "/kept", check=True)
    assert kept.stdout == "written\n"
    # logs: both runs, oldest first
    out = swarm.juggler("logs", name, check=True).stdout
    assert out.count("tick 0") == 2, out
    # rm: refused while it runs, and nothing changed; rm -f removes it
    refused = swarm.juggler("rm", name)
    assert refused.returncode == 1
    assert refused.stderr.startswith("Error response from daemon: ")
    assert "stop the container before removing or force remove" in refused.stderr
    assert swarm.state(name) == "running"
    assert swarm.juggler("rm", "-f", name, check=True).stdout == f"{name}\n"
    assert swarm.row(name, "-a") is None
    gone = swarm.juggler("inspect", name)
    assert gone.returncode == 1 and f"Error: No such object: {name}" in gone.stderr


@pytest.mark.root
def test_run_attached_prints_the_output_and_exits_with_its_code(swarm: Swarm) -> None:
    name = unique("once")
    r = swarm.juggler("run", "--rm", "--name", name, "--rootfs", str(swarm.rootfs), "--",
                      "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (r.returncode, r.stdout) == (3, "out\n"), r.stderr
    assert "err\n" in r.stderr
    wait_for(lambda: swarm.row(name, "-a") is None, DEADLINE, what="--rm to remove it")
    # no image, no rootfs: the agent's own filesystem, as `juggler run -- CMD` always did
    r = swarm.juggler("run", "--rm", "--", "sh", "-c", "echo host fs")
    assert (r.returncode, r.stdout) == (0, "host fs\n"), r.stderr


@pytest.mark.root
def test_ctrl_c_reaches_the_container_of_an_attached_run(swarm: Swarm) -> None:
    """docker run's --sig-proxy: SIGINT to the CLI is SIGINT to the container."""
    proc = subprocess.Popen(
        [*JUGGLER, "run", "--rm", "--rootfs", str(swarm.rootfs), "--", "sh", "-c",
         "trap 'echo got INT; exit 9' INT; echo ready; while :; do sleep 0.1; done"],
        env=swarm.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        wait_for(lambda: "ready\n" in lines, DEADLINE, what="the container to be ready")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(DEADLINE) == 9
        reader.join(DEADLINE)
        assert lines == ["ready\n", "got INT\n"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.root
def test_run_failures_exit_as_docker(swarm: Swarm) -> None:
    rootfs = str(swarm.rootfs)
    missing = swarm.juggler("run", "--rm", "--rootfs", rootfs, "--", "/no/such/binary")
    assert missing.returncode == 127, missing.stderr
    name = unique("dup")
    swarm.juggler("create", "--name", name, "--rootfs", rootfs, "--", "true", check=True)
    twice = swarm.juggler("run", "--name", name, "--rootfs", rootfs, "--", "true")
    assert twice.returncode == 125
    assert f'Conflict. The container name "/{name}" is already in use' in twice.stderr
    both = swarm.juggler("run", "--rm", "--restart", "always", "--rootfs", rootfs, "--", "true")
    assert both.returncode == 125 and "--restart and --rm" in both.stderr
    big = swarm.juggler("run", "--cpus", "64", "--rootfs", rootfs, "--", "true")
    assert big.returncode == 125 and "no agent can ever fit" in big.stderr
    swarm.juggler("rm", name, check=True)


@pytest.mark.root
def test_a_missing_image_is_pulled_and_an_unknown_one_leaves_no_container(
        swarm: Swarm, test_images: Any) -> None:
    """As the docker CLI's run and create: "Unable to find image", a pull with
    `juggler pull`'s progress, the create again; a failed pull exits 125
    (run) or 1 (create) with its error, and no container exists."""
    reg = test_images.registry
    fresh = reg.push(test_images.layout, "base", f"{unique('jpull')}:1")
    r = swarm.juggler("run", "--rm", fresh, "echo", "pulled")
    assert (r.returncode, r.stdout) == (0, "pulled\n"), r.stderr
    assert r.stderr.startswith(f"Unable to find image '{fresh}' locally\n"), r.stderr
    assert "Pull complete" in r.stderr and f"Downloaded newer image for {fresh}" in r.stderr
    assert swarm.juggler("run", "--rm", fresh, "true").stderr == ""   # present: no pull
    fresh2 = reg.push(test_images.layout, "base", f"{unique('jpull')}:1")
    name = unique("made")
    cid = swarm.juggler("create", "--name", name, fresh2, "true", check=True).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid)
    fresh3 = reg.push(test_images.layout, "base", f"{unique('jpull')}:1")
    detached = swarm.juggler("run", "-d", fresh3, "true", check=True)
    assert f"Unable to find image '{fresh3}' locally" in detached.stderr
    swarm.juggler("rm", "-f", name, detached.stdout.strip(), check=True)
    for image in (f"{reg.address}/{unique('nosuch')}:3", "127.0.0.1:1/nope:1"):
        for flags, code in ((["run"], 125), (["run", "-d"], 125), (["create"], 1)):
            name = unique("nope")
            r = swarm.juggler(*flags, "--name", name, image, "true")
            assert r.returncode == code, (flags, r.stderr)
            lines = r.stderr.splitlines()
            assert lines[0] == f"Unable to find image '{image}' locally", r.stderr
            assert lines[-1].startswith("juggler: ") and len(lines) == 2, r.stderr
            assert swarm.row(name, "-a") is None
    listed = swarm.juggler("ps", "-a", "--format", "{{.Image}}", check=True).stdout.split()
    assert not [i for i in listed if "nosuch" in i or "nope" in i], listed


@pytest.mark.root
def test_create_start_attached_wait_and_rename(swarm: Swarm) -> None:
    name, other = unique("made"), unique("renamed")
    cid = swarm.juggler("create", "--name", name, "--rootfs", str(swarm.rootfs), "--", "sh",
                        "-c", "echo started; exit 4", check=True).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid)
    assert swarm.state(name) == "created"
    row = swarm.row(name, "-a")
    assert row is not None and "Created" in row
    started = swarm.juggler("start", "-a", name)
    assert (started.returncode, started.stdout) == (4, "started\n"), started.stderr
    assert swarm.juggler("wait", name, check=True).stdout == "4\n"
    assert swarm.juggler("rename", name, other).returncode == 0
    assert swarm.inspect(other)["Name"] == f"/{other}"
    bad = swarm.juggler("rename", "no-such-container", "x")
    assert bad.returncode == 1
    assert bad.stderr.splitlines()[-1] == "Error: failed to rename container named " \
                                          "no-such-container"
    swarm.juggler("rm", other, check=True)


@pytest.mark.root
def test_kill_top_stats_exec_detached(swarm: Swarm) -> None:
    name = unique("busy")
    swarm.juggler("run", "-d", "--name", name, "--rootfs", str(swarm.rootfs), "--",
                  "sh", "-c", "trap 'echo got HUP' HUP; while :; do sleep 0.1; done",
                  check=True)
    wait_for(lambda: swarm.state(name) == "running", DEADLINE, what="it to run")

    def processes() -> list[str] | None:   # its command may still be starting
        top = swarm.juggler("top", name, check=True).stdout.splitlines()
        return top if any("sleep" in line for line in top[1:]) else None

    top = wait_for(processes, DEADLINE, what="top to list its processes")
    assert "PID" in top[0].split() and "CMD" in top[0].split(), top
    stats = swarm.juggler("stats", "--no-stream", name, check=True).stdout.splitlines()
    assert stats[0].split()[:3] == ["CONTAINER", "ID", "NAME"]
    assert stats[1].startswith(swarm.inspect(name)["Id"][:12]) and f" {name} " in stats[1]
    assert swarm.juggler("exec", "-d", name, "sh", "-c", "touch /from-exec").returncode == 0
    wait_for(lambda: swarm.juggler("exec", name, "test", "-e", "/from-exec").returncode == 0,
             DEADLINE, what="the detached exec to run")
    assert swarm.juggler("kill", "-s", "HUP", name, check=True).stdout == f"{name}\n"
    wait_for(lambda: "got HUP" in swarm.juggler("logs", name).stdout, DEADLINE,
             what="the signal to arrive")
    assert swarm.state(name) == "running"
    assert swarm.juggler("kill", name, check=True).stdout == f"{name}\n"
    wait_for(lambda: swarm.state(name) == "exited", DEADLINE, what="SIGKILL to end it")
    assert swarm.inspect(name)["State"]["ExitCode"] == 137
    not_running = swarm.juggler("exec", name, "true")
    assert not_running.returncode == 1 and "is not running" in not_running.stderr
    swarm.juggler("rm", name, check=True)


@pytest.mark.root
def test_restart_on_failure_restarts_exactly_twice(swarm: Swarm) -> None:
    name = unique("flaky")
    swarm.juggler("run", "-d", "--name", name, "--restart", "on-failure:2", "--rootfs",
                  str(swarm.rootfs), "--", "sh", "-c", "echo run; exit 1", check=True)
    wait_for(lambda: swarm.state(name) == "exited" and
             swarm.inspect(name)["RestartCount"] == 2, DEADLINE, what="two restarts, then "
                                                                    "exited")
    assert swarm.juggler("logs", name, check=True).stdout == "run\n" * 3
    swarm.juggler("rm", name, check=True)


@pytest.mark.root
def test_logs_follow_ends_with_the_container(swarm: Swarm) -> None:
    name = unique("follow")
    swarm.juggler("run", "-d", "--name", name, "--rootfs", str(swarm.rootfs), "--", "sh",
                  "-c", "for i in 1 2 3; do echo line $i; sleep 0.3; done", check=True)
    r = swarm.juggler("logs", "-f", name, check=True)
    assert r.stdout == "line 1\nline 2\nline 3\n"
    assert swarm.juggler("logs", "--tail", "1", name, check=True).stdout == "line 3\n"
    swarm.juggler("rm", name, check=True)


@pytest.mark.root
def test_a_named_master_runs_a_task_as_before(swarm: Swarm, tmp_path: Path) -> None:
    """A cluster as `juggler up` leaves it ($JUGGLER_HOME/docker), with the
    master named ($JUGGLER_MASTER, as the tests of tasks do): `run` runs a task
    there, as before containers; -H names the containers service again."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "docker").write_text(f"unix://{swarm.socket}\n")
    env = {k: v for k, v in swarm.env.items() if k != "JUGGLER_DOCKER"}
    env["JUGGLER_HOME"] = str(home)
    name = unique("task")
    r = run_cli([*JUGGLER, "run", "--name", name, "-q", "--", "echo", "a task"], env)
    assert (r.returncode, r.stdout) == (0, "a task\n"), r.stderr
    tasks = run_cli([*JUGGLER, "tasks", "-a"], env)
    assert any(line.startswith(f"{name} ") for line in tasks.stdout.splitlines())
    assert swarm.row(name, "-a") is None                       # a task, not a container
    d = run_cli([*JUGGLER, "run", "-d", "--", "true"], env)
    assert d.returncode == 125 and "-d needs a container" in d.stderr
    assert "-H or $JUGGLER_DOCKER" in d.stderr
    named = run_cli([*JUGGLER, "run", "-H", f"unix://{swarm.socket}", "-d", "--name", name,
                     "--", "true"], env)
    assert named.returncode == 0 and swarm.inspect(name)["Id"] == named.stdout.strip()
    swarm.juggler("rm", "-f", name, check=True)


PROBE = ("tr '\\0' ' ' < /proc/1/cmdline; echo; grep -E '^(CapEff|NoNewPrivs)' "
         "/proc/self/status; ulimit -n; ulimit -Hn")
PROCESS_FLAGS = ("--init", "--cap-drop", "ALL", "--cap-add", "sys_ptrace", "--security-opt",
                 "no-new-privileges", "--ulimit", "nofile=64:128")


def _probed(out: str, init: str) -> None:
    cmdline, *rest = out.splitlines()
    assert cmdline.split()[:4] == [init, "--", "sh", "-c"], out
    assert rest == ["CapEff:\t0000000000080000", "NoNewPrivs:\t1", "64", "128"], out


@pytest.mark.root
def test_process_flags_reach_a_container_and_a_task(swarm: Swarm, tmp_path: Path) -> None:
    """--init, --cap-add/--cap-drop, --security-opt and --ulimit: on a container
    (attached and -d, shown by inspect) and on a task (no containers service)."""
    r = swarm.juggler("run", "--rm", *PROCESS_FLAGS, "--rootfs", str(swarm.rootfs), "--",
                      "sh", "-c", PROBE)
    assert r.returncode == 0, r.stderr
    _probed(r.stdout, "/sbin/docker-init")
    name = unique("flags")
    swarm.juggler("run", "-d", "--name", name, *PROCESS_FLAGS, "--rootfs", str(swarm.rootfs),
                  "--", "sleep", "600", check=True)
    host = swarm.inspect(name)["HostConfig"]
    assert (host["Init"], host["CapAdd"], host["CapDrop"], host["SecurityOpt"]) == (
        True, ["CAP_SYS_PTRACE"], ["ALL"], ["no-new-privileges"])
    assert host["Ulimits"] == [{"Name": "nofile", "Hard": 128, "Soft": 64}]
    swarm.juggler("rm", "-f", name, check=True)
    # A task on the agent's filesystem: the host's tini, the same privileges.
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in swarm.env.items() if k != "JUGGLER_DOCKER"}
    env["JUGGLER_HOME"] = str(home)
    r = run_cli([*JUGGLER, "run", "-q", *PROCESS_FLAGS, "--", "sh", "-c", PROBE], env)
    assert r.returncode == 0, r.stderr
    _probed(r.stdout, "/usr/bin/tini-static")
    # What juggler cannot honour fails before anything runs, saying why.
    for flags, words in [(["--security-opt", "seccomp=/p.json"], "no seccomp filter"),
                         (["--ulimit", "nofile=2:1"], "2 > 1"),
                         (["--cap-add", "bogus"], 'unknown capability: "CAP_BOGUS"')]:
        for how in (swarm.env, env):
            r = run_cli([*JUGGLER, "run", "--rm" if how is swarm.env else "-q", *flags, "--",
                         "true"], how)
            assert r.returncode == 125 and words in r.stderr, (flags, r.stderr)


@pytest.mark.root
def test_juggler_and_docker_agree_on_a_real_cluster(swarm: Swarm) -> None:
    """The real docker client and juggler, on the same service: the same
    tables, the same inspect, the same output; what one does the other sees."""
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not installed")
    name = unique("both")
    swarm.juggler("run", "-d", "--name", name, "-l", "app=web", "--rootfs",
                  str(swarm.rootfs), "--", "sh", "-c", "echo out; echo err >&2; sleep 600",
                  check=True)
    wait_for(lambda: "err" in swarm.juggler("logs", name).stderr, DEADLINE, what="its output")

    def docker(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(["docker", *args], swarm.env)

    fmt = "table {{.ID}}\\t{{.Image}}\\t{{.Command}}\\t{{.Names}}\\t{{.State}}\\t{{.Labels}}"
    for args in (["ps", "-a", "--format", fmt], ["ps", "--no-trunc", "--format", fmt],
                 # .Status is "Up 1 second" a moment later: the same text for the same
                 # answer is the oracle tests' (test_same_output_as_docker) to check.
                 ["ps", "-a", "-q"], ["ps", "-a", "--filter", f"name={name}", "--format",
                                      "{{.Names}} {{.State}}"],
                 ["inspect", name], ["inspect", "-f", "{{json .State}} {{.Config.Cmd}}", name]):
        ours, theirs = swarm.juggler(*args), docker(*args)
        assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout), args
    ours, theirs = swarm.juggler("logs", name), docker("logs", name)
    assert (ours.stdout, ours.stderr) == (theirs.stdout, theirs.stderr) == ("out\n", "err\n")
    assert docker("stop", "-t", "0", name).returncode == 0
    assert swarm.state(name) == "exited"
    assert swarm.juggler("start", name, check=True).stdout == f"{name}\n"
    assert docker("inspect", "-f", "{{.State.Status}}", name).stdout == "running\n"
    assert docker("rm", "-f", name).returncode == 0
    assert swarm.state(name) == "gone"


# -- terminals: tmux ---------------------------------------------------------------------

class Tmux:
    """A tmux server of this test's own, one window running a command; the
    screen is read with capture-pane."""

    def __init__(self, env: dict[str, str], command: list[str]) -> None:
        if shutil.which("tmux") is None:
            pytest.skip("tmux is not installed")
        self.socket = f"juggler-test-{uuid.uuid4().hex[:8]}"
        self.env = env
        line = " ".join(_quote(a) for a in command)
        # The window stays after the command so its last screen and code can be read.
        subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", "new-session", "-d",
                        "-x", "160", "-y", "40", "-s", "t",
                        f"{line}; echo EXIT=$?; sleep 600"], env=env, check=True, timeout=30)

    def screen(self) -> str:
        return subprocess.run(["tmux", "-L", self.socket, "capture-pane", "-p", "-J", "-t", "t"],
                              capture_output=True, text=True, env=self.env, timeout=30).stdout

    def expect(self, pattern: str, timeout: float = DEADLINE) -> re.Match[str]:
        found: list[re.Match[str]] = []

        def seen() -> bool:
            m = re.search(pattern, self.screen())
            if m:
                found.append(m)
            return bool(m)

        try:
            wait_for(seen, timeout, interval=0.1, what=f"{pattern!r} on the screen")
        except AssertionError:
            raise AssertionError(f"no {pattern!r} on the screen:\n{self.screen()}") from None
        return found[0]

    def type(self, *keys: str) -> None:
        subprocess.run(["tmux", "-L", self.socket, "send-keys", "-t", "t", *keys],
                       env=self.env, check=True, timeout=30)

    def exit_code(self) -> int:
        return int(self.expect(r"EXIT=(\d+)").group(1))

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], env=self.env,
                       capture_output=True, timeout=30)


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


@pytest.fixture
def terminals() -> Iterator[list[Tmux]]:
    opened: list[Tmux] = []
    yield opened
    for t in opened:
        t.close()


@pytest.mark.root
def test_run_it_detach_attach_and_exec_it(swarm: Swarm, terminals: list[Tmux]) -> None:
    name = unique("shell")
    cli = [*JUGGLER]
    # docker run -it IMAGE sh, then Ctrl-P Ctrl-Q: detached, still running
    run = Tmux(swarm.env, [*cli, "run", "-it", "--name", name, "--rootfs", str(swarm.rootfs),
                           "--", "sh"])
    terminals.append(run)
    run.expect(r"(?m)#\s*$")
    run.type("echo hi-$((40+2)) term=$TERM-ok; tty", "Enter")
    run.expect(r"hi-42 term=xterm-ok")     # TERM=xterm with a terminal, as Docker's
    run.expect(r"/dev/pts/\d+")
    run.type("C-p", "C-q")
    run.expect(r"detached")
    assert run.exit_code() == 0
    assert swarm.state(name) == "running"
    # attach: the same shell; Ctrl-P Ctrl-Q again
    attach = Tmux(swarm.env, [*cli, "attach", name])
    terminals.append(attach)
    attach.type("echo again-$((1+1))", "Enter")
    attach.expect(r"again-2")
    attach.type("C-p", "C-q")
    assert attach.exit_code() == 0
    assert swarm.state(name) == "running"
    # exec -it: a second shell inside it, with a terminal, and its exit code
    ex = Tmux(swarm.env, [*cli, "exec", "-it", name, "sh"])
    terminals.append(ex)
    ex.expect(r"(?m)#\s*$")
    ex.type("tty; exit 7", "Enter")
    ex.expect(r"/dev/pts/\d+")
    assert ex.exit_code() == 7
    # attach, and end the shell: attach exits with its code, the container has exited
    last = Tmux(swarm.env, [*cli, "attach", name])
    terminals.append(last)
    last.type("exit 5", "Enter")
    assert last.exit_code() == 5
    wait_for(lambda: swarm.state(name) == "exited", DEADLINE, what="the shell to end")
    assert swarm.inspect(name)["State"]["ExitCode"] == 5
    swarm.juggler("rm", name, check=True)


@pytest.mark.root
def test_run_i_forwards_stdin(swarm: Swarm) -> None:
    r = swarm.juggler("run", "-i", "--rm", "--rootfs", str(swarm.rootfs), "--", "sh", "-c",
                      "tr a-z A-Z", stdin="shout\n")
    assert (r.returncode, r.stdout) == (0, "SHOUT\n"), r.stderr
