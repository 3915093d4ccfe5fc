"""A root task on the host's filesystem cannot escalate nor read the cluster's
secrets (issue 18, review items 1 and 2).

One `juggler up --tls` cluster whose work dir and Docker socket lie outside
/tmp (a task's /tmp is its own anyway, which would hide them regardless),
real `juggler run` tasks as root with neither image nor rootfs:
- the agent's launcher (agent/launcher.py) has no name on the filesystem: a
  task that writes a doctored spec into its sandbox finds nothing to ask to
  fork an executor for it, and neither does a root process on the host;
- the work dir (tls/ca.key, other sandboxes, the agent's sockets) and the
  Docker socket's directory are empty to the task (container/host_view.py),
  while its own sandbox and /tmp stay readable and writable.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from juggler.testing.processes import argv_of, children_of
from juggler.v1 import executor_pb2
from tests.conftest import free_port, juggler_up, needs_root

pytestmark = [pytest.mark.root]


def _juggler(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("JUGGLER_TLS_", "JUGGLER_TOKEN", "JUGGLER_MASTER"))}
    return subprocess.run([sys.executable, "-m", "juggler.cli.main", *args],
                          capture_output=True, text=True, timeout=120,
                          env={**clean, "JUGGLER_HOME": str(home)})


def _task(home: Path, script: str, *argv: str) -> str:
    """Run `python3 -c script argv…` as a root host-filesystem task; its stdout."""
    run = _juggler(home, "run", "-q", "--", "python3", "-c", script, *argv)
    assert run.returncode == 0, (run.stdout, run.stderr)
    return run.stdout


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Path, int]]:
    """(JUGGLER_HOME, work dir, Docker socket, `juggler up`'s pid)."""
    needs_root()
    home = tmp_path_factory.mktemp("h18-secrets") / "home"
    outside = Path(tempfile.mkdtemp(prefix="juggler-h18-secrets-", dir="/var/tmp"))
    work, docker = outside / "work", outside / "docker" / "docker.sock"
    docker.parent.mkdir()
    # Anyone may run anything as root: the worst case these defences are for.
    rules = outside / "acls.json"
    rules.write_text('{"permissive": true}')
    flags = ["--tls", "--acls", str(rules), "--work-dir", str(work), "--port", str(free_port()),
             "--metrics-port", str(free_port()), "--apps-port", str(free_port()),
             "--docker-socket", str(docker)]
    try:
        with juggler_up(*flags, home=home) as (up, _):
            yield home, work, docker, up.pid
    finally:
        shutil.rmtree(outside, ignore_errors=True)


def _zygotes(up_pid: int) -> list[int]:
    agents = children_of(up_pid)
    return [z for a in agents for z in children_of(a) if "juggler.agent.launcher" in argv_of(z)]


def _named_unix_sockets() -> dict[int, str]:
    """inode → path of every Unix socket bound to a filesystem name (this netns)."""
    out = {}
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[7].startswith("/"):
            out[int(fields[6])] = fields[7]
    return out


_EXPLOIT = r"""
import base64, os, socket, sys
sandbox = os.environ["MESOS_SANDBOX"]
evil = os.path.join(sandbox, "evil")
os.makedirs(os.path.join(evil, "meta"), exist_ok=True)
for name in ("task.pb", "meta/task.pb"):
    with open(os.path.join(evil, name), "wb") as f:
        f.write(base64.b64decode(sys.argv[1]))
targets = set(sys.argv[2:])
for top in sys.argv[2:3]:
    for root, dirs, files in os.walk(os.path.dirname(top)):
        targets.update(os.path.join(root, n) for n in files if n.endswith(".sock"))
for path in sorted(targets):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    try:
        s.connect(path)
        s.sendall(evil.encode() + b"\n")
        print(path, "ANSWERED", s.recv(100))
    except OSError as e:
        print(path, "refused", e.errno)
"""


def test_no_task_nor_other_process_can_have_the_launcher_fork_an_executor(cluster) -> None:
    home, work, _, up_pid = cluster
    agent_dir = work / "agent-1"
    pwned = Path(f"/root/juggler-h18-pwned-{uuid.uuid4().hex[:8]}")
    spec = executor_pb2.ExecutorSpec(agent_id="evil", cgroup="juggler/evil")
    spec.framework.id = "evil"
    spec.task.task_id = "evil"
    spec.task.command.argv.extend(["sh", "-c", f"id > {pwned}"])
    spec.task.container.writable_host_filesystem = True
    doctored = base64.b64encode(spec.SerializeToString()).decode()
    try:
        # Where the zygote once listened, and every socket the agent has.
        known = [str(agent_dir / "launcher.sock"),
                 *(str(p) for p in agent_dir.rglob("*.sock"))]
        out = _task(home, _EXPLOIT, doctored, *known)
        assert "ANSWERED" not in out, out
        assert out.count("refused 2") == len(set(known)), out   # ENOENT: nothing there

        # The zygote has no named socket at all, so a root process on the host
        # cannot reach it either: not by a path, not through /proc/PID/fd.
        zygotes = _zygotes(up_pid)
        assert zygotes, "no launcher found"
        named = _named_unix_sockets()
        for z in zygotes:
            for fd in os.listdir(f"/proc/{z}/fd"):
                target = os.readlink(f"/proc/{z}/fd/{fd}")
                if not target.startswith("socket:["):
                    continue
                assert int(target[8:-1]) not in named, (z, fd, named)
                with socket.socket(socket.AF_UNIX) as s, pytest.raises(OSError):
                    s.connect(f"/proc/{z}/fd/{fd}")
        assert not pwned.exists()
    finally:
        pwned.unlink(missing_ok=True)


_PROBE = r"""
import errno, os, socket, sys
def show(what, call):
    try:
        r = call()
        print(what, "ok", r if isinstance(r, (list, str)) else "")
    except OSError as e:
        print(what, errno.errorcode[e.errno])
def connect(path):
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
work, other, docker, sockets = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
show("ca.key", lambda: open(os.path.join(work, "tls", "ca.key")).read())
show("work", lambda: os.listdir(work))
show("other", lambda: open(os.path.join(other, "secret")).read())
show("docker", lambda: connect(docker))
for p in sockets:
    show("socket", lambda: connect(p))
mine = os.path.join(os.environ["MESOS_SANDBOX"], "mine")
show("sandbox", lambda: (open(mine, "w").write("x"), open(mine).read())[1])
show("tmp", lambda: (open("/tmp/t", "w").write("y"), open("/tmp/t").read())[1])
"""


def test_host_filesystem_tasks_see_none_of_the_clusters_secrets(cluster) -> None:
    home, work, docker, _ = cluster
    assert (work / "tls" / "ca.key").exists() and docker.exists()
    first = _juggler(home, "run", "-q", "--", "sh", "-c",
                     'echo s3cret > "$MESOS_SANDBOX/secret"; echo "$MESOS_SANDBOX"')
    assert first.returncode == 0, first.stderr
    other = Path(first.stdout.strip())
    assert (other / "secret").read_text() == "s3cret\n"   # on the host, it is there
    sockets = [str(p) for p in work.rglob("*.sock")]
    assert sockets, "the agent's sockets"

    out = _task(home, _PROBE, str(work), str(other), str(docker), *sockets)
    lines = out.splitlines()
    # The work dir is an empty tmpfs but for the way to the task's own sandbox.
    assert lines[:4] == ["ca.key ENOENT", "work ok ['agent-1']", "other ENOENT",
                          "docker ENOENT"], out
    assert lines[4:-2] == ["socket ENOENT"] * len(sockets), out
    assert lines[-2:] == ["sandbox ok x", "tmp ok y"], out
