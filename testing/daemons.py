"""Real juggler daemons (`juggler master`, `juggler agent`) as processes for tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc

from juggler.testing.waiting import free_port, wait_for
from juggler.v1 import operator_pb2, operator_pb2_grpc

JUGGLER = [sys.executable, "-m", "juggler.cli.main"]


class Daemons:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.master = ""

    def start_master(self, *flags: str, name: str = "master", port: int = 0) -> str:
        port = port or free_port()
        self._spawn(name, "master", "--host", "127.0.0.1", "--port", str(port),
                    "--metrics-port", "-1", "--work-dir", str(self.work / name), *flags)
        address = f"127.0.0.1:{port}"
        self.master = self.master or address
        wait_for(lambda: self._answers(address), timeout=20, what=f"{name} to serve")
        return address

    def start_agent(self, name: str, *flags: str, resources: str = "cpus:1;mem:512;disk:1024",
                    master: str = "") -> None:
        self._spawn(name, "agent", "--master", master or self.master, "--host", "127.0.0.1",
                    "--port", "0", "--metrics-port", "-1", "--work-dir", str(self.work / name),
                    "--hostname", name, "--resources", resources, *flags)

    def _spawn(self, name: str, *args: str) -> None:
        log = open(self.work / f"{name}.log", "ab")  # noqa: SIM115
        self.procs[name] = subprocess.Popen([*JUGGLER, *args], stdout=log, stderr=log,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()

    def _answers(self, address: str) -> bool:
        try:
            with grpc.insecure_channel(address) as ch:
                operator_pb2_grpc.OperatorStub(ch).GetLeader(operator_pb2.GetLeaderRequest(),
                                                             timeout=1)
            return True
        except grpc.RpcError:
            return False

    def agents(self, master: str = "") -> list[operator_pb2.AgentView]:
        with grpc.insecure_channel(master or self.master) as ch:
            return list(operator_pb2_grpc.OperatorStub(ch).GetAgents(
                operator_pb2.GetAgentsRequest(), timeout=5).agents)

    def agent(self, hostname: str) -> operator_pb2.AgentView | None:
        return next((a for a in self.agents() if a.info.hostname == hostname), None)

    def wait_agents(self, n: int, state: int = operator_pb2.AGENT_ACTIVE) -> None:
        wait_for(lambda: sum(1 for a in self.agents() if a.state == state) >= n, timeout=30,
                 what=f"{n} agents in state {operator_pb2.AgentState.Name(state)}")

    def operator(self) -> tuple[grpc.Channel, operator_pb2_grpc.OperatorStub]:
        ch = grpc.insecure_channel(self.master)
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
        for name in [n for n in self.procs if n != "master"]:
            proc = self.procs[name]
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
            self.stop(name, signal.SIGUSR1)  # agents kill their tasks
        for name in list(self.procs):
            self.stop(name)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.work.glob("*.log")))
