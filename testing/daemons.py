"""Real juggler daemons (`juggler master`, `juggler agent`, `juggler apps`) as processes for tests.

A master listens on a port it picks itself (`--port 0`) unless told one, and its
address is read from its own "master started" log line (checked against its
pid): no free port is chosen here that another process could take first, and
no other test suite's master on this host can be mistaken for it. Agents put
their tasks' cgroups under a cgroup root of their Daemons' own
(`juggler/test-<random>`, `--cgroup-root`). Closing stops every daemon, then
kills what the agents leave behind when a test stopped or killed one of them:
executors (found by their working directory, their sandbox in this work dir)
and whatever is left in that cgroup root, which it removes. In the suite's TLS
mode every daemon gets the session CA's certificates and rules before the test's
own flags, which may replace them (testing/secure.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import grpc

from juggler.common import servers
from juggler.testing import secure
from juggler.testing.waiting import wait_for
from juggler.v1 import operator_pb2, operator_pb2_grpc

JUGGLER = [sys.executable, "-m", "juggler.cli.main"]
# Starting a Python daemon takes a second or two, far more on a loaded machine.
START_TIMEOUT = 60.0
CGROUPS = Path("/sys/fs/cgroup")


class Daemons:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.master = ""
        # The parent of every task cgroup of these agents: no other test's.
        self.cgroup_root = f"juggler/test-{uuid.uuid4().hex[:12]}"

    def start_master(self, *flags: str, name: str = "master", port: int = 0) -> str:
        """Start a master (on `port`, or one it picks) and return its address once
        it answers."""
        log = self.work / f"{name}.log"
        offset = log.stat().st_size if log.exists() else 0  # a restart appends
        self._spawn(name, "master", "--host", "127.0.0.1", "--port", str(port),
                    "--metrics-port", "-1", "--work-dir", str(self.work / name),
                    *secure.daemon_flags("master"), *flags)
        proc = self.procs[name]

        def started() -> str | None:
            if proc.poll() is not None:
                tail = log.read_bytes()[offset:][-3000:].decode(errors="replace")
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{tail}")
            return _started_at(log, offset, proc.pid)

        address = wait_for(started, timeout=START_TIMEOUT, what=f"{name} to start")
        self.master = self.master or address
        wait_for(lambda: self._answers(address), timeout=START_TIMEOUT, what=f"{name} to serve")
        return address

    def start_agent(self, name: str, *flags: str, resources: str = "cpus:1;mem:512;disk:1024",
                    master: str = "") -> None:
        self._spawn(name, "agent", "--master", master or self.master, "--host", "127.0.0.1",
                    "--port", "0", "--metrics-port", "-1", "--work-dir", str(self.work / name),
                    "--hostname", name, "--resources", resources,
                    "--cgroup-root", self.cgroup_root, *secure.daemon_flags("agent"), *flags)

    def start_apps(self, *flags: str, name: str = "apps", master: str = "",
                   docker_socket: str = "") -> str:
        """Start an apps service (REST API on a port it picks) and return its
        URL once it answers /ping (it may still be waiting to lead). With
        `docker_socket`, it serves the Docker Engine API on that unix socket
        too, which exists once this returns."""
        log = self.work / f"{name}.log"
        offset = log.stat().st_size if log.exists() else 0
        if docker_socket:
            flags = (*flags, "--docker-socket", docker_socket)
        self._spawn(name, "apps", "--master", master or self.master, "--host", "127.0.0.1",
                    "--http-port", "0", "--work-dir", str(self.work / name),
                    *secure.daemon_flags("apps"), *flags)
        proc = self.procs[name]

        def started() -> str | None:
            if proc.poll() is not None:
                tail = log.read_bytes()[offset:][-3000:].decode(errors="replace")
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{tail}")
            return _started_at(log, offset, proc.pid, "apps service started", "url")

        url = wait_for(started, timeout=START_TIMEOUT, what=f"{name} to start")
        if docker_socket:
            wait_for(lambda: started() is not None and os.path.exists(docker_socket),
                     timeout=START_TIMEOUT, what=f"{name}'s Docker socket {docker_socket}")
        return url

    def task_cgroup(self, framework_id: str, task_id: str) -> str:
        """The cgroup (name below every controller) of a task of these agents."""
        return f"{self.cgroup_root}/{framework_id}.{task_id}"

    def _spawn(self, name: str, *args: str) -> None:
        log = open(self.work / f"{name}.log", "ab")  # noqa: SIM115
        self.procs[name] = subprocess.Popen([*JUGGLER, *args], stdout=log, stderr=log,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()

    def _answers(self, address: str) -> bool:
        try:
            with servers.sync_channel(address) as ch:
                operator_pb2_grpc.OperatorStub(ch).GetLeader(operator_pb2.GetLeaderRequest(),
                                                             timeout=1)
            return True
        except grpc.RpcError:
            return False

    def agents(self, master: str = "") -> list[operator_pb2.AgentView]:
        with servers.sync_channel(master or self.master) as ch:
            return list(operator_pb2_grpc.OperatorStub(ch).GetAgents(
                operator_pb2.GetAgentsRequest(), timeout=5).agents)

    def agent(self, hostname: str) -> operator_pb2.AgentView | None:
        return next((a for a in self.agents() if a.info.hostname == hostname), None)

    def wait_agents(self, n: int, state: int = operator_pb2.AGENT_ACTIVE) -> None:
        wait_for(lambda: sum(1 for a in self.agents() if a.state == state) >= n,
                 timeout=START_TIMEOUT,
                 what=f"{n} agents in state {operator_pb2.AgentState.Name(state)}")

    def operator(self) -> tuple[grpc.Channel, operator_pb2_grpc.OperatorStub]:
        ch = servers.sync_channel(self.master)
        return ch, operator_pb2_grpc.OperatorStub(ch)

    def send(self, name: str, sig: int) -> None:
        self.procs[name].send_signal(sig)

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        for name in [n for n in self.procs if n.startswith("apps")]:
            proc = self.procs[name]
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
            self.stop(name)  # before the agents: it would replace the tasks they kill
        # The tasks' own processes first: a container's PID 1 that ignores
        # SIGTERM (`sleep`) would hold each agent's shutdown for its whole grace
        # period (Docker's 10 s). Their executors see them end and report, and
        # the agents then end their runs and networks at once.
        self._kill_task_processes()
        for name in [n for n in self.procs if n != "master"]:
            proc = self.procs[name]
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
            self.stop(name, signal.SIGUSR1)  # agents kill their tasks
        for name in list(self.procs):
            self.stop(name)
        self._kill_executors()
        self._remove_cgroups()

    def _kill_executors(self) -> None:
        """SIGKILL the processes working in this work dir: executors (each in its
        task's sandbox) whose agent the test stopped, or killed, and did not start
        again. They would wait for it until their sandbox is deleted."""
        work = os.path.realpath(self.work)
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cwd = os.readlink(f"/proc/{pid}/cwd")
            except OSError:
                continue
            if (cwd + "/").startswith(work + "/") and int(pid) != os.getpid():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)

    def _cgroup_tops(self) -> list[Path]:
        """The agents' cgroup root in every hierarchy (v2's, then v1's)."""
        tops = [CGROUPS / self.cgroup_root]
        with contextlib.suppress(OSError):
            tops += [d / self.cgroup_root for d in CGROUPS.iterdir() if not d.is_symlink()]
        return tops

    def _kill_task_processes(self) -> None:
        """SIGKILL every process in the agents' cgroups (the tasks' processes:
        executors are not in them)."""
        for top in self._cgroup_tops():
            for parent, _, _ in os.walk(top):
                _kill_members(Path(parent))

    def _remove_cgroups(self, timeout: float = 10.0) -> None:
        """Remove the agents' cgroup root in every hierarchy, killing what is left
        in it (executors finish removing their own cgroups as they exit)."""
        deadline = time.monotonic() + timeout
        for top in self._cgroup_tops():
            while top.is_dir():
                for parent, _, _ in os.walk(top, topdown=False):
                    _kill_members(Path(parent))
                    with contextlib.suppress(OSError):  # busy while processes exit
                        os.rmdir(parent)
                if top.is_dir():
                    if time.monotonic() > deadline:
                        break  # leave it: better than failing every later test
                    time.sleep(0.05)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.work.glob("*.log")))


def _kill_members(cgroup: Path) -> None:
    """SIGKILL the processes in `cgroup` (a directory of a hierarchy); one
    gone already, or a cgroup gone, is no error."""
    with contextlib.suppress(OSError):
        for pid in (cgroup / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


def _started_at(log: Path, offset: int, pid: int, event: str = "master started",
                key: str = "address") -> str | None:
    """The `key` (the address) of the `event` line ("master started") that
    process `pid` wrote to `log` after `offset`, if it did."""
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            lines = f.read().split(b"\n")[:-1]  # complete lines only
    except FileNotFoundError:
        return None
    for line in lines:
        if not line.startswith(b"{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == event and entry.get("pid") == pid:
            return str(entry[key])
    return None


def master_leader(*masters: str) -> str:
    """The address of the leading master, as the masters say."""
    for m in masters:
        with servers.sync_channel(m) as ch:
            try:
                answer = operator_pb2_grpc.OperatorStub(ch).GetLeader(
                    operator_pb2.GetLeaderRequest(), timeout=5)
            except grpc.RpcError:
                continue
            if answer.address:
                return answer.address
    raise AssertionError("no master names a leader")
