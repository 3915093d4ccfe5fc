"""Lifecycles: every entity's state changes through one transition table.

design.md rule 2, after dask's `_TRANSITIONS_TABLE` and per-task story: a
`Lifecycle` is a kind of entity ("task", "agent", …), the attribute holding its
state, and a table {state: the states that may follow it}. `move(entity, new,
stimulus, at)` is the only way such a state changes: it checks the table,
appends a `Step` (from, to, why, when) to the entity's `story`, then sets the
attribute. A move the table does not allow raises `InvalidTransition` with the
entity's story, and changes nothing.

A state that may follow itself (ACTIVE → ACTIVE: an agent re-registered over a
new stream) is listed in its own row; a row with no successors is terminal.
`lines()` renders the table one row a line; the proto files carry the same
lines above each lifecycle's enum, and tests/unit/test_lifecycles.py checks
that they agree.

The tables themselves live beside the code that moves the entities:

    common/task_states.py   task        (TaskState, common.proto)
    master/lifecycles.py    agent       (AgentState, operator.proto)
                            maintenance (MaintenanceState, operator.proto)
                            framework   (FrameworkState, operator.proto)
    agent/executors.py      executor    (ExecutorState, agent.proto)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Steps kept per entity: enough to explain the present; an agent that flaps
# for a week must not grow without bound.
STORY_KEPT = 32


@dataclass(frozen=True, slots=True)
class Step:
    """One transition of the lifecycle `kind`: `source` → `target` because of
    `stimulus`, at `at` (seconds since the epoch). `source` is None for the
    entity's first state. (An entity with two lifecycles, an agent's
    connectivity and maintenance, keeps both in one story.)"""

    at: float
    kind: str
    source: int | None
    target: int
    stimulus: str


def new_story() -> deque[Step]:
    return deque(maxlen=STORY_KEPT)


class InvalidTransition(Exception):
    """A move the entity's table does not allow; nothing was changed."""

    def __init__(self, kind: str, entity_id: str, current: int, new: int, message: str) -> None:
        super().__init__(message)
        self.kind, self.entity_id, self.current, self.new = kind, entity_id, current, new


class Lifecycle:
    """One entity kind's transition table.

    `kind` names the entity in errors ("agent"), `attr` is the attribute that
    holds the state ("state", "maintenance"), `name(state)` renders a state
    ("ACTIVE"). Every state the table mentions must be a key of it.
    """

    def __init__(self, kind: str, attr: str, table: Mapping[int, Iterable[int]],
                 name: Callable[[int], str]) -> None:
        self.kind = kind
        self.attr = attr
        self.table: dict[int, frozenset[int]] = {s: frozenset(n) for s, n in table.items()}
        self.name = name
        unknown = {n for nexts in self.table.values() for n in nexts} - set(self.table)
        if unknown:
            raise ValueError(f"{kind}: states {sorted(map(name, unknown))} have no row")

    @property
    def terminal(self) -> frozenset[int]:
        return frozenset(s for s, nexts in self.table.items() if not nexts)

    def allows(self, current: int, new: int) -> bool:
        return new in self.table.get(current, frozenset())

    def check(self, entity_id: str, current: int, new: int,
              story: Iterable[Step] = ()) -> None:
        """Raise InvalidTransition unless `current → new` is in the table."""
        if not self.allows(current, new):
            raise self._invalid(entity_id, current, new, story)

    def begin(self, entity: Any, state: int, stimulus: str, at: float) -> None:
        """Give a new entity its first state (a Step from None)."""
        if state not in self.table:
            raise ValueError(f"{self.kind}: {state} is not a state of its lifecycle")
        setattr(entity, self.attr, state)
        entity.story.append(Step(at, self.kind, None, state, stimulus))

    def move(self, entity: Any, entity_id: str, new: int, stimulus: str, at: float) -> None:
        """The one way `entity.<attr>` changes: checked, then recorded in its story."""
        current = getattr(entity, self.attr)
        if not self.allows(current, new):
            raise self._invalid(entity_id, current, new, entity.story)
        entity.story.append(Step(at, self.kind, current, new, stimulus))
        setattr(entity, self.attr, new)

    def _invalid(self, entity_id: str, current: int, new: int,
                 story: Iterable[Step]) -> InvalidTransition:
        told = "; ".join(self.tell(step) for step in story) or "empty"
        return InvalidTransition(
            self.kind, entity_id, current, new,
            f"{self.kind} {entity_id!r}: {self.name(current)} → {self.name(new)} is not allowed "
            f"(story: {told})")

    def tell(self, step: Step) -> str:
        """A step as a person reads it: "DISCONNECTED → ACTIVE (re-registered)"."""
        source = "" if step.source is None else f"{self.name(step.source)} → "
        return f"{source}{self.name(step.target)} ({step.stimulus})"

    def lines(self) -> list[str]:
        """The table, one non-terminal state a line in numeric order, then the
        terminal ones; "any terminal" stands for all of them (when there are
        more than two):

            ACTIVE       → ACTIVE, DISCONNECTED, UNREACHABLE
            UNREACHABLE  → ACTIVE, GONE
            terminal: GONE
        """
        terminal = self.terminal
        live = sorted(s for s in self.table if s not in terminal)
        width = max(len(self.name(s)) for s in live) if live else 0
        out = []
        for state in live:
            nexts = self.table[state]
            names = [self.name(n) for n in sorted(nexts - terminal)]
            if len(terminal) > 2 and terminal <= nexts:
                names.append("any terminal")
            else:
                names += [self.name(n) for n in sorted(nexts & terminal)]
            out.append(f"{self.name(state).ljust(width)} → {', '.join(names)}")
        if terminal:
            out.append("terminal: " + ", ".join(self.name(s) for s in sorted(terminal)))
        return out
