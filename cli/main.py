"""The `juggler` command."""

from __future__ import annotations

import argparse
import sys

from juggler.cli import (
    agents,
    apps,
    attach,
    container_verbs,
    daemons,
    logs,
    ps,
    roles,
    run,
    stats,
    tasks,
    up,
)
from juggler.cli import exec as exec_
from juggler.cli import images as images_cli


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="juggler", description="juggler: a Mesos-style cluster manager.",
        epilog="Start a local cluster with `sudo juggler up`, then `juggler run busybox echo hi` "
               "or `juggler run -- echo hi`.")
    sub = p.add_subparsers(dest="subcommand", metavar="COMMAND")
    up.add_parser(sub)
    run.add_parser(sub)
    ps.add_parser(sub)
    container_verbs.add_parsers(sub)
    images_cli.add_parsers(sub)
    logs.add_parser(sub)
    exec_.add_parser(sub)
    attach.add_parser(sub)
    stats.add_parser(sub)
    tasks.add_parser(sub)
    agents.add_parsers(sub)
    roles.add_parsers(sub)
    apps.add_parsers(sub)
    daemons.add_master_parser(sub)
    daemons.add_agent_parser(sub)
    daemons.add_apps_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if not getattr(args, "func", None):
        p.print_help(sys.stderr)
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
