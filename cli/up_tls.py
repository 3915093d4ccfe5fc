"""`juggler up --tls`: a lab's security in one flag.

In <work-dir>/tls/ (mode 0700):

- ca.crt, ca.key: the cluster's CA, made once and reused by later runs on the
  same work dir (certificates issued before stay valid); `--tls-ca-dir DIR`
  uses an operator's own CA instead (DIR/ca.crt, DIR/ca.key);
- master, agent, apps .crt/.key: one certificate per component, its
  principal the common name, naming 127.0.0.1, localhost and the lab's
  addresses (the masters' bridge address, every lab host's) in its
  subjectAltName, so every dialled name is verified; issued afresh each run;
- cli.crt/cli.key: the CLI's, principal `admin`;
- token, tokens.json: a fresh random admin token for the HTTP APIs (the
  tokens file holds only its sha256: common/tokens.py);
- acls.json: the default rules (`default_rules`) unless `--acls FILE` names
  others: admin, master and apps may do everything; agent may register
  agents; root (and $SUDO_USER), who may open the Docker socket, may use the
  Docker and apps APIs through it.

Every daemon starts with --tls-*, the rules and the tokens file. Once the
cluster is ready, ca.crt, cli.crt, cli.key and token are copied to
$JUGGLER_HOME/tls/, where the CLI finds them (cli/credentials.py); up removes
them when it exits if they are still its own (same CA certificate).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from juggler.cli import home
from juggler.common import tls
from juggler.common.access_rules import ACTIONS

COMPONENTS = ("master", "agent", "apps")
CLI_PRINCIPAL = "admin"
CLI_FILES = ("ca.crt", "cli.crt", "cli.key", "token")



# What the users of the Docker socket may do: the socket names its caller by
# user name (apps/rest_access.py), and whoever may open it is trusted with
# containers, as with Docker's own socket: including what they launch, which
# the apps service checks against its caller (apps/launch_access.py).
SOCKET_ACTIONS = frozenset({"docker_api", "containers_read", "containers_write", "apps_read",
                            "apps_write", "run_tasks", "run_host_network",
                            "run_host_filesystem"})


def default_rules(socket_users: Iterable[str] = ("root",)) -> dict[str, Any]:
    """The rules `juggler up --tls` starts with: deny by default; the CLI's
    principal (admin), the masters and the apps service may do everything;
    agents may register agents (and nothing else); `socket_users` (the users
    who may open the Docker socket) may use the Docker and apps APIs. Pure."""
    rules: dict[str, Any] = {"permissive": False}
    users = list(dict.fromkeys(socket_users))
    for action, key in ACTIONS.items():
        everyone = ["admin", "master", "apps",
                    *(["agent"] if action == "register_agents" else []),
                    *(users if action in SOCKET_ACTIONS else [])]
        entry: dict[str, Any] = {"principals": {"values": everyone}}
        if key is not None:
            entry[key] = {"type": "ANY"}
        rules[action] = [entry]
    return rules


@dataclass(frozen=True)
class UpTLS:
    """What up --tls made: the directory, each component's TLS files, the
    CLI's, the admin token, the tokens and rules files."""
    directory: Path
    components: dict[str, tls.TLSConfig]
    cli: tls.TLSConfig
    token: str
    tokens_file: Path
    rules_file: Path
    published: list[Path] = field(default_factory=list)

    def flags(self, component: str) -> list[str]:
        """The daemon flags of `component` (master, agent, apps)."""
        out = [*self.components[component].flags(), "--acls", str(self.rules_file)]
        if component in ("master", "apps"):
            out += ["--tokens", str(self.tokens_file)]
        return out


def prepare(work: Path, hosts: Iterable[str], ca_dir: str = "", acls: str = "") -> UpTLS:
    """Make <work>/tls/ as the module says (certificates naming `hosts` too).
    Raises OSError, ValueError (a CA directory without ca.crt/ca.key, or not a
    CA key)."""
    from juggler.common import tokens

    directory = Path(work) / "tls"
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    if ca_dir:
        ca = Path(ca_dir).resolve()
        if not ((ca / "ca.crt").is_file() and (ca / "ca.key").is_file()):
            raise ValueError(f"--tls-ca-dir {ca_dir}: needs ca.crt and ca.key")
    else:
        ca = directory
        if not ((ca / "ca.crt").is_file() and (ca / "ca.key").is_file()):
            tls.make_ca(ca)
    names = ["127.0.0.1", "localhost", *hosts]
    components = {c: tls.issue(ca, c, names, directory) for c in COMPONENTS}
    cli = tls.issue(ca, CLI_PRINCIPAL, [], directory, name="cli")
    if ca != directory:   # the CLI's copy of the CA certificate
        shutil.copyfile(ca / "ca.crt", directory / "ca.crt")
    tokens_file = directory / "tokens.json"
    tokens_file.unlink(missing_ok=True)
    token = tokens.create(str(tokens_file), CLI_PRINCIPAL)
    token_file = directory / "token"
    token_file.unlink(missing_ok=True)
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    if acls:
        rules_file = Path(acls).resolve()
    else:
        rules_file = directory / "acls.json"
        users = ["root", *([os.environ["SUDO_USER"]] if os.environ.get("SUDO_USER") else [])]
        rules_file.write_text(json.dumps(default_rules(users), indent=2) + "\n")
    return UpTLS(directory, components, tls.TLSConfig(directory / "ca.crt", cli.cert, cli.key),
                 token, tokens_file, rules_file)


def daemon_flags(made: UpTLS | None, component: str, acls: str, open_host: bool) -> list[str]:
    """The security flags of one of up's daemons: made.flags with TLS; else
    the rules file, if any, and --insecure when it listens on an open address
    (the lab's bridge: plain text there is allowed, as before, but said)."""
    if made is not None:
        return made.flags(component)
    return [*(["--acls", str(Path(acls).resolve())] if acls else []),
            *(["--insecure"] if open_host else [])]


def announcement(made: UpTLS) -> str:
    """Up's line saying that TLS is on."""
    return (f"TLS on: every link is mutual TLS and the HTTP APIs HTTPS, with the CA, "
            f"certificates, rules and tokens in {made.directory}; the CLI uses "
            f"{home.tls_dir()} (principal {CLI_PRINCIPAL})")


def publish(made: UpTLS) -> None:
    """Copy the CLI's files (ca.crt, cli.crt, cli.key, token) to
    $JUGGLER_HOME/tls/ (0700; keys and token 0600). Raises OSError."""
    target = home.tls_dir()
    target.mkdir(parents=True, exist_ok=True)
    os.chmod(target, 0o700)
    for name in CLI_FILES:
        tmp = target / f".{name}.{os.getpid()}"
        shutil.copyfile(made.directory / name, tmp)
        os.chmod(tmp, 0o600 if name in ("cli.key", "token") else 0o644)
        os.replace(tmp, target / name)


def withdraw(made: UpTLS) -> None:
    """Remove the CLI's files from $JUGGLER_HOME/tls/ if they are still this
    up's (its CA certificate and token), as the pointers are. Raises OSError."""
    target = home.tls_dir()
    try:
        ours = ((target / "ca.crt").read_bytes() == (made.directory / "ca.crt").read_bytes()
                and (target / "token").read_text().strip() == made.token)
    except OSError:
        return
    if not ours:
        return
    for name in CLI_FILES:
        (target / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):   # not empty: someone else's files
        target.rmdir()
