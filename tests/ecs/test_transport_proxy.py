"""Proxies as the README promises them (HTTP(S)_PROXY, ALL_PROXY, NO_PROXY), and never .netrc."""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path

import httpx
import pytest

from handler.ecs.transport import AdaptiveTransport, proxy_configured, proxy_error
from handler.ecs.transport._proxies import _Proxies
from tests.ecs._servers import PATHS, Make, RawServer, no_proxy_environment


@pytest.fixture(autouse=True)
def _no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    no_proxy_environment(monkeypatch)


@pytest.fixture(params=sorted(PATHS))
def make(request: pytest.FixtureRequest) -> Make:
    return PATHS[request.param]


def chosen(url: str) -> str | None:
    """The proxy a transport built now would use for `url`."""
    return _Proxies().for_request(httpx.Request("GET", url))


def test_no_proxy_variables_means_direct() -> None:
    assert chosen("http://ecs.test/x") is None
    assert chosen("https://ecs.test/x") is None
    assert not proxy_configured()
    assert proxy_error() is None


def test_each_scheme_has_its_own_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://plain.proxy:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://tls.proxy:3128")
    assert chosen("http://ecs.test/x") == "http://plain.proxy:3128"
    assert chosen("https://ecs.test/x") == "http://tls.proxy:3128"
    assert proxy_configured()


def test_all_proxy_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALL_PROXY", "http://every.proxy:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://tls.proxy:3128")
    assert chosen("http://ecs.test/x") == "http://every.proxy:3128"
    assert chosen("https://ecs.test/x") == "http://tls.proxy:3128"


def test_lower_case_names_work_and_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("https_proxy", "http://lower.proxy:3128")
    assert chosen("https://ecs.test/x") == "http://lower.proxy:3128"
    monkeypatch.setenv("HTTPS_PROXY", "http://upper.proxy:3128")
    assert chosen("https://ecs.test/x") == "http://lower.proxy:3128"  # as urllib and curl


def test_a_proxy_without_a_scheme_is_an_http_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "plain.proxy:3128")
    assert chosen("http://ecs.test/x") == "http://plain.proxy:3128"
    assert proxy_error() is None


ECS = {
    "http://ecs.test/x",
    "https://ecs.test/x",
    "https://api.ecs.test/x",
    "https://ecs.test:8443/x",
}


@pytest.mark.parametrize(
    ("no_proxy", "bypassed"),
    [
        ("ecs.test", ECS),  # the host, any port, and its subdomains
        (".ecs.test", ECS),
        ("other.test, ecs.test:8443", {"https://ecs.test:8443/x"}),
        ("*", {*ECS, "https://notecs.test/x"}),
        ("", set()),
    ],
)
def test_no_proxy_is_honoured(
    monkeypatch: pytest.MonkeyPatch, no_proxy: str, bypassed: set[str]
) -> None:
    monkeypatch.setenv("ALL_PROXY", "http://every.proxy:3128")
    monkeypatch.setenv("no_proxy", no_proxy)
    urls = {*ECS, "https://notecs.test/x"}
    assert {url for url in urls if chosen(url) is None} == bypassed


def test_the_environment_is_read_once_per_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://first.proxy:3128")
    proxies = _Proxies()
    monkeypatch.setenv("HTTP_PROXY", "http://second.proxy:3128")
    assert proxies.for_request(httpx.Request("GET", "http://ecs.test/")) == (
        "http://first.proxy:3128"
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ALL_PROXY", "socks5://alice:s3cret@socks.proxy:1080", "ALL_PROXY names a socks5://"),
        ("all_proxy", "socks5h://alice:s3cret@socks.proxy:1080", "all_proxy names a socks5h://"),
        ("HTTPS_PROXY", "https://alice:s3cret@tls.proxy:3128", "HTTPS_PROXY names a https://"),
        ("HTTP_PROXY", "http://alice:s3cret@", "HTTP_PROXY is not a valid proxy URL"),
        ("HTTP_PROXY", "s3cret:s3cret://x", "HTTP_PROXY names an unsupported proxy"),
        ("HTTP_PROXY", "s3cret://alice@x", "HTTP_PROXY names an unsupported proxy"),
    ],
)
def test_an_unusable_proxy_is_named_without_its_credentials(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    error = proxy_error()
    assert error is not None
    assert error.startswith(message)
    assert "\n" not in error
    assert "s3cret" not in error
    assert "alice" not in error
    scheme = "https" if name.lower() == "https_proxy" else "http"
    with pytest.raises(httpx.ProxyError) as raised:
        chosen(f"{scheme}://ecs.test/x")
    assert str(raised.value) == error
    assert proxy_error(f"{scheme}://ecs.test/x") == error


def test_proxy_error_for_a_url_honours_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALL_PROXY", "socks5://socks.proxy:1080")
    monkeypatch.setenv("NO_PROXY", "ecs.test")
    assert proxy_error() is not None
    assert proxy_error("https://ecs.test/v2.1") is None  # that proxy never carries it
    assert proxy_error("https://other.test/v2.1") is not None


def test_an_unused_all_proxy_is_no_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALL_PROXY", "socks5://socks.proxy:1080")
    monkeypatch.setenv("HTTP_PROXY", "http://plain.proxy:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://tls.proxy:3128")
    assert proxy_error() is None


def test_requests_go_through_the_proxy_with_the_path_unchanged(
    make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        async with RawServer() as proxy:
            monkeypatch.setenv("HTTP_PROXY", proxy.url.replace("http://", "http://alice:pw@"))
            async with httpx.AsyncClient(transport=make()) as client:
                response = await client.delete("http://ecs.internal.test/v2.1/p/env%3Astage")
            assert response.status_code == 204
            [seen] = proxy.seen  # a forward proxy sees the absolute URL
            assert seen.target == "http://ecs.internal.test/v2.1/p/env%3Astage"
            assert seen.header("Host") == "ecs.internal.test"
            credentials = base64.b64encode(b"alice:pw").decode()
            assert seen.header("Proxy-Authorization") == f"Basic {credentials}"

    asyncio.run(main())


def test_no_proxy_sends_directly(make: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        async with RawServer() as proxy, RawServer() as server:
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
            monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
            async with httpx.AsyncClient(transport=make()) as client:
                assert (await client.delete(f"{server.url}/x")).status_code == 204
            assert (len(proxy.seen), len(server.seen)) == (0, 1)

    asyncio.run(main())


def test_a_netrc_entry_for_the_host_adds_no_authorization(
    make: Make, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text(
        "machine 127.0.0.1 login alice password s3cret\ndefault login bob password x\n"
    )
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".netrc").write_text(netrc.read_text())
    (tmp_path / ".netrc").chmod(0o600)
    # A proxy for the other scheme: aiohttp's trust_env (what this transport once used whenever
    # a proxy was configured) would then read the netrc and sign the request with Basic auth.
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")

    async def main() -> None:
        async with RawServer() as server, httpx.AsyncClient(transport=make()) as client:
            assert (await client.delete(f"{server.url}/x")).status_code == 204
            [seen] = server.seen
            assert seen.header("Authorization") is None
            assert seen.header("Proxy-Authorization") is None

    asyncio.run(main())
    assert os.environ["NETRC"] == str(netrc)


def test_the_lean_path_closes_its_proxy_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        async with RawServer() as proxy:
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
            transport = AdaptiveTransport(switch_after=None)
            for n in range(2):
                request = httpx.Request("DELETE", f"http://ecs.internal.test/{n}")
                assert (await transport.handle_async_request(request)).status_code == 204
            assert [(s.connection, s.target) for s in proxy.seen] == [
                (0, "http://ecs.internal.test/0"),
                (0, "http://ecs.internal.test/1"),
            ]
            assert not transport._lean._direct._connections  # h11 carried none of them
            await transport.aclose()
            assert await proxy.wait_all_closed()

    asyncio.run(main())
