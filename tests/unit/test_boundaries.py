"""Which part of juggler may import which (design.md: decide in pure code, act
in the shell; the master's process does not carry the agent's code).

Two checks: every module's `juggler.*` imports, read from its source, stay
within what its package may use; and the pure cores import nothing that does
I/O (no asyncio, grpc, sockets, subprocesses, files). A third runs the master's
process entry point in a fresh interpreter and looks at what got imported.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# package → the juggler packages its modules may import (besides itself).
MAY_IMPORT = {
    "v1": set(),
    "common": {"v1", "images"},
    "images": {"v1", "common"},
    "store": {"v1", "common"},
    "container": {"v1", "common"},
    "executor": {"v1", "common", "container"},
    "agent": {"v1", "common", "container", "executor", "images"},
    "master": {"v1", "common", "store"},
    "sdk": {"v1", "common"},
    # The apps service is a framework: it reaches the master through the SDK
    # and the store, never the master's, agent's or executor's code.
    "apps": {"v1", "common", "sdk", "store", "images"},
}

# The pure cores: events in, commands out, no I/O.
PURE = [
    "common/lifecycle.py", "common/task_states.py", "common/task_check.py",
    "common/resources.py", "common/attributes.py",
    "master/state.py", "master/agent_book.py", "master/allocator.py", "master/roles.py",
    "master/lifecycles.py", "master/entries.py", "master/commands.py", "master/views.py",
    "agent/status_updates.py",
    "apps/state.py", "apps/plan.py", "apps/instances.py", "apps/constraints.py",
    "apps/commands.py", "apps/views.py", "apps/tasks.py", "apps/definition.py",
    "apps/definition_model.py", "apps/definition_fields.py", "apps/definition_parse.py",
    "apps/definition_render.py", "apps/groups.py",
    "apps/containers.py", "apps/containers_state.py", "apps/container_tasks.py",
    "apps/docker_image_views.py", "apps/docker_views.py", "apps/docker_networks.py",
    "common/published_ports.py", "images/listing.py",
    "images/mirrors.py",
]
IO_MODULES = {"asyncio", "grpc", "socket", "subprocess", "os", "shutil", "threading",
              "aetcd", "pathlib", "select", "signal"}


def _imports(path: Path) -> set[str]:
    """Top-level module names (and juggler.<package>) a file imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _package_of(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if parts[0] == "juggler" and len(parts) > 1 else None


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_packages_import_only_what_they_may(package: str) -> None:
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in _imports(path):
            used = _package_of(name)
            if used is not None and used != package and used not in MAY_IMPORT[package]:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert wrong == [], f"{package}/ may import only {sorted(MAY_IMPORT[package])}"


@pytest.mark.parametrize("module", PURE)
def test_pure_cores_do_no_io(module: str) -> None:
    imported = {name.split(".")[0] for name in _imports(ROOT / module)}
    assert imported & IO_MODULES == set(), f"{module} imports I/O modules"
    shells = {n for n in _imports(ROOT / module) if n.endswith((".server", ".api"))}
    assert shells == set(), f"{module} imports a shell module"


def test_the_checks_can_fail() -> None:
    """The scans see real imports: the master's shell imports grpc."""
    assert "grpc" in _imports(ROOT / "master" / "server.py")
    assert _package_of("juggler.agent.server") == "agent"


def test_the_master_process_loads_no_agent_executor_or_container_code() -> None:
    code = ("import sys, juggler.master.server, juggler.cli.daemons;"
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('juggler.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.split()
    assert "juggler.master.state" in out
    loaded = {m for m in out if _package_of(m) in {"agent", "executor", "container"}}
    assert loaded == set()
