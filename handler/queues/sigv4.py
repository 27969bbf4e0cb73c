"""AWS Signature Version 4 for httpx requests, by AWS's own standalone signer (aws-sdk-signers)."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass

import httpx

__all__ = ["AwsCredentials", "SigV4Auth"]

#: What the signer adds; taken off first, so a re-sent request is signed afresh (the signer
#: keeps an X-Amz-Date it finds, and would sign with a new date under the old header).
_SIGNED_BY_US = ("authorization", "x-amz-date", "x-amz-security-token")


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    """An AWS access key, with the session token of temporary credentials (Lambda's)."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def __repr__(self) -> str:
        return "AwsCredentials(access_key_id=***, secret_access_key=***, session_token=***)"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class SigV4Auth(httpx.Auth):
    """Signs each request for one service and region; the body is read (it is signed)."""

    requires_request_body = True

    def __init__(
        self,
        *,
        service: str,
        region: str,
        credentials: Callable[[], AwsCredentials],
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        # Loaded with the first SigV4 sink only: the function without one never pays for it.
        from aws_sdk_signers import SigV4Signer

        self._signer = SigV4Signer()
        self._service = service
        self._region = region
        self._credentials = credentials
        self._clock = clock

    def sign(self, request: httpx.Request) -> None:
        """Add Authorization, X-Amz-Date (and X-Amz-Security-Token) to `request`."""
        for name in _SIGNED_BY_US:
            request.headers.pop(name, None)
        url = request.url
        path, _, _ = url.raw_path.partition(b"?")
        # The path as it goes on the wire: the signer encodes it once more, as SigV4 asks of
        # every service but S3 (and as botocore does).
        added = self.signature(
            method=request.method,
            scheme=url.scheme,
            host=url.host,
            port=url.port,
            path=path.decode("ascii"),
            query=url.query.decode("ascii") or None,
            headers=request.headers.multi_items(),
            body=request.content,
        )
        request.headers.update(added)

    def signature(
        self,
        *,
        method: str,
        scheme: str,
        host: str,
        port: int | None,
        path: str,
        query: str | None,
        headers: Iterable[tuple[str, str]],
        body: bytes,
    ) -> dict[str, str]:
        """The headers that sign a request of these parts (the request line's path as sent)."""
        from aws_sdk_signers import URI, AWSCredentialIdentity, AWSRequest, Field, Fields

        fields = Fields()
        for name, value in headers:
            if name.lower() in _SIGNED_BY_US:
                continue
            if name in fields:
                fields[name].add(value)
            else:
                fields.set_field(Field(name=name, values=[value]))
        credentials = self._credentials()
        signed = self._signer.sign(
            request=AWSRequest(
                destination=URI(scheme=scheme, host=host, port=port, path=path, query=query),
                method=method,
                body=io.BytesIO(body),
                fields=fields,
            ),
            identity=AWSCredentialIdentity(
                access_key_id=credentials.access_key_id,
                secret_access_key=credentials.secret_access_key,
                session_token=credentials.session_token,
            ),
            properties={
                "region": self._region,
                "service": self._service,
                "date": self._clock().strftime("%Y%m%dT%H%M%SZ"),
            },
        )
        return {n: signed.fields[n].as_string() for n in _SIGNED_BY_US if n in signed.fields}

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Sign, then send once."""
        self.sign(request)
        yield request
