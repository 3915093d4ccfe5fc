"""`juggler master`, `juggler agent` and `juggler apps`: the daemons on their own."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import prometheus_client

from juggler.common import attributes, gc_policy, logs
from juggler.common.resources import ResourceError
from juggler.images.mirrors import MirrorError, parse_mirrors


def _start_daemon(name: str) -> None:
    """At a juggler daemon's start: its logs, and no `*_created` series on its
    /metrics (prometheus_client exports one per counter and histogram unless
    disable_created_metrics() is called; nothing here uses them)."""
    logs.configure(name)
    prometheus_client.disable_created_metrics()


def add_tls_flags(p: argparse.ArgumentParser) -> None:
    """--tls-ca/--tls-cert/--tls-key and --insecure (every daemon)."""
    p.add_argument("--tls-ca", default=None, metavar="FILE",
                   help="CA certificate (PEM) every peer's certificate must be signed by: "
                        "mutual TLS on every gRPC link and HTTPS (with --tls-cert, --tls-key)")
    p.add_argument("--tls-cert", default=None, metavar="FILE",
                   help="this daemon's certificate (PEM), signed by --tls-ca")
    p.add_argument("--tls-key", default=None, metavar="FILE", help="its private key (PEM)")
    p.add_argument("--insecure", action="store_true",
                   help="allow listening on a non-loopback --host in plain text (dangerous: "
                        "anyone who reaches the port controls the cluster)")


def _secure(name: str, args: argparse.Namespace) -> int | None:
    """Apply the daemon's TLS flags (tls.configure) and the listen policy:
    resolves args.host; returns an exit status (2) when it must not start.
    Prints why --insecure is dangerous when it is used on an open address."""
    from juggler.common import tls

    log = logs.get(name)
    try:
        cfg = tls.from_flags(args.tls_ca, args.tls_cert, args.tls_key)
    except tls.TLSError as e:
        print(f"juggler {name}: {e}", file=sys.stderr)
        return 2
    tls.configure(cfg)
    if args.host is None:
        args.host = tls.default_host(cfg is not None)
    refusal = tls.listen_refusal(name, args.host, cfg is not None, args.insecure)
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
    if cfg is None and not tls.is_loopback(args.host):
        warning = tls.insecure_warning(name, args.host)
        print(warning, file=sys.stderr, flush=True)
        log.warning("listening in plain text on a non-loopback address (--insecure)",
                    host=args.host)
    return None


def _bad_access_files(name: str, acls: str, tokens: str) -> int | None:
    """Exit status 2 (and why, on stderr) when the rules or tokens file
    cannot be used; None when both are good (or not given)."""
    from juggler.common.access import AccessControl, RulesError
    from juggler.common.tokens import Tokens, TokensError

    try:
        AccessControl.from_file(acls)
        Tokens.from_file(tokens)
    except (RulesError, TokensError) as e:
        print(f"juggler {name}: {e}", file=sys.stderr)
        return 2
    return None


def add_master_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("master", help="run a master",
                       description="Run a master: offers agents' resources to frameworks.")
    p.add_argument("--host", default=None,
                   help="address to listen on (default 0.0.0.0 with --tls-*, else 127.0.0.1)")
    p.add_argument("--port", type=int, default=5050, help="gRPC port (default 5050)")
    p.add_argument("--advertise", default="", help="host:port others reach this master at")
    p.add_argument("--metrics-port", type=int, default=5055,
                   help="HTTP port of /metrics, the web UI (/) and /prometheus/targets "
                        "(default 5055; -1 disables them all)")
    p.add_argument("--work-dir", default="/var/lib/juggler/master",
                   help="where the embedded store keeps the registry")
    p.add_argument("--allocation-interval", type=float, default=1.0,
                   help="seconds between batch allocations (default 1)")
    p.add_argument("--offer-timeout", type=float, default=None,
                   help="rescind offers not used within this many seconds (default: never)")
    p.add_argument("--agent-ping-timeout", type=float, default=15.0,
                   help="seconds between pings of each agent (default 15)")
    p.add_argument("--max-agent-ping-timeouts", type=int, default=5,
                   help="pings an agent may miss before it is UNREACHABLE (default 5)")
    p.add_argument("--agent-gone-timeout", type=float, default=7 * 86400.0,
                   help="seconds an agent may stay UNREACHABLE before it is GONE (default 1 week)")
    p.add_argument("--agent-reregister-timeout", type=float, default=600.0,
                   help="after a failover, seconds agents have to re-register before they are "
                        "UNREACHABLE (default 600)")
    p.add_argument("--etcd", default="",
                   help="etcd endpoints (http://h1:2379,...): elect a leader and keep the "
                        "registry there (high availability); default: embedded store")
    p.add_argument("--etcd-prefix", default="/juggler/default/",
                   help="key prefix in etcd, so clusters can share one etcd")
    p.add_argument("--etcd-ca", default=None, help="CA certificate for etcd (TLS)")
    p.add_argument("--etcd-cert", default=None, help="client certificate for etcd (TLS)")
    p.add_argument("--etcd-key", default=None, help="client key for etcd (TLS)")
    p.add_argument("--lease-ttl", type=int, default=5,
                   help="seconds of the leader's etcd lease (default 5)")
    p.add_argument("--tokens", default="", metavar="FILE",
                   help='bearer tokens of the HTTP /api/* (the web UI\'s JSON): {"tokens": '
                        '[{"principal": NAME, "sha256": HEX}]} (JSON or YAML)')
    p.add_argument("--acls", default="", metavar="FILE",
                   help="access rules of the Scheduler, Operator and agent APIs (Mesos-style, "
                        "deny by default; JSON or YAML; reloaded on SIGHUP); default: "
                        "everything allowed")
    add_tls_flags(p)
    p.set_defaults(func=master_main)


def add_agent_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("agent", help="run an agent",
                       description="Run an agent: registers this host's resources and runs tasks.")
    p.add_argument("--master", required=True,
                   help="host:port of the master (or a list, comma-separated)")
    p.add_argument("--work-dir", default="/var/lib/juggler/agent",
                   help="sandboxes and checkpoints (default /var/lib/juggler/agent)")
    p.add_argument("--resources", default=None,
                   help='override detected resources, e.g. "cpus:2;mem:1024;disk:4096" (MiB) '
                        'or "ports:[31000-32000,40000-40100]" (default ports [31000-32000])')
    p.add_argument("--host", default=None,
                   help="address the agent API listens on (default 0.0.0.0 with --tls-*, "
                        "else 127.0.0.1)")
    p.add_argument("--port", type=int, default=5051, help="agent API port (default 5051; 0 = any)")
    p.add_argument("--advertise-ip", default="",
                   help="IP others reach the agent API at (default: the one routing to the master)")
    p.add_argument("--hostname", default="", help="name to register with (default: this host's)")
    p.add_argument("--metrics-port", type=int, default=5056,
                   help="HTTP port of /metrics (default 5056; 0 = any, -1 disables)")
    p.add_argument("--status-update-retry", type=float, default=10.0,
                   help="first retry interval of unacknowledged status updates (seconds; "
                        "default 10, as Mesos's agent)")
    p.add_argument("--standby-delay", type=float, default=15.0,
                   help="with several masters: open a stream to the master that would lead "
                        "next at most this many seconds after registering, to re-register "
                        "over it when the leader is lost (default 15; the delay is random)")
    p.add_argument("--hide-from-tasks", action="append", default=[], metavar="PATH",
                   help="hide PATH (an empty directory in its place) from tasks on the host's "
                        "read-only filesystem, as the agent's work dir, its TLS key's directory "
                        "and /run/juggler always are (repeatable; container/host_view.py)")
    p.add_argument("--no-launcher", dest="launcher", action="store_false",
                   help="start each executor as a fresh interpreter instead of forking it "
                        "from the pre-started launcher (slower; for debugging)")
    p.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]",
                   help="pull from this registry over plain http (loopback ones always are; "
                        "repeatable)")
    p.add_argument("--attributes", default="", metavar="NAME:VALUE;…",
                   help='attributes of this agent, passed on in offers and matched by '
                        'placement constraints, e.g. "rack:r1;zone:a"')
    p.add_argument("--cgroup-root", default="juggler",
                   help="parent of the tasks' cgroups under every controller "
                        "(default juggler; as Mesos's --cgroups_root)")
    p.add_argument("--registry-config", default="", metavar="FILE",
                   help="Docker config.json with registry credentials (default "
                        "$DOCKER_CONFIG/config.json or ~/.docker/config.json)")
    p.add_argument("--registry-mirror", action="append", default=[], metavar="URL",
                   help="pull Docker Hub images (alpine, user/app) from this mirror first, "
                        "then from Hub; http:// or https://, repeatable, tried in order "
                        "(Docker's registry-mirrors)")
    p.add_argument("--network-cni-config-dir", default="", metavar="DIR",
                   help="operators' CNI network configs (.conflist/.conf/.json, named by "
                        "their \"name\"); a task joins one with --network NAME (as Mesos's "
                        "--network_cni_config_dir)")
    p.add_argument("--network-cni-plugins-dir", default="/usr/lib/cni:/opt/cni/bin",
                   metavar="DIR[:DIR…]",
                   help="where the CNI plugin executables are (default /usr/lib/cni:/opt/cni/bin)")
    p.add_argument("--bridge-subnet", default="10.88.0.0/24", metavar="CIDR",
                   help="IPv4 range of the built-in \"bridge\" network on this agent "
                        "(default 10.88.0.0/24; give each host of a lab its own)")
    # The default is cni_config.DEFAULT_IPAM_ROOT's (the master's process loads no container code).
    p.add_argument("--ipam-dir", default="/run/juggler/cni", metavar="DIR",
                   help="where the built-in network's address leases live (CNI host-local's "
                        "dataDir, one directory per subnet; default "
                        "/run/juggler/cni): agents in one network namespace share it, "
                        "agents in separate ones (a lab's hosts) each have their own")
    p.add_argument("--bridge-name", default="juggler0", metavar="NAME",
                   help="Linux bridge of the built-in network (default juggler0)")
    p.add_argument("--bridge-pool-size", type=int, default=2, metavar="N",
                   help="namespaces kept attached to the built-in network ahead of launches, "
                        "from its first use on (default 2; 0 disables)")
    p.add_argument("--container-ports-watch-interval", type=float, default=10.0,
                   metavar="SECONDS",
                   help="every this many seconds, kill host-network tasks listening on a "
                        "TCP port they were not given (default 10; 0 disables; as Mesos's "
                        "network/ports isolator, whose default is 30)")
    p.add_argument("--check-agent-port-range-only", action=argparse.BooleanOptionalAction,
                   default=True,
                   help="the port watch only counts ports in the agent's ports resource "
                        "(default; --no-check-agent-port-range-only counts every port, "
                        "Mesos's default)")
    p.add_argument("--acls", default="", metavar="FILE",
                   help="access rules of the agent API (access_sandboxes, "
                        "launch_nested_container_sessions, manage_images, view_cluster; JSON or "
                        "YAML; reloaded on SIGHUP); default: everything allowed")
    add_tls_flags(p)
    p.set_defaults(func=agent_main)


async def _serve_until_signal(start, stop, on_usr1=None) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    usr1 = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    if on_usr1 is not None:
        loop.add_signal_handler(signal.SIGUSR1, lambda: (usr1.set(), done.set()))
    await start()
    await done.wait()
    if usr1.is_set() and on_usr1 is not None:
        await on_usr1()
    await stop()


def master_main(args: argparse.Namespace) -> int:
    from juggler.master.server import Master, MasterConfig
    from juggler.store.embedded import EmbeddedStore

    _start_daemon("master")
    if (refused := _secure("master", args)) is not None:
        return refused
    for flag in ("allocation_interval", "agent_ping_timeout", "agent_gone_timeout"):
        if not getattr(args, flag) > 0:
            print(f"juggler master: --{flag.replace('_', '-')} must be more than 0",
                  file=sys.stderr)
            return 2
    if args.max_agent_ping_timeouts < 1:
        print("juggler master: --max-agent-ping-timeouts must be at least 1", file=sys.stderr)
        return 2
    if (bad := _bad_access_files("master", args.acls, args.tokens)) is not None:
        return bad
    prefix = args.etcd_prefix if args.etcd_prefix.endswith("/") else args.etcd_prefix + "/"
    config = MasterConfig(host=args.host, port=args.port, advertise=args.advertise,
                          agent_reregister_timeout=args.agent_reregister_timeout,
                          etcd=args.etcd, etcd_prefix=prefix, etcd_ca=args.etcd_ca,
                          etcd_cert=args.etcd_cert, etcd_key=args.etcd_key,
                          lease_ttl=args.lease_ttl, tokens=args.tokens, acls=args.acls,
                          metrics_port=args.metrics_port,
                          allocation_interval=args.allocation_interval,
                          offer_timeout=args.offer_timeout,
                          agent_ping_timeout=args.agent_ping_timeout,
                          max_agent_ping_timeouts=args.max_agent_ping_timeouts,
                          agent_gone_timeout=args.agent_gone_timeout)

    def start() -> Master:
        return Master(config, None if args.etcd else EmbeddedStore(args.work_dir))

    # A master that lost its leadership holds state it may no longer trust:
    # it starts over as a fresh standby.
    return _lead_until_signal("master", start, "leadership lost; restarting as a standby")


def _lead_until_signal(name: str, make: Callable[[], Any], lost_message: str) -> int:
    """Run the daemon `make()` builds (start(), stop(), a `lost` event) until
    SIGINT/SIGTERM (exit 0) or until it stops leading: then it starts over,
    same command line and pid, as a fresh standby. Exit 1 with the message
    when it cannot start (a port in use, a bad store)."""
    from juggler.store.interface import StoreError

    async def main() -> bool:
        daemon = make()
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, done.set)
        await daemon.start()
        gc_policy.tune()
        waits = [asyncio.create_task(done.wait()), asyncio.create_task(daemon.lost.wait())]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        lost = daemon.lost.is_set() and not done.is_set()
        await daemon.stop()
        return lost

    try:
        lost = asyncio.run(main())
    except (OSError, StoreError) as e:
        print(f"juggler {name}: {e}", file=sys.stderr)
        return 1
    if lost:
        print(f"juggler {name}: {lost_message}", file=sys.stderr, flush=True)
        # Terms ended so far, for the restarted process's counters
        # (JUGGLER_MASTER_TERMS_LOST: master/metrics.py).
        terms = f"JUGGLER_{name.upper()}_TERMS_LOST"
        count = os.environ.get(terms, "0")
        os.environ[terms] = str((int(count) if count.isdigit() else 0) + 1)
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
    return 0


def agent_main(args: argparse.Namespace) -> int:
    from juggler.agent import resources
    from juggler.agent.networks import NetworkOptions
    from juggler.agent.server import Agent, AgentConfig
    from juggler.common.access import install_sighup
    from juggler.container.cni_config import NetworkError, builtin_bridge

    _start_daemon("agent")
    if (refused := _secure("agent", args)) is not None:
        return refused
    if (bad := _bad_access_files("agent", args.acls, "")) is not None:
        return bad
    if os.geteuid() != 0:
        print("juggler agent: must run as root (it creates namespaces, cgroups and mounts)",
              file=sys.stderr)
        return 1
    work_dir = Path(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    try:
        res = resources.resolve(args.resources, work_dir)
    except ResourceError as e:
        print(f"juggler agent: --resources: {e}", file=sys.stderr)
        return 2
    try:
        attrs = attributes.parse(args.attributes)
    except attributes.InvalidAttribute as e:
        print(f"juggler agent: --attributes: {e}", file=sys.stderr)
        return 2
    if not args.cgroup_root.strip("/") or ".." in args.cgroup_root.split("/"):
        print("juggler agent: --cgroup-root must name a cgroup below the root", file=sys.stderr)
        return 2
    if any(Path(p).resolve() == Path("/") for p in args.hide_from_tasks):
        print("juggler agent: --hide-from-tasks cannot hide /", file=sys.stderr)
        return 2
    try:
        mirrors = parse_mirrors(args.registry_mirror)
    except MirrorError as e:
        print(f"juggler agent: --registry-mirror: {e}", file=sys.stderr)
        return 2
    config = AgentConfig(master=args.master, work_dir=work_dir, resources=res, host=args.host,
                         port=args.port, advertise_ip=args.advertise_ip, hostname=args.hostname,
                         attributes=attrs, cgroup_root=args.cgroup_root.strip("/"),
                         metrics_port=args.metrics_port,
                         status_update_retry=args.status_update_retry,
                         standby_delay=args.standby_delay,
                         launcher=args.launcher,
                         hide_from_tasks=tuple(args.hide_from_tasks),
                         insecure_registries=tuple(args.insecure_registry),
                         registry_config=args.registry_config,
                         registry_mirrors=tuple(m.url for m in mirrors),
                         networks=NetworkOptions(
                             config_dir=args.network_cni_config_dir,
                             plugin_dirs=tuple(d for d in args.network_cni_plugins_dir.split(":")
                                               if d),
                             bridge_subnet=args.bridge_subnet, bridge_name=args.bridge_name,
                             ipam_root=args.ipam_dir,
                             bridge_pool_size=args.bridge_pool_size),
                         ports_watch_interval=args.container_ports_watch_interval,
                         ports_agent_range_only=args.check_agent_port_range_only,
                         acls=args.acls)
    try:
        builtin_bridge(args.bridge_subnet, args.bridge_name)
    except NetworkError as e:
        print(f"juggler agent: {e}", file=sys.stderr)
        return 2

    async def main() -> None:
        agent = Agent(config)
        if agent.access.enabled:  # SIGHUP: the rules file is read again
            install_sighup(agent.access.reload)
        gc_policy.tune()
        # SIGTERM/SIGINT: leave the tasks running (an upgraded agent recovers
        # them). SIGUSR1: kill every task first (as Mesos's agent does).
        await _serve_until_signal(agent.start, agent.stop, on_usr1=agent.kill_all_tasks)

    try:
        asyncio.run(main())
    except OSError as e:
        print(f"juggler agent: {e}", file=sys.stderr)
        return 1
    return 0


def add_apps_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("apps", help="run the apps service (Marathon's API) as a framework",
                       description="The apps service: keeps applications running, with "
                                   "Marathon's REST API (juggler app … talks to it).")
    p.add_argument("--master", required=True,
                   help="master address host:port (several: comma-separated)")
    p.add_argument("--host", default=None,
                   help="address the REST API listens on (default 0.0.0.0 with --tls-*, "
                        "else 127.0.0.1)")
    p.add_argument("--http-port", type=int, default=8080,
                   help="REST API port (default 8080, as Marathon's; 0 = any)")
    p.add_argument("--advertise", default="",
                   help="URL others reach this instance's REST API at (http://host:port)")
    p.add_argument("--work-dir", default="/var/lib/juggler/apps",
                   help="where the embedded store keeps apps when there is no --etcd")
    p.add_argument("--etcd", default="",
                   help="etcd endpoints: apps live there and instances elect a leader")
    p.add_argument("--etcd-prefix", default="/juggler/default/",
                   help="key prefix in etcd, the masters' (apps go under <prefix>apps/)")
    p.add_argument("--etcd-ca", default=None, help="CA certificate for etcd (TLS)")
    p.add_argument("--etcd-cert", default=None, help="client certificate for etcd (TLS)")
    p.add_argument("--etcd-key", default=None, help="client key for etcd (TLS)")
    p.add_argument("--lease-ttl", type=int, default=5, help="election lease TTL, seconds")
    p.add_argument("--framework-name", default="juggler-apps",
                   help="the framework's name (default juggler-apps)")
    p.add_argument("--role", default="*", help="role to take offers in (default *)")
    p.add_argument("--docker-socket", default="", metavar="PATH",
                   help="serve the Docker Engine API (containers, images) on this unix socket "
                        "too (e.g. /run/juggler/docker.sock); it is always on the REST port")
    p.add_argument("--docker-socket-group", default="", metavar="GROUP",
                   help="group of the socket file (mode 0660; default: root's)")
    p.add_argument("--acls", default="", metavar="FILE",
                   help="access rules of the REST and Docker APIs (apps_read, apps_write, "
                        "docker_api, containers_read, containers_write; JSON or YAML; "
                        "reloaded on SIGHUP); default: everything allowed")
    p.add_argument("--tokens", default="", metavar="FILE",
                   help='bearer tokens of the REST and Docker APIs: {"tokens": [{"principal": '
                        'NAME, "sha256": HEX}]} (JSON or YAML; reloaded on SIGHUP)')
    add_tls_flags(p)
    p.set_defaults(func=apps_main)


def apps_main(args: argparse.Namespace) -> int:
    from juggler.apps.service import AppsConfig, AppsService

    _start_daemon("apps")
    if (refused := _secure("apps", args)) is not None:
        return refused
    prefix = args.etcd_prefix if args.etcd_prefix.endswith("/") else args.etcd_prefix + "/"
    config = AppsConfig(master=args.master, etcd=args.etcd, etcd_prefix=prefix,
                        etcd_ca=args.etcd_ca, etcd_cert=args.etcd_cert, etcd_key=args.etcd_key,
                        lease_ttl=args.lease_ttl, work_dir=args.work_dir, host=args.host,
                        http_port=args.http_port, advertise=args.advertise,
                        name=args.framework_name, role=args.role,
                        docker_socket=args.docker_socket,
                        docker_socket_group=args.docker_socket_group,
                        acls=args.acls, tokens=args.tokens)
    bad = _bad_access_files("apps", args.acls, args.tokens)
    if bad is not None:
        return bad

    return _lead_until_signal("apps", lambda: AppsService(config),
                              "no longer acting; starting over as a standby")
