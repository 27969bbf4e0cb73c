"""The SDK-HMAC-SHA256 verifier as functions: Huawei's test vector and the canonical forms."""

from __future__ import annotations

import string

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from handler.sandbox.verify import (
    canonical_query,
    canonical_uri,
    parse_authorization,
    parse_sdk_date,
    sdk_date_is_fresh,
    verify_signature,
)
from tests.sandbox._sign import sign

VECTOR_AK = "QTWAOYTTINDUT2QVKYUC"
VECTOR_SK = "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc"
VECTOR_TARGET = (
    "/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs?limit=2&marker=13551d6b-755d-4757-b956-536f674975c0"
)
VECTOR_SIGNATURE = "7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"
VECTOR_DATE = "20191115T033655Z"


def vector_headers(**changes: str) -> CIMultiDict[str]:
    headers = CIMultiDict(
        {
            "Content-Type": "application/json",
            "X-Sdk-Date": VECTOR_DATE,
            "Host": "service.region.example.com",
            "Authorization": (
                f"SDK-HMAC-SHA256 Access={VECTOR_AK}, "
                f"SignedHeaders=content-type;host;x-sdk-date, Signature={VECTOR_SIGNATURE}"
            ),
        }
    )
    for name, value in changes.items():
        headers[name.replace("_", "-")] = value
    return headers


def verify_vector(
    *,
    method: str = "GET",
    target: str = VECTOR_TARGET,
    headers: CIMultiDict[str] | None = None,
    body: bytes = b"",
    ak: str = VECTOR_AK,
    sk: str = VECTOR_SK,
) -> bool:
    return verify_signature(
        method=method,
        raw_target=target,
        headers=vector_headers() if headers is None else headers,
        body=body,
        access_key=ak,
        secret_key=sk,
    )


def test_huawei_test_vector_verifies() -> None:
    assert verify_vector()


def test_vector_query_order_does_not_matter() -> None:
    reordered = (
        "/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs?marker=13551d6b-755d-4757-b956-536f674975c0"
        "&limit=2"
    )
    assert verify_vector(target=reordered)


@pytest.mark.parametrize(
    "change",
    [
        {"method": "DELETE"},
        {"target": VECTOR_TARGET.replace("vpcs", "subnets")},
        {"target": VECTOR_TARGET.replace("limit=2", "limit=3")},
        {"body": b"{}"},
        {"headers": vector_headers(Host="evil.example.com")},
        {"headers": vector_headers(Content_Type="text/plain")},
        {"headers": vector_headers(X_Sdk_Date="20191115T033656Z")},
        {"sk": VECTOR_SK + "x"},
        {"ak": "SOMEOTHERACCESSKEY00"},
    ],
)
def test_any_change_breaks_the_vector(change: dict[str, object]) -> None:
    assert not verify_vector(**change)  # type: ignore[arg-type]


def test_tampered_signature_or_missing_signed_header_fails() -> None:
    wrong = vector_headers()
    wrong["Authorization"] = wrong["Authorization"].replace(VECTOR_SIGNATURE, "0" * 64)
    assert not verify_vector(headers=wrong)
    missing = vector_headers()
    del missing["Content-Type"]
    assert not verify_vector(headers=missing)
    no_date = vector_headers()
    del no_date["X-Sdk-Date"]
    assert not verify_vector(headers=no_date)


def test_signature_check_is_separate_from_the_date_window() -> None:
    signed_at = parse_sdk_date(VECTOR_DATE)
    assert signed_at is not None
    assert not sdk_date_is_fresh(VECTOR_DATE, signed_at + 15 * 60 + 1)
    assert not sdk_date_is_fresh(VECTOR_DATE, signed_at - 15 * 60 - 1)
    assert sdk_date_is_fresh(VECTOR_DATE, signed_at + 15 * 60)
    assert sdk_date_is_fresh(VECTOR_DATE, signed_at - 60)


@pytest.mark.parametrize(
    "value", ["", "20191115T033655", "2019-11-15T03:36:55Z", "20191315T033655Z", "2019111xT033655Z"]
)
def test_invalid_sdk_dates_are_rejected(value: str) -> None:
    assert parse_sdk_date(value) is None
    assert not sdk_date_is_fresh(value, 0.0)


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("/v1/p/vpcs", "/v1/p/vpcs/"),
        ("/v1/p/vpcs/", "/v1/p/vpcs/"),
        ("/", "/"),
        ("/m/env%3Astage", "/m/env%3Astage/"),
        ("/m/env:stage", "/m/env%3Astage/"),
        ("/m/team%20name", "/m/team%20name/"),
        ("/m/a~b_c.d-e", "/m/a~b_c.d-e/"),
        ("/m/%7e%41", "/m/~A/"),
        ("/m/a%2Fb", "/m/a/b/"),
        ("/m/caf%C3%A9", "/m/caf%C3%A9/"),
    ],
)
def test_canonical_uri(raw: str, canonical: str) -> None:
    assert canonical_uri(raw) == canonical


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("", ""),
        ("limit=2&marker=x", "limit=2&marker=x"),
        ("b=2&a=1&a=0", "a=0&a=1&b=2"),
        ("flag&x=", "flag=&x="),
        ("name=a%20b&k%3A=c:d", "k%3A=c%3Ad&name=a%20b"),
        ("=orphan&z=1", "z=1"),
    ],
)
def test_canonical_query(raw: str, canonical: str) -> None:
    assert canonical_query(raw) == canonical


def test_parse_authorization() -> None:
    parsed = parse_authorization(
        "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;x-sdk-date, Signature=ab"
    )
    assert parsed is not None
    assert (parsed.access, parsed.signed_headers, parsed.signature) == (
        "AK",
        "host;x-sdk-date",
        "ab",
    )
    assert parse_authorization("Bearer abc") is None
    assert parse_authorization("SDK-HMAC-SHA256 Access=AK, Signature=ab") is None


def _verify_request(request: httpx.Request, body: bytes | None = None) -> bool:
    return verify_signature(
        method=request.method,
        raw_target=request.url.raw_path.decode("ascii"),
        headers=CIMultiDict(request.headers),
        body=request.content if body is None else body,
        access_key="AK",
        secret_key="SK",
    )


def test_unsigned_payload_declaration_is_honoured() -> None:
    request = httpx.Request(
        "POST",
        "http://sandbox.test/v2.1/p/servers/s/metadata",
        content=b'{"metadata": {}}',
        headers={"X-Sdk-Content-Sha256": "UNSIGNED-PAYLOAD"},
    )
    sign(request, "AK", "SK")
    assert _verify_request(request)
    assert _verify_request(request, body=b"anything")


def test_declared_body_hash_must_match_the_body() -> None:
    request = httpx.Request(
        "POST", "http://sandbox.test/x", content=b"abc", headers={"X-Sdk-Content-Sha256": "0" * 64}
    )
    sign(request, "AK", "SK")
    assert not _verify_request(request)


KEY_CHARS = string.ascii_letters + string.digits + "-_:. "


@given(
    key=st.text(alphabet=KEY_CHARS, min_size=1, max_size=40),
    body=st.binary(max_size=64),
    query=st.dictionaries(
        st.text(alphabet=string.ascii_letters + ":/ ", min_size=1, max_size=5),
        st.text(max_size=8),
        max_size=3,
    ),
)
def test_independent_signer_and_verifier_agree(
    key: str, body: bytes, query: dict[str, str]
) -> None:
    url = httpx.URL(f"http://sandbox.test:8774/v2.1/p/servers/s/metadata/{key}", params=query)
    request = sign(httpx.Request("PUT", url, content=body), "AK", "SK")
    assert _verify_request(request)
    assert not _verify_request(request, body=body + b"!")
