"""SigV4 (handler/queues/sigv4.py) against AWS's published Signature Version 4 test suite."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx
import pytest

pytest.importorskip("aws_sdk_signers", reason="aws-sdk-signers needs Python 3.12 or later")

from handler.queues.sigv4 import AwsCredentials, SigV4Auth

SUITE = Path(__file__).resolve().parent.parent / "data" / "sigv4"
KEY_ID, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
WHEN = dt.datetime(2015, 8, 30, 12, 36, tzinfo=dt.UTC)


def _vectors() -> list[Path]:
    return sorted(SUITE.rglob("*.req"))


def _expected(req: Path) -> str:
    authz = req.with_suffix(".authz")
    if authz.exists():
        return authz.read_text(encoding="utf-8")
    signed = req.with_suffix(".sreq").read_text(encoding="utf-8")
    return signed.split("\nAuthorization: ", 1)[1].strip()


def _parts(req: Path) -> tuple[str, str, str, list[tuple[str, str]], bytes]:
    """The vector's method, path and query (as on its request line), headers and body."""
    head, _, body = req.read_text(encoding="utf-8").partition("\n\n")
    request_line, *lines = head.split("\n")
    method, rest = request_line.split(" ", 1)
    path, _, query = rest.rsplit(" ", 1)[0].partition("?")
    headers = [(name, value.strip()) for name, value in (line.split(":", 1) for line in lines)]
    return method, path, query, headers, body.encode()


def _auth(token: str | None) -> SigV4Auth:
    return SigV4Auth(
        service="service",
        region="us-east-1",
        credentials=lambda: AwsCredentials(KEY_ID, SECRET, token),
        clock=lambda: WHEN,
    )


def _token(headers: list[tuple[str, str]]) -> str | None:
    return next((v for n, v in headers if n.lower() == "x-amz-security-token"), None)


@pytest.mark.parametrize("req", _vectors(), ids=lambda p: p.stem)
def test_every_published_vector_is_signed_exactly(req: Path) -> None:
    method, path, query, headers, body = _parts(req)
    host = next(value for name, value in headers if name.lower() == "host")
    signed = _auth(_token(headers)).signature(
        method=method,
        scheme="https",
        host=host,
        port=None,
        path=path,
        query=query or None,
        headers=headers,
        body=body,
    )
    assert signed["authorization"] == _expected(req)


@pytest.mark.parametrize("req", _vectors(), ids=lambda p: p.stem)
def test_an_httpx_request_is_signed_as_the_vector_says(req: Path) -> None:
    method, path, query, headers, body = _parts(req)
    if not (path + query).isascii() or " " in path:
        pytest.skip("httpx percent-encodes this request line: another request on the wire")
    host = next(value for name, value in headers if name.lower() == "host")
    target = path + (f"?{query}" if query else "")
    request = httpx.Request(method, f"https://{host}{target}", headers=headers, content=body)
    if not any(name.lower() == "content-length" for name, _ in headers):
        request.headers.pop("content-length", None)
    _auth(_token(headers)).sign(request)
    assert request.headers["authorization"] == _expected(req)


def test_signing_again_replaces_the_date_and_token_it_signed_before() -> None:
    now = [WHEN]
    tokens = ["first-token-0000000000", "second-token-111111111"]
    auth = SigV4Auth(
        service="sqs",
        region="eu-west-1",
        credentials=lambda: AwsCredentials(KEY_ID, SECRET, tokens[0]),
        clock=lambda: now[0],
    )
    request = httpx.Request("POST", "http://127.0.0.1:9324/", content=b"{}")
    auth.sign(request)
    first = request.headers["authorization"]
    now[0] = WHEN + dt.timedelta(minutes=5)
    tokens[0] = tokens[1]
    auth.sign(request)
    assert request.headers["x-amz-date"] == "20150830T124100Z"
    assert request.headers.get_list("x-amz-security-token") == ["second-token-111111111"]
    assert request.headers["authorization"] != first
    assert "Credential=AKIDEXAMPLE/20150830/eu-west-1/sqs/aws4_request" in first


def test_credentials_never_show_in_their_repr() -> None:
    text = repr(AwsCredentials(KEY_ID, SECRET, "session-token-abc"))
    assert KEY_ID not in text and SECRET not in text and "session-token" not in text
