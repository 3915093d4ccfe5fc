"""Where the CLI finds the master (--master, $JUGGLER_MASTER, then the file `juggler up`
writes), the apps service and its Docker Engine API (the containers service)."""

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


def write_apps(url: str) -> Path:
    path = apps_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(url + "\n")
    return path


def clear_apps(url: str) -> None:
    """Remove the file if it still names `url` (another `up` may have replaced it)."""
    path = apps_file()
    try:
        if path.read_text().strip() == url:
            path.unlink()
    except OSError:
        pass


# -- the containers service (the apps service's Docker Engine API) -----------------------
# -H/--host, then $JUGGLER_DOCKER, then the file `juggler up` writes, then the
# socket `juggler up` serves by default. Values are Docker's -H forms
# (unix:///path, tcp://host:port).

DEFAULT_DOCKER = "unix:///run/juggler/docker.sock"


def docker_file() -> Path:
    return state_dir() / "docker"


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


def write_docker(url: str) -> Path:
    """`juggler up`: where its Docker API listens (e.g. unix:///run/juggler/docker.sock)."""
    path = docker_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(url + "\n")
    return path


def clear_docker(url: str) -> None:
    """Remove the file if it still names `url` (another `up` may have replaced it)."""
    path = docker_file()
    try:
        if path.read_text().strip() == url:
            path.unlink()
    except OSError:
        pass
