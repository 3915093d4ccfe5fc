"""Mutual TLS for every juggler link: the process's TLS configuration, gRPC
credentials, ssl contexts for aiohttp, certificate making, and the diagnosis of
a refused connection.

- A process sets its configuration once at start (`configure`): each daemon
  from its --tls-ca/--tls-cert/--tls-key flags, the CLI from its flags, the
  environment or $JUGGLER_HOME/tls/ (cli/credentials.py). `current()` is then
  what common/servers.py listens and dials with; None means plain text.
- gRPC servers require a client certificate signed by the CA (Mesos's
  SSL_REQUIRE_CERT); HTTP servers verify one when it is presented and leave
  the rest to a bearer token (common/principals.py).
- A principal is the certificate subject's common name. Server certificates
  name their hosts in subjectAltName (DNS names and IP addresses): a client
  checks the name it dialled against them (RFC 6125), as gRPC and Python's ssl
  module both do.
- gRPC's own failure strings do not say why a handshake failed;
  `explain(address)` probes the address with Python's ssl module and says
  which: nothing listening, plain text against TLS or the reverse, a
  certificate from another CA (either side), an expired certificate (either
  side), a server certificate that does not name the dialled host.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import os
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:   # grpc is imported where used: the CLI sets GRPC_VERBOSITY first
    import grpc

CA_DAYS = 3650
CERT_DAYS = 825     # the longest a CA/Browser Forum server certificate was allowed to live


class TLSError(Exception):
    """A TLS configuration that cannot be used (a missing or unreadable file,
    not a certificate or key)."""


@dataclass(frozen=True)
class TLSConfig:
    """PEM files: the CA certificate that signs every peer, this process's own
    certificate and its private key."""
    ca: Path
    cert: Path
    key: Path

    def flags(self) -> list[str]:
        """The daemon flags that name these files: --tls-ca, --tls-cert, --tls-key."""
        return ["--tls-ca", str(self.ca), "--tls-cert", str(self.cert), "--tls-key",
                str(self.key)]

    def read(self) -> tuple[bytes, bytes, bytes]:
        """(ca, cert, key) bytes. Raises TLSError naming the file it cannot read."""
        out = []
        for what, path in (("CA certificate", self.ca), ("certificate", self.cert),
                           ("key", self.key)):
            try:
                out.append(Path(path).read_bytes())
            except OSError as e:
                raise TLSError(f"cannot read the TLS {what} {path}: {e.strerror}") from e
        return out[0], out[1], out[2]


def from_flags(ca: str | None, cert: str | None, key: str | None) -> TLSConfig | None:
    """The configuration three --tls-* flags give: None when none is given.
    Raises TLSError when only some are, or a file cannot be read."""
    given = [v for v in (ca, cert, key) if v]
    if not given:
        return None
    if len(given) != 3:
        raise TLSError("--tls-ca, --tls-cert and --tls-key go together: give all three "
                       "(or none, for plain text)")
    cfg = TLSConfig(Path(ca or ""), Path(cert or ""), Path(key or ""))
    cfg.read()
    return cfg


_current: TLSConfig | None = None


def configure(cfg: TLSConfig | None) -> None:
    """Set this process's TLS configuration (None: plain text)."""
    global _current
    _current = cfg


def current() -> TLSConfig | None:
    return _current


# -- credentials and contexts -------------------------------------------------------------

def server_credentials(cfg: TLSConfig) -> grpc.ServerCredentials:
    """gRPC server credentials requiring a client certificate signed by cfg.ca.
    Raises TLSError."""
    import grpc

    ca, cert, key = cfg.read()
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                       require_client_auth=True)


@functools.lru_cache(maxsize=8)
def channel_credentials(cfg: TLSConfig) -> grpc.ChannelCredentials:
    """gRPC channel credentials: trust cfg.ca, present cfg.cert (read once per
    process: a new certificate takes a restart). Raises TLSError."""
    import grpc

    ca, cert, key = cfg.read()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                        certificate_chain=cert)


def server_ssl_context(cfg: TLSConfig) -> ssl.SSLContext:
    """An HTTPS server's context: its certificate; a client certificate is
    verified against cfg.ca when presented (CERT_OPTIONAL: HTTP clients may
    send a bearer token instead). Raises TLSError, ssl.SSLError."""
    cfg.read()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(cfg.ca))
    ctx.load_cert_chain(str(cfg.cert), str(cfg.key))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def client_ssl_context(cfg: TLSConfig) -> ssl.SSLContext:
    """An HTTPS client's context: trust cfg.ca (host names checked), present
    cfg.cert. Raises TLSError, ssl.SSLError."""
    cfg.read()
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cfg.ca))
    ctx.load_cert_chain(str(cfg.cert), str(cfg.key))
    return ctx


def client_ssl() -> ssl.SSLContext | bool:
    """What an aiohttp client passes as `ssl=`: this process's client context
    when it has TLS, else True (aiohttp's default verification)."""
    return client_ssl_context(_current) if _current else True


def url_scheme() -> str:
    """"https" when this process speaks TLS, else "http"."""
    return "https" if _current else "http"


# -- where a daemon may listen ------------------------------------------------------------

def is_loopback(host: str) -> bool:
    """Whether `host` (an address or "localhost") is this host's loopback."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def default_host(secure: bool) -> str:
    """A daemon's --host when none is given: every address with TLS, else the
    loopback only."""
    return "0.0.0.0" if secure else "127.0.0.1"


def listen_refusal(name: str, host: str, secure: bool, insecure: bool) -> str | None:
    """Why daemon `name` must not listen on `host`: a non-loopback address in
    plain text without --insecure (as Docker's daemon refuses TCP without TLS);
    None when it may. Pure."""
    if secure or insecure or is_loopback(host):
        return None
    return (f"juggler {name}: refusing to listen on {host} in plain text: anyone who can "
            "reach it could act as any framework, agent or operator. Give --tls-ca, "
            "--tls-cert and --tls-key (juggler up --tls makes them), or --host 127.0.0.1, "
            "or --insecure if this network is trusted")


def insecure_warning(name: str, host: str) -> str:
    """What daemon `name` says when it listens on `host` in plain text because
    of --insecure."""
    return (f"juggler {name}: WARNING: listening on {host} in plain text (--insecure): "
            "anyone who can reach this port can register agents, launch tasks as any "
            "user (root included) on every agent, read their output and kill them; "
            "use --tls-* on any network you do not fully trust")


# -- certificates -------------------------------------------------------------------------

def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_ca(directory: Path, name: str = "", days: int = CA_DAYS) -> Path:
    """Write a new self-signed CA `name` (default "juggler CA <host> <random>")
    to directory/ca.crt and ca.key (0600), replacing any there; returns the
    directory. ECDSA P-256, valid `days`.
    Raises OSError."""
    directory = Path(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    # Distinct names per CA: a verifier then says "unknown issuer" for another
    # CA's certificate rather than "bad signature".
    name = name or f"juggler CA {socket.gethostname()} {os.urandom(4).hex()}"
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    _write_private(directory / "ca.key", _key_pem(key))
    (directory / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return directory


def _san(hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for h in dict.fromkeys(h for h in hosts if h):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    return names


def issue(ca_dir: Path, principal: str, hosts: Iterable[str], out_dir: Path,
          days: int = CERT_DAYS, name: str | None = None) -> TLSConfig:
    """Sign a certificate for `principal` (its subject CN) with the CA in
    ca_dir (ca.crt, ca.key), naming `hosts` (DNS names or IP addresses) in its
    subjectAltName; usable by servers and clients alike. `days` < 0 makes one
    that expired that many days ago (for tests). Writes out_dir/<name>.crt and
    <name>.key (0600; name defaults to the principal); returns the TLSConfig
    (ca_dir/ca.crt, the two files). Raises OSError, ValueError (not a CA)."""
    ca_dir, out_dir = Path(ca_dir), Path(out_dir)
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"{ca_dir / 'ca.key'}: not an EC or RSA private key")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    if days >= 0:
        start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)
    else:
        end = now + datetime.timedelta(days=days)
        start = end - datetime.timedelta(days=30)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, principal)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(end)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                     ExtendedKeyUsageOID.CLIENT_AUTH]),
                              critical=False))
    san = _san(hosts)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    stem = name or principal
    _write_private(out_dir / f"{stem}.key", _key_pem(key))
    (out_dir / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return TLSConfig(ca_dir / "ca.crt", out_dir / f"{stem}.crt", out_dir / f"{stem}.key")


def load(path: Path) -> x509.Certificate:
    """The certificate in PEM file `path`. Raises OSError, ValueError."""
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def principal_of(cert: x509.Certificate) -> str | None:
    """The subject's common name, the principal; None without one."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def expired(cert: x509.Certificate, now: datetime.datetime | None = None) -> bool:
    now = now or datetime.datetime.now(datetime.UTC)
    return not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


# -- diagnosis ----------------------------------------------------------------------------

def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def explain(address: str, cfg: TLSConfig | None = None, timeout: float = 3.0) -> str:
    """Why a connection to host:port `address` fails, in words a person can act
    on, found by probing it with Python's ssl module under `cfg` (default:
    current()). Returns "" when the TLS (or plain) connection looks fine, so
    the failure lies elsewhere. Raises nothing."""
    cfg = cfg if cfg is not None else _current
    try:
        host, port = _split(address)
    except ValueError:
        return f"{address} is not host:port"
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as e:
        return f"nothing answers at {address} ({e.strerror or e})"
    with sock:
        if cfg is None:
            return _explain_plain(sock, address)
        return _explain_tls(sock, host, address, cfg)


def is_tls_problem(message: str) -> bool:
    """Whether `message` holds one of explain()'s TLS answers (each names TLS,
    a certificate or plain text), as opposed to "nothing answers": a cluster
    is running there, so "start one" would be the wrong advice."""
    return any(word in message for word in ("TLS", "certificate", "plain text"))


_TLS_HINT = ("give this client the cluster's CA and a certificate: --tls-ca/--tls-cert/"
             "--tls-key or JUGGLER_TLS_CA/_CERT/_KEY (juggler up --tls writes them to "
             "$JUGGLER_HOME/tls/)")


def _explain_plain(sock: socket.socket, address: str) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with ctx.wrap_socket(sock) as s:
            s.version()
    except (OSError, ssl.SSLError):
        return ""
    return f"{address} speaks TLS and this client plain text: {_TLS_HINT}"


def _explain_tls(sock: socket.socket, host: str, address: str, cfg: TLSConfig) -> str:
    try:
        mine = load(cfg.cert)
    except (OSError, ValueError) as e:
        return f"cannot read this client's certificate {cfg.cert}: {e}"
    if expired(mine):
        return (f"this client's certificate {cfg.cert} is not valid now (valid "
                f"{mine.not_valid_before_utc:%Y-%m-%d %H:%M} to "
                f"{mine.not_valid_after_utc:%Y-%m-%d %H:%M} UTC): issue a new one")
    if not _issued_within(cfg.cert, cfg.ca):
        return (f"this client's certificate {cfg.cert} is not signed by its CA {cfg.ca}: "
                "servers of that CA will refuse it")
    try:
        ctx = client_ssl_context(cfg)
    except (TLSError, ssl.SSLError) as e:
        return f"this client's TLS files cannot be used: {e}"
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    try:
        with ctx.wrap_socket(sock, server_hostname=host) as s:
            # With TLS 1.3 the server judges the client's certificate after
            # the client's handshake ends: its alert comes with the first read.
            s.settimeout(1.0)
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes(9))
            try:
                answer = s.recv(1)
            except TimeoutError:
                answer = b"?"
            if not answer:   # a gRPC server closes without an alert
                return (f"{address} closed the connection after the TLS handshake: it does "
                        f"not accept this client's certificate {cfg.cert} (not signed by "
                        "the CA it trusts?)")
    except ssl.SSLCertVerificationError as e:
        return _server_cert_problem(e, host, address, cfg)
    except ssl.SSLError as e:
        return _alert_problem(e, address, cfg)
    except OSError:   # reset, timed out: nothing TLS can tell
        return ""
    return ""


def _issued_within(cert: Path, ca: Path) -> bool:
    """Whether the first certificate of PEM file `cert` was signed by one of
    the certificates of PEM bundle `ca` (a --tls-ca file may hold several CAs),
    directly or through the intermediates that follow it in `cert`. Signatures
    only, as the reason for a refusal: the handshake verifies the whole chain.
    False when a file cannot be read. Raises nothing."""
    try:
        chain = x509.load_pem_x509_certificates(Path(cert).read_bytes())
        roots = x509.load_pem_x509_certificates(Path(ca).read_bytes())
    except (OSError, ValueError):
        return False
    issuers = [*roots, *chain[1:]]
    current, seen = chain[0], 0
    while seen <= len(chain):
        parent = next((c for c in issuers if _signs(c, current)), None)
        if parent is None:
            return False
        if parent in roots:
            return True
        current, seen = parent, seen + 1
    return False


def _signs(issuer: x509.Certificate, cert: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _server_cert_problem(e: ssl.SSLCertVerificationError, host: str, address: str,
                         cfg: TLSConfig) -> str:
    code = e.verify_code
    if code == 10:   # X509_V_ERR_CERT_HAS_EXPIRED
        return f"the certificate of {address} has expired: the server needs a new one"
    if code == 9:    # X509_V_ERR_CERT_NOT_YET_VALID
        return f"the certificate of {address} is not valid yet (clocks apart?)"
    if code in (62, 64):   # X509_V_ERR_HOSTNAME_MISMATCH, _IP_ADDRESS_MISMATCH
        return (f"the certificate of {address} does not name {host!r}: dial a name it "
                "lists in its subjectAltName, or issue it one naming this host")
    if code in (2, 7, 18, 19, 20, 21):   # no issuer, bad signature, self-signed
        return (f"the certificate of {address} is not signed by this client's CA "
                f"({cfg.ca}): it comes from another CA")
    return f"the certificate of {address} is refused: {e.verify_message}"


def _alert_problem(e: ssl.SSLError, address: str, cfg: TLSConfig) -> str:
    text = str(e).lower()
    if "wrong version number" in text or "record layer failure" in text \
            or "packet length too long" in text or "http request" in text:
        return (f"{address} speaks plain text and this client TLS: is the server "
                "started without --tls-*?")
    if "unknown ca" in text or "bad certificate" in text or "unknown_ca" in text:
        return (f"{address} does not trust this client's certificate {cfg.cert}: it is "
                "not signed by the server's CA")
    if "certificate expired" in text:
        return f"{address} refused this client's certificate {cfg.cert}: it has expired"
    if "certificate required" in text:
        return f"{address} requires a client certificate: {_TLS_HINT}"
    if isinstance(e, ssl.SSLEOFError) or "eof" in text:
        return (f"{address} closed the connection during the TLS handshake: does it speak "
                "plain text (started without --tls-*)?")
    return f"TLS with {address} failed: {e.reason or e}"
