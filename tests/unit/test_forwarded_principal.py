"""apps/rest_access.caller: who a request acts for, and who may speak for a
caller (a standby apps service forwarding to the leader)."""

from __future__ import annotations

import pytest

from juggler.apps.rest_access import FORWARDER, Forged, caller


@pytest.mark.parametrize(("unix", "user", "cert", "token", "named", "via", "acts_for"), [
    # Callers as they come.
    (True, "root", None, None, None, False, "root"),
    (False, None, "alice", "bob", None, False, "alice"),       # the certificate first
    (False, None, None, "bob", None, False, "bob"),
    (False, None, None, None, None, False, None),
    (False, None, FORWARDER, None, None, False, FORWARDER),    # the apps service itself
    # Forwarded by a standby: its certificate, the caller it names.
    (False, None, FORWARDER, None, "alice", True, "alice"),
    (False, None, FORWARDER, "admin-token-principal", "alice", True, "alice"),
    (False, None, FORWARDER, None, "d%C3%A9j%C3%A0%20vu", True, "déjà vu"),
    (False, None, FORWARDER, None, None, True, None),          # a caller without one
    (False, None, FORWARDER, None, "", True, None),
])
def test_who_a_request_acts_for(unix: bool, user: str | None, cert: str | None,
                                token: str | None, named: str | None, via: bool,
                                acts_for: str | None) -> None:
    assert caller(unix, user, cert, token, named, via) == acts_for


@pytest.mark.parametrize(("unix", "user", "cert", "token"), [
    (False, None, None, "alice"),          # a token
    (False, None, "harness", None),        # another certificate
    (False, None, None, FORWARDER),        # a token of the apps principal: not its certificate
    (True, "root", None, None),            # the Docker socket
    (True, "root", FORWARDER, None),
])
def test_only_the_apps_certificate_names_a_caller(unix: bool, user: str | None,
                                                  cert: str | None, token: str | None) -> None:
    for via in (False, True):
        with pytest.raises(Forged, match="X-Juggler-Principal"):
            caller(unix, user, cert, token, "admin", via)
