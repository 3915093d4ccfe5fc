"""common/access.py: the rules file, reloads, refusals logged and counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from juggler.common.access import AccessControl, Denied, RulesError

VIEW_ALICE = {"view_cluster": [{"principals": {"values": ["alice"]}}]}


def denied(action: str) -> float:
    return REGISTRY.get_sample_value("juggler_access_denied_total", {"action": action}) or 0.0


def reloads(outcome: str) -> float:
    return REGISTRY.get_sample_value("juggler_access_rules_reloads_total",
                                     {"outcome": outcome}) or 0.0


def test_without_a_file_everything_is_allowed() -> None:
    control = AccessControl.from_file(None)
    assert not control.enabled
    assert control.check("run_tasks", None, "root").allowed
    control.require("view_cluster", None)
    assert control.reload() is False


def test_json_and_yaml_files(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text(json.dumps(VIEW_ALICE))
    (tmp_path / "r.yaml").write_text("permissive: false\nview_cluster:\n"
                                     "  - principals: {values: [alice]}\n")
    for name in ("r.json", "r.yaml"):
        control = AccessControl.from_file(tmp_path / name)
        assert control.check("view_cluster", "alice").allowed
        assert not control.check("view_cluster", "bob").allowed


def test_bad_files_name_the_file_and_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("run_task: []\n")
    with pytest.raises(RulesError, match=f"rules file {bad}: unknown action 'run_task'"):
        AccessControl.from_file(bad)
    with pytest.raises(RulesError, match="No such file"):
        AccessControl.from_file(tmp_path / "missing.json")
    bad.write_text("view_cluster: [\n")
    with pytest.raises(RulesError, match="neither JSON nor YAML"):
        AccessControl.from_file(bad)


def test_a_refusal_is_counted_and_raised_with_its_rule(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(VIEW_ALICE))
    control = AccessControl.from_file(path)
    before = denied("view_cluster")
    with pytest.raises(Denied) as refused:
        control.require("view_cluster", "bob")
    assert refused.value.rule == "permissive: false"
    assert refused.value.message == ("permission denied: no view_cluster rule allows principal "
                                     "'bob' (rule permissive: false)")
    assert denied("view_cluster") == before + 1
    with pytest.raises(Denied):   # a remembered refusal is counted again
        control.require("view_cluster", "bob")
    assert denied("view_cluster") == before + 2
    control.require("view_cluster", "alice")
    assert denied("view_cluster") == before + 2


def test_reload_takes_a_good_file_and_keeps_the_rules_on_a_bad_one(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(VIEW_ALICE))
    control = AccessControl.from_file(path)
    ok, failed = reloads("ok"), reloads("failed")
    # Decided (and remembered: AccessControl.MEMO_SIZE) under the first rules …
    assert control.check("view_cluster", "alice").allowed
    assert not control.check("view_cluster", "bob").allowed
    # … and decided afresh under the new ones.
    path.write_text(json.dumps({"view_cluster": [{"principals": {"values": ["bob"]}}]}))
    assert control.reload() is True
    assert control.check("view_cluster", "bob").allowed
    assert not control.check("view_cluster", "alice").allowed
    path.write_text('{"view_cluster": [{"principals": {"type": "EVERYONE"}}]}')
    assert control.reload() is False
    assert control.check("view_cluster", "bob").allowed  # the previous rules stay
    path.unlink()
    assert control.reload() is False
    assert control.check("view_cluster", "bob").allowed
    assert (reloads("ok"), reloads("failed")) == (ok + 1, failed + 2)
