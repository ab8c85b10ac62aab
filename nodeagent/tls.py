"""Mutual TLS between nodes: the node's certificate, the roots it trusts, and who a peer is.

Every gRPC channel between nodes (Raft, the dispatcher, the control API on 2377; gossip's stream
half, the network database, the task service and the link-fault admin service on 7946) is
made here with :func:`channel`, and both gRPC servers take :func:`server_credentials`. What
a node holds lives in ``DATA_DIR/certificates/`` (as in Swarm's ``swarm/certificates``):

* ``swarm-node.crt`` / ``swarm-node.key``: the node's certificate, issued by the cluster's root
  CA at the join: CN = node ID, OU = ``swarm-manager`` or ``swarm-worker``, O = cluster ID;
* ``swarm-root-ca.crt``: the roots the node trusts (two while a CA rotation is in progress).

A node that has not joined yet holds no certificate from the cluster. It talks to the managers
with a throwaway certificate from the **public join CA** below, whose key is published in this
file on purpose: it proves nothing, exactly as a TLS client without a certificate proves
nothing in Swarm. The managers' server presents its certificate together with a copy of the
cluster's root signed by the join CA, so that a joining node can reach the two RPCs that need no
identity (``NodeCA/GetRootCACertificate`` and ``Dispatcher/Join``) before it knows the root, and
every other RPC refuses a join certificate. The node checks the root it fetched against the
digest in its join token before it sends the token.

gRPC for Python cannot make a client certificate optional (Go's ``VerifyClientCertIfGiven``),
which is why the join CA exists. Nothing here does I/O except :meth:`NodeCredentials.load` and
:meth:`NodeCredentials.save`.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import logging
import os
import pathlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from nodeagent.grpc_guard import guarded_handler

__all__ = [
    "BASE36_DIGITS",
    "CERT_DIR",
    "DIGEST_LENGTH",
    "JOIN_CA_CERT_PEM",
    "JOIN_OU",
    "MANAGER_OU",
    "MANAGER_TARGET",
    "NODE_TARGET",
    "OPERATOR_CN",
    "WORKER_OU",
    "NodeCredentials",
    "PeerIdentity",
    "base36",
    "ca_digest",
    "channel",
    "credentials",
    "cross_sign",
    "current_chain",
    "enabled",
    "guarded_handler",
    "identity_of",
    "join_certificate",
    "make_csr",
    "new_key",
    "peer_certificate",
    "peer_identity",
    "presented_chains",
    "server_credentials",
    "set_credentials",
    "set_enabled",
    "use_operator_certificate",
]

log = logging.getLogger(__name__)

CERT_DIR = "certificates"
"""In the data directory: the node's certificate, key and trusted roots."""
CERT_FILE = "swarm-node.crt"
KEY_FILE = "swarm-node.key"
ROOTS_FILE = "swarm-root-ca.crt"

MANAGER_OU = "swarm-manager"
WORKER_OU = "swarm-worker"
OPERATOR_CN = "operator"
"""The CN of the manager certificates the host's tools present (never a node's ID)."""
JOIN_OU = "swarm-join"
"""The OU of the throwaway certificates the public join CA signs."""
ROLE_OF_OU = {MANAGER_OU: "manager", WORKER_OU: "worker", JOIN_OU: "join"}

MANAGER_TARGET = "swarm-manager"
"""The name a client checks a manager's certificate for (a SAN only manager certificates hold)."""
NODE_TARGET = "swarm-node"
"""The name a client checks any joined node's certificate for (managers' and workers')."""

DIGEST_LENGTH = 50
"""Characters of the join token's CA digest: a 256-bit number in base 36 needs at most 50."""
BASE36_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
"""The digits of the join token's base-36 fields, in order."""

# The public join CA (ECDSA P-256, valid to 2074). Its key is public by design: see the module doc.
JOIN_CA_CERT_PEM = b"""-----BEGIN CERTIFICATE-----
MIIBhTCCASugAwIBAgIBATAKBggqhkjOPQQDAjA3MREwDwYDVQQKDAhzd2FybWxl
dDEiMCAGA1UEAwwZc3dhcm1sZXQgam9pbiBDQSAocHVibGljKTAgFw0yNTAxMDEw
MDAwMDBaGA8yMDc0MTIyMDAwMDAwMFowNzERMA8GA1UECgwIc3dhcm1sZXQxIjAg
BgNVBAMMGXN3YXJtbGV0IGpvaW4gQ0EgKHB1YmxpYykwWTATBgcqhkjOPQIBBggq
hkjOPQMBBwNCAAQkUj/eQxG1gH3BVlkaNlZNMEw3HtlRLV1MeldLn0p7sdToOp12
0PjK8Gp8cZFdP3jAgXf1nYq4Lcc8rj/HZQA/oyYwJDASBgNVHRMBAf8ECDAGAQH/
AgEAMA4GA1UdDwEB/wQEAwIBhjAKBggqhkjOPQQDAgNIADBFAiEAkb1fxMpXH/gD
gtmoezUOilFG2XuoGxnEfB/q98oiedcCIDDqK7qiiYnnleKMfSrGAK+HVOg5u+3S
Y91WXBV3lUiF
-----END CERTIFICATE-----
"""
JOIN_CA_KEY_PEM = b"""-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgxBBIoWKGqMUihTx5
tKwAq0ucTgOKKkXN5JEfeMeFt5ehRANCAAQkUj/eQxG1gH3BVlkaNlZNMEw3HtlR
LV1MeldLn0p7sdToOp120PjK8Gp8cZFdP3jAgXf1nYq4Lcc8rj/HZQA/
-----END PRIVATE KEY-----
"""


# ---------------------------------------------------------------------- certificates (pure)


def base36(value: int, width: int) -> str:
    """``value`` (not negative) in base 36, zero-padded to ``width`` characters."""
    digits = []
    while value:
        value, rem = divmod(value, 36)
        digits.append(BASE36_DIGITS[rem])
    return "".join(reversed(digits)).rjust(width, "0")


def ca_digest(ca_cert_pem: bytes) -> str:
    """The join token's digest field for a PEM root CA certificate (its first one, when several):
    the SHA-256 of its DER bytes in base 36, zero-padded to 50 characters."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        cert = x509.load_pem_x509_certificate(ca_cert_pem)
    except ValueError as e:
        raise ValueError(f"not a PEM certificate: {e}") from None
    der = cert.public_bytes(Encoding.DER)
    return base36(int.from_bytes(hashlib.sha256(der).digest(), "big"), DIGEST_LENGTH)


def new_key() -> bytes:
    """A new ECDSA P-256 private key (PEM, PKCS#8, unencrypted)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def make_csr(key_pem: bytes, node_id: str) -> bytes:
    """A certificate signing request (PEM) for ``key_pem`` naming ``node_id``; the CA decides the rest."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    key = serialization.load_pem_private_key(key_pem, None)
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id)]))
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)  # type: ignore[arg-type]


@dataclass(frozen=True)
class PeerIdentity:
    """Who a certificate says its holder is."""

    node_id: str
    """The CN: the node ID ("" for a join certificate)."""
    role: str
    """"manager", "worker" or "join" (from the OU)."""
    cluster_id: str
    """The O: the cluster ID ("" for a join certificate)."""
    not_after: datetime.datetime
    """When the certificate expires (UTC)."""
    issuer: str
    """The issuer's CN (the root that signed it)."""


@functools.lru_cache(maxsize=256)
def identity_of(cert_pem: bytes) -> PeerIdentity:
    """The identity in a PEM certificate (the first one, when a chain is given)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_pem_x509_certificate(cert_pem)

    def first(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
        found = name.get_attributes_for_oid(oid)
        return str(found[0].value) if found else ""

    subject = cert.subject
    ou = first(subject, NameOID.ORGANIZATIONAL_UNIT_NAME)
    role = ROLE_OF_OU.get(ou, "")
    node_id = first(subject, NameOID.COMMON_NAME) if role != "join" else ""
    cluster_id = first(subject, NameOID.ORGANIZATION_NAME) if role != "join" else ""
    return PeerIdentity(node_id, role, cluster_id, cert.not_valid_after_utc,
                        first(cert.issuer, NameOID.COMMON_NAME))


def sign_leaf(
    *,
    ca_cert_pem: bytes,
    ca_key_pem: bytes,
    public_key: Any,
    node_id: str,
    ou: str,
    cluster_id: str,
    lifetime: datetime.timedelta,
    now: datetime.datetime,
) -> bytes:
    """A node certificate (PEM) for ``public_key``: CN ``node_id``, OU ``ou``, O ``cluster_id``.

    Its SANs are the names clients check: ``swarm-manager`` or ``swarm-worker`` (the role),
    ``swarm-node`` (any joined node) and the node ID. Valid from an hour before ``now`` (clocks
    of containers differ a little) for ``lifetime``; usable as both server and client.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, None)
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, cluster_id or "swarmlet"),
             x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou),
             x509.NameAttribute(NameOID.COMMON_NAME, node_id or "joining")]
    names: list[x509.GeneralName] = [x509.DNSName(ou)]
    if ou != JOIN_OU:
        names += [x509.DNSName(NODE_TARGET), x509.DNSName(node_id)]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attrs))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        # Which root signed it: while a rotation runs, two roots of the same name are trusted,
        # and the verifier picks the one whose key identifier this names.
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
                       critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@functools.lru_cache(maxsize=1)
def join_certificate() -> tuple[bytes, bytes]:
    """This process's throwaway (certificate, key) from the public join CA (OU ``swarm-join``)."""
    from cryptography.hazmat.primitives import serialization

    key_pem = new_key()
    key = serialization.load_pem_private_key(key_pem, None)
    cert = sign_leaf(ca_cert_pem=JOIN_CA_CERT_PEM, ca_key_pem=JOIN_CA_KEY_PEM, public_key=key.public_key(),
                     node_id="", ou=JOIN_OU, cluster_id="", lifetime=datetime.timedelta(days=3650),
                     now=datetime.datetime.now(datetime.UTC))
    return cert, key_pem


def cross_sign(cert_pem: bytes, signer_cert_pem: bytes, signer_key_pem: bytes) -> bytes:
    """The CA certificate ``cert_pem`` (its subject and key) re-signed by another CA: an
    intermediate through which certificates its key signs chain up to the signer as well."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    root = x509.load_pem_x509_certificate(cert_pem)
    signer = x509.load_pem_x509_certificate(signer_cert_pem)
    signer_key = serialization.load_pem_private_key(signer_key_pem, None)
    cross = (
        x509.CertificateBuilder()
        .subject_name(root.subject)
        .issuer_name(signer.subject)
        .public_key(root.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(root.not_valid_before_utc)
        .not_valid_after(min(root.not_valid_after_utc, signer.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root.public_key()), critical=False)
        # Both roots of a rotation are called swarm-ca: the key identifiers tell them apart.
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),  # type: ignore[arg-type]
                       critical=False)
        .sign(signer_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return cross.public_bytes(serialization.Encoding.PEM)


@functools.lru_cache(maxsize=8)
def cross_sign_for_joiners(root_cert_pem: bytes) -> bytes:
    """The cluster root re-signed by the public join CA: what a manager appends to its chain so
    that a joining node (which trusts only the join CA yet) can complete the handshake."""
    return cross_sign(root_cert_pem, JOIN_CA_CERT_PEM, JOIN_CA_KEY_PEM)


def current_chain(cert_pem: bytes, roots_pem: bytes) -> bytes:
    """``cert_pem`` (a leaf, perhaps followed by intermediates) without the intermediates that no
    root in ``roots_pem`` signed: during a CA rotation a certificate of the new root comes with
    the new root cross-signed by the old one (nodes that trust only the old root yet verify it
    through that); once the old root is no longer trusted, the cross-signed copy is dropped."""
    pems = split_pems(cert_pem)
    if len(pems) <= 1:
        return cert_pem
    return b"".join([pems[0], *(p for p in pems[1:] if issued_by(p, roots_pem) is not None)])


def split_pems(bundle: bytes) -> list[bytes]:
    """The certificates of a PEM bundle, one PEM each."""
    marker = b"-----END CERTIFICATE-----"
    out = []
    for part in bundle.split(marker):
        start = part.find(b"-----BEGIN CERTIFICATE-----")
        if start >= 0:
            out.append(part[start:] + marker + b"\n")
    return out


def issued_by(cert_pem: bytes, roots_pem: bytes) -> bytes | None:
    """Which of the roots in ``roots_pem`` signed ``cert_pem`` (its PEM), or None."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_pem)
    for root_pem in split_pems(roots_pem):
        root = x509.load_pem_x509_certificate(root_pem)
        try:
            cert.verify_directly_issued_by(root)
        except Exception:  # another root's signature, or another key type
            continue
        return root_pem
    return None


# ---------------------------------------------------------------------- what this node holds


def write_private(folder: pathlib.Path, files: dict[str, bytes]) -> None:
    """Each file written beside its final name (mode 0600), synced and renamed into place, so a
    crash leaves the old file or the new one, never half of one; ``folder`` made if missing
    (mode 0700)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name, data in files.items():
        tmp = folder / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / name)


@dataclass(frozen=True)
class NodeCredentials:
    """A node's certificate, its key and the roots it trusts (all PEM)."""

    cert_pem: bytes
    key_pem: bytes
    roots_pem: bytes

    @property
    def identity(self) -> PeerIdentity:
        """Who this certificate says the node is."""
        return identity_of(self.cert_pem)

    def with_roots(self, roots_pem: bytes) -> NodeCredentials:
        """The same certificate and key trusting ``roots_pem``, without the intermediates no
        root in them signed (:func:`current_chain`)."""
        return NodeCredentials(current_chain(self.cert_pem, roots_pem), self.key_pem, roots_pem)

    @classmethod
    def load(cls, data_dir: str | os.PathLike[str]) -> NodeCredentials | None:
        """What :meth:`save` wrote in ``DATA_DIR/certificates``, or None if nothing is there."""
        folder = pathlib.Path(data_dir) / CERT_DIR
        try:
            return cls((folder / CERT_FILE).read_bytes(), (folder / KEY_FILE).read_bytes(),
                       (folder / ROOTS_FILE).read_bytes())
        except FileNotFoundError:
            return None

    def save(self, data_dir: str | os.PathLike[str]) -> None:
        """Write the three files (each aside, fsynced, renamed; only the owner may read them)."""
        write_private(pathlib.Path(data_dir) / CERT_DIR,
                      {ROOTS_FILE: self.roots_pem, KEY_FILE: self.key_pem, CERT_FILE: self.cert_pem})

    @staticmethod
    def delete(data_dir: str | os.PathLike[str]) -> None:
        """Forget the node's certificates (``docker swarm leave``)."""
        folder = pathlib.Path(data_dir) / CERT_DIR
        for name in (CERT_FILE, KEY_FILE, ROOTS_FILE):
            with _suppress_missing():
                (folder / name).unlink()


class _suppress_missing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        return kind is FileNotFoundError


# ---------------------------------------------------------------------- the process's TLS state
# One node per process: the agent sets these once it knows them. A process that never turns TLS
# on (unit tests of single components, the plaintext benchmark) keeps plaintext channels.

_lock = threading.Lock()
_enabled = False
_credentials: NodeCredentials | None = None
_server_chain: bytes = b""
_client_chain: bytes = b""
_generation = 0
_listeners: list[Callable[[], None]] = []


def set_enabled(on: bool) -> None:
    """Turn mutual TLS on (the agent's default) or off (``SWARMLET_TLS=off``: benchmarks only)."""
    global _enabled
    _enabled = on


def enabled() -> bool:
    """Whether channels and servers of this process use TLS."""
    return _enabled


def presented_chains(creds: NodeCredentials) -> tuple[bytes, bytes]:
    """The chains a node presents as a client and as a server: its certificate with the
    intermediates its roots still sign (:func:`current_chain`); a manager's server adds the root
    its chain ends at, cross-signed by the join CA, for joining nodes."""
    client = current_chain(creds.cert_pem, creds.roots_pem)
    roots = split_pems(creds.roots_pem)
    if creds.identity.role != "manager" or not roots:
        return client, client
    issuer = issued_by(split_pems(client)[-1], creds.roots_pem) or roots[0]
    return client, client + cross_sign_for_joiners(issuer)


def set_credentials(creds: NodeCredentials | None) -> None:
    """Use ``creds`` from now on: new connections present them, servers' next handshakes too.

    Long-lived channels are told (:func:`on_change`) so that they reconnect with them."""
    global _credentials, _server_chain, _client_chain, _generation
    with _lock:
        _credentials = creds
        _client_chain, _server_chain = presented_chains(creds) if creds is not None else (b"", b"")
        _generation += 1
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener()
        except Exception:
            log.exception("a TLS credentials listener failed")


def credentials() -> NodeCredentials | None:
    """The node's credentials now (None before the join)."""
    return _credentials


def generation() -> int:
    """A number that changes whenever the credentials do."""
    return _generation


def on_change(listener: Callable[[], None]) -> None:
    """Call ``listener()`` after every :func:`set_credentials`."""
    _listeners.append(listener)


def _client_material(for_join: bool, roots: bytes | None) -> tuple[bytes, bytes, bytes]:
    with _lock:
        creds, chain = _credentials, _client_chain
    if creds is None or for_join:
        cert, key = join_certificate()
        trusted = roots or (JOIN_CA_CERT_PEM if creds is None else creds.roots_pem)
        return trusted, key, cert
    return roots or creds.roots_pem, creds.key_pem, chain or creds.cert_pem


def channel(target: str, options: Sequence[tuple[str, Any]] = (), *, manager: bool = True,
            joining: bool = False, roots: bytes | None = None, sync: bool = False) -> Any:
    """A gRPC channel to ``target``: mutual TLS when enabled, else plaintext.

    ``manager``: the peer must hold a manager certificate (2377); else any joined node's
    (7946). ``joining``: present the join CA's certificate (before this node has one, it always
    does). ``roots``: trust these instead of the node's roots (without credentials: the join
    CA). ``sync``: a blocking channel."""
    module: Any = grpc if sync else grpc.aio
    if not _enabled:
        return module.insecure_channel(target, options=list(options))
    roots, key, cert = _client_material(joining, roots)
    creds = grpc.ssl_channel_credentials(root_certificates=roots, private_key=key, certificate_chain=cert)
    name = MANAGER_TARGET if manager else NODE_TARGET
    if _credentials is None and not manager:
        name = JOIN_OU  # two nodes in no swarm yet: both hold join certificates
    return module.secure_channel(target, creds, options=[*options, ("grpc.ssl_target_name_override", name)])


def server_credentials() -> grpc.ServerCredentials:
    """Credentials for a server port: always the credentials of the moment (a join certificate
    before the join), and a client certificate is required and checked against the roots."""

    def config() -> Any:
        with _lock:
            creds, chain = _credentials, _server_chain
        if creds is None:
            cert, key = join_certificate()
            return grpc.ssl_server_certificate_configuration([(key, cert)], JOIN_CA_CERT_PEM)
        roots = creds.roots_pem + JOIN_CA_CERT_PEM
        return grpc.ssl_server_certificate_configuration([(creds.key_pem, chain or creds.cert_pem)], roots)

    seen = [_generation]

    def fetch() -> Any:
        if seen[0] == _generation:
            return None
        seen[0] = _generation
        return config()

    return grpc.dynamic_ssl_server_credentials(config(), fetch, require_client_authentication=True)


def peer_certificate(context: Any) -> bytes | None:
    """The verified certificate (PEM) the peer of a server call presented; None on plaintext."""
    try:
        auth = context.auth_context()
    except Exception:
        return None
    pem = (auth or {}).get("x509_pem_cert")
    return bytes(pem[0]) if pem else None


def peer_identity(context: Any) -> PeerIdentity | None:
    """Who the peer of a server call is (from its verified certificate); None on plaintext."""
    pem = peer_certificate(context)
    if pem is None:
        return None
    try:
        return identity_of(pem)
    except ValueError:
        return None


# ---------------------------------------------------------------------- who may call a server

class NodeGuard(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """The gossip port's check: only nodes that joined this swarm (a manager's or a worker's
    certificate from its roots; never a join certificate). A node in no swarm gossips only with
    other nodes in none (both sides present join certificates then)."""

    async def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None or not _enabled:
            return handler

        def check(context: Any) -> tuple[grpc.StatusCode, str] | None:
            if _credentials is None:
                return None  # this node is in no swarm: it trusts only join certificates anyway
            peer = peer_identity(context)
            if peer is None or peer.role not in ("manager", "worker"):
                return grpc.StatusCode.PERMISSION_DENIED, "a certificate of this swarm is needed"
            return None

        return guarded_handler(handler, check)


def add_port(server: Any, address: str) -> int:
    """Bind ``address`` on ``server``: with :func:`server_credentials` when TLS is on."""
    if _enabled:
        return int(server.add_secure_port(address, server_credentials()))
    return int(server.add_insecure_port(address))


def use_operator_certificate(ca_cert_pem: bytes, ca_key_pem: bytes) -> NodeCredentials:
    """Turn TLS on in this process with a manager certificate (CN ``operator``) signed by the CA
    given: what the host's tools (``swarmlet status``, the tests) present to a cluster whose root
    CA they made. Returns the credentials now in use."""
    from cryptography.hazmat.primitives import serialization

    key_pem = new_key()
    key = serialization.load_pem_private_key(key_pem, None)
    cert = sign_leaf(ca_cert_pem=ca_cert_pem, ca_key_pem=ca_key_pem, public_key=key.public_key(),
                     node_id=OPERATOR_CN, ou=MANAGER_OU, cluster_id="", lifetime=datetime.timedelta(days=30),
                     now=datetime.datetime.now(datetime.UTC))
    creds = NodeCredentials(cert, key_pem, ca_cert_pem)
    set_enabled(True)
    set_credentials(creds)
    return creds
