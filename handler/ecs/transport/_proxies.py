"""The environment's proxies: which one carries a URL, and what is wrong with a bad one."""

from __future__ import annotations

import base64
import os
import urllib.request
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

import httpx

_PROXY_SCHEMES = ("http", "https")
#: Proxy schemes named in messages; any other is "unsupported" (it is the user's text).
_KNOWN_SCHEMES = frozenset({"https", "socks4", "socks4a", "socks5", "socks5h"})

# NO_PROXY matching exactly as urllib applies it (typeshed does not declare the function).
_proxy_bypass: Callable[[str, dict[str, str]], bool]
_proxy_bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]


def _variable(key: str, value: str) -> str:
    """The environment variable a `getproxies_environment()` entry came from (for messages)."""
    lower = f"{key}_proxy"
    return lower if os.environ.get(lower) == value else lower.upper()


def _check_proxy(key: str, value: str) -> str | None:
    """A one-line message when `value` is not an http:// proxy URL; it never quotes the value."""
    name = _variable(key, value)
    scheme, sep, _ = value.partition("://")
    scheme = scheme.lower() if sep else "http"  # "proxy:3128" is http, as for httpx and curl
    if scheme != "http":
        named = f"a {scheme}://" if scheme in _KNOWN_SCHEMES else "an unsupported"
        return f"{name} names {named} proxy: only http:// proxies are supported"
    full = value if sep else f"http://{value}"
    try:
        urlsplit(full).port  # noqa: B018 - raises on a bad port or an unbalanced [IPv6]
        host = httpx.URL(full).host
    except (httpx.InvalidURL, ValueError):
        host = ""
    if not host or "[" in host or "%" in host:
        return f"{name} is not a valid proxy URL (expected http://host:port)"
    return None


def proxy_error(url: str | None = None) -> str | None:
    """Return why a proxy the environment names (for `url`, if given) is unusable, else None."""
    proxies = _Proxies()
    if url is None:
        return next(iter(proxies.errors.values()), None)
    try:
        proxies.for_request(httpx.Request("GET", url))
    except httpx.ProxyError as exc:
        return str(exc)
    return None


def proxy_secrets() -> list[str]:
    """The credentials in the environment's proxy URLs, as they may be echoed back: the
    password, `user:password`, and the `Proxy-Authorization: Basic` value made of them."""
    secrets: list[str] = []
    for value in urllib.request.getproxies_environment().values():
        try:
            parts = urlsplit(value if "://" in value else f"http://{value}")
            user, password = parts.username, parts.password
        except ValueError:
            continue
        if not password:
            continue
        for name, secret in ((user or "", password), (unquote(user or ""), unquote(password))):
            pair = f"{name}:{secret}"
            secrets += [secret, pair, base64.b64encode(pair.encode("utf-8")).decode("ascii")]
    return secrets


def proxy_configured() -> bool:
    """True when the environment names a proxy for http or https URLs."""
    proxies = urllib.request.getproxies_environment()
    return any(proxies.get(key) for key in ("all", *_PROXY_SCHEMES))


class _Proxies:
    """The environment's proxy rules, read once: which proxy, if any, carries a URL."""

    def __init__(self) -> None:
        self._environment = urllib.request.getproxies_environment()
        self.urls: dict[str, str] = {}
        self.errors: dict[str, str] = {}
        for scheme in _PROXY_SCHEMES:
            key = scheme if self._environment.get(scheme) else "all"
            value = self._environment.get(key)
            if not value:
                continue
            message = _check_proxy(key, value)
            if message is not None:
                self.errors[scheme] = message
            else:
                self.urls[scheme] = value if "://" in value else f"http://{value}"
        self.active = bool(self.urls or self.errors)
        self._bypassed: dict[str, bool] = {}

    def for_request(self, request: httpx.Request) -> str | None:
        """The proxy URL for a request (None: connect directly); ProxyError for a bad one."""
        url = request.url
        scheme = url.scheme
        if scheme not in self.urls and scheme not in self.errors:
            return None
        netloc = url.netloc.decode("ascii")
        bypass = self._bypassed.get(netloc)
        if bypass is None:
            bypass = _proxy_bypass(netloc, self._environment)
            if len(self._bypassed) < 1024:
                self._bypassed[netloc] = bypass
        if bypass:
            return None
        if scheme in self.errors:
            raise httpx.ProxyError(self.errors[scheme], request=request)
        return self.urls[scheme]
