"""Join tokens: Swarm's shape, parsing that rejects what Swarm rejects, credentials on disk."""

from __future__ import annotations

import hashlib
import pathlib
import re
import stat
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from manager.ca import ClusterCredentials, InvalidToken, make_token, parse_token

TOKEN_RE = re.compile(r"^SWMTKN-1-[0-9a-z]{50}-[0-9a-z]{25}$")


@pytest.fixture(scope="module")
def creds() -> ClusterCredentials:
    return ClusterCredentials.create()


def test_tokens_have_swarms_shape(creds: ClusterCredentials) -> None:
    assert TOKEN_RE.match(creds.worker_token)
    assert TOKEN_RE.match(creds.manager_token)
    assert creds.worker_token != creds.manager_token


def test_digest_is_sha256_of_the_ca_der_in_base36(creds: ClusterCredentials) -> None:
    der = x509.load_pem_x509_certificate(creds.ca_cert_pem).public_bytes(Encoding.DER)
    expected = int.from_bytes(hashlib.sha256(der).digest(), "big")
    parsed = parse_token(creds.worker_token)
    assert int(parsed.ca_digest, 36) == expected
    assert parse_token(creds.manager_token).ca_digest == parsed.ca_digest


def test_parse_round_trips_and_ignores_a_trailing_newline(creds: ClusterCredentials) -> None:
    parsed = parse_token(creds.manager_token + "\n")
    assert str(parsed) == creds.manager_token
    assert parsed.version == 1
    assert parsed.matches_ca(creds.ca_cert_pem)


def test_given_secret_is_kept_and_bad_secret_refused(creds: ClusterCredentials) -> None:
    token = make_token(creds.ca_cert_pem, "0123456789abcdefghijklmno")
    assert token.endswith("-0123456789abcdefghijklmno")
    with pytest.raises(ValueError):
        make_token(creds.ca_cert_pem, "short")


def test_secrets_differ_between_calls(creds: ClusterCredentials) -> None:
    made = {make_token(creds.ca_cert_pem) for _ in range(20)}
    assert len(made) == 20


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: "",
        lambda t: "garbage",
        lambda t: t.replace("SWMTKN", "SWMTKX", 1),
        lambda t: t.replace("SWMTKN-1-", "SWMTKN-2-", 1),
        lambda t: t[:-1],  # secret one character short
        lambda t: t + "a",  # secret one character long
        lambda t: t[:-1] + "A",  # upper case is not base 36 as Swarm writes it
        lambda t: t.replace("-", "-x", 2).replace("SWMTKN-x1", "SWMTKN-1", 1),  # digest 51 chars
        lambda t: t + "-extra",
    ],
)
def test_malformed_tokens_get_swarms_message(creds: ClusterCredentials, mangle: Callable[[str], str]) -> None:
    with pytest.raises(InvalidToken) as err:
        parse_token(mangle(creds.worker_token))
    assert str(err.value) == "invalid join token"


def test_other_clusters_token_does_not_match(creds: ClusterCredentials) -> None:
    other = ClusterCredentials.create()
    assert not parse_token(other.worker_token).matches_ca(creds.ca_cert_pem)
    assert creds.role_for(other.worker_token) is None
    assert creds.role_for(creds.worker_token + "\n") == "worker"
    assert creds.role_for(creds.manager_token) == "manager"


def test_ca_is_a_p256_ca_named_swarm_ca(creds: ClusterCredentials) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    cert = x509.load_pem_x509_certificate(creds.ca_cert_pem)
    assert cert.subject.rfc4514_string() == "CN=swarm-ca"
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"


def test_write_load_round_trip_owner_only(creds: ClusterCredentials, tmp_path: pathlib.Path) -> None:
    creds.write(tmp_path / "c")
    loaded = ClusterCredentials.load(tmp_path / "c")
    assert loaded == creds
    for name in ("ca.crt", "ca.key", "worker_token", "manager_token"):
        mode = stat.S_IMODE((tmp_path / "c" / name).stat().st_mode)
        assert mode == 0o600, name
    assert (tmp_path / "c" / "worker_token").read_text() == creds.worker_token + "\n"


def test_load_refuses_tokens_of_another_ca(creds: ClusterCredentials, tmp_path: pathlib.Path) -> None:
    creds.write(tmp_path)
    other = ClusterCredentials.create()
    (tmp_path / "worker_token").write_text(other.worker_token)
    with pytest.raises(InvalidToken):
        ClusterCredentials.load(tmp_path)
