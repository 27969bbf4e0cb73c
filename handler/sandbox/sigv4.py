"""AWS Signature Version 4 verification for the sandbox's SQS, written from the SigV4 spec.

This is the server's side: it recomputes, from what was received, the canonical request, the
string to sign and the signature, and compares. It shares no code with any client's signer
(the CLI's `drain` has its own, in handler/commands/drain.py). AWS's published test-suite
vectors (tests/data/sigv4/) verify with it: tests/sandbox/test_sigv4_verify.py.

Canonicalisation, as the spec and the vectors say:

- the path as sent, its dot segments and empty segments removed (`/a/./b/../c//` is `/a/c/`),
  each segment URI-encoded again (unreserved characters `A-Z a-z 0-9 - _ . ~` kept): every
  AWS service but S3 double-encodes a path a client already percent-encoded;
- the query's names and values percent-decoded, re-encoded the same way, sorted by name
  then value; a name without `=` has an empty value;
- each signed header: the name in lower case, the values trimmed, runs of spaces made one,
  repeated headers joined with `,` in the order received;
- the payload's SHA-256 (or `X-Amz-Content-Sha256`, which must then be that hash).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote_from_bytes, unquote_to_bytes

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
DATE_WINDOW_S = 15 * 60
"""How far X-Amz-Date may be from the server's clock, either way (AWS: 15 minutes)."""

AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_AMZ_DATE = re.compile(r"^\d{8}T\d{6}Z$")
_UNRESERVED = b"-_.~"  # besides ASCII letters and digits, which quote_from_bytes always keeps
_SPACES = re.compile(r" +")

#: Error codes, as the AWS JSON protocol names them (`com.amazon.coral.service#<code>`).
MISSING_TOKEN = "MissingAuthenticationTokenException"  # noqa: S105 - an error code
INCOMPLETE = "IncompleteSignatureException"
UNRECOGNIZED = "UnrecognizedClientException"
INVALID_SIGNATURE = "InvalidSignatureException"

_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check "
    "your AWS Secret Access Key and signing method. Consult the service documentation for "
    "details."
)
_BAD_TOKEN = "The security token included in the request is invalid."  # noqa: S105


@dataclass(frozen=True, slots=True)
class SigningSecret:
    """One identity the server accepts: its secret key and, for temporary ones, its token."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None


@dataclass(frozen=True, slots=True)
class ParsedAuthorization:
    """The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header."""

    access_key_id: str
    date: str
    region: str
    service: str
    terminator: str
    signed_headers: tuple[str, ...]
    signature: str

    @property
    def scope(self) -> str:
        """The credential scope: `date/region/service/aws4_request`."""
        return f"{self.date}/{self.region}/{self.service}/{self.terminator}"


@dataclass(frozen=True, slots=True)
class Accepted:
    """A request whose signature verified."""

    access_key_id: str
    region: str
    service: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """A request refused: the HTTP status, the error code and its message."""

    status: int
    code: str
    message: str


def parse_authorization(value: str) -> ParsedAuthorization | Rejected:
    """Parse the Authorization header, or say what is missing (IncompleteSignature)."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme != ALGORITHM:
        return Rejected(400, INCOMPLETE, f"Unsupported AWS 'algorithm': '{scheme}'.")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, field_value = part.strip().partition("=")
        if sep:
            fields[name.strip()] = field_value.strip()
    missing = [n for n in ("Credential", "SignedHeaders", "Signature") if not fields.get(n)]
    if missing:
        wanted = ", ".join(f"'{name}'" for name in missing)
        return Rejected(400, INCOMPLETE, f"Authorization header requires {wanted} parameter(s). ")
    credential = fields["Credential"].split("/")
    if len(credential) != 5 or not all(credential):
        return Rejected(
            400,
            INCOMPLETE,
            "Credential must have exactly 5 slash-delimited elements, e.g. "
            "keyid/date/region/service/term, got '" + fields["Credential"] + "'",
        )
    access, date, region, service, terminator = credential
    signed = tuple(fields["SignedHeaders"].split(";"))
    return ParsedAuthorization(
        access, date, region, service, terminator, signed, fields["Signature"]
    )


def _encode(raw: bytes) -> str:
    return quote_from_bytes(raw, safe=_UNRESERVED)


def canonical_uri(raw_path: str) -> str:
    """The normalised path as sent, each segment URI-encoded (again)."""
    segments: list[str] = []
    parts = raw_path.split("/")
    for part in parts:
        if part in ("", "."):
            continue
        if part == "..":
            if segments:
                segments.pop()
            continue
        segments.append(part)
    if not segments:
        return "/"
    trailing = parts[-1] in ("", ".", "..")
    encoded = "/".join(_encode(segment.encode("utf-8", "surrogateescape")) for segment in segments)
    return "/" + encoded + ("/" if trailing else "")


def canonical_query(raw_query: str) -> str:
    """The query's parameters decoded, re-encoded and sorted by name, then value."""
    if not raw_query:
        return ""
    pairs: list[tuple[str, str]] = []
    for part in raw_query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append((_encode(unquote_to_bytes(name)), _encode(unquote_to_bytes(value))))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def canonical_header_value(values: Iterable[str]) -> str:
    """Each value trimmed, runs of spaces made one, the values joined with commas."""
    return ",".join(_SPACES.sub(" ", value.strip()) for value in values)


def canonical_request(
    *,
    method: str,
    raw_target: str,
    headers: Iterable[tuple[str, str]],
    signed_headers: Iterable[str],
    payload_hash: str,
) -> str | None:
    """The canonical request; None when a signed header is not in the request.

    `headers` are the request's (name, value) pairs in the order received, repeats included.
    """
    by_name: dict[str, list[str]] = {}
    for name, value in headers:
        by_name.setdefault(name.lower(), []).append(value)
    raw_path, _, raw_query = raw_target.partition("?")
    names = [name.lower() for name in signed_headers]
    lines = [method.upper(), canonical_uri(raw_path), canonical_query(raw_query)]
    for name in names:
        values = by_name.get(name)
        if values is None:
            return None
        lines.append(f"{name}:{canonical_header_value(values)}")
    lines.append("")
    lines.append(";".join(names))
    lines.append(payload_hash)
    return "\n".join(lines)


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    """The algorithm, the request's date, the credential scope and the canonical request's hash."""
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def signing_key(secret_access_key: str, date: str, region: str, service: str) -> bytes:
    """HMAC-SHA256 chained over the date, region, service and terminator."""
    key = ("AWS4" + secret_access_key).encode("utf-8")
    for part in (date, region, service, TERMINATOR):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


def signature(key: bytes, to_sign: str) -> str:
    """Hex HMAC-SHA256 of the string to sign."""
    return hmac.new(key, to_sign.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


def parse_amz_date(value: str) -> datetime | None:
    """An X-Amz-Date value (`YYYYMMDDTHHMMSSZ`, UTC) as a datetime; None when malformed."""
    text = value.strip()
    if not _AMZ_DATE.match(text):
        return None
    try:
        return datetime.strptime(text, AMZ_DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def _freshness(amz_date: str, moment: datetime, now: float) -> Rejected | None:
    current = datetime.fromtimestamp(now, UTC).replace(microsecond=0)
    window = timedelta(seconds=DATE_WINDOW_S)
    fmt = AMZ_DATE_FORMAT
    minutes = DATE_WINDOW_S // 60
    if moment < current - window:
        earliest = (current - window).strftime(fmt)
        return Rejected(
            403,
            INVALID_SIGNATURE,
            f"Signature expired: {amz_date} is now earlier than {earliest} "
            f"({current.strftime(fmt)} - {minutes} min.)",
        )
    if moment > current + window:
        latest = (current + window).strftime(fmt)
        return Rejected(
            403,
            INVALID_SIGNATURE,
            f"Signature not yet current: {amz_date} is still later than {latest} "
            f"({current.strftime(fmt)} + {minutes} min.)",
        )
    return None


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers:
        if key.lower() == wanted:
            return value
    return None


def verify(
    *,
    method: str,
    raw_target: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    secrets: Iterable[SigningSecret],
    service: str,
    region: str | None = None,
    now: float | None = None,
) -> Accepted | Rejected:
    """Verify a SigV4-signed request (Authorization header) against the accepted identities.

    `raw_target` is the request target as received (path and query, percent-encoded);
    `region` None accepts any region in the credential scope; `now` (POSIX time) None skips
    the X-Amz-Date freshness check (the test vectors are from 2015).
    """
    pairs = list(headers)
    authorization = _header(pairs, "Authorization")
    if authorization is None:
        return Rejected(403, MISSING_TOKEN, "Missing Authentication Token")
    parsed = parse_authorization(authorization)
    if isinstance(parsed, Rejected):
        return parsed
    amz_date = _header(pairs, "X-Amz-Date")
    if amz_date is None:
        return Rejected(
            400,
            INCOMPLETE,
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        )
    amz_date = amz_date.strip()
    moment = parse_amz_date(amz_date)
    if moment is None:
        return Rejected(
            400, INCOMPLETE, f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'."
        )
    names = [name.lower() for name in parsed.signed_headers]
    if "host" not in names:
        return Rejected(
            403,
            INVALID_SIGNATURE,
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        )
    secret = next((s for s in secrets if s.access_key_id == parsed.access_key_id), None)
    if secret is None:
        return Rejected(403, UNRECOGNIZED, _BAD_TOKEN)
    if secret.session_token is not None:
        token = _header(pairs, "X-Amz-Security-Token")
        if token is None or not hmac.compare_digest(token.strip(), secret.session_token):
            return Rejected(403, UNRECOGNIZED, _BAD_TOKEN)
    if parsed.terminator != TERMINATOR:
        return Rejected(
            403,
            INVALID_SIGNATURE,
            f"Credential should be scoped with a valid terminator: '{TERMINATOR}', "
            f"not '{parsed.terminator}'.",
        )
    if parsed.service != service:
        return Rejected(
            403, INVALID_SIGNATURE, f"Credential should be scoped to correct service: '{service}'. "
        )
    if region is not None and parsed.region != region:
        return Rejected(
            403,
            INVALID_SIGNATURE,
            f"Credential should be scoped to a valid region, not '{parsed.region}'. ",
        )
    if parsed.date != amz_date[:8]:
        return Rejected(
            403,
            INVALID_SIGNATURE,
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{parsed.date}' != '{amz_date[:8]}', from '{amz_date}'.",
        )
    if now is not None:
        stale = _freshness(amz_date, moment, now)
        if stale is not None:
            return stale
    payload_hash = hashlib.sha256(body).hexdigest()
    declared = _header(pairs, "X-Amz-Content-Sha256")
    if declared is not None and declared.strip().lower() != payload_hash:
        return Rejected(
            400,
            INVALID_SIGNATURE,
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        )
    canonical = canonical_request(
        method=method,
        raw_target=raw_target,
        headers=pairs,
        signed_headers=names,
        payload_hash=payload_hash,
    )
    if canonical is None:
        return Rejected(403, INVALID_SIGNATURE, _MISMATCH)
    to_sign = string_to_sign(amz_date, parsed.scope, canonical)
    key = signing_key(secret.secret_access_key, parsed.date, parsed.region, parsed.service)
    expected = signature(key, to_sign)
    if not hmac.compare_digest(expected, parsed.signature.lower()):
        return Rejected(
            403,
            INVALID_SIGNATURE,
            f"{_MISMATCH}\n\nThe Canonical String for this request should have been\n"
            f"'{canonical}'\n\nThe String-to-Sign should have been\n'{to_sign}'\n",
        )
    return Accepted(parsed.access_key_id, parsed.region, parsed.service)
