"""Revoking a dead master's election lease at once, from a process that outlives it.

A leader killed with SIGKILL (or crashing) leaves its lease to expire: the TTL
plus etcd's expiry sweep (every 0.5 s), 2 to 2.5 s with a 2 s TTL, during which
no master leads. But a process that dies closes its file descriptors. The
master starts this small companion with a pipe on its stdin; the companion
reads end-of-file exactly when the master is gone, and revokes the master's
leases then, so the next candidate is elected within milliseconds.

Why this is safe: end-of-file means the master process has exited. It alone
holds the pipe's write end, and the end is close-on-exec, so no child keeps it
open. A dead master cannot act as leader any more. Its writes still in flight
are fenced as always (store/etcd.py). A master that is paused, or cut off from
etcd, keeps the pipe open: its lease expires after the TTL, as before. A lost
host takes the companion with it: again, the TTL.

Protocol on stdin, one line each: `+<lease id, hex>` (a lease granted, before
anything is bound to it), `-<lease id, hex>` (the master revoked it itself).
On end-of-file: revoke every lease still held, through etcd's HTTP gateway
(`POST /v3/lease/revoke`), then exit. SIGINT, SIGTERM and SIGHUP are ignored: a
signal meant for the master alone must not end the companion first; it also
runs in a session of its own, out of reach of the master's process group.

The companion imports no gRPC and no aetcd: it starts in tens of
milliseconds and holds a few MiB while it waits.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence

REVOKE_TIMEOUT = 2.0  # per endpoint


def revoke(endpoints: Sequence[str], lease_id: int, context: ssl.SSLContext | None,
           timeout: float = REVOKE_TIMEOUT) -> str:
    """Revoke `lease_id` through the first endpoint that answers; what happened, in words."""
    body = json.dumps({"ID": str(lease_id)}).encode()
    errors = []
    for endpoint in endpoints:
        request = urllib.request.Request(f"{endpoint}/v3/lease/revoke", data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(
                    request, timeout=timeout,
                    context=context if endpoint.startswith("https:") else None) as reply:
                reply.read()
            return f"revoked through {endpoint}"
        except urllib.error.HTTPError as e:
            # etcd answers a lease it no longer has (expired, revoked) with an error body.
            detail = e.read().decode(errors="replace")
            if "requested lease not found" in detail:
                return "already gone"
            errors.append(f"{endpoint}: HTTP {e.code} {detail.strip()}")
        except (OSError, ValueError) as e:
            errors.append(f"{endpoint}: {e}")
    return "not revoked (it will expire): " + "; ".join(errors)


def serve(lines: Iterable[str], endpoints: Sequence[str],
          context: ssl.SSLContext | None) -> dict[int, str]:
    """Track leases from `lines` until they end; then revoke what is held. Returns the outcomes."""
    held: set[int] = set()
    for line in lines:
        line = line.strip()
        try:
            lease = int(line[1:], 16)
        except ValueError:
            continue  # not ours: the end-of-file must still be waited for
        if line[:1] == "+":
            held.add(lease)
        elif line[:1] == "-":
            held.discard(lease)
    return {lease: revoke(endpoints, lease, context) for lease in sorted(held)}


def main(argv: Sequence[str] | None = None) -> int:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    p = argparse.ArgumentParser(prog="juggler-lease-reaper")
    p.add_argument("--endpoint", action="append", required=True)
    p.add_argument("--ca-cert")
    p.add_argument("--cert")
    p.add_argument("--key")
    args = p.parse_args(argv)
    print("ready", flush=True)  # signals are ignored from here on
    context = None
    if any(e.startswith("https:") for e in args.endpoint):
        context = ssl.create_default_context(cafile=args.ca_cert)
        if args.cert:
            context.load_cert_chain(args.cert, args.key)
    for lease, outcome in serve(sys.stdin, args.endpoint, context).items():
        # The master's log is gone with it; the companion's lines go to the same stderr.
        print(json.dumps({"event": "master exited; election lease " + outcome,
                          "lease": hex(lease), "logger": "lease-reaper"}),
              file=sys.stderr, flush=True)
    return 0


class LeaseReaper:
    """The master's side: starts the companion and tells it of every lease."""

    def __init__(self, endpoints: Sequence[str], *, ca_cert: str | None = None,
                 cert: str | None = None, key: str | None = None) -> None:
        command = [sys.executable, "-m", "juggler.store.lease_reaper"]
        for endpoint in endpoints:
            command += ["--endpoint", endpoint]
        for flag, value in (("--ca-cert", ca_cert), ("--cert", cert), ("--key", key)):
            if value:
                command += [flag, value]
        self._lock = threading.Lock()  # held by the election thread and the master's loop
        # Its own session: signals to the master's process group (Ctrl-C, a
        # service manager's SIGTERM) do not reach it; it leaves at end-of-file.
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, text=True,
                                         stdout=subprocess.PIPE, start_new_session=True)
        assert self._process.stdout is not None
        if self._process.stdout.readline() != "ready\n":
            from juggler.common import logs  # the master's structlog (not in the companion)

            logs.get("election").warning(
                "the lease reaper did not start: a crash will leave the lease to expire",
                exit_code=self._process.poll())
        self._process.stdout.close()

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.poll()

    def _say(self, line: str) -> None:
        with self._lock:
            stdin = self._process.stdin
            if stdin is None or stdin.closed:
                return
            # If the companion died, leases fall back to expiring.
            with contextlib.suppress(BrokenPipeError, ValueError):
                stdin.write(line + "\n")
                stdin.flush()

    def hold(self, lease_id: int) -> None:
        self._say(f"+{lease_id:x}")

    def release(self, lease_id: int) -> None:
        self._say(f"-{lease_id:x}")

    def close(self, timeout: float = 5.0) -> None:
        """End the companion (it revokes whatever is still held) and wait for it."""
        with self._lock:
            if self._process.stdin is not None and not self._process.stdin.closed:
                with contextlib.suppress(BrokenPipeError):
                    self._process.stdin.close()
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


if __name__ == "__main__":
    sys.exit(main())
