"""A real, throw-away Prometheus (Debian's `prometheus`) for integration tests.

    with prometheus_server(tmp_path, config) as prom:   # config: the YAML as a dict
        prom.query('sum(up)')                           # /api/v1/query's result list

It listens on a free loopback port, keeps its TSDB and log under `base`, and is
ready when /-/ready says so within a deadline (and the port is its own: another
suite's server may have taken a free port first). Rule files the config names
are read relative to the config, which is written to `base`.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from juggler.testing.processes import terminate
from juggler.testing.waiting import free_port, listens

START_TIMEOUT = 60.0


class PrometheusNotInstalled(RuntimeError):
    pass


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if not path:
        raise PrometheusNotInstalled("prometheus is not installed (Debian/Ubuntu: apt-get "
                                     "install prometheus)")
    return path


@dataclass
class PrometheusServer:
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/PATH: its `data`. Raises AssertionError with Prometheus's
        error (a bad query) or OSError (unreachable)."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            body = json.loads(e.read() or b"{}")
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query now: the vector's samples ({"metric", "value"}),
        a scalar as one sample."""
        data = self.api("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        terminate(self.process)


@contextlib.contextmanager
def prometheus_server(base: Path, config: dict[str, Any]) -> Iterator[PrometheusServer]:
    """Start Prometheus with `config` (written to base/prometheus.yml), its
    TSDB in base/tsdb; yield it ready; stop it. Raises PrometheusNotInstalled,
    or RuntimeError with its log when it does not come up."""
    binary = prometheus_binary()
    base.mkdir(parents=True, exist_ok=True)
    config_path = base / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    log_path = base / "prometheus.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [binary, f"--config.file={config_path}", f"--storage.tsdb.path={base / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = PrometheusServer(port, log_path, process)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not (server.ready() and listens(process.pid, port)):
            if process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {process.returncode}:\n"
                                   f"{server.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"prometheus not ready after {START_TIMEOUT}s:\n"
                                   f"{server.log()}")
            time.sleep(0.05)
        yield server
    finally:
        server.stop()
