"""Where the CLI finds the master: --master, $JUGGLER_MASTER, then the file `juggler up` writes."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT = "127.0.0.1:5050"


def state_dir() -> Path:
    return Path(os.environ.get("JUGGLER_HOME") or Path.home() / ".juggler")


def master_file() -> Path:
    return state_dir() / "master"


def resolve(flag: str | None) -> str:
    if flag:
        return flag
    env = os.environ.get("JUGGLER_MASTER")
    if env:
        return env
    try:
        text = master_file().read_text().strip()
    except OSError:
        text = ""
    return text or DEFAULT


def write(address: str) -> Path:
    path = master_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(address + "\n")
    return path


def clear(address: str) -> None:
    """Remove the file if it still names `address` (another `up` may have replaced it)."""
    path = master_file()
    try:
        if path.read_text().strip() == address:
            path.unlink()
    except OSError:
        pass
