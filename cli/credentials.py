"""The CLI's credentials: the TLS files it dials with and the token its HTTP
clients send, found once at its start (cli/main.py).

Where from, first found wins (as Docker's --tlscacert/DOCKER_CERT_PATH and
Nomad's -ca-cert/NOMAD_CACERT/NOMAD_TOKEN):

- TLS: the global flags `juggler --tls-ca F --tls-cert F --tls-key F COMMAND`
  (all three), then $JUGGLER_TLS_CA, $JUGGLER_TLS_CERT, $JUGGLER_TLS_KEY (all
  three), then $JUGGLER_HOME/tls/{ca.crt,cli.crt,cli.key} when all are there
  (the last `juggler up --tls` writes them and removes them when it exits;
  unused while a newer plain-text up owns the pointers: cli/pointers.py);
  none: plain text.
- Token: `--token T`, then $JUGGLER_TOKEN, then $JUGGLER_HOME/tls/token. Sent
  as `Authorization: Bearer T` to the apps service and the Docker API over TCP
  (the CLI's certificate names it already over HTTPS; the token also serves
  a CLI without one).
"""

from __future__ import annotations

import os
import ssl
import urllib.request
from pathlib import Path

from juggler.cli import home
from juggler.common import tls

GLOBAL_FLAGS = ("--tls-ca", "--tls-cert", "--tls-key", "--token")

_token: str | None = None


def split_global(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """(global flag → value, the rest) of a command line whose global flags
    come before the command ("--tls-ca F" or "--tls-ca=F"). Raises ValueError
    for a flag without its value."""
    found: dict[str, str] = {}
    i = 0
    while i < len(argv):
        word = argv[i]
        name, eq, value = word.partition("=")
        if name not in GLOBAL_FLAGS:
            break
        if not eq:
            if i + 1 >= len(argv):
                raise ValueError(f"{name} needs a value")
            value = argv[i + 1]
            i += 1
        found[name] = value
        i += 1
    return found, argv[i:]


def resolve(flags: dict[str, str], env: dict[str, str] | os._Environ[str],
            tls_dir: Path | None) -> tuple[tls.TLSConfig | None, str | None]:
    """(the TLS configuration, the token) by the rules above (tls_dir None:
    not $JUGGLER_HOME/tls/). Raises
    tls.TLSError when flags or environment give only some of the three files,
    or a file cannot be read."""
    cfg = tls.from_flags(flags.get("--tls-ca"), flags.get("--tls-cert"),
                         flags.get("--tls-key"))
    if cfg is None:
        cfg = _from_env(env)
    if cfg is None and tls_dir is not None:
        files = (tls_dir / "ca.crt", tls_dir / "cli.crt", tls_dir / "cli.key")
        if all(f.is_file() for f in files):
            cfg = tls.TLSConfig(*files)
    token = flags.get("--token") or env.get("JUGGLER_TOKEN") or None
    if token is None and tls_dir is not None:
        try:
            token = (tls_dir / "token").read_text().strip() or None
        except OSError:
            token = None
    return cfg, token


def _from_env(env: dict[str, str] | os._Environ[str]) -> tls.TLSConfig | None:
    try:
        return tls.from_flags(env.get("JUGGLER_TLS_CA"), env.get("JUGGLER_TLS_CERT"),
                              env.get("JUGGLER_TLS_KEY"))
    except tls.TLSError as e:
        raise tls.TLSError(str(e).replace("--tls-ca, --tls-cert and --tls-key",
                                          "JUGGLER_TLS_CA, _CERT and _KEY")) from None


def configure(flags: dict[str, str]) -> None:
    """Set this process's TLS configuration and token. $JUGGLER_HOME/tls/ is
    left out while the newest `juggler up` (the pointers' owner) runs in plain
    text: those files are an older up --tls's. Raises tls.TLSError."""
    global _token
    from juggler.cli import pointers

    tls_dir: Path | None = home.tls_dir()
    if tls_dir is not None and tls_dir.is_dir() and pointers.owner_is_plain():
        tls_dir = None
    cfg, _token = resolve(flags, os.environ, tls_dir)
    tls.configure(cfg)


def token() -> str | None:
    return _token


def auth_headers() -> dict[str, str]:
    """The Authorization header of the CLI's HTTP calls ({} without a token)."""
    return {"Authorization": f"Bearer {_token}"} if _token else {}


def ssl_context() -> ssl.SSLContext | None:
    """The CLI's HTTPS client context (CA, its certificate), None in plain text."""
    cfg = tls.current()
    return tls.client_ssl_context(cfg) if cfg else None


def https_handlers() -> list[urllib.request.BaseHandler]:
    """urllib handlers for HTTPS with the CLI's context ([] in plain text)."""
    ctx = ssl_context()
    return [urllib.request.HTTPSHandler(context=ctx)] if ctx else []


def http_url(host_port: str) -> str:
    """"host:port" → the URL of an HTTP API of this cluster: https:// when the
    CLI speaks TLS."""
    return f"{tls.url_scheme()}://{host_port}"
