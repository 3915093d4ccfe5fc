"""The integration suite's TLS mode: with JUGGLER_TEST_TLS=1 every cluster a
test starts runs with mutual TLS, HTTPS and access rules on, as `juggler up
--tls` makes them (issue 18: "the whole integration suite passes once more with
`juggler up --tls` and rules on"). `.ci/run` runs tests/integration a second
time so.

- One CA per pytest session (`start`, from tests/conftest.py): every cluster
  trusts it, so the test process and every `juggler` CLI it runs speak to all
  of them with one client certificate, principal `admin`, naming 127.0.0.1 and
  localhost (in-process masters and agents serve TLS with it too).
- `juggler_up` (tests/conftest.py) adds `up_flags()`: `--tls --tls-ca-dir`
  this CA; up then issues its components' certificates and writes its default
  rules (cli/up_tls.py) and $JUGGLER_HOME/tls/ for the CLI.
- `Daemons` (testing/daemons.py) starts masters, agents and apps services with
  `daemon_flags(component)`: that component's certificate, the default rules
  of `juggler up --tls` (admin, master and apps may do everything, agents may
  register) and, for HTTP servers, a tokens file naming this session's token.
- The test process: tls.configure(admin), an urllib opener that trusts the CA,
  presents admin's certificate and sends the session's token (a standby apps
  service passes only a token on to its leader), and JUGGLER_TLS_CA/_CERT/_KEY
  in its environment for the CLI processes it starts.
- Tests build HTTP URLs of cluster servers with `url()` (http:// or https://),
  hand `ssl_context()` (None in plain text) to aiohttp or urllib, make Marathon
  clients with `marathon_client()`, and act as a daemon with `as_principal()`.

Without the switch every function here answers for plain text and changes
nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV = "JUGGLER_TEST_TLS"
HOSTS = ("127.0.0.1", "localhost")


def enabled() -> bool:
    """Whether this test run is the TLS one (JUGGLER_TEST_TLS=1)."""
    return os.environ.get(ENV, "") == "1"


@dataclass(frozen=True)
class SessionCA:
    """The session's CA directory (ca.crt, ca.key), the test process's
    (admin's) TLS files, each component's, the rules file, the tokens file and
    the admin token it holds the hash of."""
    directory: Path
    admin: Any          # juggler.common.tls.TLSConfig
    components: dict[str, Any]
    rules: Path
    tokens: Path
    token: str

    def daemon_flags(self, component: str) -> list[str]:
        """The flags of a `juggler master|agent|apps` daemon (component: master,
        agent, apps)."""
        out = [*self.components[component].flags(), "--acls", str(self.rules)]
        if component in ("master", "apps"):
            out += ["--tokens", str(self.tokens)]
        return out


_session: SessionCA | None = None


def start(base: Path) -> SessionCA:
    """Make the session's CA and certificates in `base` and configure this
    process with them (see the module). Raises OSError."""
    global _session
    from juggler.cli import up_tls
    from juggler.common import tls, tokens

    base.mkdir(parents=True, exist_ok=True)
    tls.make_ca(base, name=f"juggler test CA {os.getpid()}")
    admin = tls.issue(base, up_tls.CLI_PRINCIPAL, HOSTS, base)
    components = {c: tls.issue(base, c, HOSTS, base) for c in up_tls.COMPONENTS}
    rules = base / "acls.json"
    rules.write_text(json.dumps(up_tls.default_rules(), indent=2) + "\n")
    tokens_file = base / "tokens.json"
    token = tokens.create(str(tokens_file), up_tls.CLI_PRINCIPAL)
    _session = SessionCA(base, admin, components, rules, tokens_file, token)
    tls.configure(admin)
    os.environ.update(JUGGLER_TLS_CA=str(admin.ca), JUGGLER_TLS_CERT=str(admin.cert),
                      JUGGLER_TLS_KEY=str(admin.key))
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ssl_context()))
    # A standby apps service passes a request on to its leader with its bearer
    # token only (apps/rest_proxy.py): the session's, known to Daemons' services.
    opener.addheaders = [*opener.addheaders, *auth_headers().items()]
    urllib.request.install_opener(opener)
    return _session


def session() -> SessionCA | None:
    """The session's CA, None in plain text."""
    return _session


def scheme() -> str:
    return "https" if _session is not None else "http"


def url(host_port: str) -> str:
    """The URL of a cluster's HTTP server at "host:port" (the apps REST API,
    a master's HTTP port): https:// in the TLS mode."""
    return f"{scheme()}://{host_port}"


def ssl_context() -> ssl.SSLContext | None:
    """A client context trusting the session CA and presenting admin's
    certificate; None in plain text (aiohttp's ssl=None, urllib's default)."""
    if _session is None:
        return None
    from juggler.common import tls

    return tls.client_ssl_context(_session.admin)


def auth_headers() -> dict[str, str]:
    """The Authorization header with the session's admin token ({} in plain
    text). Daemons' HTTP servers know it; a `juggler up` cluster has its own
    token, in $JUGGLER_HOME/tls/token."""
    return {} if _session is None else {"Authorization": f"Bearer {_session.token}"}


@contextlib.contextmanager
def as_principal(component: str) -> Iterator[None]:
    """Within: this process's gRPC calls are made as `component` (master,
    agent, apps: its certificate of the session CA) in the TLS mode; nothing
    changes in plain text."""
    if _session is None:
        yield
        return
    from juggler.common import tls

    previous = tls.current()
    tls.configure(_session.components[component])
    try:
        yield
    finally:
        tls.configure(previous)


def up_flags() -> list[str]:
    """What `juggler up` is given besides a test's flags: --tls with the
    session CA in the TLS mode, else nothing."""
    return [] if _session is None else ["--tls", "--tls-ca-dir", str(_session.directory)]


def daemon_flags(component: str) -> list[str]:
    """SessionCA.daemon_flags in the TLS mode, else nothing."""
    return [] if _session is None else _session.daemon_flags(component)


def marathon_client(url: str) -> Any:
    """A marathon.MarathonClient of the apps service at `url` (admin's
    certificate and the session CA in the TLS mode)."""
    from marathon import MarathonClient

    if _session is None:
        return MarathonClient(url)
    import requests

    session = requests.Session()
    session.cert = (str(_session.admin.cert), str(_session.admin.key))
    return MarathonClient(url, session=session, verify=str(_session.admin.ca),
                          auth_token=_session.token)
