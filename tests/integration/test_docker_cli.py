"""The real `docker` client (the CLI, 28, and the `docker` SDK from PyPI)
against a juggler cluster: a master, an agent and the apps service serving the
Docker Engine API on a unix socket (`juggler apps --docker-socket`), with
DOCKER_HOST=unix://… as a user sets it. Images come from a local registry
(testing/registry.py: base:1 is busybox).

What is compared with Docker is what a user checks: the output, the exit
codes, the states `ps` and `inspect` show, and that the containers do what
was asked (a file kept over stop/start, a signal delivered, an OOM kill seen).
The interactive commands (`run -it`, `attach` + Ctrl-P Ctrl-Q, `exec -it`)
run in tmux, the terminal they need.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from juggler.testing.daemons import Daemons
from juggler.testing.registry import TestImages
from juggler.testing.waiting import wait_for
from tests.conftest import needs_root

pytestmark = [pytest.mark.root]
DEADLINE = 60.0


@dataclass
class Docker:
    host: str           # unix:///…/docker.sock
    image: str          # busybox, from the test registry
    daemons: Daemons

    def env(self) -> dict[str, str]:
        return dict(os.environ, DOCKER_HOST=self.host, DOCKER_CONFIG=str(
            self.daemons.work / "docker-config"))

    def __call__(self, *args: str, input: str | None = None,
                 timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", *args], capture_output=True, text=True, input=input,
                              timeout=timeout, env=self.env())

    def ok(self, *args: str, timeout: float = 90.0) -> str:
        r = self(*args, timeout=timeout)
        assert r.returncode == 0, f"docker {' '.join(args)} exited {r.returncode}:\n" \
                                  f"{r.stdout}\n{r.stderr}\n{self.daemons.logs()[-3000:]}"
        return r.stdout

    def status(self, name: str) -> str:
        return self.ok("ps", "-a", "-f", f"name=^{name}$", "--format", "{{.Status}}").strip()


@pytest.fixture(scope="module")
def docker(tmp_path_factory: pytest.TempPathFactory, test_images: TestImages) -> Iterator[Docker]:
    needs_root()
    if shutil.which("docker") is None:
        pytest.skip("requires the docker CLI")
    work = tmp_path_factory.mktemp("docker-cli")
    daemons = Daemons(work)
    try:
        daemons.start_master()
        daemons.start_agent("agent1", resources="cpus:2;mem:2048;disk:4096")
        daemons.wait_agents(1)
        socket = work / "docker.sock"
        daemons.start_apps(docker_socket=str(socket))
        d = Docker(f"unix://{socket}", test_images.refs["base"], daemons)
        # The service answers containers once it leads and has reconciled.
        wait_for(lambda: d("ps").returncode == 0, DEADLINE, what="the apps service to lead")
        yield d
    finally:
        daemons.close()


def test_version_and_info(docker: Docker) -> None:
    version = docker.ok("version")
    server = version.split("Server:", 1)[1]
    assert re.search(r"API version:\s+1\.47 \(minimum version 1\.24\)", server), version
    info = docker.ok("info")
    assert "Operating System: juggler" in info, info
    assert "CPUs: 2" in info and "Storage Driver: overlay2" in info, info
    assert re.search(r"Cgroup Version: [12]", info), info


def test_run_detached_ps_logs_stop_start_restart_rm(docker: Docker) -> None:
    # A shell that stops at SIGTERM (pid 1 ignores signals it does not trap).
    script = "trap 'exit 0' TERM; echo started; while true; do sleep 0.1; done"
    run = docker("run", "-d", "--name", "web", docker.image, "sh", "-c", script)
    assert run.returncode == 0, run.stderr
    cid = run.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid), run.stdout

    ps = docker.ok("ps")
    assert ps.splitlines()[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED",
                                          "STATUS", "PORTS", "NAMES"]
    row = next(line for line in ps.splitlines() if line.endswith(" web"))
    assert row.startswith(cid[:12]) and " Up " in row, ps
    assert any(line.endswith(" web") for line in docker.ok("ps", "-a").splitlines())
    assert docker.ok("ps", "-l").splitlines()[1].endswith(" web")
    assert cid[:12] in docker.ok("ps", "-q").split()
    names = docker.ok("ps", "--format", "{{.Names}} {{.Status}}").splitlines()
    assert any(re.fullmatch(r"web Up .+", line) for line in names), names
    only = docker.ok("ps", "-f", "name=web").splitlines()
    assert len(only) == 2 and only[1].endswith(" web"), only

    wait_for(lambda: docker.ok("logs", "web") == "started\n", DEADLINE, what="web's output")
    docker.ok("exec", "web", "sh", "-c", "echo kept > /f")

    rm = docker("rm", "web")
    assert rm.returncode == 1
    assert rm.stderr.strip() == ('Error response from daemon: cannot remove container "/web": '
                                 "container is running: stop the container before removing "
                                 "or force remove"), rm.stderr
    assert docker.ok("inspect", "-f", "{{.State.Running}}", "web").strip() == "true"

    assert docker.ok("stop", "web").strip() == "web"
    assert docker.status("web").startswith("Exited (0) ")
    assert docker.ok("start", "web").strip() == "web"
    assert docker.status("web").startswith("Up ")
    assert docker.ok("exec", "web", "cat", "/f") == "kept\n"     # the same writable layer
    assert docker.ok("restart", "web").strip() == "web"
    assert docker.ok("exec", "web", "cat", "/f") == "kept\n"
    assert docker.ok("logs", "web") == "started\nstarted\nstarted\n"   # every run's

    assert docker.ok("rm", "-f", "web").strip() == "web"
    assert docker.ok("ps", "-a", "-q", "-f", "name=^web$") == ""


def test_run_in_the_foreground_rm_and_exit_codes(docker: Docker) -> None:
    hi = docker("run", "--rm", "--name", "once", docker.image, "echo", "hi")
    assert (hi.returncode, hi.stdout) == (0, "hi\n"), hi.stderr
    assert docker.ok("ps", "-a", "-q", "-f", "name=^once$") == ""
    three = docker("run", "--name", "three", docker.image, "sh", "-c", "echo out; exit 3")
    assert (three.returncode, three.stdout) == (3, "out\n"), three.stderr
    assert docker.status("three").startswith("Exited (3) ")
    piped = docker("run", "-i", "--rm", docker.image, "tr", "a-z", "A-Z", input="shout\n")
    assert (piped.returncode, piped.stdout) == (0, "SHOUT\n"), piped.stderr
    docker.ok("rm", "three")


def test_logs_follow_until_the_container_ends(docker: Docker) -> None:
    docker.ok("run", "-d", "--name", "talker", docker.image, "sh", "-c",
              "for i in 1 2 3; do echo line$i; echo err$i >&2; sleep 0.3; done")
    follow = docker("logs", "-f", "talker")
    assert follow.returncode == 0, follow.stderr
    assert follow.stdout == "line1\nline2\nline3\n" and follow.stderr == "err1\nerr2\nerr3\n"
    assert docker.status("talker").startswith("Exited (0) ")   # -f ended with it
    tail = docker("logs", "--tail", "1", "talker")
    assert (tail.stdout, tail.stderr) == ("line3\n", "err3\n")
    assert docker.ok("wait", "talker").strip() == "0"
    docker.ok("rm", "talker")


def test_oom_killed_shows_in_inspect_and_ps(docker: Docker) -> None:
    # dd's buffer: 200 MiB, filled from /dev/zero, in a 64 MiB container.
    r = docker("run", "--name", "hog", "--memory=64m", docker.image, "dd", "if=/dev/zero",
               "of=/dev/null", "bs=200M", "count=1")
    assert r.returncode == 137, (r.returncode, r.stderr)
    state = docker.ok("inspect", "-f", "{{.State.OOMKilled}} {{.State.ExitCode}} "
                      "{{.HostConfig.Memory}}", "hog").split()
    assert state == ["true", "137", str(64 * 2**20)], state
    assert docker.status("hog").endswith(" ago (OOM-killed)"), docker.status("hog")
    docker.ok("rm", "hog")


def test_kill_top_stats_exec_rename_wait(docker: Docker) -> None:
    docker.ok("run", "-d", "--name", "sig", docker.image, "sh", "-c",
              "trap 'echo got HUP' HUP; while true; do sleep 0.1; done")
    wait_for(lambda: docker.status("sig").startswith("Up "), DEADLINE, what="sig to run")
    assert docker.ok("kill", "-s", "HUP", "sig").strip() == "sig"
    wait_for(lambda: "got HUP" in docker.ok("logs", "sig"), DEADLINE, what="the HUP trapped")
    assert docker.status("sig").startswith("Up ")             # HUP did not end it

    top = docker.ok("top", "sig").splitlines()
    assert top[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"], top
    assert any("trap" in line for line in top[1:]), top

    stats = docker.ok("stats", "--no-stream", "sig").splitlines()
    assert stats[0].split()[:5] == ["CONTAINER", "ID", "NAME", "CPU", "%"], stats
    assert re.search(r" sig +\d+\.\d+% +[\d.]+[KMG]iB / 128MiB +[\d.]+% ", stats[1]), stats

    ex = docker("exec", "sig", "sh", "-c", "echo out; echo err >&2; exit 4")
    assert (ex.returncode, ex.stdout, ex.stderr) == (4, "out\n", "err\n")
    assert docker("exec", "sig", "no-such-command").returncode == 127

    docker.ok("rename", "sig", "sig2")
    assert docker.ok("ps", "--format", "{{.Names}}", "-f", "name=sig").split() == ["sig2"]
    waiting = subprocess.Popen(["docker", "wait", "sig2"], stdout=subprocess.PIPE, text=True,
                               env=docker.env())
    try:
        time.sleep(0.5)   # `docker wait` is blocked on its answer; nothing to poll
        assert waiting.poll() is None
        docker.ok("kill", "sig2")
        out, _ = waiting.communicate(timeout=DEADLINE)
        assert (waiting.returncode, out.strip()) == (0, "137")
    finally:
        if waiting.poll() is None:
            waiting.kill()
    docker.ok("rm", "sig2")


# Two orphans that end once pid 1's command is `sleep 1000` (the shell before
# the exec cannot reap them): then only pid 1 can.
WAITER = 'until ps -o args | grep -q "^[s]leep 1000"; do sleep 0.01; done'
ORPHANS = f"(sh -c '{WAITER}' &); (sh -c '{WAITER}' &); exec sleep 1000"


def _states(docker: Docker, name: str) -> list[str]:
    """"comm state" of every process in the container but the probe's own."""
    out = docker.ok("exec", name, "sh", "-c", "echo $$; cat /proc/[0-9]*/stat 2>/dev/null")
    me, *lines = out.splitlines()
    rows = []
    for line in lines:
        head, _, rest = line.rpartition(")")
        pid, comm = head.split(" (", 1)
        state, ppid = rest.split()[:2]
        if me not in (pid, ppid):
            rows.append(f"{comm} {state}")
    return sorted(rows)


def test_init_capabilities_ulimits_and_security_options(docker: Docker) -> None:
    """docker run --init / --cap-add / --cap-drop / --ulimit / --security-opt on
    an image: what the container sees, what inspect shows, what is refused."""
    docker.ok("run", "-d", "--init", "--name", "reaper", docker.image, "sh", "-c", ORPHANS)
    assert docker.ok("exec", "reaper", "cat", "/proc/1/cmdline").split("\0")[:3] == [
        "/sbin/docker-init", "--", "sh"]
    # tini reaps the orphans: only itself and the command are left, no zombie.
    wait_for(lambda: _states(docker, "reaper") == ["docker-init S", "sleep S"], DEADLINE,
             what="tini to reap the orphans")
    # A stop's SIGTERM reaches the command through tini, long before -t 600's SIGKILL.
    assert docker.ok("stop", "-t", "600", "reaper", timeout=DEADLINE).strip() == "reaper"
    assert docker.status("reaper").startswith("Exited (143) ")
    assert docker.ok("inspect", "-f", "{{.HostConfig.Init}}", "reaper").strip() == "true"
    docker.ok("rm", "reaper")

    probe = ("grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; ulimit -n; ulimit -Hn; "
             "echo term=$TERM")
    flags = ["--cap-add", "net_admin", "--cap-drop", "CAP_CHOWN", "--security-opt",
             "no-new-privileges", "--ulimit", "nofile=100:200"]
    out = docker.ok("run", "--name", "opts", *flags, docker.image, "sh", "-c", probe)
    lines = out.splitlines()
    caps_hex = format(0xA80425FB & ~1 | 1 << 12, "016x")    # - CHOWN (0) + NET_ADMIN (12)
    assert lines == [f"CapEff:\t{caps_hex}", "NoNewPrivs:\t1", "100", "200", "term="], out
    shown = docker.ok("inspect", "-f", "{{json .HostConfig.CapAdd}} {{json .HostConfig.CapDrop}}"
                      " {{json .HostConfig.SecurityOpt}} {{json .HostConfig.Ulimits}}", "opts")
    assert shown.split() == ['["CAP_NET_ADMIN"]', '["CAP_CHOWN"]', '["no-new-privileges"]',
                             '[{"Name":"nofile","Hard":200,"Soft":100}]'], shown
    docker.ok("rm", "opts")
    # Docker's defaults: no no_new_privs, its 14 capabilities.
    out = docker.ok("run", "--rm", docker.image, "grep", "-E", "^(CapEff|NoNewPrivs)",
                    "/proc/self/status")
    assert out == "CapEff:\t00000000a80425fb\nNoNewPrivs:\t0\n", out

    for flag, words in [("--security-opt=apparmor=docker-default",
                         "juggler applies no AppArmor profile"),
                        ("--security-opt=systempaths=unconfined", "systempaths=unconfined"),
                        ("--cap-add=NET_FOO", 'invalid CapAdd: unknown capability: "CAP_NET_FOO"')]:
        r = docker("run", "--rm", flag, docker.image, "true")
        assert r.returncode == 125 and words in r.stderr, (flag, r.stderr)


def test_the_docker_sdk(docker: Docker) -> None:
    sdk = pytest.importorskip("docker")
    client = sdk.DockerClient(base_url=docker.host)
    try:
        c = client.containers.run(docker.image, ["sh", "-c", "echo from sdk; sleep 300"],
                                  detach=True, name="sdk")
        wait_for(lambda: c.logs() == b"from sdk\n", DEADLINE, what="the SDK's container output")
        c.reload()
        assert c.status == "running" and c.name == "sdk"
        c.stop(timeout=1)
        c.reload()
        assert c.status == "exited" and c.attrs["State"]["ExitCode"] == 137
        c.remove()
        with pytest.raises(sdk.errors.NotFound):
            client.containers.get("sdk")
        assert client.containers.run(docker.image, ["echo", "hi"], remove=True) == b"hi\n"
    finally:
        client.close()


# -- in a terminal -----------------------------------------------------------------------------


class Tmux:
    """One tmux session running bash, its screen read with capture-pane, on a
    tmux server of its own: a session of a running server (another test's, a
    user's) would get that server's environment, not `env`."""

    def __init__(self, work: Path, env: dict[str, str]) -> None:
        self.name = f"juggler-docker-{os.getpid()}-{time.monotonic_ns()}"
        self.tmux = ["tmux", "-L", self.name]
        self.env = env
        subprocess.run([*self.tmux, "-f", "/dev/null", "new-session", "-d", "-s", self.name,
                        "-x", "120", "-y", "40", "bash --norc --noprofile"], check=True,
                       env=env)
        self.send("export PS1='$ '; clear", "Enter")

    def send(self, *keys: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", self.name, *keys], check=True,
                       env=self.env)

    def screen(self) -> str:
        return subprocess.run([*self.tmux, "capture-pane", "-p", "-t", self.name], check=True,
                              capture_output=True, text=True, env=self.env).stdout

    def shows(self, pattern: str) -> str:
        """The screen once `pattern` is on it (capture-pane drops the spaces
        that end a line)."""
        try:
            return wait_for(lambda: self.screen() if re.search(pattern, self.screen(), re.M)
                            else None, DEADLINE, what=f"{pattern!r} on the terminal")
        except AssertionError as e:
            raise AssertionError(f"{e}; the terminal shows:\n{self.screen()}") from None

    def prompt(self) -> None:
        """Wait for bash's prompt ("$" ending the last line: after a detach
        it follows the container's prompt): the command before it ended."""
        wait_for(lambda: ([line for line in self.screen().splitlines() if line] or [""]
                          )[-1].endswith("$"), DEADLINE, what="the shell's prompt")

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], env=self.env, capture_output=True)


def test_run_it_attach_detach_and_exec_it_in_a_terminal(docker: Docker, tmp_path: Path) -> None:
    if shutil.which("tmux") is None:
        pytest.skip("requires tmux")
    term = Tmux(tmp_path, docker.env())
    try:
        term.send(f"docker run -it --name itsh {docker.image} sh", "Enter")
        term.shows(r"^/ #$")
        term.send("echo tty=$(tty) size=$(stty size) term=$TERM", "Enter")
        term.shows(r"^tty=/dev/pts/\d+ size=40 120 term=xterm$")
        term.send("C-p", "C-q")                       # detach: the shell keeps running
        term.prompt()
        term.send("echo detached=$?", "Enter")
        term.shows(r"^detached=0$")
        assert docker.status("itsh").startswith("Up ")

        term.send("clear; docker attach itsh", "Enter")
        term.send("echo back-$((40+2))", "Enter")
        term.shows(r"^back-42$")
        term.send("C-p", "C-q")
        term.shows(r"read escape sequence$")
        term.prompt()
        assert docker.status("itsh").startswith("Up ")

        term.send("clear; docker exec -it itsh sh", "Enter")
        term.shows(r"^/ #$")
        term.send("echo in-exec term=$TERM; exit 6", "Enter")
        term.shows(r"^in-exec term=xterm$")
        term.prompt()
        term.send("echo exec=$?", "Enter")
        term.shows(r"^exec=6$")

        term.send("clear; docker attach itsh", "Enter")
        term.send("exit 5", "Enter")
        term.prompt()
        term.send("echo attach=$?", "Enter")
        term.shows(r"^attach=5$")
        assert docker.status("itsh").startswith("Exited (5) ")
    finally:
        term.close()
        docker("rm", "-f", "itsh")


def test_a_container_no_agent_can_ever_fit_is_refused_at_once(docker: Docker) -> None:
    r = docker("run", "-d", "--name", "toobig", "-m", "100g", docker.image, "true", timeout=60)
    assert r.returncode == 125
    assert "no agent can ever fit cpus 0.1, mem 102400 MiB (the largest has" in r.stderr
    assert docker.status("toobig") == "Created"   # as Docker leaves a container it could not start
    docker.ok("rm", "toobig")
    r = docker("run", "--rm", "--name", "toobig", "-m", "100g", docker.image, "true", timeout=60)
    assert r.returncode == 125 and "no agent can ever fit" in r.stderr
    assert docker.status("toobig") == ""          # --rm: removed, as dockerd does
    r = docker("tag", docker.image, "other:1")
    assert r.returncode == 1 and "juggler does not implement docker tag" in r.stderr


def test_a_missing_image_is_pulled_and_an_unknown_one_leaves_no_container(
        docker: Docker, test_images: TestImages) -> None:
    """moby's create answers 404 "No such image" (no container made); the CLI
    pulls through POST /images/create and creates again, or exits with the
    pull's error (125 for run, 1 for create)."""
    reg = test_images.registry
    fresh = reg.push(test_images.layout, "base", f"pullme-{os.getpid()}:1")
    r = docker("run", "--rm", fresh, "echo", "pulled")
    assert (r.returncode, r.stdout) == (0, "pulled\n"), r.stderr
    assert f"Unable to find image '{fresh}' locally" in r.stderr, r.stderr
    assert f"Status: Downloaded newer image for {fresh}" in r.stderr, r.stderr
    assert docker("run", "--rm", fresh, "true").stderr == ""   # present now: no pull
    for image in (f"{reg.address}/nosuch-{os.getpid()}:3", "127.0.0.1:1/nope:1"):
        run = docker("run", "--name", "nope", image, "true")
        assert run.returncode == 125, run.stderr
        assert f"Unable to find image '{image}' locally" in run.stderr, run.stderr
        assert docker.status("nope") == ""
        made = docker("create", "--name", "nope", image, "true")
        assert made.returncode == 1, made.stderr
        assert docker.status("nope") == ""
        assert image not in docker.ok("ps", "-a", "--format", "{{.Image}}").split()


# -- every byte, or the loss said (issue 15): the docker client's side of -----------------
# tests/integration/test_output_delivery.py

SMALL_LOGS = ("-l", "juggler.log_max_bytes=65536", "-l", "juggler.log_max_files=2")
SEQ_LINES = 4_000_000   # 32 MB: far more than is kept (192 KiB) or can be in flight
SEQ = "".join(f"{i}\n" for i in range(1, SEQ_LINES + 1))


def written(docker: Docker, name: str) -> int:
    """How much of its stdout the container's first run has written."""
    from juggler.common import log_positions

    cid = docker("inspect", "-f", "{{.Id}}", name).stdout.strip()
    for sandbox in docker.daemons.work.glob(f"*/frameworks/*/tasks/{cid[:12]}.1") if cid else []:
        files = log_positions.kept(sandbox / "stdout")
        try:
            return files[-1].end if files else 0
        finally:
            log_positions.close_all(files)
    return 0


def test_run_attached_gets_every_line_through_a_slow_pipe(docker: Docker) -> None:
    proc = subprocess.Popen(["docker", "run", "--rm", "--name", "slowpipe", "--cpus", "1",
                             *SMALL_LOGS, docker.image, "seq", "1", str(SEQ_LINES)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=docker.env())
    try:
        wait_for(lambda: written(docker, "slowpipe") > 8 * 3 * 65536, DEADLINE,
                 what="the container to write far more than is kept")
        assert proc.poll() is None   # it waits for this reader (back-pressure)
        assert written(docker, "slowpipe") < len(SEQ)
        out, err = proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert len(out) == len(SEQ) and out == SEQ


def test_logs_follow_that_falls_behind_ends_with_the_daemon_s_error(docker: Docker) -> None:
    docker.ok("run", "-d", "--name", "behind", "--cpus", "1", *SMALL_LOGS, docker.image, "sh",
              "-c", f"echo ready; while [ ! -e /go ]; do sleep 0.05; done; seq 1 {SEQ_LINES}")
    follow = subprocess.Popen(["docker", "logs", "-f", "behind"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=docker.env())
    try:
        assert follow.stdout is not None
        assert follow.stdout.readline() == "ready\n"   # it follows from the start
        docker.ok("exec", "behind", "touch", "/go")
        wait_for(lambda: docker.status("behind").startswith("Exited (0) "), DEADLINE,
                 what="the container to end")
        out, err = follow.communicate(timeout=DEADLINE)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
    # moby's way (stdcopy's Systemerr): the CLI says it and exits 1.
    assert follow.returncode == 1, err
    assert "error from daemon in stream: Error grabbing logs: " in err, err
    assert "were rotated away before this reader got them: it fell behind" in err
    assert out == SEQ[:len(out)] and len(out) < len(SEQ)   # nothing skipped quietly
    docker.ok("rm", "behind")
