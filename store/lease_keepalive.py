"""Renewing an etcd lease without gRPC: one POST to etcd's HTTP gateway.

Why: gRPC's asyncio stack shares one completion-queue poller between every
event loop of a process, so a leader whose main loop is busy (ten thousand
agents re-registering) delays the election's keepalive replies too, and loses
its lease under exactly the load it must carry. A plain HTTP request from a
worker thread does not wait for that loop. etcd serves the gateway on its
client URLs (`POST /v3/lease/keepalive`, etcd ≥ 3.4).
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request

from juggler.store.etcd import Endpoint
from juggler.store.interface import StoreError


def tls_context(ca_cert: str | None, cert: str | None, key: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_cert)
    if cert:
        context.load_cert_chain(cert, key)
    return context


def keepalive(endpoints: list[Endpoint], lease_id: int, timeout: float,
              context: ssl.SSLContext | None = None) -> int:
    """Renew `lease_id` once; its TTL as etcd now counts it, 0 if the lease is gone.
    Tries each endpoint in turn; StoreError when none answers."""
    body = json.dumps({"ID": str(lease_id)}).encode()
    errors = []
    for endpoint in endpoints:
        request = urllib.request.Request(f"{endpoint}/v3/lease/keepalive", data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout,
                                        context=context if endpoint.tls else None) as reply:
                result = json.loads(reply.readline() or b"{}").get("result", {})
        except (OSError, urllib.error.URLError, ValueError) as e:
            errors.append(f"{endpoint}: {e}")
            continue
        return int(result.get("TTL", 0))
    raise StoreError("lease keepalive failed: " + "; ".join(errors))
