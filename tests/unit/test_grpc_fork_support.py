"""gRPC's fork handlers are off in every juggler process (juggler/__init__.py):
with them on, a forked child of a process with live channels aborted before its
exec about once in a hundred (CI: `_connect_as_nobody` in test_access_battery
got "Check failed: next_worker->initialized_cv" instead of EACCES)."""

from __future__ import annotations

import os
import subprocess
import sys


def _fresh(code: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "GRPC_ENABLE_FORK_SUPPORT"}
    environ.update(env)
    return subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True,
                           text=True, check=True, timeout=60).stdout.strip()


def test_importing_any_juggler_module_turns_grpc_fork_handlers_off_first() -> None:
    # grpc imported by the juggler module itself, as in every daemon and the CLI.
    out = _fresh("import os, juggler.common.servers, grpc\n"
                 "print(os.environ.get('GRPC_ENABLE_FORK_SUPPORT'))")
    assert out == "false"


def test_an_operator_who_sets_it_is_obeyed() -> None:
    out = _fresh("import os, juggler.common.servers\n"
                 "print(os.environ.get('GRPC_ENABLE_FORK_SUPPORT'))",
                 GRPC_ENABLE_FORK_SUPPORT="true")
    assert out == "true"
