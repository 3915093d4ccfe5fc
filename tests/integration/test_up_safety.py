"""`juggler up` cannot hurt a running cluster (issue 17, item 6), as a user
sees it: a second up on busy ports or a busy work dir refuses naming the
holder and touches nothing; one with its own ports and work dir runs beside
the first, the CLI pointer following the last started and coming back; a
SIGKILLed up takes its daemons along but not its tasks' executors, which the
next up on that work dir recovers; `juggler status` shows it all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from juggler.cli import operator
from juggler.testing import secure
from juggler.testing.processes import argv_of, children_of
from juggler.v1 import operator_pb2
from tests.conftest import free_ports, juggler_up, needs_root, wait_for

JUGGLER = [sys.executable, "-m", "juggler.cli.main"]


def _cli(home: Path, *args: str, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, JUGGLER_HOME=str(home))
    env.pop("JUGGLER_MASTER", None)
    return subprocess.run([*JUGGLER, *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def _flags(base: Path, name: str, port: int, metrics: int, apps: int) -> list[str]:
    return ["--port", str(port), "--metrics-port", str(metrics), "--apps-port", str(apps),
            "--work-dir", str(base / name), "--docker-socket", str(base / f"{name}.sock")]


def _rest_of_banner(up: subprocess.Popen[str]) -> list[str]:
    lines: list[str] = []
    while not lines or ("logs in" not in lines[-1] and lines[-1]):
        lines.append(up.stdout.readline())  # type: ignore[union-attr]
    return lines


def _master_child(up: subprocess.Popen[str]) -> int:
    (pid,) = [p for p in children_of(up.pid) if argv_of(p)[3:4] == ["master"]]
    return pid


def test_second_up_refused_or_beside_never_hurts_the_first(tmp_path: Path) -> None:
    needs_root()
    home = tmp_path / "home"
    port, metrics, apps = free_ports(1, 1, 1)
    with juggler_up(*_flags(tmp_path, "a", port, metrics, apps), home=home) as (up_a, line):
        master_a = line.split("master at ", 1)[1].split()[0]
        banner = _rest_of_banner(up_a)
        web_ui = secure.url(f"127.0.0.1:{metrics}/")
        assert any(f"web UI {web_ui}" in x for x in banner), banner
        assert any(x.startswith("juggler: agent ") and " metrics " in x for x in banner), banner
        pointer = (home / "master").read_text()
        assert pointer == master_a + "\n"

        # The same ports, another work dir: refused, naming the master that holds them.
        busy = _cli(home, "up", *_flags(tmp_path, "b", port, metrics, apps), timeout=60)
        assert busy.returncode == 1, busy.stderr
        held = f"port {port}, master's gRPC port, is in use by pid {_master_child(up_a)} " \
               "(juggler master"
        assert held in busy.stderr and "nothing started" in busy.stderr, busy.stderr
        assert "the apps service's REST port" in busy.stderr
        assert (home / "master").read_text() == pointer
        assert not (tmp_path / "b").exists(), "a refused up made its work dir"
        # The same work dir, free ports: refused, naming the first up.
        taken = _cli(home, "up", *_flags(tmp_path, "a", *free_ports(1, 1, 1)),
                     timeout=60)
        assert taken.returncode == 1
        assert f"work dir {tmp_path / 'a'} is in use by pid {up_a.pid} (juggler up" \
            in taken.stderr, taken.stderr
        # The first cluster still serves, with its one agent only.
        agents = _cli(home, "agents")
        assert agents.returncode == 0 and len(agents.stdout.splitlines()) == 2, agents.stdout

        # Its own ports and work dir: it runs beside the first, and the CLI follows it.
        ports_b = free_ports(1, 1, 1)
        with juggler_up(*_flags(tmp_path, "b", *ports_b), home=home) as (up_b, line_b):
            master_b = line_b.split("master at ", 1)[1].split()[0]
            assert (home / "master").read_text() == master_b + "\n"
            assert (home / "docker").read_text() == f"unix://{tmp_path / 'b.sock'}\n"
            status = _cli(home, "status")
            assert status.returncode == 0, status.stderr
            out = status.stdout
            assert f"leader: {master_b}\n" in out
            assert "ACTIVE" in out and "agents (1)" in out
            assert secure.url(f"127.0.0.1:{ports_b[1]}/metrics") in out  # the master's
            assert secure.url(f"127.0.0.1:{ports_b[2]}/metrics") in out  # the apps'
            assert f"unix://{tmp_path / 'b.sock'}" in out
            first = _cli(home, "status", "--master", master_a)
            assert first.returncode == 0 and f"leader: {master_a}\n" in first.stdout
            # An apps service that does not answer is shown so.
            (apps_b,) = [p for p in children_of(up_b.pid) if _kind(argv_of(p)) == "apps"]
            os.kill(apps_b, signal.SIGSTOP)
            try:
                stopped = _cli(home, "status")
            finally:
                os.kill(apps_b, signal.SIGCONT)
            assert secure.url(f"127.0.0.1:{ports_b[2]} (not answering)") in stopped.stdout, \
                stopped.stdout
            _no_apps_up_owns_every_pointer(tmp_path, home, master_b)
        # The second stopped: the pointers are the first's again, not gone.
        assert (home / "master").read_text() == pointer
        assert (home / "docker").read_text() == f"unix://{tmp_path / 'a.sock'}\n"
    assert not (home / "master").exists()
    gone = _cli(home, "status", "--master", master_a)
    assert gone.returncode == 1 and "no master answers" in gone.stderr


def _no_apps_up_owns_every_pointer(tmp_path: Path, home: Path, master_b: str) -> None:
    """A third up, --no-apps: the CLI talks to it alone (no apps, no
    containers, tasks on its master); SIGKILLed, the next command puts the
    pointers back at B's cluster."""
    port, metrics = free_ports(1, 1)
    flags = ["--no-apps", "--port", str(port), "--metrics-port", str(metrics),
             "--work-dir", str(tmp_path / "c")]
    with juggler_up(*flags, home=home) as (up_c, line_c):
        master_c = line_c.split("master at ", 1)[1].split()[0]
        assert (home / "master").read_text() == master_c + "\n"
        assert not (home / "apps").exists() and not (home / "docker").exists()
        why = f"the cluster `juggler up` started last ({master_c}) runs no apps service"
        for verb, names in (("ps", "-H or $JUGGLER_DOCKER"),
                            ("deployments", "--apps or $JUGGLER_APPS")):
            got = _cli(home, verb)
            assert got.returncode == 1 and why in got.stderr and names in got.stderr, got.stderr
        run = _cli(home, "run", "--", "true")   # a task, on this cluster's master
        assert run.returncode == 0, run.stderr
        got = operator.call(master_c, "GetTasks",
                            operator_pb2.GetTasksRequest(include_completed=True))
        assert [t.info.task_id for t in got.completed_tasks] == [run.stderr.split()[2]], run.stderr
        up_c.send_signal(signal.SIGKILL)
        up_c.wait(10)
    status = _cli(home, "status")   # a reader heals the killed up's pointers
    assert status.returncode == 0 and f"leader: {master_b}\n" in status.stdout, status.stderr
    assert (home / "master").read_text() == master_b + "\n"
    assert (home / "docker").read_text() == f"unix://{tmp_path / 'b.sock'}\n"


def _kind(argv: list[str]) -> str:
    """"master", "agent", "apps" (juggler's daemons) or the program's name."""
    if "juggler.cli.main" in argv:
        return argv[argv.index("juggler.cli.main") + 1]
    return Path(argv[0]).name if argv else ""


def test_sigkilled_up_takes_its_daemons_but_not_executors(tmp_path: Path) -> None:
    needs_root()
    home = tmp_path / "home"
    flags = ["--masters", "2", *_flags(tmp_path, "w", *free_ports(2, 2, 2))]
    with juggler_up(*flags, home=home) as (up, line):
        master = line.split(" at ", 1)[1].split()[0]
        daemons = {pid: _kind(argv_of(pid)) for pid in children_of(up.pid)}
        assert sorted(daemons.values()) == ["agent", "apps", "apps", "etcd", "master",
                                            "master"], daemons
        run = _cli(home, "run", "-d", "--", "sleep", "600")
        assert run.returncode == 0, run.stderr

        def task_pid() -> int | None:   # the task's pid 1, once RUNNING
            got = operator.call(master, "GetTasks", operator_pb2.GetTasksRequest())
            return next((t.status.pid for t in got.tasks if t.status.HasField("pid")), None)

        task = wait_for(task_pid, 60, what="the task's process")
        up.send_signal(signal.SIGKILL)
        up.wait(10)
        left = wait_for(lambda: not [p for p in daemons if argv_of(p)] or None, 60,
                        what="up's daemons to die with it")
        assert left
        assert argv_of(task) == ["sleep", "600"], "the task died with up"
        assert (home / "master").read_text() == master + "\n"   # nobody withdrew it
    # The next up on that work dir recovers the task (and, stopping, kills it).
    with juggler_up(*flags, home=home):
        def recovered() -> str | None:
            r = _cli(home, "tasks")
            return r.stdout if r.returncode == 0 and "RUNNING" in r.stdout else None

        assert "sleep 600" in wait_for(recovered, 60, what="the recovered task")
    wait_for(lambda: not argv_of(task) or None, 60, what="the task killed by up's stop")

