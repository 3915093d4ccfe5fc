"""Where the CLI keeps its state: $JUGGLER_HOME (default ~/.juggler) and the
pointer files `juggler up` writes there (master, apps, docker), and the TLS
files of `juggler up --tls` (tls/). Paths and the
rename-writer only: cli/address.py reads the pointers, cli/pointers.py decides
whose they are."""

from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    return Path(os.environ.get("JUGGLER_HOME") or Path.home() / ".juggler")


def master_file() -> Path:
    return state_dir() / "master"


def apps_file() -> Path:
    return state_dir() / "apps"


def docker_file() -> Path:
    return state_dir() / "docker"


def tls_dir() -> Path:
    """The CLI's TLS files and token (cli/credentials.py): ca.crt, cli.crt,
    cli.key, token, written by `juggler up --tls`."""
    return state_dir() / "tls"


def write_file(path: Path, text: str) -> Path:
    """Point `path` at `text`, replacing it by rename (a reader sees the old
    text or the new). Raises OSError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)
    return path
