"""deploy/prometheus: Prometheus's own checker accepts the config and the alert
rules, and `promtool test rules` passes alerts_test.yml, which shows every
alert both firing and staying quiet."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.skip("requires promtool (Debian: apt-get install prometheus)")
    return subprocess.run([tool, *args], cwd=DEPLOY, capture_output=True, text=True,
                          timeout=60)


def test_promtool_accepts_the_config_and_the_rules() -> None:
    rules = promtool("check", "rules", "alerts.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_promtool_test_rules_passes() -> None:
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout, result.stdout


def test_every_alert_is_tested_firing_and_quiet() -> None:
    alerts = {r["alert"] for g in yaml.safe_load((DEPLOY / "alerts.yml").read_text())["groups"]
              for r in g["rules"] if "alert" in r}
    checks = [c for t in yaml.safe_load((DEPLOY / "alerts_test.yml").read_text())["tests"]
              for c in t["alert_rule_test"]]
    firing = {c["alertname"] for c in checks if c["exp_alerts"]}
    quiet = {c["alertname"] for c in checks if not c["exp_alerts"]}
    assert alerts - firing == set(), "alerts never shown firing"
    assert alerts - quiet == set(), "alerts never shown quiet"
    paging = {r["alert"] for g in yaml.safe_load((DEPLOY / "alerts.yml").read_text())["groups"]
              for r in g["rules"] if r.get("labels", {}).get("severity") == "page"}
    # The "things that page".
    assert {"JugglerNoLeader", "JugglerAgentsUnreachable", "JugglerStatusUpdatesStuck",
            "JugglerDeploymentFailed"} <= paging


def test_every_alert_says_what_and_why() -> None:
    for group in yaml.safe_load((DEPLOY / "alerts.yml").read_text())["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("page", "warning"), rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]
            assert len(rule["annotations"]["description"]) > 40, rule["alert"]
