"""Access control of a daemon: its rules file, reloads, refusals logged and counted.

The decisions are common/access_rules.py's (pure); this module reads the file
(`--acls FILE`, Mesos's flag name; JSON or YAML), reloads it on SIGHUP, logs
each refusal (event "access denied": action, principal, object, rule) and
counts it in `juggler_access_denied_total{action}`.

Without a rules file every check allows (Mesos without ACLs). A reload that
finds the file missing or bad keeps the rules in force, logs why ("access
rules not reloaded") and counts it in
`juggler_access_rules_reloads_total{outcome="failed"}` (outcome="ok" for a
good one): a typo must never open or close a cluster.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import Counter

from juggler.common import logs
from juggler.common.access_rules import Decision, Rules, RulesError, parse

__all__ = ["AccessControl", "Decision", "Denied", "RulesError", "install_sighup"]

log = logs.get("juggler.access")

DENIED = Counter("juggler_access_denied_total", "Calls refused by the access rules, by action",
                 ["action"])
RELOADS = Counter("juggler_access_rules_reloads_total",
                  "Reloads of the access rules file (SIGHUP), by outcome (ok, failed: the "
                  "previous rules stay in force)", ["outcome"])

_OPEN = Decision(True, "no rules file")


class Denied(Exception):
    """A refusal: `message` is "permission denied: … (rule …)"."""

    def __init__(self, action: str, principal: str | None, obj: str | None, rule: str,
                 message: str) -> None:
        super().__init__(message)
        self.action, self.principal, self.obj = action, principal, obj
        self.rule, self.message = rule, message


def read_rules(path: Path) -> Rules:
    """The rules of the file at `path` (JSON, or YAML — JSON is YAML too, but
    JSON is tried first for its clearer errors). Raises RulesError naming the
    file for one missing, unreadable or malformed."""
    try:
        text = path.read_text()
    except OSError as e:
        raise RulesError(f"rules file {path}: {e.strerror or e}") from None
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise RulesError(f"rules file {path}: neither JSON nor YAML: {e}") from None
    try:
        return parse(data)
    except RulesError as e:
        raise RulesError(f"rules file {path}: {e}") from None


class AccessControl:
    """The rules in force in one process (None: no rules file, all allowed)."""

    # Decisions remembered per (action, principal, object) for the rules in
    # force: a master checks run_tasks for each of thousands of tasks of one
    # user. Forgotten when the rules change, and all at once past this many.
    MEMO_SIZE = 4096

    def __init__(self, rules: Rules | None = None, path: Path | None = None) -> None:
        self.path = path
        self._memo: dict[tuple[str, str | None, str | None], Decision] = {}
        self.rules = rules

    @property
    def rules(self) -> Rules | None:
        return self._rules

    @rules.setter
    def rules(self, rules: Rules | None) -> None:
        self._rules = rules
        self._memo = {}

    @classmethod
    def from_file(cls, path: str | Path | None) -> AccessControl:
        """The rules of `path`; everything allowed for None or "". Raises
        RulesError (naming the file and the bad key or entry)."""
        if not path:
            return cls()
        p = Path(path)
        return cls(read_rules(p), p)

    @property
    def enabled(self) -> bool:
        return self.rules is not None

    def reload(self) -> bool:
        """Re-read the rules file (SIGHUP). True when the new rules are in
        force; False when there is no file to read, or it is bad: then the
        previous rules stay, and the failure is logged and counted."""
        if self.path is None:
            return False
        try:
            rules = read_rules(self.path)
        except RulesError as e:
            RELOADS.labels(outcome="failed").inc()
            log.error("access rules not reloaded; the previous rules stay in force",
                      error=str(e))
            return False
        self.rules = rules
        RELOADS.labels(outcome="ok").inc()
        log.info("access rules reloaded", path=str(self.path))
        return True

    def check(self, action: str, principal: str | None, obj: str | None = None) -> Decision:
        """The rules' decision (allowed without a rules file); a refusal is
        logged and counted. Raises KeyError/ValueError as Rules.check does
        (an unknown action, a missing object: bugs of the caller)."""
        if self._rules is None:
            return _OPEN
        key = (action, principal, obj)
        decision = self._memo.get(key)
        if decision is None:
            decision = self._rules.check(action, principal, obj)
            if len(self._memo) >= self.MEMO_SIZE:
                self._memo = {}
            self._memo[key] = decision
        if not decision.allowed:
            DENIED.labels(action=action).inc()
            log.warning("access denied", action=action, principal=principal, object=obj,
                        rule=decision.rule)
        return decision

    def require(self, action: str, principal: str | None, obj: str | None = None) -> None:
        """check(), raising Denied for a refusal."""
        decision = self.check(action, principal, obj)
        if not decision.allowed:
            raise Denied(action, principal, obj, decision.rule, decision.message)


def install_sighup(*reloads: Callable[[], object]) -> None:
    """Call each of `reloads` (AccessControl.reload, Tokens.reload, …) on
    SIGHUP, on the running asyncio loop (so they run between calls, never in
    the middle of one). Replaces any SIGHUP handler of that loop. Raises
    RuntimeError when no loop runs (asyncio's own error)."""
    loop = asyncio.get_running_loop()

    def reload_all() -> None:
        for reload in reloads:
            try:
                reload()
            except Exception:  # a bug in one must not stop the others
                log.exception("reload on SIGHUP failed", reload=getattr(reload, "__qualname__",
                                                                        repr(reload)))

    loop.add_signal_handler(signal.SIGHUP, reload_all)
