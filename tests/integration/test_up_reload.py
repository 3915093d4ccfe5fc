"""SIGHUP to `juggler up` (issue 18): the cluster keeps running, every daemon
it started reads its rules file again, and a call the new rules refuse is
refused — in one line naming the rule, without a traceback."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from juggler.cli import up_tls
from tests.conftest import free_ports, juggler_up, needs_root, wait_for


def _children(pid: int) -> set[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(p) for p in text.split()}


def _juggler(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("JUGGLER_TLS_", "JUGGLER_TOKEN", "JUGGLER_MASTER"))}
    return subprocess.run([sys.executable, "-m", "juggler.cli.main", *args],
                          capture_output=True, text=True, timeout=60,
                          env={**clean, "JUGGLER_HOME": str(home)})


def _bad_token(url: str, ca: Path) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": "Bearer not-a-token"})
    try:
        urllib.request.urlopen(request, timeout=10, context=ssl.create_default_context(
            cafile=str(ca)))
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    raise AssertionError(f"{url} took a bad token")


def test_sighup_to_up_reloads_the_rules_and_keeps_the_cluster(tmp_path: Path) -> None:
    needs_root()
    rules = up_tls.default_rules(["root"])
    acls = tmp_path / "acls.json"
    acls.write_text(json.dumps(rules))
    home = tmp_path / "home"
    port, http, apps = free_ports(1, 1, 1)
    flags = ["--tls", "--acls", str(acls), "--work-dir", str(tmp_path / "work"),
             "--port", str(port), "--metrics-port", str(http),
             "--apps-port", str(apps), "--docker-socket", str(tmp_path / "docker.sock")]
    with juggler_up(*flags, home=home) as (up, _):
        daemons = _children(up.pid)
        assert len(daemons) == 3   # master, agent, apps service
        assert _juggler("agents", home=home).returncode == 0
        # A bad token is told so, and how to get a good one (no rule: none applies).
        for url in (f"https://127.0.0.1:{apps}/v2/apps", f"https://127.0.0.1:{http}/api/state"):
            status, body = _bad_token(url, home / "tls" / "ca.crt")
            assert status == 401 and "the token is not valid" in body, body
            assert "juggler token create" in body and "rule" not in body, body
        # The CLI's principal (admin) may no longer view the cluster.
        rules["view_cluster"] = [{"principals": {"values": ["master", "apps"]}}]
        acls.write_text(json.dumps(rules))
        up.send_signal(signal.SIGHUP)
        refused = wait_for(lambda: (r := _juggler("agents", home=home)).returncode != 0 and r,
                           timeout=30, what="the new rule refusing `juggler agents`")
        assert refused.returncode == 1
        assert "permission denied" in refused.stderr and "view_cluster" in refused.stderr
        assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
        # A task the SDK launches (--secret-env) is refused as well, in one line.
        run = _juggler("run", "--secret-env", "X=1", "--", "true", home=home)
        assert run.returncode == 1, run.stderr
        assert "permission denied" in run.stderr and "(rule " in run.stderr, run.stderr
        assert "Traceback" not in run.stderr, run.stderr
        # Nothing stopped or was started again: the same daemons (so their
        # executors are theirs still), up running.
        assert up.poll() is None
        assert _children(up.pid) == daemons
    assert up.stderr is not None
    assert "SIGHUP: master, agent-1, apps reload their rules" in up.stderr.read()
