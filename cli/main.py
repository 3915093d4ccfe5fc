"""The `juggler` command.

Each command's module is imported only when that command runs: a `juggler
ps` or `juggler run --rm IMAGE true` does not pay for importing the daemons,
the apps client and every gRPC stub (about 0.4 s of the CLI's start on this
machine). `juggler --help` and an unknown command build the whole parser.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys

# module → (how it registers its parsers, the commands it registers), in --help order.
MODULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("up", "add_parser", ("up",)),
    ("status", "add_parser", ("status",)),
    ("run", "add_parser", ("run",)),
    ("ps", "add_parser", ("ps",)),
    ("container_verbs", "add_parsers",
     ("create", "start", "stop", "restart", "kill", "rm", "rename", "wait", "inspect", "top")),
    ("images", "add_parsers", ("pull", "images", "rmi", "image")),
    ("logs", "add_parser", ("logs",)),
    ("exec", "add_parser", ("exec",)),
    ("attach", "add_parser", ("attach",)),
    ("stats", "add_parser", ("stats",)),
    ("tasks", "add_parser", ("tasks",)),
    ("agents", "add_parsers", ("agents", "drain", "undrain")),
    ("roles", "add_parsers", ("roles", "weights", "quota")),
    ("apps", "add_parsers", ("app", "deployments")),
    ("daemons", "add_master_parser", ("master",)),
    ("daemons", "add_agent_parser", ("agent",)),
    ("daemons", "add_apps_parser", ("apps",)),
)


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line parser: every command's, or only `command`'s when it
    is one (the others are then not imported)."""
    p = argparse.ArgumentParser(
        prog="juggler", description="juggler: a Mesos-style cluster manager.",
        epilog="Start a local cluster with `sudo juggler up`, then `juggler run busybox echo hi` "
               "or `juggler run -- echo hi`.")
    sub = p.add_subparsers(dest="subcommand", metavar="COMMAND")
    known = any(command in commands for _, _, commands in MODULES)
    if not known:   # reading the installed version costs a command's start nothing
        p.add_argument("--version", action="version",
                       version=f"juggler {importlib.metadata.version('juggler')}")
    for module, register, commands in MODULES:
        if known and command not in commands:
            continue
        getattr(importlib.import_module(f"juggler.cli.{module}"), register)(sub)
    return p


def _command(argv: list[str]) -> str | None:
    """The command named in `argv`: its first word (the only global options,
    --help and --version, come alone)."""
    return argv[0] if argv and not argv[0].startswith("-") else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = parser(_command(argv))
    args = p.parse_args(argv)
    if not getattr(args, "func", None):
        p.print_help(sys.stderr)
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
