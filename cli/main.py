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
import os
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
    ("token", "add_parser", ("token",)),
)


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line parser: every command's, or only `command`'s when it
    is one (the others are then not imported)."""
    p = argparse.ArgumentParser(
        prog="juggler", description="juggler: a Mesos-style cluster manager.",
        epilog="Start a local cluster with `sudo juggler up`, then `juggler run busybox echo hi` "
               "or `juggler run -- echo hi`. A TLS cluster (`juggler up --tls`): the CLI "
               "uses what that up left in $JUGGLER_HOME/tls/, or `juggler --tls-ca FILE "
               "--tls-cert FILE --tls-key FILE [--token T] COMMAND …` ($JUGGLER_TLS_CA, "
               "_CERT, _KEY, $JUGGLER_TOKEN).")
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
    """The command named in `argv`: its first word (the global options --help
    and --version come alone; the credentials' are taken off before:
    cli/credentials.py)."""
    return argv[0] if argv and not argv[0].startswith("-") else None


def main(argv: list[str] | None = None) -> int:
    from juggler.cli import credentials
    from juggler.common import tls

    argv = sys.argv[1:] if argv is None else argv
    try:
        flags, argv = credentials.split_global(argv)
        # The daemons set theirs from their --tls-* flags (cli/daemons.py) and
        # keep gRPC's log of each failed TLS handshake; the CLI says why itself
        # (common/tls.py explain), so gRPC's C core (imported after this) is quiet.
        if _command(argv) not in ("master", "agent", "apps"):
            os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
            credentials.configure(flags)
    except (ValueError, tls.TLSError) as e:
        print(f"juggler: {e}", file=sys.stderr)
        return 2
    p = parser(_command(argv))
    args = p.parse_args(argv)
    if not getattr(args, "func", None):
        p.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except Exception as e:   # an access refusal no command handled: one line, not a traceback
        message = refusal(e)
        if message is None:
            raise
        print(f"juggler {args.subcommand}: {message}", file=sys.stderr)
        return 1


def refusal(e: BaseException) -> str | None:
    """The line saying why a cluster refused a call, for a gRPC error
    (grpc.RpcError: code(), details()) or an SDK FrameworkError (code,
    message) whose code is PERMISSION_DENIED or UNAUTHENTICATED (the
    refusals of common/access.py, whose message names the rule); None for any
    other error. Raises nothing."""
    code: object = getattr(e, "code", None)
    details: object = getattr(e, "message", "")
    if callable(code):
        try:
            code, details = code(), e.details()  # type: ignore[attr-defined]
        except Exception:
            return None
    name = getattr(code, "name", "")
    if name not in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
        return None
    return str(details or "") or name.lower().replace("_", " ")


if __name__ == "__main__":
    sys.exit(main())
