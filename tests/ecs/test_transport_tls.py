"""https on both paths: one TLS context, built as httpx builds it (SSL_CERT_FILE, else certifi)."""

from __future__ import annotations

import asyncio
import gc
import shutil
import ssl
import subprocess
import warnings
from pathlib import Path

import httpx
import pytest

from handler.ecs.transport import _common
from tests.ecs._servers import PATHS, Make, RawServer


@pytest.fixture(params=sorted(PATHS))
def make(request: pytest.FixtureRequest) -> Make:
    return PATHS[request.param]


@pytest.fixture
def certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, and a fresh process-wide client TLS context."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    command = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1"
    command += " -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1"
    subprocess.run(
        [*command.split(), "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True
    )
    monkeypatch.setattr(_common, "_SSL_CONTEXT", [])
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    return cert, key


def server_tls(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def test_https_is_verified_against_ssl_cert_file(
    make: Make, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = certificate
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))

    async def main() -> None:
        async with RawServer(tls=server_tls(cert, key)) as server:
            async with httpx.AsyncClient(transport=make()) as client:
                response = await client.delete(f"{server.url}/m/env%3Astage")
            assert response.status_code == 204
            assert [s.target for s in server.seen] == ["/m/env%3Astage"]

    asyncio.run(main())
    assert len(_common._SSL_CONTEXT) == 1


def test_an_untrusted_certificate_is_a_connect_error(
    make: Make, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate  # not in certifi's bundle, and SSL_CERT_FILE is unset

    async def main() -> None:
        async with (
            RawServer(tls=server_tls(cert, key)) as server,
            httpx.AsyncClient(transport=make()) as client,
        ):
            await client.delete(f"{server.url}/x")

    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        asyncio.run(main())


def test_https_connections_are_kept_alive_then_closed_cleanly(
    make: Make, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = certificate
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))

    async def main() -> None:
        async with RawServer(tls=server_tls(cert, key)) as server:
            async with httpx.AsyncClient(transport=make()) as client:
                for n in range(3):
                    assert (await client.delete(f"{server.url}/{n}")).status_code == 204
            assert [s.connection for s in server.seen] == [0, 0, 0]
            assert await server.wait_all_closed()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(main())
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
