"""Mutual TLS on the overlay's tunnel connections, with the node's own certificate.

The gRPC channels take their credentials from :mod:`nodeagent.tls`; the tunnels (plain asyncio
connections, :mod:`nodeagent.overlay.tunnel`) take the same certificate, key and roots as
:class:`ssl.SSLContext` objects made here, once per change of the credentials. Both ends present
their node certificate and check the other's against the cluster's roots; the dialer checks the
name every joined node's certificate holds (``swarm-node``), so a worker's certificate serves as
well as a manager's, and a join certificate (a node in no swarm yet) is refused by both sides.

Only the stream tunnels: the VXLAN datagrams on UDP 4789 stay plain VXLAN, so that a capture
decodes them. With TLS off (``--no-tls``, ``SWARMLET_NO_TLS``) the tunnels are plaintext too.
"""

from __future__ import annotations

import os
import ssl
import tempfile

from nodeagent import tls

__all__ = ["client_context", "listener_context", "peer_identity", "server_context"]

_cache: dict[tuple[int, bool], ssl.SSLContext | None] = {}


def _context(server: bool) -> ssl.SSLContext | None:
    creds = tls.credentials()
    if not tls.enabled() or creds is None:
        return None
    key = (tls.generation(), server)
    if key in _cache:
        return _cache[key]
    context = _make(server, creds.cert_pem, creds.key_pem, creds.roots_pem)
    _cache.clear() if len(_cache) > 8 else None
    _cache[key] = context
    return context


def _make(server: bool, cert_pem: bytes, key_pem: bytes, roots_pem: bytes) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=roots_pem.decode())
    # ssl loads a key only from a file: a private one, gone as soon as it is read.
    with tempfile.TemporaryDirectory(prefix="swarmlet-tunnel-") as folder:
        cert, keyfile = os.path.join(folder, "node.crt"), os.path.join(folder, "node.key")
        for path, data in ((cert, cert_pem), (keyfile, key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        context.load_cert_chain(cert, keyfile)
    return context


def server_context() -> ssl.SSLContext | None:
    """The accepting side's context now; None when the tunnels are plaintext (TLS off, or the
    node holds no certificate of a swarm yet)."""
    return _context(server=True)


def listener_context() -> ssl.SSLContext | None:
    """The context of the tunnel port's listener (None: plaintext, TLS off). Each handshake
    switches to :func:`server_context` of the moment (the dialers name ``swarm-node``, SNI),
    so that certificates renewed or rotated since the port was bound are the ones presented
    and trusted; before the node holds any, the public join certificate answers (and the
    dialers, which want a certificate of the swarm, go away)."""
    if not tls.enabled():
        return None
    base = server_context()
    if base is None:
        cert, key = tls.join_certificate()
        base = _make(True, cert, key, tls.JOIN_CA_CERT_PEM)

    def current(ssl_object: ssl.SSLObject | ssl.SSLSocket, _name: str | None, _old: ssl.SSLContext) -> None:
        now = server_context()
        if now is not None and ssl_object.context is not now:
            ssl_object.context = now
        return None

    base.sni_callback = current
    return base


def client_context() -> ssl.SSLContext | None:
    """The dialing side's context now (it checks for :data:`nodeagent.tls.NODE_TARGET`); None
    when the tunnels are plaintext."""
    return _context(server=False)


def peer_identity(ssl_object: ssl.SSLObject | None) -> tls.PeerIdentity | None:
    """Who the far end of a TLS connection is, from its verified certificate."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    try:
        return tls.identity_of(ssl.DER_cert_to_PEM_cert(der).encode())
    except ValueError:
        return None
