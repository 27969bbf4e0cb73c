"""Which library signs the SQS dead-letter sink's requests (issue 10): SigV4 signers, measured.

For each candidate that is installed: its version and runtime dependencies (read from its
metadata), the import cost on top of asyncio and httpx (a fresh interpreter per run, median of
7), the CPU of one signature of an SQS ``SendMessageBatch`` request (JSON protocol, a 10 KiB
body, a session token; the auth object built per request, as credentials may change; median of
7 rounds), how many of AWS's published Signature Version 4 test-suite vectors in
tests/data/sigv4/ it reproduces exactly (the Authorization header) and, in brackets, how many of
its signatures of them at least verify, and whether its signature of that SQS request verifies
under an independent verifier (the one below, computing what a server computes from what is
sent) both for an AWS endpoint and for a sandbox on ``localhost:PORT``.

Each library gets the request as close to the vector as its API allows (the vector's headers,
the vector's date: where a library reads the clock itself, the clock is frozen for the vector
run only). A library that always adds a header of its own to the signature (``x-amz-content-
sha256``, say) cannot reproduce the vectors, though what it sends may still verify: the last
column tells.

Run: ``.venv/bin/python bench/sigv4_choice.py`` (candidates not installed print as such; the
bench extra installs them, and aws-sdk-signers needs Python 3.12 or newer).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import importlib
import importlib.metadata as md
import importlib.util
import io
import json
import posixpath
import re
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx

VECTORS = Path(__file__).resolve().parent.parent / "tests" / "data" / "sigv4"

# The suite's inputs (tests/data/sigv4/README.txt).
SUITE_ACCESS_KEY = "AKIDEXAMPLE"
SUITE_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SUITE_REGION = "us-east-1"
SUITE_SERVICE = "service"
SUITE_DATE = dt.datetime(2015, 8, 30, 12, 36, tzinfo=dt.UTC)
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"

# The SQS request the sink sends (JSON protocol), with temporary credentials as in Lambda.
SQS_REGION = "eu-west-1"
SQS_SERVICE = "sqs"
SQS_QUEUE_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/janitor-dlq"
SQS_ENDPOINTS = ("https://sqs.eu-west-1.amazonaws.com/", "http://localhost:9324/")
SQS_ACCESS_KEY = "ASIAEXAMPLEEXAMPLE00"
SQS_SECRET_KEY = "bench/secret/key/EXAMPLEKEYEXAMPLEKEYEX"
SQS_TOKEN = "IQoJb3JpZ2luX2VjEXAMPLE//////////wEaCWV1LXdlc3QtMSJHMEUCIQ" + "E" * 600
BODY_BYTES = 10 * 1024

ROUNDS = 7
SIGNATURES_PER_ROUND = 200


@dataclass(frozen=True)
class Credentials:
    """An access key pair and, for temporary credentials, the session token."""

    access_key: str
    secret_key: str
    token: str | None = None


@dataclass(frozen=True)
class Vector:
    """One test-suite case: the request to sign and the Authorization header AWS published."""

    name: str
    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    token: str | None
    authorization: str


# A signer adapter signs ``request`` in place (adds Authorization and what goes with it).
# ``now`` is set for the vectors only (None: the library's own clock); ``names`` is the set of
# header names to sign, for the libraries that take one (None: the library's default).
Sign = Callable[
    [httpx.Request, Credentials, str, str, "dt.datetime | None", "frozenset[str] | None"], None
]


@dataclass
class Candidate:
    """A signing library: how to find it, who keeps it, how to sign an httpx.Request with it."""

    dist: str
    module: str  # what the adapter imports (and what the import cost is measured on)
    maintainer: str
    fit: str
    sign: Sign
    notes: list[str] = field(default_factory=list)


# --- the clock, frozen for the vectors only -----------------------------------------------------


class _FrozenDatetime(dt.datetime):
    """datetime.datetime whose now() and utcnow() answer the suite's date."""

    @classmethod
    def now(cls, tz: dt.tzinfo | None = None) -> _FrozenDatetime:
        return cls(2015, 8, 30, 12, 36, 0, tzinfo=dt.UTC if tz is not None else None)

    @classmethod
    def utcnow(cls) -> _FrozenDatetime:
        return cls(2015, 8, 30, 12, 36, 0)


_FROZEN_MODULE = types.SimpleNamespace(
    datetime=_FrozenDatetime, date=dt.date, timedelta=dt.timedelta, timezone=dt.timezone
)


@contextmanager
def _clock(module: str, name: str, frozen: object, now: dt.datetime | None) -> Iterator[None]:
    """While a vector is signed, freeze ``module.name`` (datetime, as the library imported it)."""
    if now is None:
        yield
        return
    target = importlib.import_module(module)
    saved = getattr(target, name)
    setattr(target, name, frozen)
    try:
        yield
    finally:
        setattr(target, name, saved)


# --- the adapters ---------------------------------------------------------------------------------


def _aws_sdk_signers(
    request: httpx.Request,
    creds: Credentials,
    region: str,
    service: str,
    now: dt.datetime | None,
    names: frozenset[str] | None,
) -> None:
    signers = importlib.import_module("aws_sdk_signers")
    fields = signers.Fields()
    for name, value in request.headers.multi_items():
        if name in fields:
            fields[name].add(value)
        else:
            fields.set_field(signers.Field(name=name, values=[value]))
    url = request.url
    aws_request = signers.AWSRequest(
        destination=signers.URI(
            scheme=url.scheme,
            host=url.host,
            port=url.port,
            # Decoded, to replay the suite's unencoded request lines. The function passes the
            # path as sent (url.raw_path), which AWS encodes again for all but S3, as botocore
            # does; for SQS's JSON protocol both are "/".
            path=url.path,
            query=url.query.decode("ascii") or None,
        ),
        method=request.method,
        body=io.BytesIO(request.content),  # Iterable[bytes]: bytes itself iterates ints
        fields=fields,
    )
    properties: dict[str, Any] = {"region": region, "service": service}
    if now is not None:
        properties["date"] = now.strftime(AMZ_DATE_FORMAT)
    identity = signers.AWSCredentialIdentity(
        access_key_id=creds.access_key,
        secret_access_key=creds.secret_key,
        session_token=creds.token,
    )
    signed = signers.SigV4Signer().sign(
        request=aws_request, identity=identity, properties=properties
    )
    for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
        if name in signed.fields:
            request.headers[name] = str(signed.fields[name].as_string())


def _httpx_auth(
    request: httpx.Request,
    creds: Credentials,
    region: str,
    service: str,
    now: dt.datetime | None,
    names: frozenset[str] | None,
) -> None:
    module = importlib.import_module("httpx_auth")
    auth = module.AWS4Auth(
        creds.access_key,
        creds.secret_key,
        region,
        service,
        security_token=creds.token,
        include_headers=sorted(names or ()),
    )
    with _clock("httpx_auth._aws", "datetime", _FROZEN_MODULE, now):
        next(auth.sync_auth_flow(request))


def _requests_aws4auth(
    request: httpx.Request,
    creds: Credentials,
    region: str,
    service: str,
    now: dt.datetime | None,
    names: frozenset[str] | None,
) -> None:
    module = importlib.import_module("requests_aws4auth")
    kwargs: dict[str, Any] = {"session_token": creds.token}
    if names is not None:
        kwargs["include_hdrs"] = set(names)
    auth = module.AWS4Auth(creds.access_key, creds.secret_key, region, service, **kwargs)
    with _clock("requests_aws4auth.aws4auth", "datetime", _FROZEN_MODULE, now):
        auth(request)  # duck-typed: it reads .headers, .url, .method and .content


def _aws_requests_auth(
    request: httpx.Request,
    creds: Credentials,
    region: str,
    service: str,
    now: dt.datetime | None,
    names: frozenset[str] | None,
) -> None:
    module = importlib.import_module("aws_requests_auth.aws_auth")
    auth = module.AWSRequestsAuth(
        aws_access_key=creds.access_key,
        aws_secret_access_key=creds.secret_key,
        aws_host=request.url.netloc.decode("ascii"),
        aws_region=region,
        aws_service=service,
        aws_token=creds.token,
    )
    # It wants a requests.PreparedRequest: .url as text, .body, .method.
    shim = types.SimpleNamespace(url=str(request.url), body=request.content, method=request.method)
    with _clock("aws_requests_auth.aws_auth", "datetime", _FROZEN_MODULE, now):
        headers = auth.get_aws_request_headers(
            r=shim,
            aws_access_key=creds.access_key,
            aws_secret_access_key=creds.secret_key,
            aws_token=creds.token,
        )
    request.headers.update(headers)


def _httpx_aws_auth(
    request: httpx.Request,
    creds: Credentials,
    region: str,
    service: str,
    now: dt.datetime | None,
    names: frozenset[str] | None,
) -> None:
    module = importlib.import_module("httpx_aws_auth")
    credentials = module.AwsCredentials(
        access_key=creds.access_key, secret_key=creds.secret_key, session_token=creds.token
    )
    auth = module.AwsSigV4Auth(credentials=credentials, region=region, service=service)
    with _clock("httpx_aws_auth", "datetime", _FrozenDatetime, now):
        next(auth.sync_auth_flow(request))


def _httpx_auth_awssigv4(
    request: httpx.Request,
    creds: Credentials,
    region: str,
    service: str,
    now: dt.datetime | None,
    names: frozenset[str] | None,
) -> None:
    module = importlib.import_module("httpx_auth_awssigv4")
    auth = module.SigV4Auth(
        access_key=creds.access_key,
        secret_key=creds.secret_key,
        service=service,
        region=region,
        token=creds.token,
    )
    with _clock("httpx_auth_awssigv4.auth", "datetime", _FrozenDatetime, now):
        auth(request)


def _aws_request_signer(
    request: httpx.Request,
    creds: Credentials,
    region: str,
    service: str,
    now: dt.datetime | None,
    names: frozenset[str] | None,
) -> None:
    module = importlib.import_module("aws_request_signer")
    signer = module.AwsRequestSigner(
        region=region,
        access_key_id=creds.access_key,
        secret_access_key=creds.secret_key,
        service=service,
        session_token=creds.token,
    )
    own = {"host", "x-amz-date", "x-amz-security-token", "content-length"}
    extra = {k: v for k, v in request.headers.items() if k not in own}
    with _clock("aws_request_signer", "datetime", _FROZEN_MODULE, now):
        headers = signer.sign_with_headers(
            request.method,
            str(request.url),
            headers=extra,
            content_hash=hashlib.sha256(request.content).hexdigest(),
        )
    request.headers.update(headers)


CANDIDATES = [
    Candidate(
        "aws-sdk-signers",
        "aws_sdk_signers",
        "AWS (smithy-lang/smithy-python); 0.4.0, 2026-10; pre-alpha, Python ≥ 3.12",
        "SigV4Signer + AsyncSigV4Signer over its own AWSRequest/URI/Fields: a 20-line adapter",
        _aws_sdk_signers,
        [
            "signs every header but a fixed list (accept, accept-encoding, connection, expect, "
            "user-agent, transfer-encoding, …): Content-Length is signed, so sign the final body",
            "sign() returns a signed copy (its deep copy of the fields is ~40 % of the time): "
            "copy Authorization, X-Amz-Date, X-Amz-Security-Token back onto the httpx.Request",
            "the body must be an Iterable[bytes] such as io.BytesIO (bytes iterates ints)",
        ],
    ),
    Candidate(
        "httpx-auth",
        "httpx_auth",
        "Colin Bounouar (one person); 0.23.1, 2025-01; pins httpx==0.28.*",
        "httpx.Auth (Client and AsyncClient)",
        _httpx_auth,
        [
            "always adds and signs x-amz-content-sha256 (S3's header): no vector can match exactly",
            "requires httpx==0.28.* exactly, so it holds back any httpx upgrade",
        ],
    ),
    Candidate(
        "requests-aws4auth",
        "requests_aws4auth",
        "Ted Timmons (tedder); 1.4.0, 2026-10",
        "a requests AuthBase that accepts an httpx.Request (duck-typed); imports requests",
        _requests_aws4auth,
        [
            "an httpx URL with an empty path (http://localhost:9324, no slash) is signed as '.': "
            "get-relative-relative, and SignatureDoesNotMatch on such an endpoint",
            "encodes httpx's already-encoded path again (get-utf8, get-space), sorts duplicate "
            "values (get-header-key-duplicate), keeps quoted runs of spaces "
            "(get-header-value-trim)",
        ],
    ),
    Candidate(
        "aws-requests-auth",
        "aws_requests_auth.aws_auth",
        "David Muller; 0.4.3, 2020-05 (unmaintained)",
        "requests only; needs a PreparedRequest-like shim",
        _aws_requests_auth,
        ["signs host, x-amz-date and the token only: Content-Type and X-Amz-Target go unsigned"],
    ),
    Candidate(
        "httpx-aws-auth",
        "httpx_aws_auth",
        "Jakub Jantosik (one person); 4.2.0, 2026-05",
        "httpx.Auth (Client and AsyncClient)",
        _httpx_aws_auth,
        ["signs host, x-amz-date and the token only: Content-Type and X-Amz-Target go unsigned"],
    ),
    Candidate(
        "httpx-auth-awssigv4",
        "httpx_auth_awssigv4",
        "Mohan Muppidi; 0.1.4, 2022-04 (unmaintained)",
        "httpx callable auth",
        _httpx_auth_awssigv4,
        [
            "signs the host without its port: fails against any endpoint on a non-default port",
            "neither sorts nor encodes the query; uses the deprecated datetime.utcnow()",
        ],
    ),
    Candidate(
        "aws-request-signer",
        "aws_request_signer",
        "Ingmar Steen; 1.2.0, 2023-02 (unmaintained)",
        "framework-free: returns the headers to add",
        _aws_request_signer,
        ["always adds and signs x-amz-content-sha256: no vector can match exactly"],
    ),
]


# --- the vectors ------------------------------------------------------------------------------


def load_vectors(root: Path = VECTORS) -> list[Vector]:
    """Every NAME.req under ``root`` with its expected Authorization (.authz, else .sreq)."""
    vectors = []
    for req in sorted(root.rglob("*.req")):
        authz = req.with_suffix(".authz")
        if authz.exists():
            expected = authz.read_text(encoding="utf-8")
        else:
            sreq = req.with_suffix(".sreq").read_text(encoding="utf-8")
            expected = sreq.split("\nAuthorization: ", 1)[1].strip()
        head, _, body = req.read_text(encoding="utf-8").partition("\n\n")
        request_line, *header_lines = head.split("\n")
        method, rest = request_line.split(" ", 1)
        target = rest.rsplit(" ", 1)[0]
        headers = []
        for line in header_lines:
            name, value = line.split(":", 1)
            headers.append((name, value.strip()))  # optional whitespace is not part of a value
        token = next((v for k, v in headers if k.lower() == "x-amz-security-token"), None)
        host = next(v for k, v in headers if k.lower() == "host")
        vectors.append(
            Vector(
                name=req.stem,
                method=method,
                url=f"https://{host}{target}",
                headers=tuple(headers),
                body=body.encode("utf-8"),
                token=token,
                authorization=expected,
            )
        )
    return vectors


def vector_request(vector: Vector) -> httpx.Request:
    """The vector as an httpx.Request, without the Content-Length httpx adds on its own."""
    request = httpx.Request(
        vector.method, vector.url, headers=list(vector.headers), content=vector.body or None
    )
    if not any(k.lower() == "content-length" for k, _ in vector.headers):
        request.headers.pop("content-length", None)
    return request


def check_vectors(candidate: Candidate, vectors: list[Vector]) -> tuple[list[str], list[str]]:
    """The vectors whose Authorization the candidate did not reproduce exactly, and among them
    those whose signature does not even verify (a valid signature over other signed headers,
    ``x-amz-content-sha256`` say, still verifies)."""
    inexact = []
    invalid = []
    for vector in vectors:
        request = vector_request(vector)
        creds = Credentials(SUITE_ACCESS_KEY, SUITE_SECRET_KEY, vector.token)
        names = frozenset(k.lower() for k, _ in vector.headers)
        try:
            candidate.sign(request, creds, SUITE_REGION, SUITE_SERVICE, SUITE_DATE, names)
            got = request.headers.get("authorization")
            why = verify(request, creds, SUITE_REGION, SUITE_SERVICE)
        except Exception as exc:  # noqa: BLE001 - a library failing a vector is a result
            got = why = f"{type(exc).__name__}: {exc}"
        if got != vector.authorization:
            inexact.append(vector.name)
            if why:
                invalid.append(vector.name)
    return inexact, invalid


# --- an independent verifier (what a SigV4 server computes from what is sent) -----------------


def _canonical_path(path: str) -> str:
    normal = posixpath.normpath(path) if path else "/"
    normal = re.sub("/+", "/", normal)
    if path.endswith("/") and not normal.endswith("/"):
        normal += "/"
    return quote(normal, safe="/-_.~")


def _canonical_query(query: str) -> str:
    pairs = []
    for part in filter(None, query.split("&")):
        key, _, value = part.partition("=")
        pairs.append((quote(unquote(key), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def verify(request: httpx.Request, creds: Credentials, region: str, service: str) -> str:
    """'' when the request's signature verifies, else why not."""
    authorization = request.headers.get("authorization", "")
    found = re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
        r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})",
        authorization,
    )
    if found is None:
        return "no SigV4 Authorization header"
    access_key, day, scope_region, scope_service, signed, signature = found.groups()
    amz_date = request.headers.get("x-amz-date", "")
    names = signed.split(";")
    if (access_key, scope_region, scope_service) != (creds.access_key, region, service):
        return "wrong credential scope"
    if not amz_date.startswith(day) or "host" not in names or "x-amz-date" not in names:
        return "date or host not signed"
    if creds.token is not None and request.headers.get("x-amz-security-token") != creds.token:
        return "no session token sent"
    canonical_headers = "".join(
        f"{name}:{','.join(' '.join(v.split()) for v in request.headers.get_list(name))}\n"
        for name in names
    )
    canonical = "\n".join(
        [
            request.method,
            _canonical_path(request.url.path),
            _canonical_query(request.url.query.decode("ascii")),
            canonical_headers,
            signed,
            hashlib.sha256(request.content).hexdigest(),
        ]
    )
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            amz_date,
            f"{day}/{region}/{service}/aws4_request",
            hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
        ]
    )
    key = f"AWS4{creds.secret_key}".encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    expected = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return "" if hmac.compare_digest(expected, signature) else "signature does not match"


# --- the SQS request, the timings -----------------------------------------------------------------


def sqs_request(endpoint: str = SQS_ENDPOINTS[0], body_bytes: int = BODY_BYTES) -> httpx.Request:
    """A SendMessageBatch of 10 entries, about ``body_bytes`` long, as the sink would POST it."""
    entry_size = max(1, (body_bytes - 200) // 10 - 40)
    entries = [{"Id": f"m{i}", "MessageBody": "x" * entry_size} for i in range(10)]
    body = json.dumps({"QueueUrl": SQS_QUEUE_URL, "Entries": entries}).encode("utf-8")
    body += b" " * max(0, body_bytes - len(body))  # JSON allows trailing whitespace
    return httpx.Request(
        "POST",
        endpoint,
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "AmazonSQS.SendMessageBatch",
        },
        content=body,
    )


SQS_CREDS = Credentials(SQS_ACCESS_KEY, SQS_SECRET_KEY, SQS_TOKEN)


def sign_us(
    candidate: Candidate, rounds: int = ROUNDS, per_round: int = SIGNATURES_PER_ROUND
) -> float:
    """Median µs of CPU per signature of the SQS request (a fresh request each time)."""
    results = []
    for _ in range(rounds):
        requests = [sqs_request() for _ in range(per_round)]
        start = time.process_time_ns()
        for request in requests:
            candidate.sign(request, SQS_CREDS, SQS_REGION, SQS_SERVICE, None, None)
        results.append((time.process_time_ns() - start) / per_round / 1000)
    return statistics.median(results)


def import_ms(module: str, runs: int = ROUNDS) -> float:
    """Median ms to import ``module`` in a fresh interpreter that has imported asyncio and httpx
    (the function has both loaded before it could send a dead letter)."""
    code = (
        "import asyncio, time, httpx; t = time.perf_counter(); "
        f"import {module}; "
        "print((time.perf_counter() - t) * 1000)"
    )
    samples = [
        float(subprocess.check_output([sys.executable, "-c", code], text=True)) for _ in range(runs)
    ]
    return statistics.median(samples)


def runtime_deps(dist: str) -> str:
    """The distribution's unconditional requirements, as its metadata lists them."""
    requires = md.requires(dist) or []
    deps = [r.split(";")[0].strip() for r in requires if "extra ==" not in r]
    return ", ".join(deps) or "none"


def sqs_check(candidate: Candidate) -> tuple[str, str]:
    """The verifier's answer for the SQS request at each endpoint, and the headers signed."""
    answers = []
    signed = ""
    for endpoint in SQS_ENDPOINTS:
        request = sqs_request(endpoint)
        try:
            candidate.sign(request, SQS_CREDS, SQS_REGION, SQS_SERVICE, None, None)
            why = verify(request, SQS_CREDS, SQS_REGION, SQS_SERVICE)
        except Exception as exc:  # noqa: BLE001 - a library failing is a result
            why = f"{type(exc).__name__}: {exc}"
        answers.append("✓" if not why else f"✗ ({why})")
        if not signed:
            found = re.search(r"SignedHeaders=([^,]+)", request.headers.get("authorization", ""))
            signed = found.group(1) if found else "?"
    return " / ".join(answers), signed


def measure(candidates: list[Candidate], rounds: int) -> tuple[list[dict[str, str]], list[str]]:
    """One row per candidate, and the notes printed under the table."""
    vectors = load_vectors()
    rows = []
    notes = []
    for candidate in candidates:
        if importlib.util.find_spec(candidate.module.split(".")[0]) is None:
            rows.append(
                {
                    "library": candidate.dist,
                    "version": "not installed",
                    "maintained by": candidate.maintainer,
                    "async + httpx fit": candidate.fit,
                }
            )
            continue
        inexact, invalid = check_vectors(candidate, vectors)
        verified, signed = sqs_check(candidate)
        rows.append(
            {
                "library": candidate.dist,
                "version": md.version(candidate.dist),
                "maintained by": candidate.maintainer,
                "deps": runtime_deps(candidate.dist),
                "import ms": f"{import_ms(candidate.module, rounds):.1f}",
                "sign µs": f"{sign_us(candidate, rounds):.0f}",
                "vectors exact (verify)": (
                    f"{len(vectors) - len(inexact)}/{len(vectors)} "
                    f"({len(vectors) - len(invalid)}/{len(vectors)})"
                ),
                "SQS verifies (AWS / localhost:port)": verified,
                "async + httpx fit": candidate.fit,
            }
        )
        notes.append(f"- {candidate.dist}: signs `{signed}` on the SQS request")
        if inexact:
            notes.append(f"  - not exact: {', '.join(inexact)}")
        if invalid:
            notes.append(f"  - do not verify: {', '.join(invalid)}")
        notes.extend(f"  - {note}" for note in candidate.notes)
    return rows, notes


COLUMNS = [
    "library",
    "version",
    "maintained by",
    "deps",
    "import ms",
    "sign µs",
    "vectors exact (verify)",
    "SQS verifies (AWS / localhost:port)",
    "async + httpx fit",
]


def table(rows: list[dict[str, str]]) -> list[str]:
    """The rows as a Markdown table."""
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        out.append("| " + " | ".join(row.get(c, "") for c in COLUMNS) + " |")
    return out


def main(argv: list[str] | None = None) -> int:
    """Measure the installed candidates and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="runs per median (7)")
    parser.add_argument("--only", nargs="*", help="distribution names to measure")
    args = parser.parse_args(argv)
    chosen = [c for c in CANDIDATES if not args.only or c.dist in args.only]
    rows, notes = measure(chosen, args.rounds)
    print(
        f"Python {sys.version.split()[0]}, httpx {httpx.__version__}; "
        f"{len(load_vectors())} vectors from {VECTORS.relative_to(VECTORS.parents[2])}; "
        f"sign: POST SendMessageBatch, {BODY_BYTES // 1024} KiB body, session token\n"
    )
    print("\n".join(table(rows)))
    if notes:
        print()
        print("\n".join(notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
