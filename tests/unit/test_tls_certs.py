"""Certificates of `juggler up --tls` (common/tls.py), the listen policy, the
CLI's credentials (cli/credentials.py), principals (common/principals.py) and
up's default rules (cli/up_tls.py)."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID

from juggler.cli import credentials, up_tls
from juggler.common import access_rules, principals, tls


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_issued_certificate_names_its_principal_and_hosts_and_chains_to_the_ca(
        tmp_path: Path) -> None:
    tls.make_ca(tmp_path)
    cfg = tls.issue(tmp_path, "master", ["127.0.0.1", "localhost", "10.77.0.1", "m1.lab"],
                    tmp_path / "out")
    cert, ca = _cert(cfg.cert), _cert(tmp_path / "ca.crt")
    assert tls.principal_of(cert) == "master"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "m1.lab"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"),
                                                      ipaddress.ip_address("10.77.0.1")]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usage) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not tls.expired(cert)
    for key in (tmp_path / "ca.key", cfg.key):
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert cfg.ca == tmp_path / "ca.crt" and cfg.cert.name == "master.crt"


def test_another_ca_does_not_sign_and_an_expired_certificate_is_expired(tmp_path: Path) -> None:
    tls.make_ca(tmp_path / "a")
    tls.make_ca(tmp_path / "b")
    assert _cert(tmp_path / "a" / "ca.crt").subject != _cert(tmp_path / "b" / "ca.crt").subject
    cfg = tls.issue(tmp_path / "b", "admin", [], tmp_path / "out", name="cli")
    assert cfg.cert.name == "cli.crt"
    with pytest.raises((InvalidSignature, ValueError)):
        _cert(cfg.cert).verify_directly_issued_by(_cert(tmp_path / "a" / "ca.crt"))
    old = _cert(tls.issue(tmp_path / "a", "admin", [], tmp_path / "old", days=-1).cert)
    assert old.not_valid_after_utc < datetime.datetime.now(datetime.UTC)
    assert tls.expired(old)


def test_a_certificate_of_the_second_ca_of_a_bundle_is_signed_by_the_bundle(
        tmp_path: Path) -> None:
    # explain()'s "not signed by its CA" looks at every CA of a --tls-ca bundle.
    tls.make_ca(tmp_path / "a")
    tls.make_ca(tmp_path / "b")
    tls.make_ca(tmp_path / "c")
    bundle = tmp_path / "bundle.crt"
    bundle.write_bytes((tmp_path / "a" / "ca.crt").read_bytes()
                       + (tmp_path / "b" / "ca.crt").read_bytes())
    cfg = tls.issue(tmp_path / "b", "admin", [], tmp_path / "out", name="cli")
    assert tls._issued_within(cfg.cert, bundle)
    assert not tls._issued_within(cfg.cert, tmp_path / "c" / "ca.crt")
    assert not tls._issued_within(cfg.cert, tmp_path / "missing.crt")


def test_tls_flags_go_together_and_must_be_readable(tmp_path: Path) -> None:
    assert tls.from_flags(None, None, None) is None
    with pytest.raises(tls.TLSError, match="give all three"):
        tls.from_flags("ca.crt", None, "k")
    with pytest.raises(tls.TLSError, match="cannot read the TLS CA certificate"):
        tls.from_flags(str(tmp_path / "no"), str(tmp_path / "no"), str(tmp_path / "no"))


@pytest.mark.parametrize(("host", "secure", "insecure", "refused"), [
    ("127.0.0.1", False, False, False), ("localhost", False, False, False),
    ("::1", False, False, False), ("0.0.0.0", False, False, True),
    ("10.1.2.3", False, False, True), ("10.1.2.3", True, False, False),
    ("10.1.2.3", False, True, False), ("master.example", False, False, True)])
def test_plain_text_on_an_open_address_needs_insecure(host: str, secure: bool, insecure: bool,
                                                      refused: bool) -> None:
    why = tls.listen_refusal("master", host, secure, insecure)
    assert (why is not None) == refused
    if why:
        assert "--tls-ca" in why and "--insecure" in why and "--host 127.0.0.1" in why
    assert tls.default_host(True) == "0.0.0.0" and tls.default_host(False) == "127.0.0.1"


def test_cli_credentials_flags_then_environment_then_juggler_home(tmp_path: Path) -> None:
    flags, rest = credentials.split_global(["--tls-ca", "a", "--tls-cert=b", "--tls-key", "c",
                                            "--token", "t", "ps", "--tls-ca", "x"])
    assert flags == {"--tls-ca": "a", "--tls-cert": "b", "--tls-key": "c", "--token": "t"}
    assert rest == ["ps", "--tls-ca", "x"]
    with pytest.raises(ValueError, match="needs a value"):
        credentials.split_global(["--tls-ca"])
    tls.make_ca(tmp_path / "home")
    tls.issue(tmp_path / "home", "admin", [], tmp_path / "home", name="cli")
    (tmp_path / "home" / "token").write_text("from-home\n")
    env_cfg = tls.issue(tmp_path / "home", "bob", [], tmp_path / "env")
    env = {"JUGGLER_TLS_CA": str(env_cfg.ca), "JUGGLER_TLS_CERT": str(env_cfg.cert),
           "JUGGLER_TLS_KEY": str(env_cfg.key), "JUGGLER_TOKEN": "from-env"}
    assert credentials.resolve({}, env, tmp_path / "home") == (env_cfg, "from-env")
    home_cfg, token = credentials.resolve({}, {}, tmp_path / "home")
    assert home_cfg is not None and home_cfg.cert == tmp_path / "home" / "cli.crt"
    assert token == "from-home"
    assert credentials.resolve({}, {}, tmp_path / "none") == (None, None)
    with pytest.raises(tls.TLSError, match="JUGGLER_TLS_CA, _CERT and _KEY"):
        credentials.resolve({}, {"JUGGLER_TLS_CA": "x"}, tmp_path / "home")


def test_authorization_headers_name_tokens() -> None:
    assert principals.token_of("Bearer abc") == "abc"
    assert principals.token_of("bearer  abc ") == "abc"
    assert principals.token_of("token=abc") == "abc"
    assert principals.token_of("Basic YWxhZGRpbjpvcGVuc2VzYW1l") is None
    assert principals.token_of("") is None


class _Transport:
    def __init__(self, peercert: dict[str, Any] | None) -> None:
        self.ssl = SimpleNamespace(getpeercert=lambda: peercert) if peercert is not None \
            else None

    def get_extra_info(self, name: str) -> Any:
        return self.ssl if name == "ssl_object" else None


def test_http_principal_is_the_client_certificate_else_the_token() -> None:
    def lookup(token: str) -> str | None:
        return {"t1": "alice"}.get(token)

    cert = {"subject": ((("organizationName", "x"),), (("commonName", "admin"),))}
    with_cert = SimpleNamespace(transport=_Transport(cert),
                                headers={"Authorization": "Bearer t1"})
    assert principals.http_principal(with_cert, lookup) == "admin"
    no_cert = SimpleNamespace(transport=_Transport({}), headers={"Authorization": "Bearer t1"})
    assert principals.http_principal(no_cert, lookup) == "alice"
    plain = SimpleNamespace(transport=_Transport(None), headers={"Authorization": "token=t2"})
    assert principals.http_principal(plain, lookup) is None
    assert principals.http_principal(SimpleNamespace(transport=None, headers={}), lookup) is None


def test_grpc_principal_is_the_verified_common_name_only_over_tls() -> None:
    def context(auth: dict[str, list[bytes]]) -> Any:
        return SimpleNamespace(auth_context=lambda: auth)

    assert principals.grpc_principal(context({"transport_security_type": [b"ssl"],
                                              "x509_common_name": [b"agent"]})) == "agent"
    assert principals.grpc_principal(context({"transport_security_type": [b"insecure"]})) \
        is None
    assert principals.grpc_principal(context({})) is None


def test_up_default_rules_let_the_cluster_work_and_agents_only_register() -> None:
    rules = access_rules.parse(up_tls.default_rules(["root"]))
    for action in up_tls.ACTIONS:
        for principal in ("admin", "master", "apps"):
            assert rules.check(action, principal, "x").allowed, (action, principal)
        assert rules.check(action, "agent", "h").allowed == (action == "register_agents")
        assert rules.check(action, "mallory", "x").allowed is False
        assert rules.check(action, "root", "x").allowed == (action in up_tls.SOCKET_ACTIONS)


def test_up_tls_reuses_its_ca_and_hands_the_cli_its_files_until_it_exits(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from juggler.common import tokens

    monkeypatch.setenv("JUGGLER_HOME", str(tmp_path / "home"))
    first = up_tls.prepare(tmp_path / "work", ["10.77.0.1"])
    again = up_tls.prepare(tmp_path / "work", ["10.77.0.1"])
    assert (tmp_path / "work" / "tls" / "ca.crt").read_bytes() == first.cli.ca.read_bytes()
    tls.load(again.components["master"].cert).verify_directly_issued_by(tls.load(first.cli.ca))
    assert first.token != again.token
    loaded = tokens.Tokens.from_file(str(again.tokens_file))
    assert loaded is not None and loaded.lookup(again.token) == "admin"
    assert str(again.rules_file) in again.flags("agent")
    assert "--tokens" in again.flags("master") and "--tokens" not in again.flags("agent")
    assert up_tls.daemon_flags(None, "agent", "", open_host=True) == ["--insecure"]
    up_tls.publish(again)
    cli_dir = tmp_path / "home" / "tls"
    assert (cli_dir / "token").read_text().strip() == again.token
    assert stat.S_IMODE(os.stat(cli_dir / "cli.key").st_mode) == 0o600
    up_tls.withdraw(first)            # not first's any more: kept
    assert (cli_dir / "cli.crt").exists()
    up_tls.withdraw(again)
    assert not cli_dir.exists()


def test_the_cli_leaves_an_older_tls_up_s_files_to_it_while_a_plain_up_is_newest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from juggler.cli import pointers

    monkeypatch.setenv("JUGGLER_HOME", str(tmp_path))
    for name in ("JUGGLER_TLS_CA", "JUGGLER_TLS_CERT", "JUGGLER_TLS_KEY", "JUGGLER_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    up_tls.publish(up_tls.prepare(tmp_path / "work", []))
    try:
        records = [{"pid": 1, "master": "127.0.0.1:5050", "tls": True}]
        (tmp_path / "clusters.json").write_text(json.dumps(records))
        credentials.configure({})
        assert tls.current() is not None and credentials.token()
        records.append({"pid": 2, "master": "127.0.0.1:6050"})
        (tmp_path / "clusters.json").write_text(json.dumps(records))
        assert pointers.owner_is_plain()
        credentials.configure({})
        assert tls.current() is None and credentials.token() is None
    finally:
        tls.configure(None)


def test_a_tls_mismatch_is_told_as_such_not_as_a_missing_cluster(tmp_path: Path) -> None:
    import socket
    import ssl
    import threading

    from juggler.cli.operator import NoMaster

    tls.make_ca(tmp_path)
    server = tls.issue(tmp_path, "master", ["127.0.0.1"], tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(server.cert), str(server.key))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        address = f"127.0.0.1:{listener.getsockname()[1]}"

        def serve() -> None:
            conn, _ = listener.accept()
            with conn, contextlib.suppress(OSError), ctx.wrap_socket(conn, server_side=True):
                pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        told = tls.explain(address, None)
        thread.join(10)
    assert "speaks TLS and this client plain text" in told
    assert tls.is_tls_problem(told)
    assert "is a cluster running" not in str(NoMaster([address], told))
    gone = tls.explain(address, None)   # the listener is closed now
    assert gone.startswith("nothing answers") and not tls.is_tls_problem(gone)
    assert "is a cluster running" in str(NoMaster([address], gone))
