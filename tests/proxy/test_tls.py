"""Forwarding to an https upstream: the TLS path of the HTTP/1.1 client.

A throwaway CA signs a certificate for ``localhost`` and ``127.0.0.1``, and
a recording upstream serves TLS with it on loopback. Outpost trusts that CA
only through ``SSL_CERT_FILE``, which OpenSSL reads when the client's
default context loads its verify paths.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from outpost.config.models import Timeouts
from outpost.config.urls import parse_base_url
from outpost.proxy import http1
from outpost.proxy.http1 import Http1Transport
from tests.conftest import TEST_SECRET, StartOutpost
from tests.support.outpost import OutpostServer
from tests.support.upstream import RecordingUpstream, Reply

MiB = 1024 * 1024
SECRET_ENV = {"OUTPOST_TEST_SECRET": TEST_SECRET}


@dataclass
class Certificates:
    """PEM files of a throwaway CA and the server certificates it signed."""

    ca: Path
    localhost_cert: Path
    localhost_key: Path
    other_cert: Path
    other_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _issue_server_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    names: list[x509.GeneralName],
    cert_path: Path,
    key_path: Path,
) -> None:
    """Write a server certificate for ``names``, signed by the CA, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("outpost test server"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, key_path)


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    """A CA, a certificate for localhost and 127.0.0.1, and one for other.test."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("outpost test CA"))
        .issuer_name(_name("outpost test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory = tmp_path / "tls"
    directory.mkdir()
    certs = Certificates(
        ca=directory / "ca.pem",
        localhost_cert=directory / "localhost.pem",
        localhost_key=directory / "localhost.key",
        other_cert=directory / "other.pem",
        other_key=directory / "other.key",
    )
    certs.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _issue_server_certificate(
        ca_key,
        ca_cert,
        [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
        ],
        certs.localhost_cert,
        certs.localhost_key,
    )
    _issue_server_certificate(
        ca_key,
        ca_cert,
        [x509.DNSName("other.test")],
        certs.other_cert,
        certs.other_key,
    )
    return certs


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """Return a TLS server context that presents ``cert``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


@pytest.fixture
def tls_upstream(certificates: Certificates) -> Iterator[RecordingUpstream]:
    """A recording upstream serving TLS with the localhost certificate."""
    context = server_context(certificates.localhost_cert, certificates.localhost_key)
    server = RecordingUpstream(ssl_context=context)
    yield server
    server.close()


@pytest.fixture
def misnamed_upstream(certificates: Certificates) -> Iterator[RecordingUpstream]:
    """A recording upstream whose certificate names only other.test."""
    context = server_context(certificates.other_cert, certificates.other_key)
    server = RecordingUpstream(ssl_context=context)
    yield server
    server.close()


def github(base_url: str) -> dict[str, Any]:
    """Return a transparent bearer provider at ``base_url``."""
    return {
        "name": "github",
        "base_url": base_url,
        "auth": {"type": "bearer_static", "env": "OUTPOST_TEST_SECRET"},
    }


def localhost_url(upstream: RecordingUpstream) -> str:
    """Return the upstream's https URL under the name ``localhost``."""
    return f"https://localhost:{upstream.port}"


def error_kind(body: dict[str, Any]) -> str:
    """Return ``metadata.kind`` of an error envelope."""
    kind: str = body["error"]["metadata"]["kind"]
    return kind


@pytest.fixture
def trusting_outpost(
    start_outpost: StartOutpost,
    tls_upstream: RecordingUpstream,
    certificates: Certificates,
) -> OutpostServer:
    """Outpost forwarding to the TLS upstream, with the test CA trusted."""
    env = {**SECRET_ENV, "SSL_CERT_FILE": str(certificates.ca)}
    return start_outpost([github(localhost_url(tls_upstream))], env=env)


# Through Outpost, with the CA trusted.


def test_tls_get_forwarded(
    trusting_outpost: OutpostServer, tls_upstream: RecordingUpstream
) -> None:
    response = trusting_outpost.get("/p/github/repos/a/b?state=open")

    assert response.status == 200
    assert response.body == b'{"ok":true}'
    assert tls_upstream.count == 1
    request = tls_upstream.requests[0]
    assert request.target == "/repos/a/b?state=open"
    assert request.header("authorization") == f"Bearer {TEST_SECRET}"
    assert request.header("host") == f"localhost:{tls_upstream.port}"


def test_tls_connection_reused(
    trusting_outpost: OutpostServer, tls_upstream: RecordingUpstream
) -> None:
    for index in range(4):
        response = trusting_outpost.get(f"/p/github/items/{index}")
        assert response.status == 200

    assert tls_upstream.count == 4
    assert tls_upstream.connections == 1


def test_tls_streamed_response_whole(
    trusting_outpost: OutpostServer, tls_upstream: RecordingUpstream
) -> None:
    parts = [b"data: %d %s\n\n" % (index, b"x" * 300) for index in range(5)]
    tls_upstream.handler = lambda request, connection: Reply(
        headers=[("Content-Type", "text/event-stream")],
        chunks=[(0.05, part) for part in parts],
    )

    response = trusting_outpost.get("/p/github/stream")

    assert response.status == 200
    assert response.body == b"".join(parts)


def test_tls_large_post_intact(
    trusting_outpost: OutpostServer, tls_upstream: RecordingUpstream
) -> None:
    body = hashlib.sha256(b"seed").digest() * (MiB // 32)

    response = trusting_outpost.request(
        "POST",
        "/p/github/upload",
        [("Content-Type", "application/octet-stream")],
        body,
    )

    assert response.status == 200
    assert tls_upstream.count == 1
    received = tls_upstream.requests[0].body
    assert len(received) == MiB
    assert hashlib.sha256(received).digest() == hashlib.sha256(body).digest()


# Through Outpost, with the handshake failing.


def assert_handshake_failed(
    outpost: OutpostServer, upstream: RecordingUpstream
) -> None:
    """Check a request fails with 502 "TLS handshake failed" and leaks no secret."""
    response = outpost.get("/p/github/repos/a/b")

    assert response.status == 502
    assert response.error_code == "PROXY_UPSTREAM_ERROR"
    assert error_kind(response.json()) == "TLS handshake failed"
    assert upstream.count == 0
    # The upstream's thread records the failed handshake a moment after Outpost.
    deadline = time.monotonic() + 5.0
    while upstream.handshake_failures == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert upstream.handshake_failures == 1
    assert TEST_SECRET.encode() not in response.raw + response.body

    outpost.stop()
    output = outpost.output()
    assert output, "Outpost printed nothing, so the search proves nothing"
    assert TEST_SECRET not in output


def test_tls_untrusted_ca_rejected(
    start_outpost: StartOutpost, tls_upstream: RecordingUpstream
) -> None:
    outpost = start_outpost(
        [github(localhost_url(tls_upstream))],
        env=SECRET_ENV,
        args=["--log-level", "DEBUG"],
    )

    assert_handshake_failed(outpost, tls_upstream)


def test_tls_wrong_name_rejected(
    start_outpost: StartOutpost,
    misnamed_upstream: RecordingUpstream,
    certificates: Certificates,
) -> None:
    outpost = start_outpost(
        [github(localhost_url(misnamed_upstream))],
        env={**SECRET_ENV, "SSL_CERT_FILE": str(certificates.ca)},
        args=["--log-level", "DEBUG"],
    )

    assert_handshake_failed(outpost, misnamed_upstream)


# The client on its own.


@pytest.fixture
def trusted_ca(certificates: Certificates, monkeypatch: pytest.MonkeyPatch) -> None:
    """Trust the test CA in a fresh client TLS context for one test.

    monkeypatch puts back the context cached before the test, so no later
    test uses the one that trusts the test CA.
    """
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates.ca))
    monkeypatch.setattr(http1, "_tls_context", None)


@pytest.fixture
async def tls_client(
    trusted_ca: None, tls_upstream: RecordingUpstream
) -> AsyncIterator[Http1Transport]:
    """An ``Http1Transport`` for the TLS upstream at ``localhost``."""
    timeouts = Timeouts(connect=2.0, read=3.0, write=3.0, pool=2.0)
    transport = Http1Transport(parse_base_url(localhost_url(tls_upstream)), timeouts)
    yield transport
    await transport.close()


async def test_client_tls_keep_alive(
    tls_client: Http1Transport, tls_upstream: RecordingUpstream
) -> None:
    url = localhost_url(tls_upstream) + "/v1/models"

    for _ in range(3):
        async with tls_client.open("GET", url, [], None) as response:
            parts = []
            while (chunk := await response.read_chunk()) is not None:
                parts.append(chunk)
        assert response.status == 200
        assert b"".join(parts) == b'{"ok":true}'

    assert tls_upstream.count == 3
    assert tls_upstream.connections == 1
    assert tls_upstream.requests[0].header("host") == f"localhost:{tls_upstream.port}"
