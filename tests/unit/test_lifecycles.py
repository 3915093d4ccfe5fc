"""Every lifecycle's transition table (common/lifecycle.py) agrees with what the
proto files and the modules' docstrings say of it, allows exactly its own
pairs, and is the only way an entity's state changes.

runc's habit: every illegal pair is tried, not a sample of them.
"""

from __future__ import annotations

import ast
import importlib
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from juggler.common import lifecycle, task_states
from juggler.common.lifecycle import InvalidTransition, Lifecycle, new_story
from juggler.master import lifecycles as master_lifecycles
from juggler.v1 import agent_pb2, common_pb2, operator_pb2

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Case:
    life: Lifecycle
    proto: str  # file under proto/juggler/v1/
    enum: object  # the generated enum wrapper
    module: str  # whose docstring carries the table
    # Enum values that are not states of the entity.
    not_states: tuple[int, ...] = ()


def _executor_case() -> list[Case]:
    try:
        executors = importlib.import_module("juggler.agent.executors")
    except ImportError:  # pragma: no cover - until the agent's table exists
        return []
    return [Case(executors.EXECUTOR, "agent.proto", agent_pb2.ExecutorState,
                 "juggler.agent.executors", (agent_pb2.EXECUTOR_STATE_UNSPECIFIED,))]


CASES = [
    Case(task_states.TASK, "common.proto", common_pb2.TaskState, "juggler.common.task_states",
         (common_pb2.TASK_STATE_UNSPECIFIED, common_pb2.TASK_UNKNOWN)),
    Case(master_lifecycles.AGENT, "operator.proto", operator_pb2.AgentState,
         "juggler.master.lifecycles", (operator_pb2.AGENT_STATE_UNSPECIFIED,)),
    Case(master_lifecycles.MAINTENANCE, "operator.proto", operator_pb2.MaintenanceState,
         "juggler.master.lifecycles"),
    Case(master_lifecycles.FRAMEWORK, "operator.proto", operator_pb2.FrameworkState,
         "juggler.master.lifecycles", (operator_pb2.FRAMEWORK_STATE_UNSPECIFIED,)),
    *_executor_case(),
]
IDS = [c.life.kind for c in CASES]


def _enum_comment(proto: str, enum_name: str) -> list[str]:
    """The comment lines right above `enum <enum_name> {`, without '//'."""
    lines = (ROOT / "proto" / "juggler" / "v1" / proto).read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(f"enum {enum_name} {{"))
    comment: list[str] = []
    for line in reversed(lines[:at]):
        if not line.startswith("//"):
            break
        comment.insert(0, line[2:].strip())
    return comment


def _contains_block(text_lines: list[str], block: list[str]) -> bool:
    stripped = [line.strip() for line in text_lines]
    return any(stripped[i:i + len(block)] == block for i in range(len(stripped)))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_proto_comment_carries_the_table(case: Case) -> None:
    comment = _enum_comment(case.proto, case.enum.DESCRIPTOR.name)  # type: ignore[attr-defined]
    assert _contains_block(comment, case.life.lines()), (
        f"{case.proto}, above enum {case.enum.DESCRIPTOR.name}, must list\n"  # type: ignore[attr-defined]
        + "\n".join(case.life.lines()))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_module_docstring_carries_the_table(case: Case) -> None:
    doc = importlib.import_module(case.module).__doc__ or ""
    assert _contains_block(doc.splitlines(), case.life.lines()), (
        f"{case.module}'s docstring must list\n" + "\n".join(case.life.lines()))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_state_of_the_enum_has_a_row(case: Case) -> None:
    values = set(case.enum.values()) - set(case.not_states)  # type: ignore[attr-defined]
    assert set(case.life.table) == values


@dataclass
class _Entity:
    state: int
    story: object = field(default_factory=new_story)
    maintenance: int = 0


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_pair_is_allowed_exactly_when_the_table_says(case: Case) -> None:
    life = case.life
    for current, new in itertools.product(life.table, repeat=2):
        entity = _Entity(state=0)
        life.begin(entity, current, "created", 1.0)
        before = list(entity.story)  # type: ignore[call-overload]
        if new in life.table[current]:
            life.move(entity, "e1", new, "a reason", 2.0)
            assert getattr(entity, life.attr) == new
            last = entity.story[-1]  # type: ignore[index]
            assert (last.source, last.target, last.stimulus, last.kind) == (
                current, new, "a reason", life.kind)
            continue
        with pytest.raises(InvalidTransition) as info:
            life.move(entity, "e1", new, "a reason", 2.0)
        assert getattr(entity, life.attr) == current and list(entity.story) == before  # type: ignore[call-overload]
        message = str(info.value)
        assert f"{life.name(current)} → {life.name(new)} is not allowed" in message
        assert f"story: {life.name(current)} (created)" in message
        assert (info.value.kind, info.value.current, info.value.new) == (life.kind, current, new)


def test_terminal_states_are_those_with_no_way_out() -> None:
    assert task_states.TASK.terminal == task_states.TERMINAL
    assert master_lifecycles.AGENT.terminal == {operator_pb2.AGENT_GONE}
    assert master_lifecycles.FRAMEWORK.terminal == {operator_pb2.FRAMEWORK_TORN_DOWN}
    assert master_lifecycles.MAINTENANCE.terminal == frozenset()


def test_a_story_is_bounded() -> None:
    entity = _Entity(state=0)
    life = master_lifecycles.AGENT
    life.begin(entity, operator_pb2.AGENT_ACTIVE, "registered", 0.0)
    for i in range(lifecycle.STORY_KEPT * 3):
        life.move(entity, "a1", operator_pb2.AGENT_ACTIVE, f"re-registered {i}", float(i))
    assert len(entity.story) == lifecycle.STORY_KEPT  # type: ignore[arg-type]
    assert entity.story[-1].stimulus == f"re-registered {lifecycle.STORY_KEPT * 3 - 1}"  # type: ignore[index]


# -- no state changes behind the tables' backs ------------------------------------

# Attributes that hold a lifecycle's state, and the one function per entity
# allowed to assign them (Lifecycle.move/begin use setattr, not assignment).
STATE_ATTRS = {"state", "maintenance", "executor"}
ALLOWED = {
    ("master/state.py", "_task_move"),  # tasks: the status history is their story
    ("agent/state.py", "_task_move"),
    # Not lifecycle states: the master process's MasterState (`self.state = …`),
    # and copies of a status sent to a framework (LOST for UNREACHABLE, a
    # reconciliation answer).
    ("master/server.py", "__init__"),
    ("master/state.py", "_master_update"),
    ("master/state.py", "_reconcile_status"),
    # An executor's terminal update rewritten as TASK_FAILED for the limit the agent
    # killed its task for (ev.LimitTask); the task's state still moves in _task_move.
    ("agent/state.py", "_executor_update"),
}


def _assignments() -> set[tuple[str, str]]:
    """(file, enclosing function) of every `x.state = …` / `x.maintenance = …`."""
    found: set[tuple[str, str]] = set()
    for folder in ("master", "agent", "common"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            tree = ast.parse(path.read_text())
            for func in ast.walk(tree):
                if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for node in ast.walk(func):
                    targets = (node.targets if isinstance(node, ast.Assign)
                               else [node.target] if isinstance(node, ast.AugAssign | ast.AnnAssign)
                               else [])
                    for t in targets:
                        if isinstance(t, ast.Attribute) and t.attr in STATE_ATTRS:
                            found.add((rel, func.name))
    return found


def test_states_change_only_through_their_lifecycle() -> None:
    stray = sorted(a for a in _assignments() if a not in ALLOWED)
    assert stray == [], "assign states only through a Lifecycle's move (or _task_move)"


def test_the_scan_finds_assignments() -> None:
    """The scan above can fail: it sees the one allowed assignment."""
    assert ("master/state.py", "_task_move") in _assignments()


def test_lifecycle_names_match_the_proto_spelling() -> None:
    for case in CASES:
        for state in case.life.table:
            full = case.enum.Name(state)  # type: ignore[attr-defined]
            assert re.fullmatch(rf"[A-Z_]*{case.life.name(state)}", full), (full, state)
