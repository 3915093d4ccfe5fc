"""Who is calling: the principal of a gRPC or HTTP request.

- gRPC (TLS on, client certificates required: common/tls.py): the common
  name of the peer's verified certificate, as gRPC's auth context reports it.
  A plain-text server has no principal (None): access rules then see an
  anonymous caller (common/access.py).
- HTTP: a verified client certificate's common name when the client presented
  one (the HTTPS servers verify certificates when presented:
  tls.server_ssl_context), else a token: `Authorization: Bearer T` (RFC 6750)
  or Marathon/DC/OS's `Authorization: token=T`, mapped to its principal by the
  caller's `lookup_token` (common/tokens.py holds the tokens file).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc


def grpc_principal(context: grpc.ServicerContext | grpc.aio.ServicerContext) -> str | None:
    """The verified peer certificate's common name; None on a plain-text
    server or a peer without one. Raises nothing."""
    try:
        auth = context.auth_context() or {}
    except Exception:  # a context without auth is anonymous
        return None
    if auth.get("transport_security_type") != [b"ssl"]:
        return None
    names = auth.get("x509_common_name") or []
    return names[0].decode() if names else None


def _cert_common_name(peercert: dict[str, Any] | None) -> str | None:
    """The commonName in an ssl.SSLSocket.getpeercert() dict; None without one."""
    for rdn in (peercert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def token_of(authorization: str) -> str | None:
    """The token in an Authorization header's value: `Bearer T` (RFC 6750,
    scheme case-insensitive) or `token=T` (Marathon, DC/OS); None otherwise."""
    value = authorization.strip()
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "bearer" and rest.strip():
        return rest.strip()
    if value.startswith("token="):
        return value[len("token="):].strip() or None
    return None


def http_principal(request: Any, lookup_token: Callable[[str], str | None]) -> str | None:
    """The principal of an aiohttp request: its verified client certificate's
    common name, else the principal `lookup_token` gives its Authorization
    token; None for neither (or an unknown token). Raises nothing but what
    lookup_token raises."""
    transport = getattr(request, "transport", None)
    if transport is not None:
        ssl_object = transport.get_extra_info("ssl_object")
        cert = None
        if ssl_object is not None:
            try:
                cert = ssl_object.getpeercert()
            except ValueError:   # handshake not done
                cert = None
        name = _cert_common_name(cert or transport.get_extra_info("peercert"))
        if name:
            return name
    token = token_of(request.headers.get("Authorization", ""))
    return lookup_token(token) if token else None
