"""The Docker workflow of the document juggler was created from
(../shared/seed/: pull, images, run -it, run -d, ps/-a/-l, attach and
detach, stop, start, restart, rm/-f, logs, inspect and its Pid for nsenter,
exec -it, --cpu-shares, --memory), typed as its reader would, against a
`juggler up` cluster (the session's `cluster` fixture), through the real
`docker` client and through `juggler`. The parts with a terminal run in
tmux. Each command's finer points are tested in test_docker_cli.py and
test_containers_cli.py; this is the walk-through, end to end."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from juggler.testing.registry import TestImages
from juggler.testing.waiting import wait_for
from tests.conftest import Cluster
from tests.integration.test_docker_cli import Tmux

pytestmark = [pytest.mark.root]
DEADLINE = 60.0


def docker(cluster: Cluster, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, DOCKER_HOST=cluster.docker_host,
                                DOCKER_CONFIG=str(cluster.home / "docker-config")))
    if ok:
        assert r.returncode == 0, f"docker {' '.join(args)}: {r.returncode}\n{r.stdout}{r.stderr}"
    return r


def juggler(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    # Only JUGGLER_HOME, as a user after `juggler up`: the CLI finds the master
    # and the Docker API from what `up` wrote there.
    env = dict(os.environ, JUGGLER_HOME=str(cluster.home))
    env.pop("JUGGLER_MASTER", None)
    r = subprocess.run([sys.executable, "-m", "juggler.cli.main", *args], capture_output=True,
                       text=True, timeout=120, env=env)
    assert r.returncode == 0, f"juggler {' '.join(args)}: {r.returncode}\n{r.stdout}{r.stderr}"
    return r


def status(cluster: Cluster, name: str) -> str:
    return docker(cluster, "ps", "-a", "-f", f"name=^{name}$", "--format",
                  "{{.Status}}").stdout.strip()


def cgroup_file(cluster: Cluster, name: str, controller: str, file: str) -> Path:
    fw, task = docker(cluster, "inspect", "-f", "{{.Juggler.FrameworkId}} {{.Juggler.TaskId}}",
                      name).stdout.split()
    found = list(Path(f"/sys/fs/cgroup/{controller}").glob(f"**/{fw}.{task}/{file}"))
    assert len(found) == 1, found
    return found[0]


def test_the_seed_workflow_through_docker_and_juggler(cluster: Cluster,
                                                      test_images: TestImages) -> None:
    if shutil.which("docker") is None:
        pytest.skip("requires the docker CLI")
    image = test_images.refs["base"]
    repository = image.rsplit(":", 1)[0]
    wait_for(lambda: docker(cluster, "ps", ok=False).returncode == 0, DEADLINE,
             what="the apps service to lead")

    # docker pull, pull -a, images (--tree)
    assert "Status:" in docker(cluster, "pull", image).stdout
    docker(cluster, "pull", "-a", repository)
    assert re.search(rf"^{re.escape(repository)}\s+1\s+[0-9a-f]{{12}}",
                     docker(cluster, "images", repository).stdout, re.M)
    assert repository in docker(cluster, "images", "--tree").stdout

    # docker run -d, ps, inspect's Pid (nsenter), logs
    cid = docker(cluster, "run", "-d", "--name", "seed", image, "sh", "-c",
                 "while true; do echo ping; sleep 1; done").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid)
    assert "seed" in docker(cluster, "ps").stdout
    assert docker(cluster, "ps", "-l", "--format", "{{.Names}}").stdout.strip() == "seed"
    pid = docker(cluster, "inspect", "-f", "{{.State.Pid}}", "seed").stdout.strip()
    assert int(pid) > 0
    hostname = subprocess.run(["nsenter", "-u", "-t", pid, "hostname"], capture_output=True,
                              text=True, check=True).stdout.strip()
    assert hostname == cid[:12]
    wait_for(lambda: "ping" in docker(cluster, "logs", "seed").stdout, DEADLINE,
             what="the container's output")

    # stop, ps -a, start (its files kept), restart, rm refused, rm -f
    docker(cluster, "exec", "seed", "sh", "-c", "echo kept > /kept")
    docker(cluster, "stop", "-t", "1", "seed")
    assert status(cluster, "seed").startswith("Exited (137) ")
    docker(cluster, "start", "seed")
    assert docker(cluster, "exec", "seed", "cat", "/kept").stdout == "kept\n"
    started = docker(cluster, "inspect", "-f", "{{.State.StartedAt}}", "seed").stdout
    docker(cluster, "restart", "-t", "1", "seed")
    assert docker(cluster, "inspect", "-f", "{{.State.StartedAt}}", "seed").stdout != started
    assert status(cluster, "seed").startswith("Up ")
    refused = docker(cluster, "rm", "seed", ok=False)
    assert refused.returncode == 1 and "container is running" in refused.stderr
    docker(cluster, "rm", "-f", "seed")
    assert status(cluster, "seed") == ""

    # --cpu-shares=256 sets the cgroup's shares; --memory=64m OOM shows
    docker(cluster, "run", "-d", "--name", "shares", "--cpu-shares=256", image, "sleep", "300")
    assert cgroup_file(cluster, "shares", "cpu", "cpu.shares").read_text().strip() == "256"
    docker(cluster, "rm", "-f", "shares")
    hog = docker(cluster, "run", "--name", "hog", "--memory=64m", image, "sh", "-c",
                 "dd if=/dev/zero of=/dev/null bs=200M count=1", ok=False)
    assert hog.returncode == 137
    assert docker(cluster, "inspect", "-f", "{{.State.OOMKilled}}", "hog").stdout.strip() == \
        "true"
    assert status(cluster, "hog").endswith("(OOM-killed)")
    docker(cluster, "rm", "hog")

    # The same through juggler, each seeing what the other did.
    juggler(cluster, "run", "-d", "--name", "jseed", image, "sleep", "300")
    assert juggler(cluster, "ps", "-l", "--format", "{{.Names}}").stdout.strip() == "jseed"
    juggler(cluster, "stop", "-t", "1", "jseed")
    assert "Exited (137)" in juggler(cluster, "ps", "-a").stdout
    juggler(cluster, "start", "jseed")
    assert juggler(cluster, "exec", "jseed", "echo", "in").stdout == "in\n"
    assert int(juggler(cluster, "inspect", "-f", "{{.State.Pid}}", "jseed").stdout) > 0
    assert status(cluster, "jseed").startswith("Up ")
    juggler(cluster, "rm", "-f", "jseed")

    # run -it, Ctrl-P Ctrl-Q, attach, exec -it, in a terminal
    if shutil.which("tmux") is None:
        return
    # The shell finds `juggler` where this interpreter's scripts are (the
    # checkout's .venv/bin: scripts/test does not put it on PATH).
    scripts = Path(sys.executable).parent
    term = Tmux(cluster.home, dict(os.environ, DOCKER_HOST=cluster.docker_host,
                                   JUGGLER_HOME=str(cluster.home),
                                   PATH=f"{scripts}:{os.environ.get('PATH', '')}"))
    try:
        term.send(f"docker run -it --name tty {image} sh", "Enter")
        term.shows(r"^/ #$")
        term.send("C-p", "C-q")
        term.prompt()
        assert status(cluster, "tty").startswith("Up ")
        term.send("clear; juggler exec -it tty sh", "Enter")
        term.shows(r"^/ #$")
        term.send("echo in-exec; exit 4", "Enter")
        term.shows(r"^in-exec$")
        term.prompt()
        term.send("clear; juggler attach tty", "Enter")
        term.send("echo back-$((40+2))", "Enter")
        term.shows(r"^back-42$")
        term.send("exit 5", "Enter")
        term.prompt()
        assert status(cluster, "tty").startswith("Exited (5) ")
    finally:
        term.close()
        docker(cluster, "rm", "-f", "tty", ok=False)
