"""The agent API finds a sandbox by the ids a caller names (Logs, GetUsage, …):
only ids, never a path or a glob pattern of the caller's making."""

from __future__ import annotations

from pathlib import Path

import pytest

from juggler.agent.server import Agent, AgentConfig
from juggler.common.resources import Resources


@pytest.fixture
def agent(tmp_path: Path) -> Agent:
    sandbox = tmp_path / "work" / "frameworks" / "fw-1" / "tasks" / "web.1"
    sandbox.mkdir(parents=True)
    (tmp_path / "work" / "secret").mkdir()
    return Agent(AgentConfig(master="127.0.0.1:1", work_dir=tmp_path / "work",
                             resources=Resources({"cpus": 1, "mem": 64}), metrics_port=-1))


def test_a_sandbox_is_found_by_its_ids(agent: Agent, tmp_path: Path) -> None:
    want = tmp_path / "work" / "frameworks" / "fw-1" / "tasks" / "web.1"
    assert agent.find_sandbox("web.1", "fw-1") == want
    assert agent.find_sandbox("web.1") == want


@pytest.mark.parametrize(("task_id", "framework_id"), [
    ("*", ""), ("web.*", "fw-1"), ("../../secret", ""), ("web.1", "../frameworks/fw-1"),
    ("web.1", "*"), ("[w]eb.1", "fw-1"), ("", "fw-1")])
def test_ids_that_are_paths_or_patterns_find_nothing(agent: Agent, task_id: str,
                                                     framework_id: str) -> None:
    assert agent.find_sandbox(task_id, framework_id) is None
