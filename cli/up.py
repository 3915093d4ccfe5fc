"""`juggler up`: a local cluster in the foreground (masters, N agents, the apps service).

The masters, every agent and the apps service are separate processes
(`juggler master`, `juggler agent`, `juggler apps`), logging to files in the
work dir. The apps service (Marathon's REST API, `juggler app …`) listens on
--apps-port (8080, Marathon's); with several masters one apps service runs
beside each, electing a leader through the same etcd. Ctrl-C or SIGTERM stops
the agents (killing their tasks) and then the masters. SIGHUP does not stop it:
the daemons read their rules and tokens files again (cli/up_children.py).

One master runs on the embedded store. `--masters 3` runs three that elect a
leader through etcd: the one given with `--etcd`, or a local etcd started
here (from the `etcd` binary) with its data in the work dir.

A master or agent that exits is started again (kill -9 the leader to watch a
failover); one that exits three times within a minute, or etcd, stops the
cluster.

`--tls` turns on mutual TLS, HTTPS, access rules and tokens, with a CA and
certificates it makes in the work dir (cli/up_tls.py).

`--hosts N` makes a multi-host lab (cli/lab_hosts.py): each agent in its own
network namespace with its own address on a lab bridge, the masters listening
on the bridge; the lab goes when `juggler up` ends.

It cannot hurt a running cluster: before starting anything it takes its work
dir's lock and checks its ports and Docker socket, and refuses (exit 1) naming
the process that holds one (cli/up_guard.py). Its daemons die with it even when
it is SIGKILLed, their executors excepted (cli/up_children.py). It points the
CLI at its cluster ($JUGGLER_HOME/master, apps, docker) once ready and, on exit,
back at the previous cluster if that still runs (cli/pointers.py). Its first
line says where the master is ("juggler: master at HOST:PORT with N agent(s)
…"); the next ones every endpoint (cli/up_endpoints.py).
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
from juggler.cli import lab_hosts, pointers, up_children, up_endpoints, up_guard, up_tls
from juggler.common import tls
from juggler.images.mirrors import MirrorError, parse_mirrors

# A master or agent that exits is started again, unless it exited this often
# within the window (a crash loop, e.g. a port taken): then the cluster stops.
RESTART_LIMIT = 3
RESTART_WINDOW = 60.0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="run a local cluster in the foreground",
                       description="Start one master and N agents on this host; Ctrl-C stops all.")
    p.add_argument("--agents", type=int, default=None, help="number of agents (default 1)")
    p.add_argument("--hosts", type=int, default=0, metavar="N",
                   help="a multi-host lab: N agents, each in its own network namespace with "
                        "its own address on a lab bridge (cli/lab_hosts.py)")
    p.add_argument("--lab", type=int, default=0, metavar="L",
                   help="with --hosts: the lab's number, 0-255 (default 0: bridge jlab0, "
                        "10.77.0.0/24); two labs on one machine need two numbers")
    p.add_argument("--agent-ping-timeout", type=float, default=None, metavar="SECONDS",
                   help="the masters' --agent-ping-timeout (default 15): an agent silent "
                        "for this × --max-agent-ping-timeouts is UNREACHABLE")
    p.add_argument("--max-agent-ping-timeouts", type=int, default=None, metavar="N",
                   help="the masters' --max-agent-ping-timeouts (default 5)")
    p.add_argument("--masters", type=int, default=1,
                   help="number of masters (default 1; more elect a leader through etcd)")
    p.add_argument("--etcd", default="",
                   help="etcd endpoints for --masters > 1 (default: start a local etcd)")
    p.add_argument("--work-dir", default="", help="default: ~/.juggler/cluster")
    p.add_argument("--port", type=int, default=5050,
                   help="the (first) master's port (default 5050; others count up)")
    p.add_argument("--metrics-port", type=int, default=5055,
                   help="the (first) master's HTTP port: /metrics, the web UI (/) and "
                        "/prometheus/targets (default 5055; others count up)")
    p.add_argument("--resources", default=None,
                   help="each agent's resources (default: this host's, split between agents)")
    p.add_argument("--apps-port", type=int, default=8080,
                   help="the (first) apps service's REST port (default 8080; others count up)")
    p.add_argument("--docker-socket", default="", metavar="PATH",
                   help="where the Docker Engine API listens (default /run/juggler/docker.sock, "
                        "or the work dir's docker.sock when another cluster holds that)")
    p.add_argument("--no-apps", dest="apps", action="store_false",
                   help="do not start the apps service")
    p.add_argument("--registry-mirror", action="append", default=[], metavar="URL",
                   help="every agent pulls Docker Hub images from this mirror first "
                        "(repeatable; Docker's registry-mirrors)")
    p.add_argument("--tls", action="store_true",
                   help="mutual TLS on every link, HTTPS, access rules and tokens: makes a CA "
                        "and certificates in <work-dir>/tls/ and points the CLI at them "
                        "(cli/up_tls.py)")
    p.add_argument("--tls-ca-dir", default="", metavar="DIR",
                   help="with --tls: sign with this CA (DIR/ca.crt, DIR/ca.key) instead of "
                        "the work dir's own")
    p.add_argument("--acls", default="", metavar="FILE",
                   help="the access rules every daemon enforces (default with --tls: admin, "
                        "master and apps may do everything, agents may register)")
    p.set_defaults(func=main)


def _split_resources(n: int) -> str:
    from juggler.agent.resources import detect

    total = detect("/")
    cpus = max(0.1, total.get("cpus") / n)
    mem = max(32.0, total.get("mem") / n)
    disk = max(32.0, total.get("disk") / n)
    return f"cpus:{cpus:g};mem:{int(mem)};disk:{int(disk)}"


def agent_ports(i: int, n: int, shared_host: bool) -> str:
    """The `ports` entry of agent i's (0-based) --resources among n agents: the
    whole default range [31000-32000] on a host of its own (a lab host), or
    its own slice of it when the n agents share this host's network, so that
    no two host-network tasks of different agents are given one port."""
    first, last = 31000, 32000
    if not shared_host or n <= 1:
        return f"ports:[{first}-{last}]"
    size = (last - first + 1) // n
    begin = first + i * size
    end = last if i == n - 1 else begin + size - 1
    return f"ports:[{begin}-{end}]"


def _with_ports(resources: str, i: int, n: int, shared_host: bool) -> str:
    """`resources` with agent i's ports (agent_ports) unless it names ports."""
    if "ports" in resources:
        return resources
    return f"{resources};{agent_ports(i, n, shared_host)}"


def _wait_ready(masters: str, agents: int, procs: list[subprocess.Popen[bytes]],
                timeout: float = 30.0) -> list[tuple[str, str]] | None:
    """Until `agents` agents are active: then (hostname, metrics address) of
    each agent the master knows; None when a process exited or time ran out."""
    from juggler.cli import operator
    from juggler.v1 import operator_pb2

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            return None
        try:
            got = operator.call(masters, "GetAgents", operator_pb2.GetAgentsRequest(), timeout=1)
            if sum(1 for a in got.agents if a.state == operator_pb2.AGENT_ACTIVE) >= agents:
                return [(a.info.hostname, a.info.metrics_address) for a in got.agents]
        except Exception:
            pass
        time.sleep(0.1)
    return None


def _wait_apps(urls: list[str], procs: list[subprocess.Popen[bytes]],
               timeout: float = 60.0) -> bool:
    """Until an apps service answers /v2/leader with a leader (it subscribed)."""
    import json
    import urllib.request

    cfg = tls.current()
    ssl = tls.client_ssl_context(cfg) if cfg else None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            return False
        for url in urls:
            try:
                with urllib.request.urlopen(url + "/v2/leader", timeout=1.0,
                                            context=ssl) as r:
                    if json.loads(r.read()).get("leader"):
                        return True
            except (OSError, ValueError):
                pass
        time.sleep(0.2)
    return False


def _loopback_ports(n: int, avoid: set[int]) -> list[int]:
    """`n` distinct loopback ports free right now and not in `avoid`: the
    kernel's pick (bind to port 0), passed over when it is a port the cluster's
    own daemons are about to take (`--metrics-port` 54893 was handed to etcd
    while master-1 had not bound it yet: "address already in use")."""
    import socket

    ports: list[int] = []
    held: list[socket.socket] = []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
            if port in avoid:
                s.close()
            else:
                held.append(s)   # kept bound until all are picked: no port twice
                ports.append(port)
    finally:
        for s in held:
            s.close()
    return ports


def _start_etcd(work: Path, procs: list[subprocess.Popen[bytes]],
                names: list[str], avoid: set[int]) -> str | None:
    """A local single-member etcd on free loopback ports other than `avoid`
    (the cluster's own); its endpoint, or None when etcd is not installed."""
    import shutil
    import urllib.request

    binary = shutil.which("etcd")
    if binary is None:
        return None
    ports = _loopback_ports(2, avoid)
    client, peer = (f"http://127.0.0.1:{p}" for p in ports)
    with open(work / "etcd.log", "ab") as log:
        procs.append(subprocess.Popen(
            [binary, "--name", "juggler", "--data-dir", str(work / "etcd"),
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"juggler={peer}"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=up_children.preexec(up_children.death_signal("etcd"))))
    names.append("etcd")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{client}/health", timeout=1) as r:
                if b"true" in r.read():
                    return client
        except OSError:
            time.sleep(0.1)
    return client


def main(args: argparse.Namespace) -> int:
    """Refuse (exit 1, naming the holders) when the work dir, a port or the
    Docker socket is taken; else run the cluster until SIGINT/SIGTERM."""
    if args.hosts and args.agents not in (None, args.hosts):
        print("juggler up: --hosts N runs N agents, one per host; leave out --agents",
              file=sys.stderr)
        return 2
    # Bad flags are refused before the guard takes the work dir (it creates it).
    if (args.agents is not None and args.agents < 1) or args.masters < 1:
        print("juggler up: --agents and --masters must be at least 1", file=sys.stderr)
        return 2
    if args.tls_ca_dir and not args.tls:
        print("juggler up: --tls-ca-dir goes with --tls", file=sys.stderr)
        return 2
    try:
        args.mirror_urls = [m.url for m in parse_mirrors(args.registry_mirror)]
    except MirrorError as e:
        print(f"juggler up: --registry-mirror: {e}", file=sys.stderr)
        return 2
    if args.hosts:
        try:
            lab_hosts.plan(args.lab, args.hosts)
        except ValueError as e:
            print(f"juggler up: {e}", file=sys.stderr)
            return 2
    if os.geteuid() != 0:
        print("juggler up: agents must run as root (namespaces, cgroups, mounts); "
              "try: sudo juggler up", file=sys.stderr)
        return 1
    work = Path(args.work_dir or addr.state_dir() / "cluster").resolve()
    lock, problems = up_guard.take(work, masters=args.masters, port=args.port,
                                   metrics_port=args.metrics_port, apps=args.apps,
                                   apps_port=args.apps_port, docker_socket=args.docker_socket)
    if lock is None:
        for p in problems:
            print(f"juggler up: {p}", file=sys.stderr)
        print("juggler up: nothing started", file=sys.stderr)
        return 1
    try:
        return _main(args, work)
    finally:
        lock.release()


def _main(args: argparse.Namespace, work: Path) -> int:
    if args.hosts:
        try:
            lab = lab_hosts.plan(args.lab, args.hosts)
        except ValueError as e:
            print(f"juggler up: {e}", file=sys.stderr)
            return 2
        try:
            with lab_hosts.held(lab, work):
                return _run(args, lab, work)
        except lab_hosts.LabError as e:
            print(f"juggler up: {e}", file=sys.stderr)
            return 1
    return _run(args, None, work)


def _run(args: argparse.Namespace, lab: lab_hosts.Lab | None, work: Path) -> int:
    args.agents = len(lab.hosts) if lab is not None else args.agents or 1
    mirrors: list[str] = args.mirror_urls   # checked by main
    exe = [sys.executable, "-m", "juggler.cli.main"]
    resources = args.resources or _split_resources(args.agents)
    procs: list[subprocess.Popen[bytes]] = []
    names: list[str] = []
    commands: dict[str, list[str]] = {}  # the masters' and agents', to start them again
    stopping = False
    reload_asked = False   # SIGHUP: forwarded from the supervising loop, once ready

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    def reload(*_: object) -> None:
        nonlocal reload_asked
        reload_asked = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, reload)
    env = dict(os.environ, JUGGLER_LOG_LEVEL=os.environ.get("JUGGLER_LOG_LEVEL", "info"))
    # In a lab the masters listen on the bridge: hosts reach them over it.
    master_host = lab.gateway if lab is not None else "127.0.0.1"
    addresses = [f"{master_host}:{args.port + i}" for i in range(args.masters)]
    netns_of = {f"agent-{h.index}": h.netns for h in lab.hosts} if lab is not None else {}
    masters = ",".join(addresses)
    n_daemons = 0
    mine: pointers.Record | None = None   # set once published
    secured: up_tls.UpTLS | None = None
    scheme = "https" if args.tls else "http"
    try:
        if args.tls:
            hosts = [lab.gateway, *(h.address for h in lab.hosts)] if lab is not None else []
            try:
                secured = up_tls.prepare(work, hosts, args.tls_ca_dir, args.acls)
            except (OSError, ValueError) as e:
                print(f"juggler up: --tls: {e}", file=sys.stderr)
                return 1
            tls.configure(secured.cli)   # up's own calls (readiness) as the CLI's
        else:   # not the TLS files another up left for the CLI
            tls.configure(None)

        def security(component: str) -> list[str]:
            return up_tls.daemon_flags(secured, component, args.acls, lab is not None)

        etcd = args.etcd
        if args.masters > 1 and not etcd:
            own = {base + i for base in (args.port, args.metrics_port, args.apps_port)
                   for i in range(args.masters)}
            etcd = _start_etcd(work, procs, names, own)
            if etcd is None:
                print("juggler up: --masters > 1 needs etcd: give --etcd URL, or install it "
                      "(Debian/Ubuntu: apt-get install etcd-server)", file=sys.stderr)
                return 1
        n_daemons = len(procs)

        def launch(name: str, argv: list[str]) -> subprocess.Popen[bytes]:
            # Started (and started again) from this thread: its end, or up's,
            # signals the daemon (cli/up_children.py).
            dies = up_children.preexec(up_children.death_signal(name))
            with open(work / f"{name}.log", "ab") as log:
                if name in netns_of:   # a lab host's agent
                    return lab_hosts.popen_in(netns_of[name], [*exe, *argv], stdout=log,
                                              stderr=log, stdin=subprocess.DEVNULL, env=env,
                                              start_new_session=True, preexec_fn=dies)
                return subprocess.Popen([*exe, *argv], stdout=log, stderr=log,
                                        stdin=subprocess.DEVNULL, env=env,
                                        start_new_session=True, preexec_fn=dies)

        for i in range(args.masters):
            ha = ["--etcd", etcd, "--etcd-prefix", "/juggler/up/"] if args.masters > 1 else []
            name = "master" if args.masters == 1 else f"master-{i + 1}"
            commands[name] = ["master", "--host", master_host, "--port", str(args.port + i),
                              "--metrics-port", str(args.metrics_port + i),
                              "--work-dir", str(work / name), *ha, *_ping_flags(args),
                              *security("master")]
            procs.append(launch(name, commands[name]))
            names.append(name)
        docker_socket = args.docker_socket or _docker_socket(work)
        # Host-filesystem tasks see neither the cluster's secrets (tls/ with
        # ca.key, registries, every agent's sandboxes) nor the Docker socket.
        hide = ["--hide-from-tasks", str(work), "--hide-from-tasks", _hidden_of(docker_socket)]
        for i in range(args.agents):
            name = f"agent-{i + 1}"
            commands[name] = ["agent", "--master", masters, "--host", "127.0.0.1", "--port", "0",
                              "--metrics-port", "0", "--work-dir", str(work / name),
                              "--hostname", f"{os.uname().nodename}-agent-{i + 1}",
                              "--resources", _with_ports(resources, i, args.agents,
                                                         shared_host=lab is None),
                              *(f"--registry-mirror={m}" for m in mirrors),
                              *hide, *security("agent")]
            if lab is not None:
                commands[name] = _lab_agent(commands[name], lab.hosts[i])
            procs.append(launch(name, commands[name]))
            names.append(name)
        apps_urls = [f"{scheme}://127.0.0.1:{args.apps_port + i}" for i in range(args.masters)]
        if args.apps:
            for i in range(args.masters):
                ha = ["--etcd", etcd, "--etcd-prefix", "/juggler/up/"] if args.masters > 1 \
                    else []
                name = "apps" if args.masters == 1 else f"apps-{i + 1}"
                sock = ["--docker-socket", docker_socket] if i == 0 else []
                commands[name] = ["apps", "--master", masters, "--host", "127.0.0.1",
                                  "--http-port", str(args.apps_port + i),
                                  "--work-dir", str(work / name), *ha, *sock,
                                  *security("apps")]
                procs.append(launch(name, commands[name]))
                names.append(name)
        ready = _wait_ready(masters, args.agents, procs)
        if ready is None or (args.apps and not _wait_apps(apps_urls, procs)):
            print(f"juggler up: the cluster did not come up; see the logs in {work}",
                  file=sys.stderr)
            for p, name in zip(procs, names, strict=True):
                if p.poll() is not None:
                    tail = (work / f"{name}.log").read_text(errors="replace").strip()
                    print(f"--- {name} exited with {p.returncode}:\n{tail[-1500:]}",
                          file=sys.stderr)
            return 1
        http = [f"{scheme}://{master_host}:{args.metrics_port + i}/"
                for i in range(args.masters)]
        # Ready: point the CLI here before saying so (scripts act on the first line).
        mine = pointers.record_for(master=masters, apps=",".join(apps_urls) if args.apps else "",
                                   docker=f"unix://{docker_socket}" if args.apps else "",
                                   work_dir=work,
                                   endpoints=[*http, *(apps_urls if args.apps else [])],
                                   tls=secured is not None)
        pointers.publish(mine)
        if secured is not None:
            up_tls.publish(secured)
        which = "master" if args.masters == 1 else f"{args.masters} masters (etcd {etcd})"
        print(f"juggler: {which} at {masters} with {args.agents} agent(s) "
              f"({resources} each); metrics at {scheme}://{master_host}:{args.metrics_port}"
              "/metrics", flush=True)
        if secured is not None:
            print(f"juggler: {up_tls.announcement(secured)}", flush=True)
        lines = up_endpoints.lines(
            masters=addresses, http=http, agents=ready,
            apps=apps_urls if args.apps else [],
            docker=f"unix://{docker_socket}" if args.apps else "")
        for line in lines:
            print(f"juggler: {line}", flush=True)
        if lab is not None:
            for h in lab.hosts:
                print(f"juggler: {h.name} at {h.address} (netns {h.netns}, agent "
                      f"{h.agent_address}); partition: {h.partition_command}; "
                      f"heal: {h.heal_command}", flush=True)
        print(f"juggler: logs in {work}; try `juggler run -- echo hello`; Ctrl-C stops",
              flush=True)
        # Supervise: a master or agent that exits is started again, as a service
        # manager would (a master comes back as a standby of the one that took
        # over; an agent finds its executors again). One that keeps exiting, or
        # etcd, stops the cluster.
        restarts: dict[str, list[float]] = {}
        while not stopping:
            if reload_asked:
                reload_asked = False
                _forward_reload(procs, names, rules_on=bool(args.tls or args.acls))
            for i, p in enumerate(procs):
                if p.poll() is None:
                    continue
                name, now = names[i], time.monotonic()
                recent = [t for t in restarts.get(name, []) if now - t < RESTART_WINDOW]
                if name not in commands or len(recent) >= RESTART_LIMIT:
                    why = (f"exited {len(recent) + 1} times within {RESTART_WINDOW:.0f} s"
                           if name in commands else "exited")
                    print(f"juggler up: {name} {why} (status {p.returncode}); stopping; see "
                          f"the logs in {work}", file=sys.stderr, flush=True)
                    return 1
                print(f"juggler up: {name} exited (status {p.returncode}); starting it again",
                      file=sys.stderr, flush=True)
                restarts[name] = [*recent, now]
                procs[i] = launch(name, commands[name])
            time.sleep(0.2)
        return 0
    finally:
        print("juggler: stopping", file=sys.stderr, flush=True)
        apps = [p for p, name in zip(procs, names, strict=False) if name.startswith("apps")]
        for p in apps:
            if p.poll() is None:
                p.terminate()   # the apps' tasks stay, as Marathon's; the agents kill them
        _reap(apps, 10.0)
        agents = [p for p, name in zip(procs, names, strict=False)
                  if name.startswith("agent")]
        for p in agents:
            if p.poll() is None:
                p.send_signal(signal.SIGUSR1)  # kill their tasks, then exit
        _reap(agents, 20.0)
        for p in procs[n_daemons:n_daemons + args.masters]:
            if p.poll() is None:
                p.terminate()
        _reap(procs[n_daemons:n_daemons + args.masters], 10.0)
        for p in procs[:n_daemons]:
            if p.poll() is None:
                p.terminate()
        _reap(procs[:n_daemons], 10.0)
        if secured is not None and mine is not None:
            try:
                up_tls.withdraw(secured)
            except OSError as e:
                print(f"juggler up: cannot remove the CLI's TLS files: {e}", file=sys.stderr)
        if mine is not None:
            try:
                pointers.withdraw(mine)
            except OSError as e:
                print(f"juggler up: cannot reset the CLI's pointers in {addr.state_dir()}: {e}",
                      file=sys.stderr)


def _forward_reload(procs: list[subprocess.Popen[bytes]], names: list[str],
                    rules_on: bool) -> None:
    """SIGHUP to up: send it on to the daemons that reload their rules and
    tokens files (cli/up_children.py), and say so on stderr."""
    targets = [i for i in up_children.reload_targets(names, rules_on) if procs[i].poll() is None]
    for i in targets:
        procs[i].send_signal(signal.SIGHUP)
    if targets:
        print(f"juggler up: SIGHUP: {', '.join(names[i] for i in targets)} reload their rules "
              "and tokens files; the cluster keeps running", file=sys.stderr, flush=True)
    else:
        print("juggler up: SIGHUP: no rules or tokens files to reload (neither --tls nor "
              "--acls); the cluster keeps running", file=sys.stderr, flush=True)


def _ping_flags(args: argparse.Namespace) -> list[str]:
    out = []
    if args.agent_ping_timeout is not None:
        out += ["--agent-ping-timeout", str(args.agent_ping_timeout)]
    if args.max_agent_ping_timeouts is not None:
        out += ["--max-agent-ping-timeouts", str(args.max_agent_ping_timeouts)]
    return out


def _lab_agent(argv: list[str], host: lab_hosts.LabHost) -> list[str]:
    """An agent's command line as a lab host's: its API on the host's address
    (advertised as such), its own container subnet and address leases, and the address as its
    hostname: the lab has no DNS, and the hostname is what frameworks are told
    to reach the agent's tasks at (an offer's hostname, Marathon's task `host`,
    $HOST), as a Mesos agent with --hostname_lookup=false reports its IP."""
    out = list(argv)
    for flag, value in (("--host", host.address), ("--port", str(lab_hosts.AGENT_PORT)),
                        ("--metrics-port", str(lab_hosts.AGENT_METRICS_PORT)),
                        ("--hostname", host.address)):
        out[out.index(flag) + 1] = value
    # Its own leases: host i of every lab has subnet 10.88.i.0/24, and two
    # labs at once must not share (and free) each other's addresses.
    return [*out, "--bridge-subnet", host.bridge_subnet,
            "--ipam-dir", str(host.ipam_dir)]


DOCKER_SOCKET = Path("/run/juggler/docker.sock")


def _docker_socket(work: Path) -> str:
    """Where the first apps service serves the Docker Engine API: the
    well-known /run/juggler/docker.sock, unless a live server (another
    cluster's) answers there; then the work dir's docker.sock, or, when that
    path is too long for a Unix socket (sun_path: 107 bytes and a NUL; the
    `docker` client has the same limit), /run/juggler/docker-<12 hex digits
    of the work dir's sha256>.sock."""
    import hashlib
    import socket as socket_

    from juggler.common.fdio import SUN_PATH_MAX

    if DOCKER_SOCKET.exists():
        with socket_.socket(socket_.AF_UNIX) as s:
            try:
                s.connect(str(DOCKER_SOCKET))
            except OSError:
                return str(DOCKER_SOCKET)   # stale: the apps service replaces it
        own = work.resolve() / "docker.sock"
        if len(os.fsencode(str(own))) <= SUN_PATH_MAX:
            return str(own)
        digest = hashlib.sha256(os.fsencode(str(work.resolve()))).hexdigest()[:12]
        return str(DOCKER_SOCKET.with_name(f"docker-{digest}.sock"))
    return str(DOCKER_SOCKET)


def _hidden_of(socket_path: str) -> str:
    """What to hide of the Docker socket: its directory, unless that is /run
    itself (tasks need the rest of it, e.g. systemd-resolved's resolv.conf):
    then the socket alone."""
    path = Path(socket_path).resolve()
    return str(path if path.parent == Path("/run").resolve() else path.parent)


def _reap(procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
