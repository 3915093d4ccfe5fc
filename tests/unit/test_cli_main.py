"""The `juggler` command imports only the module of the command it runs, so
each module's entry in cli/main.py's MODULES must list exactly the commands
that module registers: a command missing there would vanish from the CLI."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import subprocess
import sys

import pytest

from juggler.cli import main


def _registered(module: str, register: str) -> set[str]:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers()
    getattr(importlib.import_module(f"juggler.cli.{module}"), register)(sub)
    return set(sub.choices)


def test_every_module_registers_the_commands_main_lists() -> None:
    for module, register, commands in main.MODULES:
        assert _registered(module, register) == set(commands), module


def test_a_command_parses_with_only_its_module_imported() -> None:
    code = ("import sys; from juggler.cli import main; main.parser('ps');"
            "print(sorted(m for m in sys.modules if m.startswith('juggler.cli.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "juggler.cli.daemons" not in out and "juggler.cli.apps" not in out
    assert "juggler.cli.ps" in out


def test_version_names_the_installed_distribution(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"juggler {importlib.metadata.version('juggler')}\n"


def test_access_refusals_are_one_line_other_errors_are_not_refusals() -> None:
    import grpc

    from juggler.cli import operator, up_children
    from juggler.sdk import FrameworkError

    rule = "permission denied: no view_cluster rule allows principal 'bob' (rule permissive: false)"
    assert main.refusal(operator.Refused(grpc.StatusCode.PERMISSION_DENIED, rule)) == rule
    assert str(operator.Refused(grpc.StatusCode.PERMISSION_DENIED, rule)) == rule
    assert main.refusal(FrameworkError(grpc.StatusCode.UNAUTHENTICATED, "")) == "unauthenticated"
    assert main.refusal(FrameworkError(grpc.StatusCode.UNAVAILABLE, "down")) is None
    assert main.refusal(ValueError("x")) is None
    # SIGHUP to up reaches the daemons that reload rules, never etcd, and none without rules.
    names = ["etcd", "master-1", "master-2", "agent-1", "apps-1"]
    assert up_children.reload_targets(names, rules_on=True) == [1, 2, 3, 4]
    assert up_children.reload_targets(names, rules_on=False) == []
