"""Where the CLI finds the master (--master, $JUGGLER_MASTER, then the file `juggler up`
writes), the apps service and its Docker Engine API (the containers service).

Only readers here: `juggler up` writes and removes the pointer files through
cli/pointers.py, which records whose each one is (an address alone does not say
which cluster wrote it)."""

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


def _write(path: Path, text: str) -> Path:
    """Point `path` at `text`, replacing it by rename (a reader sees the old
    text or the new). Raises OSError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)
    return path


def write(address: str) -> Path:
    """Set $JUGGLER_HOME/master; its path. Whose it is, and when it may be
    removed, is cli/pointers.py's business."""
    return _write(master_file(), address)


# -- the apps service (Marathon's REST API) ---------------------------------------------
# The same order as the master's: --apps, $JUGGLER_APPS, the file `juggler up` writes,
# then Marathon's default port on this host.

DEFAULT_APPS = "http://127.0.0.1:8080"


def apps_file() -> Path:
    return state_dir() / "apps"


def _apps_url(text: str) -> str:
    """"host:port" → "http://host:port"; no trailing "/". Several,
    comma-separated, each so."""
    urls = []
    for part in text.split(","):
        part = part.strip().rstrip("/")
        if part:
            urls.append(part if "://" in part else f"http://{part}")
    return ",".join(urls)


def resolve_apps(flag: str | None) -> str:
    """The apps service's base URL: --apps, then $JUGGLER_APPS, then $JUGGLER_HOME/apps,
    then http://127.0.0.1:8080."""
    if flag:
        return _apps_url(flag)
    env = os.environ.get("JUGGLER_APPS")
    if env:
        return _apps_url(env)
    try:
        text = apps_file().read_text().strip()
    except OSError:
        text = ""
    return _apps_url(text or DEFAULT_APPS)


# -- the containers service (the apps service's Docker Engine API) -----------------------
# -H/--host, then $JUGGLER_DOCKER, then the file `juggler up` writes, then the
# socket `juggler up` serves by default. Values are Docker's -H forms
# (unix:///path, tcp://host:port).

DEFAULT_DOCKER = "unix:///run/juggler/docker.sock"


def docker_file() -> Path:
    return state_dir() / "docker"


def write_apps(url: str) -> Path:
    """Set $JUGGLER_HOME/apps; its path."""
    return _write(apps_file(), url)


def write_docker(url: str) -> Path:
    """Set $JUGGLER_HOME/docker (e.g. unix:///run/juggler/docker.sock); its path."""
    return _write(docker_file(), url)


def docker_host_source(flag: str | None) -> tuple[str, str]:
    """(the Docker API's address, where it came from: "flag", "env", "file" or
    "default")."""
    if flag:
        return flag, "flag"
    env = os.environ.get("JUGGLER_DOCKER")
    if env:
        return env, "env"
    try:
        text = docker_file().read_text().strip()
    except OSError:
        text = ""
    if text:
        return text, "file"
    return DEFAULT_DOCKER, "default"


def docker_host(flag: str | None = None) -> str:
    """The containers service's Docker Engine API: -H, $JUGGLER_DOCKER,
    $JUGGLER_HOME/docker, then unix:///run/juggler/docker.sock."""
    return docker_host_source(flag)[0]


def master_named() -> bool:
    """Whether the master was named for this command ($JUGGLER_MASTER) rather
    than found where `juggler up` left it."""
    return bool(os.environ.get("JUGGLER_MASTER"))
