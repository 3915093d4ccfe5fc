"""`juggler up`: a local cluster in the foreground (one master, N agents).

The master and every agent are separate processes (`juggler master`,
`juggler agent`), logging to files in the work dir. Ctrl-C or SIGTERM stops
the agents (killing their tasks) and then the master.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from juggler.cli import address as addr


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="run a local cluster in the foreground",
                       description="Start one master and N agents on this host; Ctrl-C stops all.")
    p.add_argument("--agents", type=int, default=1, help="number of agents (default 1)")
    p.add_argument("--work-dir", default="", help="default: ~/.juggler/cluster")
    p.add_argument("--port", type=int, default=5050, help="the master's port (default 5050)")
    p.add_argument("--metrics-port", type=int, default=5055,
                   help="the master's /metrics port (default 5055)")
    p.add_argument("--resources", default=None,
                   help="each agent's resources (default: this host's, split between agents)")
    p.set_defaults(func=main)


def _split_resources(n: int) -> str:
    from juggler.agent.resources import detect

    total = detect("/")
    cpus = max(0.1, total.get("cpus") / n)
    mem = max(32.0, total.get("mem") / n)
    disk = max(32.0, total.get("disk") / n)
    return f"cpus:{cpus:g};mem:{int(mem)};disk:{int(disk)}"


def _wait_ready(master: str, agents: int, procs: list[subprocess.Popen[bytes]],
                timeout: float = 30.0) -> bool:
    import grpc

    from juggler.v1 import operator_pb2, operator_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(master) as channel:
        stub = operator_pb2_grpc.OperatorStub(channel)
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                return False
            try:
                got = stub.GetAgents(operator_pb2.GetAgentsRequest(), timeout=1)
                if sum(1 for a in got.agents if a.state == operator_pb2.AGENT_ACTIVE) >= agents:
                    return True
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    return False


def main(args: argparse.Namespace) -> int:
    if args.agents < 1:
        print("juggler up: --agents must be at least 1", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("juggler up: agents must run as root (namespaces, cgroups, mounts); "
              "try: sudo juggler up", file=sys.stderr)
        return 1
    work = Path(args.work_dir or addr.state_dir() / "cluster").resolve()
    work.mkdir(parents=True, exist_ok=True)
    master = f"127.0.0.1:{args.port}"
    exe = [sys.executable, "-m", "juggler.cli.main"]
    resources = args.resources or _split_resources(args.agents)
    procs: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    env = dict(os.environ, JUGGLER_LOG_LEVEL=os.environ.get("JUGGLER_LOG_LEVEL", "info"))
    try:
        with open(work / "master.log", "ab") as log:
            procs.append(subprocess.Popen(
                [*exe, "master", "--host", "127.0.0.1", "--port", str(args.port),
                 "--metrics-port", str(args.metrics_port), "--work-dir", str(work / "master")],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True))
        for i in range(args.agents):
            with open(work / f"agent-{i + 1}.log", "ab") as log:
                procs.append(subprocess.Popen(
                    [*exe, "agent", "--master", master, "--host", "127.0.0.1", "--port", "0",
                     "--metrics-port", "0", "--work-dir", str(work / f"agent-{i + 1}"),
                     "--hostname", f"{os.uname().nodename}-agent-{i + 1}",
                     "--resources", resources],
                    stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env,
                    start_new_session=True))
        if not _wait_ready(master, args.agents, procs):
            print(f"juggler up: the cluster did not come up; see the logs in {work}",
                  file=sys.stderr)
            for p, name in zip(procs, ["master"] + [f"agent-{i + 1}" for i in range(args.agents)],
                               strict=True):
                if p.poll() is not None:
                    tail = (work / f"{name}.log").read_text(errors="replace").strip()
                    print(f"--- {name} exited with {p.returncode}:\n{tail[-1500:]}",
                          file=sys.stderr)
            return 1
        addr.write(master)
        print(f"juggler: master at {master} with {args.agents} agent(s) "
              f"({resources} each); metrics at http://127.0.0.1:{args.metrics_port}/metrics",
              flush=True)
        print(f"juggler: logs in {work}; try `juggler run -- echo hello`; Ctrl-C stops",
              flush=True)
        while not stopping:
            if any(p.poll() is not None for p in procs):
                print("juggler up: a daemon exited unexpectedly; stopping; see logs in "
                      f"{work}", file=sys.stderr)
                return 1
            time.sleep(0.2)
        return 0
    finally:
        print("juggler: stopping", file=sys.stderr, flush=True)
        for p in procs[1:]:
            if p.poll() is None:
                p.send_signal(signal.SIGUSR1)  # kill their tasks, then exit
        _reap(procs[1:], 20.0)
        if procs and procs[0].poll() is None:
            procs[0].terminate()
        _reap(procs[:1], 10.0)
        addr.clear(master)


def _reap(procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
