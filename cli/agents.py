"""`juggler agents`, `juggler drain AGENT`, `juggler undrain AGENT`: agents and maintenance."""

from __future__ import annotations

import argparse
import sys
import time

import grpc

from juggler.cli import address as addr
from juggler.cli import operator
from juggler.cli.ps import age
from juggler.common import attributes
from juggler.common.resources import Resources
from juggler.v1 import operator_pb2


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("agents", help="list agents", description="List the cluster's agents.")
    p.add_argument("--master", default=None, help="master address (default: what `up` wrote)")
    p.add_argument("--story", action="store_true",
                   help="also each agent's latest transitions and why (connectivity, "
                        "maintenance)")
    p.set_defaults(func=list_main)
    for name, verb in (("drain", "DrainAgent"), ("undrain", "UpAgent")):
        what = ("stop offering an agent and kill its tasks (maintenance); it is DOWN once empty"
                if name == "drain" else "end an agent's maintenance: offer it again")
        q = sub.add_parser(name, help=what, description=what[0].upper() + what[1:] + ".")
        q.add_argument("--master", default=None, help="master address")
        q.add_argument("agent", help="agent id or hostname")
        q.set_defaults(func=maintenance_main, verb=verb)


def _agents(master: str, stories: bool = False) -> list[operator_pb2.AgentView]:
    return list(operator.call(master, "GetAgents",
                              operator_pb2.GetAgentsRequest(stories=stories)).agents)


def render_stories(agents: list[operator_pb2.AgentView]) -> str:
    """Each agent's story, oldest first: `HOSTNAME  TIME  FROM → TO  (why)`."""
    import datetime

    lines = []
    for a in sorted(agents, key=lambda v: v.info.hostname):
        for t in a.story:
            when = datetime.datetime.fromtimestamp(t.time).strftime("%Y-%m-%d %H:%M:%S")
            move = f"{t.source} → {t.target}" if t.source else t.target
            lines.append(f"{a.info.hostname}  {when}  {move}  ({t.stimulus})")
    return "\n".join(lines)


def render(agents: list[operator_pb2.AgentView], now: float) -> str:
    """One row an agent: its connectivity (STATE) and maintenance apart, as the
    master keeps them; what its tasks use of its total; its attributes."""
    rows = [("AGENT ID", "HOSTNAME", "STATE", "MAINTENANCE", "ADDRESS", "USED / TOTAL",
             "ATTRIBUTES", "SEEN")]
    for a in sorted(agents, key=lambda v: v.info.hostname):
        used = Resources.from_proto(a.allocated)
        total = Resources.from_proto(a.total)
        usage = (f"cpus {used.get('cpus'):g}/{total.get('cpus'):g}, "
                 f"mem {used.get('mem'):g}/{total.get('mem'):g} MiB")
        if total.ports:  # how many of its ports tasks hold, of how many
            usage += f", ports {used.ports.count()}/{total.ports.count()}"
        seen = age(now - a.last_seen_time) + " ago" if a.last_seen_time else "-"
        maintenance = (operator_pb2.MaintenanceState.Name(a.maintenance)
                       .removeprefix("MAINTENANCE_").replace("NONE", "-"))
        rows.append((a.info.id, a.info.hostname,
                     operator_pb2.AgentState.Name(a.state).removeprefix("AGENT_"), maintenance,
                     a.info.address, usage, attributes.render(a.info.attributes) or "-", seen))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def list_main(args: argparse.Namespace) -> int:
    try:
        agents = _agents(addr.resolve(args.master), stories=args.story)
        print(render(agents, time.time()))
        if args.story:
            print()
            print(render_stories(agents))
    except (operator.NoMaster, grpc.RpcError) as e:
        print(f"juggler agents: {e}", file=sys.stderr)
        return 1
    return 0


def maintenance_main(args: argparse.Namespace) -> int:
    master = addr.resolve(args.master)
    try:
        agents = _agents(master)
        matches = [a for a in agents if args.agent in (a.info.id, a.info.hostname)]
        if len(matches) > 1:
            several = "; ".join(f"{a.info.id} ({_state(a)})" for a in matches)
            print(f"juggler {args.subcommand}: {args.agent!r} names several agents: "
                  f"{several}; give the agent id", file=sys.stderr)
            return 1
        if not matches:
            known = ", ".join(sorted(a.info.hostname for a in agents)) or "none"
            print(f"juggler {args.subcommand}: {args.agent!r} is not an agent (agents: {known})",
                  file=sys.stderr)
            return 1
        request = (operator_pb2.DrainAgentRequest if args.verb == "DrainAgent"
                   else operator_pb2.UpAgentRequest)(agent_id=matches[0].info.id)
        operator.call(master, args.verb, request)
        now = next((a for a in _agents(master) if a.info.id == matches[0].info.id), matches[0])
    except (operator.NoMaster, grpc.RpcError) as e:
        detail = e.details() if isinstance(e, grpc.RpcError) else str(e)  # type: ignore[attr-defined]
        print(f"juggler {args.subcommand}: {detail}", file=sys.stderr)
        return 1
    print(f"{now.info.hostname} ({now.info.id}): {_after(args.verb, now)}")
    return 0


def _state(agent: operator_pb2.AgentView) -> str:
    state = operator_pb2.AgentState.Name(agent.state).removeprefix("AGENT_")
    maintenance = operator_pb2.MaintenanceState.Name(agent.maintenance)
    return state if maintenance == "MAINTENANCE_NONE" else \
        f"{state}, {maintenance.removeprefix('MAINTENANCE_')}"


def _after(verb: str, agent: operator_pb2.AgentView) -> str:
    """What the operator asked for, and how far it has got."""
    away = agent.state != operator_pb2.AGENT_ACTIVE
    state = operator_pb2.AgentState.Name(agent.state).removeprefix("AGENT_")
    if verb == "UpAgent":
        return "maintenance ended; it is offered again" + (
            f" once it is back (it is {state})" if away else "")
    if agent.maintenance == operator_pb2.MAINTENANCE_DOWN:
        return "DOWN: it runs nothing and is not offered"
    what = "DRAINING: not offered; its tasks are being killed, DOWN once it runs nothing"
    return what + (f" (it is {state}: they are killed when it is back)" if away else "")
