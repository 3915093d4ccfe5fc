"""The master's GET /prometheus/targets: Prometheus HTTP service discovery
(format: https://prometheus.io/docs/prometheus/latest/http_sd/, a JSON list
of target groups `{"targets": ["host:port", ...], "labels": {...}}`), pure.

Jobs: "juggler-master" (every master's HTTP port), "juggler-agent" (each
agent's AgentInfo.metrics_address), "juggler-apps" (each framework's
webui_url that serves /metrics: the apps services). A group with no target
is left out, as Prometheus would drop it anyway.

Which apps services are listed (`apps_serving`): a framework registered
with the master (any state but torn down) whose webui_url has answered GET
/metrics with Prometheus text once, as seen by this master process, stays
listed while that framework stays registered, answering or not: a stopped
or hung service must stay a target so that its `up` goes to 0 (and
JugglerAppsNoLeader can fire) rather than vanish from discovery. Only
frameworks not known to serve are probed (again at each request until
one answers); while no leading master answers, those known stay listed.

Standby apps services are not discovered: only the leading apps service
subscribes to the master as the framework, so standbys are no frameworks
and have no webui_url here. The juggler-apps job holds one URL per apps
framework: its leader's, or, once that leader stops answering, the last
leader's (listed, `up` 0) until a new leader re-subscribes with the same
framework id and its own webui_url, which replaces it. Scrape standbys'
REST ports in a static job of your own if you want their metrics.

A master knows the other masters by their gRPC addresses only (the
election's succession). Their HTTP ports are taken to be as far from their
gRPC ports as this master's is from its own: true wherever every master is
started alike (the same --port and --metrics-port on each host, as in the
docker-compose file and the Helm chart; `juggler up --masters N` counts both
up by one per master).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit


def _split(address: str) -> tuple[str, int] | None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host, int(port)


def master_http_addresses(masters: Sequence[str], self_address: str,
                          self_http_port: int) -> list[str]:
    """host:port of each master's HTTP port, from their gRPC addresses (in
    order, without duplicates; an address without a port is skipped)."""
    own = _split(self_address)
    offset = self_http_port - own[1] if own else 0
    addresses = list(masters) if self_address in masters else [*masters, self_address]
    out: list[str] = []
    for address in addresses:
        parts = _split(address)
        if parts is None:
            continue
        host, port = parts
        target = (f"{host}:{self_http_port}" if address == self_address
                  else f"{host}:{port + offset}")
        if 0 < port + offset < 65536 and target not in out:
            out.append(target)
    return out


def url_target(url: str) -> str:
    """host:port of an http(s) URL (the scheme's port when it names none);
    "" for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ""
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ""
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{port or (443 if parts.scheme == 'https' else 80)}"


# A registered framework as discovery sees it: (framework id, webui_url).
Framework = tuple[str, str]


def to_probe(registered: Iterable[Framework], serving: Collection[Framework]) -> list[Framework]:
    """The registered frameworks whose webui_url must be asked for /metrics:
    http(s) URLs not known to serve it (in order, without duplicates)."""
    out: list[Framework] = []
    for one in registered:
        if one not in serving and one not in out and url_target(one[1]):
            out.append(one)
    return out


def apps_serving(registered: Iterable[Framework], serving: Collection[Framework],
                 answered: Collection[Framework]) -> set[Framework]:
    """The frameworks to list (and remember) now: those registered that
    served /metrics before (`serving`, kept whether they answer now or not)
    or answered this time (`answered`); a framework no longer registered, or
    registered with another webui_url, is forgotten."""
    return {one for one in registered if one in serving or one in answered}


def targets(masters: Iterable[str], agents: Iterable[str],
            apps: Iterable[str]) -> list[dict[str, Any]]:
    """The target groups: masters' and agents' host:port, apps services' URLs."""
    groups = []
    for job, found in (("juggler-master", list(masters)), ("juggler-agent", list(agents)),
                       ("juggler-apps", [url_target(u) for u in apps])):
        unique = sorted({t for t in found if t})
        if unique:
            groups.append({"targets": unique, "labels": {"job": job}})
    return groups
