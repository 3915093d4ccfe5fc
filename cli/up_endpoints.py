"""The endpoints `juggler up` prints once its cluster is ready, after its first
line: each master's gRPC address and HTTP port (web UI, /metrics), each agent's
/metrics (AgentInfo.metrics_address, as the master has it), the apps service's
REST API and /metrics, the Docker Engine API. `lines` is pure."""

from __future__ import annotations


def lines(*, masters: list[str], http: list[str], agents: list[tuple[str, str]],
          apps: list[str], docker: str) -> list[str]:
    """One line per endpoint group, without the "juggler: " prefix.

    `masters`: host:port each (gRPC); `http`: each master's base URL
    ("http://host:port/"), in the same order; `agents`: (hostname,
    metrics host:port or "" when not reported); `apps`: the apps services' base
    URLs ([]: none); `docker`: the Docker API's unix:// URL ("" with no apps).
    Raises nothing."""
    out = []
    for i, (grpc, base) in enumerate(zip(masters, http, strict=True)):
        name = "master" if len(masters) == 1 else f"master-{i + 1}"
        out.append(f"{name} gRPC {grpc}; web UI {base}; metrics {base}metrics")
    for hostname, metrics in sorted(agents):
        where = f"http://{metrics}/metrics" if metrics else "not reported (see its log)"
        out.append(f"agent {hostname} metrics {where}")
    if apps:
        out.append(f"apps service (Marathon's REST API) at {', '.join(apps)}; metrics "
                   f"{', '.join(u + '/metrics' for u in apps)}")
    if docker:
        out.append(f"Docker Engine API at {docker}; for the docker client: "
                   f"export DOCKER_HOST={docker}")
    return out

