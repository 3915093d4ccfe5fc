"""`juggler ps`: containers, as `docker ps` lists them (the tasks of every framework,
as the master sees them, are `juggler tasks`).

Asks the containers service (GET /containers/json) and prints Docker's table
(cli/container_table.py): `-a` every container, `-l` the latest created, `-n N`
the N latest, `-q` ids only, `--no-trunc`, `-f key=value` filters, `--format`
(`table`, `json`, or a Go template of the fields ID, Image, Command,
CreatedAt, RunningFor, Status, State, Names, Labels, Ports...).
"""

from __future__ import annotations

import argparse
import sys
import time

from juggler.cli import container_table, containers
from juggler.cli.docker_client import DockerError, DockerUnreachable
from juggler.cli.go_format import TemplateError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ps", help="list containers",
                       description="List containers (running ones; -a: all), as docker ps. "
                                   "The cluster's tasks: `juggler tasks`.")
    containers.add_host_flag(p)
    p.add_argument("-a", "--all", action="store_true", help="show every container")
    p.add_argument("-l", "--latest", action="store_true",
                   help="only the latest created container (any state)")
    p.add_argument("-n", "--last", type=int, default=-1, metavar="N",
                   help="only the N latest created containers (any state)")
    p.add_argument("-q", "--quiet", action="store_true", help="only container ids")
    p.add_argument("--no-trunc", action="store_true", help="do not truncate ids and commands")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="id=, name=, status=, label=KEY[=VALUE], exited= (repeatable)")
    p.add_argument("--format", default="", metavar="FORMAT",
                   help="table, json, or a Go template ('table {{.ID}}\\t{{.Names}}', "
                        "'{{.Names}}')")
    p.set_defaults(func=main)


def age(seconds: float) -> str:
    """A short age ("5s", "3m", "2h", "4d"), for juggler's own tables."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def main(args: argparse.Namespace) -> int:
    try:
        filters = container_table.parse_filters(args.filter)
    except container_table.FilterError as e:
        print(e, file=sys.stderr)
        return 1
    limit = args.last if args.last > 0 else (1 if args.latest else -1)
    if args.quiet and args.format:
        print("WARNING: Ignoring custom format, because both --format and --quiet are set.",
              file=sys.stderr)
    docker = containers.client(args.docker_host)
    try:
        listed = docker.list(all=args.all, limit=limit, filters=filters)
    except (DockerError, DockerUnreachable) as e:
        return containers.daemon_failed(e)
    try:
        text = container_table.render(listed, fmt=args.format, quiet=args.quiet,
                                      trunc=not args.no_trunc, now=time.time(),
                                      terminal=sys.stdout.isatty())
    except TemplateError as e:
        print(f"failed to execute template: {e}", file=sys.stderr)
        return 1
    if text:
        print(text)
    return 0
