"""SDK-HMAC-SHA256 signing, canonical forms, and the AK/SK and token auth flows."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import re

import httpx

from handler.ecs.signing import (
    AkSkAuth,
    Credentials,
    StaticCredentials,
    TokenAuth,
    canonical_query,
    canonical_uri,
    sign_request,
    string_to_sign,
)

NOW = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
AUTH_RE = re.compile(
    r"^SDK-HMAC-SHA256 Access=(?P<ak>[^,]+), SignedHeaders=(?P<signed>[^,]+), "
    r"Signature=(?P<sig>[0-9a-f]{64})$"
)


def _auth_parts(request: httpx.Request) -> dict[str, str]:
    match = AUTH_RE.match(request.headers["Authorization"])
    assert match, request.headers["Authorization"]
    return match.groupdict()


# --- the three vectors -------------------------------------------------------------------------


def test_vector_1_get_with_query_and_content_type() -> None:
    request = httpx.Request(
        "GET",
        "https://service.region.example.com/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs"
        "?limit=2&marker=13551d6b-755d-4757-b956-536f674975c0",
        headers={"Content-Type": "application/json", "X-Sdk-Date": "20191115T033655Z"},
    )
    sign_request(
        request,
        Credentials("QTWAOYTTINDUT2QVKYUC", "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc"),
        NOW,
    )
    parts = _auth_parts(request)
    assert parts["ak"] == "QTWAOYTTINDUT2QVKYUC"
    assert parts["signed"] == "content-type;host;x-sdk-date"
    assert parts["sig"] == "7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"
    # A preset X-Sdk-Date is kept, not replaced by the clock.
    assert request.headers["X-Sdk-Date"] == "20191115T033655Z"


def test_vector_2_get_without_content_type() -> None:
    request = httpx.Request(
        "GET",
        "https://service.endpoint.myhuaweicloud.com/resources?size=1",
        headers={"X-Sdk-Date": "20200608T023900Z"},
    )
    sign_request(request, Credentials("AccessKey", "SecretKey"), NOW)
    parts = _auth_parts(request)
    assert parts["signed"] == "host;x-sdk-date"
    assert parts["sig"] == "cfb4171acec81de07d50e53d57eb77edd537414d66ddb1d7d780f128e12cd842"


def test_vector_3_post_with_body() -> None:
    request = httpx.Request(
        "POST",
        "https://service.endpoint.myhuaweicloud.com/resources?size=1",
        headers={"X-Sdk-Date": "20200608T023900Z"},
        content=b'{"name":"test","id":1}',
    )
    sign_request(request, Credentials("AccessKey", "SecretKey"), NOW)
    parts = _auth_parts(request)
    assert parts["signed"] == "host;x-sdk-date"
    assert parts["sig"] == "436b1ac0a1ae03705934bb70ef2f2e09f7bfed2117d731a38235053199323a1f"


def test_date_header_added_from_clock_when_absent() -> None:
    request = httpx.Request("GET", "https://h.example.com/x")
    sign_request(request, Credentials("AK", "SK"), NOW)
    assert request.headers["X-Sdk-Date"] == "20240506T070809Z"
    assert "x-sdk-date" in _auth_parts(request)["signed"].split(";")


def test_signature_is_hmac_of_string_to_sign() -> None:
    request = httpx.Request("DELETE", "https://h.example.com/v2.1/p/servers/s/metadata/k")
    sign_request(request, Credentials("AK", "my-secret"), NOW)
    _, to_sign = string_to_sign(request, request.headers["X-Sdk-Date"])
    expected = hmac.new(b"my-secret", to_sign.encode(), hashlib.sha256).hexdigest()
    assert _auth_parts(request)["sig"] == expected
    assert to_sign.startswith("SDK-HMAC-SHA256\n20240506T070809Z\n")


# --- canonical forms ---------------------------------------------------------------------------


def test_canonical_uri_always_ends_with_slash() -> None:
    assert canonical_uri("/v1/resources") == "/v1/resources/"
    assert canonical_uri("/v1/resources/") == "/v1/resources/"
    assert canonical_uri("/") == "/"
    assert canonical_uri("") == "/"


def test_canonical_uri_encodes_key_with_colon_and_space() -> None:
    assert canonical_uri("/m/env:stage") == "/m/env%3Astage/"
    assert canonical_uri("/m/team name") == "/m/team%20name/"


def test_canonical_uri_encoded_and_plain_colon_are_the_same() -> None:
    assert canonical_uri("/m/env%3Astage") == canonical_uri("/m/env:stage")
    assert canonical_uri("/m/env%3astage") == canonical_uri("/m/env:stage")
    assert canonical_uri("/m/team%20name") == canonical_uri("/m/team name")


def test_canonical_uri_keeps_an_encoded_slash_inside_its_segment() -> None:
    assert canonical_uri("/m/a%2Fb") == "/m/a%2Fb/"


def test_canonical_query_sorted_and_encoded() -> None:
    assert canonical_query("") == ""
    assert canonical_query("size=1") == "size=1"
    assert canonical_query("marker=abc&limit=2") == "limit=2&marker=abc"
    assert canonical_query("a=x%3Ay") == canonical_query("a=x:y") == "a=x%3Ay"
    assert canonical_query("q=a b") == "q=a%20b"
    assert canonical_query("flag") == "flag="


def test_encoded_and_plain_colon_paths_sign_the_same() -> None:
    creds = Credentials("AK", "SK")
    a = httpx.Request("DELETE", "https://h.example.com/v2.1/p/servers/s/metadata/env%3Astage")
    b = httpx.Request("DELETE", "https://h.example.com/v2.1/p/servers/s/metadata/env:stage")
    sign_request(a, creds, NOW)
    sign_request(b, creds, NOW)
    assert a.headers["Authorization"] == b.headers["Authorization"]


def test_headers_with_underscore_are_not_signed() -> None:
    request = httpx.Request(
        "GET",
        "https://h.example.com/x",
        headers={"X_Custom_Thing": "a", "X-Custom-Thing": "b", "X-Project-Id": "p1"},
    )
    sign_request(request, Credentials("AK", "SK"), NOW)
    signed = _auth_parts(request)["signed"].split(";")
    assert "x_custom_thing" not in signed
    assert "x-custom-thing" in signed
    assert "x-project-id" in signed
    assert "host" in signed

    # Changing an unsigned header does not change the signature; a signed one does.
    other = httpx.Request(
        "GET",
        "https://h.example.com/x",
        headers={"X_Custom_Thing": "zzz", "X-Custom-Thing": "b", "X-Project-Id": "p1"},
    )
    sign_request(other, Credentials("AK", "SK"), NOW)
    assert other.headers["Authorization"] == request.headers["Authorization"]
    third = httpx.Request(
        "GET",
        "https://h.example.com/x",
        headers={"X_Custom_Thing": "a", "X-Custom-Thing": "b", "X-Project-Id": "p2"},
    )
    sign_request(third, Credentials("AK", "SK"), NOW)
    assert third.headers["Authorization"] != request.headers["Authorization"]


def test_security_token_added_and_signed() -> None:
    request = httpx.Request("GET", "https://h.example.com/x")
    sign_request(request, Credentials("AK", "SK", "tok-one"), NOW)
    assert request.headers["X-Security-Token"] == "tok-one"
    assert "x-security-token" in _auth_parts(request)["signed"].split(";")

    other = httpx.Request("GET", "https://h.example.com/x")
    sign_request(other, Credentials("AK", "SK", "tok-two"), NOW)
    assert _auth_parts(other)["sig"] != _auth_parts(request)["sig"]


def test_permanent_credentials_send_no_security_token() -> None:
    request = httpx.Request("GET", "https://h.example.com/x")
    sign_request(request, Credentials("AK", "SK"), NOW)
    assert "X-Security-Token" not in request.headers
    assert "x-security-token" not in _auth_parts(request)["signed"]


# --- auth flows --------------------------------------------------------------------------------


class _Provider:
    def __init__(self, first: Credentials, refreshed: Credentials) -> None:
        self.first = first
        self.refreshed = refreshed
        self.refreshes = 0

    def get(self) -> Credentials:
        return self.refreshed if self.refreshes else self.first

    def refresh(self) -> Credentials:
        self.refreshes += 1
        return self.refreshed


def _send_with(
    auth: httpx.Auth, statuses: list[int]
) -> tuple[httpx.Response, list[dict[str, str]]]:
    """Send one DELETE through the auth flow; return the response and the headers of each send."""
    sent: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        # Snapshot the headers as sent: the auth flow re-sends the same request object.
        sent.append(dict(request.headers))
        return httpx.Response(statuses[min(len(sent) - 1, len(statuses) - 1)])

    async def main() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler), auth=auth) as client:
            return await client.delete("https://ecs.example.com/v2.1/p/servers/s/metadata/k")

    return asyncio.run(main()), sent


def test_aksk_auth_signs_each_request() -> None:
    provider = _Provider(Credentials("AK-ONE", "SK-ONE"), Credentials("AK-TWO", "SK-TWO"))
    response, seen = _send_with(AkSkAuth(provider, clock=lambda: NOW), [204])
    assert response.status_code == 204
    assert len(seen) == 1
    assert "Access=AK-ONE," in seen[0]["authorization"]
    assert seen[0]["x-sdk-date"] == "20240506T070809Z"
    assert provider.refreshes == 0


def test_aksk_auth_resigns_once_after_401_with_refreshed_credentials() -> None:
    provider = _Provider(Credentials("AK-ONE", "SK-ONE"), Credentials("AK-TWO", "SK-TWO"))
    response, seen = _send_with(AkSkAuth(provider, clock=lambda: NOW), [401, 204])
    assert response.status_code == 204
    assert len(seen) == 2
    assert provider.refreshes == 1
    first, second = seen[0]["authorization"], seen[1]["authorization"]
    assert first != second
    assert "Access=AK-ONE," in first
    assert "Access=AK-TWO," in second


def test_aksk_auth_gives_up_after_second_401() -> None:
    provider = _Provider(Credentials("AK-ONE", "SK-ONE"), Credentials("AK-TWO", "SK-TWO"))
    response, seen = _send_with(AkSkAuth(provider, clock=lambda: NOW), [401, 401, 204])
    assert response.status_code == 401
    assert len(seen) == 2
    assert provider.refreshes == 1


def test_aksk_auth_resign_uses_a_fresh_date() -> None:
    times = iter(
        [NOW, NOW + dt.timedelta(seconds=5), NOW + dt.timedelta(seconds=9)]  # one per signing
    )
    provider = StaticCredentials(Credentials("AK", "SK"))
    _, seen = _send_with(AkSkAuth(provider, clock=lambda: next(times)), [401, 204])
    assert seen[0]["x-sdk-date"] == "20240506T070809Z"
    assert seen[1]["x-sdk-date"] == "20240506T070814Z"


def test_aksk_auth_sends_and_signs_security_token() -> None:
    provider = StaticCredentials(Credentials("AK", "SK", "the-security-token"))
    _, seen = _send_with(AkSkAuth(provider, clock=lambda: NOW), [204])
    assert seen[0]["x-security-token"] == "the-security-token"
    assert "x-security-token" in seen[0]["authorization"]


def test_aksk_auth_resign_drops_stale_security_token() -> None:
    provider = _Provider(Credentials("AK-ONE", "SK-ONE", "old-token"), Credentials("AK2", "SK2"))
    _, seen = _send_with(AkSkAuth(provider, clock=lambda: NOW), [401, 204])
    assert "x-security-token" not in seen[1]


def test_token_auth_sets_x_auth_token() -> None:
    response, seen = _send_with(TokenAuth(lambda: "iam-token"), [204])
    assert response.status_code == 204
    assert seen[0]["x-auth-token"] == "iam-token"
    assert "authorization" not in seen[0]


def test_token_auth_rereads_token_once_after_401() -> None:
    tokens = iter(["tok-1", "tok-2", "tok-3"])
    response, seen = _send_with(TokenAuth(lambda: next(tokens)), [401, 401, 204])
    assert response.status_code == 401
    assert [r["x-auth-token"] for r in seen] == ["tok-1", "tok-2"]


def test_credentials_repr_hides_secret_key_and_token() -> None:
    creds = Credentials("AKIDEXAMPLE1234", "VerySecretSecretKey", "SessionTokenValue")
    for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert "VerySecretSecretKey" not in text
        assert "SessionTokenValue" not in text
        assert "AKIDEXAMPLE1234" not in text
    assert "sk=***" in repr(creds)
    assert "security_token=***" in repr(creds)
    assert "security_token=None" in repr(Credentials("AKIDEXAMPLE1234", "x"))
