"""The cluster's root CA as the managers keep it: made by the bootstrapping manager, its key in
the Raft store (the Cluster object's ``RootCA``), issuing every node's certificate.

A certificate names its holder: CN = node ID, OU = ``swarm-manager`` or ``swarm-worker`` (the
role the managers granted), O = the cluster ID. It lives ``Spec.CAConfig.NodeCertExpiry``
(90 days by default, as Swarm's) and nodes renew theirs once half of it has passed. ``docker
swarm ca --rotate`` makes a new root: both roots are trusted while nodes move to certificates
from the new one, then the old root is dropped.

No I/O here; the clock comes in as ``now``.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from nodeagent.tls import MANAGER_OU, WORKER_OU, issued_by, sign_leaf

__all__ = [
    "DEFAULT_CERT_EXPIRY",
    "MIN_CERT_EXPIRY",
    "CertificateRefused",
    "RootCA",
    "issue_from_csr",
    "issued_by",
    "new_root",
    "self_signed_ca",
]

DEFAULT_CERT_EXPIRY = datetime.timedelta(days=90)
"""Swarm's default ``--cert-expiry``."""
MIN_CERT_EXPIRY = datetime.timedelta(hours=1)
"""Swarm refuses a shorter ``--cert-expiry`` ("minimum certificate expiry time is 1h0m0s")."""
_ROOT_LIFETIME = datetime.timedelta(days=20 * 365)
_OU = {"manager": MANAGER_OU, "worker": WORKER_OU}


class CertificateRefused(ValueError):
    """A signing request the CA will not sign; ``str(e)`` says why."""


@dataclass(frozen=True)
class RootCA:
    """A root CA certificate and its key (PEM)."""

    cert_pem: bytes
    key_pem: bytes

    def to_store(self) -> dict[str, str]:
        """The form kept in the Cluster object (``RootCA``: ``CACert``, ``CAKey``)."""
        return {"CACert": self.cert_pem.decode(), "CAKey": self.key_pem.decode()}

    @classmethod
    def from_store(cls, value: Any) -> RootCA | None:
        """The RootCA kept by :meth:`to_store`, or None when ``value`` holds none."""
        if not isinstance(value, dict) or not value.get("CACert") or not value.get("CAKey"):
            return None
        return cls(str(value["CACert"]).encode(), str(value["CAKey"]).encode())

    def issue(self, public_key: Any, *, node_id: str, role: str, cluster_id: str,
              expiry: datetime.timedelta, now: datetime.datetime) -> bytes:
        """A node certificate (PEM) for ``public_key``."""
        if role not in _OU:
            raise CertificateRefused(f"no certificate for the role {role!r}")
        return sign_leaf(ca_cert_pem=self.cert_pem, ca_key_pem=self.key_pem, public_key=public_key,
                         node_id=node_id, ou=_OU[role], cluster_id=cluster_id, lifetime=expiry, now=now)


def new_root(now: datetime.datetime) -> RootCA:
    """A new root CA: ECDSA P-256, CN ``swarm-ca``, valid 20 years (as Swarm's)."""
    return self_signed_ca("swarm-ca", lifetime=_ROOT_LIFETIME, path_length=None, now=now)


def self_signed_ca(common_name: str, *, lifetime: datetime.timedelta, path_length: int | None,
                   now: datetime.datetime) -> RootCA:
    """A new self-signed CA: an ECDSA P-256 key (PKCS#8 PEM), CN ``common_name``, valid from an
    hour before ``now`` (clocks of containers differ a little) for ``lifetime``. ``path_length``
    is how many CAs may stand below it (None: any; 0: it signs only leaf certificates)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    start = now - datetime.timedelta(hours=1)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return RootCA(
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption()),
    )


def issue_from_csr(ca: RootCA, csr_pem: bytes, *, node_id: str, role: str, cluster_id: str,
                   expiry: datetime.timedelta, now: datetime.datetime) -> bytes:
    """Sign a node's CSR: its key, but the CN, OU and O the managers decide (never the CSR's)."""
    from cryptography import x509

    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise CertificateRefused(f"not a certificate signing request: {exc}") from None
    if not csr.is_signature_valid:
        raise CertificateRefused("the signing request's signature is not valid")
    return ca.issue(csr.public_key(), node_id=node_id, role=role, cluster_id=cluster_id, expiry=expiry,
                    now=now)
