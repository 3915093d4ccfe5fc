"""Where the CLI finds the master (--master, $JUGGLER_MASTER, then the file `juggler up`
writes), the apps service and its Docker Engine API (the containers service).

Only readers here: `juggler up` writes and removes the pointer files through
cli/pointers.py, which records whose each one is (an address alone does not say
which cluster wrote it).

The pointers are one cluster's: the last up owns all three, and one run with
--no-apps removes apps and docker while it runs. So a master pointer without
an apps (docker) pointer means that cluster serves none: the readers raise
NotServed rather than fall to a default that may be another cluster's. Flags
and environment variables still win. Before reading a pointer, a reader lets
cli/pointers.py withdraw the records of ups that died without doing so
(`pointers.heal`: /proc reads only, nothing when no up recorded one)."""

from __future__ import annotations

import os
from pathlib import Path

from juggler.cli import pointers
from juggler.cli.home import apps_file, docker_file, master_file, state_dir, write_file
from juggler.common import tls

__all__ = ["apps_file", "docker_file", "master_file", "state_dir"]

DEFAULT = "127.0.0.1:5050"


class NotServed(Exception):
    """The cluster `juggler up` started last runs no apps service (its master
    pointer is there, its apps or docker pointer is not)."""


def _read(path: Path) -> str | None:
    """A pointer's text; None when there is no such file."""
    try:
        return path.read_text().strip()
    except OSError:
        return None


def not_served(names: str) -> str:
    """Why the last up's cluster has no apps service to use, naming the flag
    and variable (`names`, e.g. "-H or $JUGGLER_DOCKER") that pick one."""
    master = _read(master_file()) or "?"
    return (f"the cluster `juggler up` started last ({master}) runs no apps service "
            f"(--no-apps): name one with {names}")


def resolve(flag: str | None) -> str:
    if flag:
        return flag
    env = os.environ.get("JUGGLER_MASTER")
    if env:
        return env
    pointers.heal()
    return _read(master_file()) or DEFAULT


def _write(path: Path, text: str) -> Path:
    return write_file(path, text)


def write(address: str) -> Path:
    """Set $JUGGLER_HOME/master; its path. Whose it is, and when it may be
    removed, is cli/pointers.py's business."""
    return _write(master_file(), address)


# -- the apps service (Marathon's REST API) ---------------------------------------------
# The same order as the master's: --apps, $JUGGLER_APPS, the file `juggler up` writes,
# then Marathon's default port on this host.

DEFAULT_APPS = "http://127.0.0.1:8080"


def _apps_url(text: str) -> str:
    """"host:port" → "http://host:port" (https:// when the CLI speaks TLS); no
    trailing "/". Several,
    comma-separated, each so."""
    urls = []
    for part in text.split(","):
        part = part.strip().rstrip("/")
        if part:
            urls.append(part if "://" in part else f"{tls.url_scheme()}://{part}")
    return ",".join(urls)


def resolve_apps(flag: str | None) -> str:
    """The apps service's base URL: --apps, then $JUGGLER_APPS, then $JUGGLER_HOME/apps,
    then http://127.0.0.1:8080. Raises NotServed when $JUGGLER_HOME/master is
    there and $JUGGLER_HOME/apps is not (that cluster runs --no-apps)."""
    if flag:
        return _apps_url(flag)
    env = os.environ.get("JUGGLER_APPS")
    if env:
        return _apps_url(env)
    pointers.heal()
    text = _read(apps_file())
    if text is None and _read(master_file()) is not None:
        raise NotServed(not_served("--apps or $JUGGLER_APPS"))
    return _apps_url(text or DEFAULT_APPS)


# -- the containers service (the apps service's Docker Engine API) -----------------------
# -H/--host, then $JUGGLER_DOCKER, then the file `juggler up` writes, then the
# socket `juggler up` serves by default. Values are Docker's -H forms
# (unix:///path, tcp://host:port).

DEFAULT_DOCKER = "unix:///run/juggler/docker.sock"


def write_apps(url: str) -> Path:
    """Set $JUGGLER_HOME/apps; its path."""
    return _write(apps_file(), url)


def write_docker(url: str) -> Path:
    """Set $JUGGLER_HOME/docker (e.g. unix:///run/juggler/docker.sock); its path."""
    return _write(docker_file(), url)


def docker_host_source(flag: str | None) -> tuple[str, str]:
    """(the Docker API's address, where it came from: "flag", "env", "file" or
    "default"), or ("", "none") when $JUGGLER_HOME/master is there and
    $JUGGLER_HOME/docker is not (the last up's cluster runs --no-apps)."""
    if flag:
        return flag, "flag"
    env = os.environ.get("JUGGLER_DOCKER")
    if env:
        return env, "env"
    pointers.heal()
    text = _read(docker_file())
    if text:
        return text, "file"
    if text is None and _read(master_file()) is not None:
        return "", "none"
    return DEFAULT_DOCKER, "default"


def docker_host(flag: str | None = None) -> str:
    """The containers service's Docker Engine API: -H, $JUGGLER_DOCKER,
    $JUGGLER_HOME/docker, then unix:///run/juggler/docker.sock ("" when the
    last up's cluster serves none: `docker_host_source`)."""
    return docker_host_source(flag)[0]


def master_named() -> bool:
    """Whether the master was named for this command ($JUGGLER_MASTER) rather
    than found where `juggler up` left it."""
    return bool(os.environ.get("JUGGLER_MASTER"))
