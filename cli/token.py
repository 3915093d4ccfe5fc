"""`juggler token create NAME --tokens FILE`: a new bearer token for the HTTP
APIs (the apps service's REST and Docker APIs, the master's /api/*).

Prints the token once; the file keeps only its sha256 (common/tokens.py).
The daemons read the file at their start and on SIGHUP.
"""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("token", help="make bearer tokens for the HTTP APIs",
                       description="Bearer tokens of the apps service's REST and Docker APIs "
                                   "and the master's /api/*.")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    create = verbs.add_parser("create", help="print a new token; add its hash to FILE",
                              description="Print a new random token for the principal NAME "
                                          "and add its sha256 to the tokens file (created, "
                                          "mode 0600, when missing). Send SIGHUP to the "
                                          "daemons reading the file to take it in.")
    create.add_argument("name", metavar="NAME", help="the principal the token stands for")
    create.add_argument("--tokens", required=True, metavar="FILE", help="the tokens file")
    create.set_defaults(func=create_main)


def create_main(args: argparse.Namespace) -> int:
    from juggler.common.tokens import TokensError, create

    try:
        token = create(args.tokens, args.name)
    except (TokensError, OSError) as e:
        print(f"juggler token: {e}", file=sys.stderr)
        return 1
    print(token)
    return 0
