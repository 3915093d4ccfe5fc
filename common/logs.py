"""structlog set-up shared by every juggler process.

JSON lines when stderr is not a terminal (for log shippers), a readable
console format when it is. Bind ids (framework_id, agent_id, task_id,
offer_id) with `log.bind(...)` so every line carries them.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog

_configured: tuple[int, bool, object] | None = None  # (level, json, the stderr in use)


def configure(process: str, level: str | None = None, json: bool | None = None) -> None:
    global _configured
    level_name = (level or os.environ.get("JUGGLER_LOG_LEVEL", "info")).upper()
    numeric = getattr(logging, level_name, logging.INFO)
    if json is None:
        json = not sys.stderr.isatty()
    if (_configured is not None and _configured[:2] == (numeric, json)
            and _configured[2] is sys.stderr):
        # Already so (an executor forked from agent/launcher.py's zygote):
        # only the process's own fields change.
        structlog.contextvars.bind_contextvars(process=process, pid=os.getpid())
        return
    _configured = (numeric, json, sys.stderr)
    from juggler.common import secrets
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            secrets.log_processor,  # secret environment values never logged
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(process=process, pid=os.getpid())


def get(name: str, **ids: Any) -> Any:
    """A lazy logger: it takes the configuration in force when it first logs."""
    return structlog.get_logger(component=name, **ids)
