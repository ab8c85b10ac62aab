"""Certificates for the Engine API over TLS, as an administrator makes them for dockerd's ``--tlsverify``.

dockerd's TLS is not the swarm's: the administrator makes a CA, a server certificate for each
daemon (the addresses clients dial among its names) and client certificates, and starts dockerd
with ``--tlsverify --tlscacert --tlscert --tlskey``; the CLI then uses ``DOCKER_TLS_VERIFY=1``
and ``DOCKER_CERT_PATH`` (a folder holding ``ca.pem``, ``cert.pem``, ``key.pem``). This module
makes that set in one folder::

    ca.pem  ca-key.pem            the Engine API CA (its key signs servers added later)
    cert.pem  key.pem             a client certificate (DOCKER_CERT_PATH is this folder)
    server-<name>-cert.pem  server-<name>-key.pem     one per node, its addresses as IP SANs

Keys are ECDSA P-256, files mode 0600. The CA is made as the swarm's root is
(``manager.ca.authority.self_signed_ca``) with its own name, a 10-year lifetime and path length 0.
The ``cryptography`` library does the work.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import pathlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from manager.ca.authority import self_signed_ca
from nodeagent.tls import write_private

__all__ = ["EngineTls", "engine_tls_env"]

_CA_LIFETIME = datetime.timedelta(days=3650)
_LEAF_LIFETIME = datetime.timedelta(days=825)
_BACKDATE = datetime.timedelta(hours=1)  # clocks of the host and the containers may differ a little


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


@dataclass(frozen=True)
class EngineTls:
    """The Engine API's certificate folder (see the module's docstring)."""

    folder: pathlib.Path

    @property
    def ca_cert(self) -> pathlib.Path:
        """The CA clients and servers trust (``--tlscacert``; ``ca.pem`` of DOCKER_CERT_PATH)."""
        return self.folder / "ca.pem"

    @property
    def client_cert(self) -> pathlib.Path:
        """The client certificate the docker CLI presents (``cert.pem``)."""
        return self.folder / "cert.pem"

    @property
    def client_key(self) -> pathlib.Path:
        """Its key (``key.pem``)."""
        return self.folder / "key.pem"

    def server_files(self, name: str) -> tuple[pathlib.Path, pathlib.Path]:
        """A node's (certificate, key) for ``--tlscert``/``--tlskey``."""
        return self.folder / f"server-{name}-cert.pem", self.folder / f"server-{name}-key.pem"

    def exists(self) -> bool:
        """Whether the CA and the client certificate are there."""
        return all(p.is_file() for p in (self.ca_cert, self.folder / "ca-key.pem", self.client_cert,
                                          self.client_key))

    @classmethod
    def create(cls, folder: str | os.PathLike[str], now: datetime.datetime | None = None) -> EngineTls:
        """A new CA and client certificate in ``folder`` (made if needed; existing files replaced)."""
        out = cls(pathlib.Path(folder))
        now = now or datetime.datetime.now(datetime.UTC)
        root = self_signed_ca("swarmlet engine API CA", lifetime=_CA_LIFETIME, path_length=0, now=now)
        write_private(out.folder, {out.ca_cert.name: root.cert_pem, "ca-key.pem": root.key_pem})
        cert, leaf_key = out._sign("client", [], client=True, now=now)
        write_private(out.folder, {out.client_cert.name: cert, out.client_key.name: leaf_key})
        return out

    def add_server(self, name: str, addresses: list[str], now: datetime.datetime | None = None
                   ) -> tuple[pathlib.Path, pathlib.Path]:
        """A server certificate for node ``name`` answering at ``addresses`` (IPs or DNS names),
        written beside the CA; returns its (certificate, key) files."""
        cert, key = self._sign(name, addresses, client=False, now=now or datetime.datetime.now(datetime.UTC))
        cert_path, key_path = self.server_files(name)
        write_private(self.folder, {cert_path.name: cert, key_path.name: key})
        return cert_path, key_path

    def _sign(self, common_name: str, addresses: list[str], *, client: bool, now: datetime.datetime
              ) -> tuple[bytes, bytes]:
        ca = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        ca_key = serialization.load_pem_private_key((self.folder / "ca-key.pem").read_bytes(), None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{self.folder}/ca-key.pem is not an ECDSA key")
        key = ec.generate_private_key(ec.SECP256R1())
        start = now - _BACKDATE
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + _LEAF_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=True, key_cert_sign=False, crl_sign=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH if client
                                                  else ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
        )
        if not client:
            names: list[x509.GeneralName] = [x509.DNSName("localhost"),
                                             x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            for address in addresses:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(address)))
                except ValueError:
                    names.append(x509.DNSName(address))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def engine_tls_env(tls: EngineTls, docker_host: str) -> list[str]:
    """The lines that point the docker CLI at a ``--tlsverify`` Engine API: DOCKER_HOST,
    DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH (as ``docker-machine env`` prints them)."""
    return [f"export DOCKER_HOST={docker_host}", "export DOCKER_TLS_VERIFY=1",
            f"export DOCKER_CERT_PATH={tls.folder.resolve()}"]
