"""`juggler status`: the cluster in one screen — leader, masters, agents,
resources, frameworks, tasks by state, endpoints.

Each master named (--master, $JUGGLER_MASTER or $JUGGLER_HOME/master) is
asked GetLeader on its own (all at once), so the table says which answer and which leads;
the rest comes from the leader's GetState. Endpoints: the masters' HTTP ports
(web UI, /metrics) and the Docker API as `juggler up` recorded them
(cli/pointers.py), each master's labelled with its address (the leader
marked) when there are several; the apps service from its framework's
webui_url (else the record), asked /ping with a short timeout and shown "not
answering" when it does not; each agent's metrics address from the master.

Exit 0 when a leader answers; 1, saying so, when no master answers or none
knows a leader. `summarize` is pure; `render` turns its result into text.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc

from juggler.cli import address as addr
from juggler.cli import operator, pointers
from juggler.common import servers, tls
from juggler.common.leader import SILENT, Answer, Claim, choose_leader, parse_masters
from juggler.common.resources import Resources
from juggler.v1 import common_pb2, operator_pb2, operator_pb2_grpc


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="the cluster in one screen",
                       description="Leader, masters, agents, resources, tasks and endpoints. "
                                   "Exit 0 when a leader answers, 1 when none does.")
    p.add_argument("--master", default=None, help="master address(es) (default: what `up` wrote)")
    p.set_defaults(func=main)


@dataclass(frozen=True)
class MasterSeen:
    """One master as asked directly: `answer` None when it did not answer."""

    address: str
    answer: operator_pb2.GetLeaderResponse | None
    error: str = ""


@dataclass
class Status:
    """What `render` prints. Amounts: cpus in cores, mem and disk in MiB."""

    leader: str
    masters: list[tuple[str, str]]            # (address, "leader"/"standby"/"not answering: …")
    agents: list[tuple[str, ...]]             # hostname, state, maintenance, cpus, mem, metrics
    resources: list[tuple[str, str, str, str]]   # (name, total, used, offered)
    frameworks: Counter[str] = field(default_factory=Counter)
    tasks: Counter[str] = field(default_factory=Counter)
    endpoints: list[tuple[str, str]] = field(default_factory=list)


def leader_of(seen: list[MasterSeen]) -> str:
    """The leader the answering masters name ("" when none names one); a
    master that says it leads wins over what others believe, and a master
    that did not answer is not taken for the leader because others still
    name it (common/leader.py choose_leader). Raises nothing."""
    answers: dict[str, Answer] = {
        m.address: SILENT if m.answer is None else Claim(m.answer.address, m.answer.is_leader)
        for m in seen}
    return choose_leader(answers) or ""


def _name(enum: type, value: int, prefix: str) -> str:
    return enum.Name(value).removeprefix(prefix)  # type: ignore[attr-defined,no-any-return]


def apps_urls(state: operator_pb2.GetStateResponse,
              record: dict[str, object] | None) -> list[str]:
    """The apps services' REST base URLs: the frameworks' webui_url, else what
    `juggler up` recorded. Raises nothing."""
    apps = sorted({f.info.webui_url for f in state.frameworks if f.info.webui_url})
    if not apps and record and record.get("apps"):
        apps = str(record["apps"]).split(",")
    return apps


def summarize(seen: list[MasterSeen], state: operator_pb2.GetStateResponse,
              record: dict[str, object] | None, docker: str,
              silent: frozenset[str] = frozenset()) -> Status:
    """The one-screen view from each master's own answer, the leader's state,
    `juggler up`'s record of this cluster (cli/pointers.py; None: not started by
    an up here), the Docker API address the CLI would use and the apps URLs
    (`apps_urls`) that did not answer. Raises nothing."""
    leader = leader_of(seen)
    masters = []
    for m in seen:
        if m.answer is None:
            masters.append((m.address, f"not answering: {m.error}"))
        else:
            masters.append((m.address, "leader" if m.answer.is_leader
                            or m.address == leader else "standby"))
    total, used, offered = Resources(), Resources(), Resources()
    agents = []
    for a in sorted(state.agents, key=lambda v: v.info.hostname):
        t, u, o = (Resources.from_proto(x) for x in (a.total, a.allocated, a.offered))
        total, used, offered = total + t, used + u, offered + o
        agents.append((a.info.hostname, _name(operator_pb2.AgentState, a.state, "AGENT_"),
                       _name(operator_pb2.MaintenanceState, a.maintenance, "MAINTENANCE_")
                       .replace("NONE", "-"),
                       f"{u.get('cpus'):g}/{t.get('cpus'):g}",
                       f"{u.get('mem'):g}/{t.get('mem'):g}",
                       a.info.metrics_address or "-"))
    resources = [(name, f"{total.get(name):g}", f"{used.get(name):g}", f"{offered.get(name):g}")
                 for name in ("cpus", "mem", "disk")]
    if total.ports:
        resources.append(("ports", str(total.ports.count()), str(used.ports.count()),
                          str(offered.ports.count())))
    frameworks = Counter(_name(operator_pb2.FrameworkState, f.state, "FRAMEWORK_")
                         for f in state.frameworks)
    tasks = Counter(_name(common_pb2.TaskState, t.state, "TASK_") for t in state.tasks)
    endpoints: list[tuple[str, str]] = []
    recorded = [str(e) for e in (record or {}).get("endpoints", [])]  # type: ignore[attr-defined]
    http = [url for url in recorded if url.endswith("/")]   # the masters' HTTP ports, in order
    owners = str((record or {}).get("master", "")).split(",")
    for i, url in enumerate(http):
        label = ""
        if len(http) > 1:   # whose: up gives master i the HTTP port metrics-port + i
            owner = owners[i].strip() if i < len(owners) else "?"
            label = f" ({owner}{', leader' if owner == leader else ''})"
        endpoints += [(f"web UI{label}", url), (f"metrics{label}", url + "metrics")]
    for url in apps_urls(state, record):
        note = " (not answering)" if url in silent else ""
        endpoints += [("apps REST", url + note),
                      ("apps metrics", url.rstrip("/") + "/metrics" + note)]
    if docker:
        endpoints.append(("Docker API", docker))
    return Status(leader, masters, agents, resources, frameworks, tasks, endpoints)


def render(s: Status, width: int = 120) -> str:
    """The screen, as rich lays it out at `width` columns (no colour codes)."""
    from rich.console import Console
    from rich.table import Table

    out = io.StringIO()
    console = Console(file=out, width=width, no_color=True, highlight=False)

    def table(title: str, *columns: str) -> Table:
        t = Table(title=title, title_justify="left", title_style="bold", box=None,
                  show_edge=False, pad_edge=False, padding=(0, 3, 0, 0), header_style="bold")
        for c in columns:
            t.add_column(c, no_wrap=True)
        return t

    console.print(f"leader: {s.leader or 'none'}")
    masters = table("masters", "ADDRESS", "ROLE")
    for row in s.masters:
        masters.add_row(*row)
    console.print(masters)
    agents = table(f"agents ({len(s.agents)})", "HOSTNAME", "STATE", "MAINTENANCE",
                   "CPUS USED/TOTAL", "MEM MiB USED/TOTAL", "METRICS")
    for row in s.agents:
        agents.add_row(*row)
    console.print(agents)
    res = table("resources", "", "TOTAL", "USED", "OFFERED")
    for row in s.resources:
        res.add_row(*row)
    console.print(res)

    def counts(c: Counter[str]) -> str:
        return ", ".join(f"{k} {n}" for k, n in sorted(c.items())) or "none"

    console.print(f"frameworks: {sum(s.frameworks.values())} ({counts(s.frameworks)})")
    console.print(f"tasks: {sum(s.tasks.values())} ({counts(s.tasks)})")
    ends = table("endpoints", "", "")
    ends.show_header = False
    for row in s.endpoints:
        ends.add_row(*row)
    console.print(ends)
    return "".join(line.rstrip() + "\n" for line in out.getvalue().splitlines())


def _ask(address: str) -> MasterSeen:
    try:
        with servers.sync_channel(address) as channel:
            got = operator_pb2_grpc.OperatorStub(channel).GetLeader(
                operator_pb2.GetLeaderRequest(), timeout=3)
        return MasterSeen(address, got)
    except grpc.RpcError as e:
        detail = e.details() or e.code().name  # type: ignore[attr-defined]
        if e.code() == grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
            detail = tls.explain(address) or detail
        return MasterSeen(address, None, detail)


def _answers(url: str) -> bool:
    """Whether the apps service at `url` answers GET /ping within 2 s (any
    HTTP status is an answer)."""
    import urllib.error
    import urllib.request

    from juggler.cli import credentials

    try:
        with urllib.request.urlopen(url.rstrip("/") + "/ping", timeout=2,
                                    context=credentials.ssl_context()):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def main(args: argparse.Namespace) -> int:
    import shutil

    masters = addr.resolve(args.master)
    # All at once: a frozen master costs its 3 s once, not once per master.
    with ThreadPoolExecutor(max_workers=8) as pool:
        seen = list(pool.map(_ask, parse_masters(masters)))
    record = pointers.find(masters)
    leader = leader_of(seen)
    if not leader:
        errors = "; ".join(dict.fromkeys(m.error for m in seen if m.error))
        why = ("no master answers" if all(m.answer is None for m in seen)
               else "no master knows a leader (an election may be under way)")
        gone = ""
        if record is not None and not pointers.alive(record):
            gone = (f"; the `juggler up` that wrote {addr.master_file()} (pid "
                    f"{record.get('pid')}) is gone")
        print(f"juggler status: {why} at {masters}{gone} (start a cluster with "
              "`juggler up`, or name one with --master)"
              + (f": {errors}" if errors and not gone else ""), file=sys.stderr)
        return 1
    try:
        state = operator.call(leader, "GetState", operator_pb2.GetStateRequest())
    except (operator.NoMaster, grpc.RpcError) as e:
        detail = e.details() if isinstance(e, grpc.RpcError) else str(e)  # type: ignore[attr-defined]
        print(f"juggler status: the leader {leader} did not answer GetState: {detail}",
              file=sys.stderr)
        return 1
    docker = str(record.get("docker", "")) if record else ""
    width = shutil.get_terminal_size((120, 40)).columns if sys.stdout.isatty() else 160
    silent = frozenset(u for u in apps_urls(state, record) if not _answers(u))
    sys.stdout.write(render(summarize(seen, state, record, docker, silent), width))
    return 0
