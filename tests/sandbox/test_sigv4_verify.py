"""The sandbox's SigV4 verifier against AWS's published Signature Version 4 test suite."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from handler.sandbox import sigv4

SUITE = Path(__file__).resolve().parent.parent / "data" / "sigv4"
ACCESS_KEY = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = (SUITE / "post-sts-token" / "readme.txt").read_text().strip().splitlines()[-1]
WHEN = datetime(2015, 8, 30, 12, 36, tzinfo=UTC).timestamp()


@dataclasses.dataclass(frozen=True)
class Vector:
    """One vector: the request as written in its .req file and the expected Authorization."""

    name: str
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    authorization: str

    def signed(self, authorization: str | None = None) -> list[tuple[str, str]]:
        return [*self.headers, ("Authorization", authorization or self.authorization)]


def parse_request(raw: bytes) -> tuple[str, str, list[tuple[str, str]], bytes]:
    """A .req/.sreq file: request line, `Name:value` lines, a blank line, the body (LF ends)."""
    text = raw.decode("utf-8")
    head, _, body = text.partition("\n\n")
    lines = head.split("\n")
    method, _, rest = lines[0].partition(" ")
    target = rest.rsplit(" ", 1)[0]  # the path may hold a space: get-space
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name, value))
    return method, target, headers, body.encode("utf-8")


def load_vectors() -> list[Vector]:
    vectors = []
    for request in sorted(SUITE.rglob("*.req")):
        method, target, headers, body = parse_request(request.read_bytes())
        authz = request.with_suffix(".authz")
        if authz.exists():
            expected = authz.read_text(encoding="utf-8")
        else:  # the .sreq carries it as its Authorization line
            _, _, signed, _ = parse_request(request.with_suffix(".sreq").read_bytes())
            expected = next(v.strip() for n, v in signed if n == "Authorization")
        vectors.append(Vector(request.stem, method, target, headers, body, expected))
    return vectors


VECTORS = load_vectors()
SECRETS = [sigv4.SigningSecret(ACCESS_KEY, SECRET)]


def verify(
    vector: Vector,
    headers: list[tuple[str, str]] | None = None,
    *,
    secrets: list[sigv4.SigningSecret] = SECRETS,
    body: bytes | None = None,
    region: str | None = "us-east-1",
    now: float | None = WHEN,
) -> sigv4.Accepted | sigv4.Rejected:
    return sigv4.verify(
        method=vector.method,
        raw_target=vector.target,
        headers=vector.signed() if headers is None else headers,
        body=vector.body if body is None else body,
        secrets=secrets,
        service="service",
        region=region,
        now=now,
    )


def test_the_suite_is_all_there() -> None:
    # README.txt: 18 vectors with a .req; none may go missing silently.
    assert len(VECTORS) == 18
    assert {"get-vanilla", "get-space", "post-sts-header-before"} <= {v.name for v in VECTORS}


@pytest.mark.parametrize("vector", VECTORS, ids=[v.name for v in VECTORS])
def test_every_vector_verifies(vector: Vector) -> None:
    assert verify(vector) == sigv4.Accepted(ACCESS_KEY, "us-east-1", "service")


@pytest.mark.parametrize("vector", VECTORS, ids=[v.name for v in VECTORS])
def test_a_changed_signature_does_not(vector: Vector) -> None:
    signature = vector.authorization[-64:]
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    result = verify(vector, vector.signed(vector.authorization[:-64] + flipped))
    assert isinstance(result, sigv4.Rejected)
    assert (result.status, result.code) == (403, sigv4.INVALID_SIGNATURE)
    assert result.message.startswith("The request signature we calculated does not match")


@pytest.mark.parametrize("vector", VECTORS, ids=[v.name for v in VECTORS])
def test_a_changed_request_does_not(vector: Vector) -> None:
    assert isinstance(verify(vector, body=vector.body + b"x"), sigv4.Rejected)
    # Another value for the first signed header (host in most vectors).
    name, value = vector.headers[0]
    changed = [(name, value + "x"), *vector.headers[1:]]
    assert isinstance(
        verify(vector, [*changed, ("Authorization", vector.authorization)]), sigv4.Rejected
    )
    other_method = "PUT" if vector.method != "PUT" else "GET"
    tampered = dataclasses.replace(vector, method=other_method)
    assert isinstance(verify(tampered), sigv4.Rejected)


def test_canonical_request_and_string_to_sign_match_the_published_ones() -> None:
    folder = SUITE / "post-x-www-form-urlencoded"
    vector = next(v for v in VECTORS if v.name == "post-x-www-form-urlencoded")
    canonical = sigv4.canonical_request(
        method=vector.method,
        raw_target=vector.target,
        headers=vector.headers,
        signed_headers=["content-type", "host", "x-amz-date"],
        payload_hash=hashlib.sha256(vector.body).hexdigest(),
    )
    assert canonical == (folder / "post-x-www-form-urlencoded.creq").read_text()
    assert canonical is not None
    to_sign = sigv4.string_to_sign(
        "20150830T123600Z", "20150830/us-east-1/service/aws4_request", canonical
    )
    assert to_sign == (folder / "post-x-www-form-urlencoded.sts").read_text()


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("/", "/"),
        ("/./", "/"),
        ("//example//", "/example/"),
        ("/example1/example2/../..", "/"),
        ("/a/b/../c", "/a/c"),
        ("/example space/", "/example%20space/"),
        ("/000000000000/janitor-work", "/000000000000/janitor-work"),
        ("/a%2Fb", "/a%252Fb"),  # the path as sent, encoded again (every service but S3)
    ],
)
def test_canonical_uri(raw: str, canonical: str) -> None:
    assert sigv4.canonical_uri(raw) == canonical


def test_a_session_token_is_required_when_the_identity_has_one() -> None:
    before = next(v for v in VECTORS if v.name == "post-sts-header-before")
    temporary = [sigv4.SigningSecret(ACCESS_KEY, SECRET, TOKEN)]
    assert isinstance(verify(before, secrets=temporary), sigv4.Accepted)
    without = [(n, v) for n, v in before.signed() if n != "X-Amz-Security-Token"]
    result = verify(before, without, secrets=temporary)
    assert isinstance(result, sigv4.Rejected)
    assert (result.status, result.code) == (403, sigv4.UNRECOGNIZED)
    wrong = [(n, v + "x" if n == "X-Amz-Security-Token" else v) for n, v in before.signed()]
    assert verify(before, wrong, secrets=temporary) == sigv4.Rejected(
        403, sigv4.UNRECOGNIZED, "The security token included in the request is invalid."
    )


def test_a_token_added_after_signing_is_accepted_when_right() -> None:
    # post-sts-header-after: the token travels unsigned, as some services allow.
    method, target, headers, body = parse_request(
        (
            SUITE / "post-sts-token" / "post-sts-header-after" / "post-sts-header-after.sreq"
        ).read_bytes()
    )
    headers = [(n, v.strip()) if n == "Authorization" else (n, v) for n, v in headers]
    result = sigv4.verify(
        method=method,
        raw_target=target,
        headers=headers,
        body=body,
        secrets=[sigv4.SigningSecret(ACCESS_KEY, SECRET, TOKEN)],
        service="service",
        now=WHEN,
    )
    assert isinstance(result, sigv4.Accepted)


def test_the_date_must_be_within_15_minutes() -> None:
    vanilla = next(v for v in VECTORS if v.name == "get-vanilla")
    assert isinstance(verify(vanilla, now=WHEN + 15 * 60), sigv4.Accepted)
    assert isinstance(verify(vanilla, now=WHEN - 15 * 60), sigv4.Accepted)
    late = verify(vanilla, now=WHEN + 15 * 60 + 1)
    assert late == sigv4.Rejected(
        403,
        sigv4.INVALID_SIGNATURE,
        "Signature expired: 20150830T123600Z is now earlier than 20150830T123601Z "
        "(20150830T125101Z - 15 min.)",
    )
    early = verify(vanilla, now=WHEN - 16 * 60)
    assert isinstance(early, sigv4.Rejected)
    assert early.message.startswith("Signature not yet current: 20150830T123600Z")


def test_scope_region_service_and_key() -> None:
    vanilla = next(v for v in VECTORS if v.name == "get-vanilla")
    assert isinstance(verify(vanilla, region=None), sigv4.Accepted)
    wrong_region = verify(vanilla, region="eu-west-1")
    assert isinstance(wrong_region, sigv4.Rejected)
    assert wrong_region.message.startswith("Credential should be scoped to a valid region")
    other_service = sigv4.verify(
        method="GET",
        raw_target="/",
        headers=vanilla.signed(),
        body=b"",
        secrets=SECRETS,
        service="sqs",
        now=WHEN,
    )
    assert other_service == sigv4.Rejected(
        403, sigv4.INVALID_SIGNATURE, "Credential should be scoped to correct service: 'sqs'. "
    )
    stranger = verify(vanilla, secrets=[sigv4.SigningSecret("AKIDOTHER", SECRET)])
    assert isinstance(stranger, sigv4.Rejected)
    assert (stranger.status, stranger.code) == (403, sigv4.UNRECOGNIZED)
    wrong_secret = verify(vanilla, secrets=[sigv4.SigningSecret(ACCESS_KEY, SECRET + "x")])
    assert isinstance(wrong_secret, sigv4.Rejected)
    assert wrong_secret.code == sigv4.INVALID_SIGNATURE


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, sigv4.MISSING_TOKEN),
        ("AWS3 foo", sigv4.INCOMPLETE),
        ("AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00", sigv4.INCOMPLETE),
        (
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1, SignedHeaders=host, "
            "Signature=00",
            sigv4.INCOMPLETE,
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
            "SignedHeaders=x-amz-date, Signature=00",
            sigv4.INVALID_SIGNATURE,
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150829/us-east-1/service/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=00",
            sigv4.INVALID_SIGNATURE,
        ),
    ],
)
def test_malformed_authorization(authorization: str | None, code: str) -> None:
    vanilla = next(v for v in VECTORS if v.name == "get-vanilla")
    headers = vanilla.headers if authorization is None else vanilla.signed(authorization)
    result = verify(vanilla, headers)
    assert isinstance(result, sigv4.Rejected)
    assert result.code == code


def test_a_declared_payload_hash_must_be_the_bodys() -> None:
    vanilla = next(v for v in VECTORS if v.name == "post-vanilla")
    declared = [*vanilla.signed(), ("X-Amz-Content-Sha256", "0" * 64)]
    result = verify(vanilla, declared)
    assert isinstance(result, sigv4.Rejected)
