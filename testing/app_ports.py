"""Helpers for tests of apps with ports against a real cluster: an app that
serves HTTP on its $PORT0 and answers with its own task id, the published
addresses of its tasks as /v2/apps/{id}/tasks shows them, and an HTTP GET.

Reusable on one host (agents on 127.0.0.1: `resolve` maps every hostname
there) and on the multi-host lab (`resolve` maps an agent's hostname to its
address on the lab bridge).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from typing import Any

# GET / answers the task's id; listens on $HTTP_PORT (a container port, on a
# container network) or else $PORT0 (no file written: a task's working
# directory is "/" of the agent when it has no image).
_SERVER = """import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ["MESOS_TASK_ID"].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
port = int(os.environ.get("HTTP_PORT") or os.environ["PORT0"])
http.server.HTTPServer(("0.0.0.0", port), H).serve_forever()
"""


def http_app(app_id: str, instances: int, **extra: Any) -> dict[str, Any]:
    """A Marathon app whose tasks serve HTTP on $PORT0 (host networking, one
    port definition "http" with port 0: any host port) and answer GET / with
    their MESOS_TASK_ID. Needs python3 on the agents (no image). On a
    container network give `env: {"HTTP_PORT": containerPort}` too."""
    d: dict[str, Any] = {
        "id": app_id, "instances": instances, "cpus": 0.1, "mem": 64,
        "cmd": "exec python3 -c '" + _SERVER + "'",
        "portDefinitions": [{"port": 0, "name": "http"}],
        "backoffSeconds": 1, "backoffFactor": 1.0,
        # Marathon's keys only: Marathon's own client reads this app back.
        "upgradeStrategy": {"minimumHealthCapacity": 0, "maximumOverCapacity": 1},
    }
    d.update(extra)
    return d


def get_json(url: str, path: str) -> Any:
    with urllib.request.urlopen(url + path, timeout=10) as r:
        return json.loads(r.read())


def create_app(url: str, definition: dict[str, Any]) -> dict[str, Any]:
    """POST /v2/apps; the answer (raises urllib.error.HTTPError on 4xx/5xx)."""
    req = urllib.request.Request(url + "/v2/apps", data=json.dumps(definition).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def published(url: str, app_id: str) -> list[dict[str, Any]]:
    """The RUNNING tasks of `app_id` as /v2/apps/{id}/tasks shows them
    (each with "host", "ports", "servicePorts", "ipAddresses")."""
    tasks = get_json(url, f"/v2/apps{app_id}/tasks")["tasks"]
    return [t for t in tasks if t["state"] == "TASK_RUNNING"]


def http_get(address: str, port: int, path: str = "/", timeout: float = 5.0) -> str | None:
    """The body of GET http://address:port/path, or None when nothing
    answers (yet)."""
    try:
        with urllib.request.urlopen(f"http://{address}:{port}{path}", timeout=timeout) as r:
            return r.read().decode().strip()
    except OSError:
        return None


def answers(tasks: list[dict[str, Any]], resolve: Callable[[str], str]) -> dict[str, str | None]:
    """task id → what its first published port answers to GET / (None:
    nothing), at resolve(task's host)."""
    return {t["id"]: http_get(resolve(t["host"]), t["ports"][0]) for t in tasks}


def endpoints_text(url: str) -> str:
    """GET /v2/tasks as text/plain (Marathon's load-balancer lines)."""
    req = urllib.request.Request(url + "/v2/tasks", headers={"Accept": "text/plain"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read().decode()
