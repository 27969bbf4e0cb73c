"""EcsClient.delete_metadata against respx: every outcome of SPEC §4 the client produces."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
import respx
import stamina

from handler.ecs.client import EcsClient, metadata_path
from handler.ecs.signing import TokenAuth
from handler.outcomes import Outcome, Pair, Result

ENDPOINT = "https://ecs.example.com"
PROJECT = "0123456789abcdef0123456789abcdef"
SERVER = "6a4e1a2c-1d4f-4a47-9d0b-1b2f3c4d5e6f"
PAIR = Pair(PROJECT, SERVER, "lease-owner")
PREFIX = f"/v2.1/{PROJECT}/servers/{SERVER}/metadata"

KEY_MISSING = {"itemNotFound": {"code": 404, "message": "Metadata item was not found"}}
SERVER_MISSING = {
    "itemNotFound": {"code": 404, "message": f"Instance {SERVER} could not be found."}
}


@pytest.fixture
def router() -> respx.Router:
    return respx.Router(assert_all_called=False, assert_all_mocked=True)


def _delete(router: respx.Router) -> respx.Route:
    return router.route(method="DELETE", path__startswith=f"{PREFIX}/")


def _probe(router: respx.Router) -> respx.Route:
    return router.route(method="GET", path=PREFIX)


def _run(
    router: respx.Router,
    pair: Pair = PAIR,
    *,
    max_attempts: int = 6,
    deadline_in: float | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    token: Callable[[], str] = lambda: "t",
) -> Result:
    async def main() -> Result:
        client = EcsClient(
            endpoint=ENDPOINT,
            auth=TokenAuth(token),
            transport=transport or httpx.MockTransport(router.handler),
            max_attempts=max_attempts,
        )
        try:
            deadline = None
            if deadline_in is not None:
                deadline = asyncio.get_running_loop().time() + deadline_in
            return await client.delete_metadata(pair, deadline=deadline)
        finally:
            await client.aclose()

    return asyncio.run(main())


def _json(status: int, body: Any, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


# --- settled -----------------------------------------------------------------------------------


def test_204_is_deleted(router: respx.Router) -> None:
    route = _delete(router).respond(204, headers={"X-Openstack-Request-Id": "req-9"})
    result = _run(router)
    assert result.outcome is Outcome.DELETED
    assert result.pair == PAIR
    assert result.status == 204
    assert result.attempts == 1
    assert result.request_id == "req-9"
    assert route.call_count == 1
    request = route.calls.last.request
    assert request.method == "DELETE"
    assert request.url.raw_path == f"{PREFIX}/lease-owner".encode()
    assert request.url.host == "ecs.example.com"


def test_headers_sent(router: respx.Router) -> None:
    route = _delete(router).respond(204)
    _run(router)
    headers = route.calls.last.request.headers
    assert headers["X-Project-Id"] == PROJECT
    assert headers["X-Auth-Token"] == "t"


def test_404_key_missing_is_absent(router: respx.Router) -> None:
    _delete(router).mock(return_value=_json(404, KEY_MISSING))
    probe = _probe(router).respond(200, json={"metadata": {}})
    result = _run(router)
    assert result.outcome is Outcome.ABSENT
    assert result.status == 404
    assert result.attempts == 1
    assert probe.call_count == 0


def test_404_instance_missing_is_server_not_found(router: respx.Router) -> None:
    _delete(router).mock(return_value=_json(404, SERVER_MISSING))
    probe = _probe(router).respond(200, json={"metadata": {}})
    result = _run(router)
    assert result.outcome is Outcome.SERVER_NOT_FOUND
    assert result.detail == f"Instance {SERVER} could not be found."
    assert probe.call_count == 0


def test_404_ecs_0114_is_server_not_found(router: respx.Router) -> None:
    _delete(router).mock(
        return_value=_json(404, {"error": {"code": "Ecs.0114", "message": "no such ECS"}})
    )
    assert _run(router).outcome is Outcome.SERVER_NOT_FOUND


def test_ambiguous_404_probe_200_is_absent(router: respx.Router) -> None:
    delete = _delete(router).respond(404, text="Not Found")
    probe = _probe(router).respond(200, json={"metadata": {"other": "x"}})
    result = _run(router)
    assert result.outcome is Outcome.ABSENT
    assert delete.call_count == 1
    assert probe.call_count == 1
    assert probe.calls.last.request.url.raw_path == PREFIX.encode()
    assert probe.calls.last.request.headers["X-Project-Id"] == PROJECT


def test_ambiguous_404_probe_404_is_server_not_found(router: respx.Router) -> None:
    _delete(router).respond(404, text="Not Found")
    probe = _probe(router).respond(404, text="Not Found")
    result = _run(router)
    assert result.outcome is Outcome.SERVER_NOT_FOUND
    assert probe.call_count == 1


def test_ambiguous_404_probe_503_is_retried(router: respx.Router) -> None:
    _delete(router).respond(404, text="Not Found")
    probe = _probe(router)
    probe.side_effect = [httpx.Response(503), httpx.Response(200, json={"metadata": {}})]
    result = _run(router)
    assert result.outcome is Outcome.ABSENT
    assert result.attempts == 2


# --- dead-lettered -----------------------------------------------------------------------------


def test_403_is_forbidden_without_retry(router: respx.Router) -> None:
    route = _delete(router).mock(
        return_value=_json(403, {"forbidden": {"code": 403, "message": "Policy does not allow"}})
    )
    result = _run(router)
    assert result.outcome is Outcome.FORBIDDEN
    assert result.status == 403
    assert result.detail == "Policy does not allow"
    assert route.call_count == 1


def test_401_twice_is_forbidden_after_one_refresh(router: respx.Router) -> None:
    route = _delete(router).respond(401)
    tokens = iter(["tok-1", "tok-2", "tok-3"])
    result = _run(router, token=lambda: next(tokens))
    assert result.outcome is Outcome.FORBIDDEN
    assert result.status == 401
    assert route.call_count == 2
    assert result.attempts == route.call_count == 2  # the re-sign is a DELETE sent


def test_401_then_204_after_refresh_is_deleted(router: respx.Router) -> None:
    route = _delete(router)
    route.side_effect = [httpx.Response(401), httpx.Response(204)]
    result = _run(router)
    assert result.outcome is Outcome.DELETED
    assert route.call_count == 2


@pytest.mark.parametrize("status", [400, 405])
def test_other_4xx_is_rejected(router: respx.Router, status: int) -> None:
    route = _delete(router).respond(status, text="bad")
    result = _run(router)
    assert result.outcome is Outcome.REJECTED
    assert result.status == status
    assert route.call_count == 1


def test_413_without_retry_after_is_rejected(router: respx.Router) -> None:
    route = _delete(router).respond(413)
    assert _run(router).outcome is Outcome.REJECTED
    assert route.call_count == 1


# --- transient ---------------------------------------------------------------------------------


def test_409_outlasting_retries_is_conflict(router: respx.Router) -> None:
    route = _delete(router).mock(
        return_value=_json(409, {"conflictingRequest": {"code": 409, "message": "locked"}})
    )
    result = _run(router, max_attempts=4)
    assert result.outcome is Outcome.CONFLICT
    assert result.status == 409
    assert result.attempts == 4
    assert route.call_count == 4


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_retryable_status_outlasting_retries_is_retries_exhausted(
    router: respx.Router, status: int
) -> None:
    route = _delete(router).respond(status)
    result = _run(router, max_attempts=3)
    assert result.outcome is Outcome.RETRIES_EXHAUSTED
    assert result.status == status
    assert result.attempts == 3
    assert route.call_count == 3


@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ReadTimeout])
def test_transport_errors_outlasting_retries_are_retries_exhausted(
    router: respx.Router, error: type[Exception]
) -> None:
    route = _delete(router)
    route.side_effect = error
    result = _run(router, max_attempts=3)
    assert result.outcome is Outcome.RETRIES_EXHAUSTED
    # A DELETE that never got a connection never left the function: it is not an attempt.
    assert result.attempts == (0 if error is httpx.ConnectError else 3)
    assert result.status is None
    assert result.detail is not None
    assert error.__name__ in result.detail
    assert route.call_count == 3  # stamina's attempts still bound the tries


@pytest.mark.parametrize("max_attempts", [1, 2, 5])
def test_attempts_never_exceed_max_attempts(router: respx.Router, max_attempts: int) -> None:
    route = _delete(router).respond(503)
    result = _run(router, max_attempts=max_attempts)
    assert route.call_count == max_attempts
    assert result.attempts == max_attempts


def test_503_then_204_is_deleted_on_second_attempt(router: respx.Router) -> None:
    route = _delete(router)
    route.side_effect = [httpx.Response(503), httpx.Response(204)]
    result = _run(router)
    assert result.outcome is Outcome.DELETED
    assert result.attempts == 2
    assert route.call_count == 2


def test_lost_response_then_key_missing_is_absent(router: respx.Router) -> None:
    # The first DELETE was applied but its answer was lost: the retry finds the key gone.
    route = _delete(router)
    route.side_effect = [httpx.ReadTimeout("lost"), _json(404, KEY_MISSING)]
    result = _run(router)
    assert result.outcome is Outcome.ABSENT
    assert result.attempts == 2


def test_connect_error_then_204_is_deleted(router: respx.Router) -> None:
    route = _delete(router)
    route.side_effect = [httpx.ConnectError("refused"), httpx.Response(204)]
    assert _run(router).outcome is Outcome.DELETED


# --- the key on the wire -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "wire"),
    [
        ("env:stage", "env%3Astage"),
        ("team name", "team%20name"),
        ("a.b-c_d", "a.b-c_d"),
        ("x: y", "x%3A%20y"),
    ],
)
def test_key_sent_percent_encoded_as_one_segment(router: respx.Router, key: str, wire: str) -> None:
    route = _delete(router).respond(204)
    result = _run(router, Pair(PROJECT, SERVER, key))
    assert result.outcome is Outcome.DELETED
    assert route.calls.last.request.url.raw_path == f"{PREFIX}/{wire}".encode()
    assert metadata_path(Pair(PROJECT, SERVER, key)) == f"{PREFIX}/{wire}"


@pytest.mark.parametrize("key", [".", ".."])
def test_dot_keys_never_change_the_path(router: respx.Router, key: str) -> None:
    route = router.route(method="DELETE").respond(204)
    _run(router, Pair(PROJECT, SERVER, key))
    raw_path = route.calls.last.request.url.raw_path.decode()
    assert raw_path.startswith(f"{PREFIX}/")
    segment = raw_path.removeprefix(f"{PREFIX}/")
    assert "/" not in segment
    assert unquote(segment) == key


# --- deadline ----------------------------------------------------------------------------------


def test_deadline_already_past_with_yielding_transport(router: respx.Router) -> None:
    async def answer(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)
        return httpx.Response(204)

    _delete(router).side_effect = answer
    result = _run(router, deadline_in=-1.0, transport=httpx.MockTransport(router.async_handler))
    assert result.outcome is Outcome.DEADLINE
    assert result.detail is not None
    assert "time ran out" in result.detail


def test_deadline_already_past_sends_nothing(router: respx.Router) -> None:
    route = _delete(router).respond(204)
    result = _run(router, deadline_in=-1.0)
    assert result.outcome is Outcome.DEADLINE
    assert route.call_count == 0


def test_deadline_passing_during_retries(router: respx.Router) -> None:
    started_requests: list[httpx.Request] = []

    async def slow_503(request: httpx.Request) -> httpx.Response:
        started_requests.append(request)
        await asyncio.sleep(0.05)
        return httpx.Response(503)

    route = _delete(router)
    route.side_effect = slow_503
    started = time.monotonic()
    result = _run(
        router,
        max_attempts=20,
        deadline_in=0.2,
        transport=httpx.MockTransport(router.async_handler),
    )
    elapsed = time.monotonic() - started
    assert result.outcome is Outcome.DEADLINE
    # The attempt cut short by the deadline is counted, though its answer never came.
    assert 2 <= len(started_requests) < 20
    assert result.attempts == len(started_requests)
    assert result.status == 503
    assert elapsed < 1.0


# --- Retry-After (real stamina waits) ----------------------------------------------------------


def test_retry_after_zero_then_204_is_deleted_without_backoff(router: respx.Router) -> None:
    stamina.set_testing(False)
    route = _delete(router)
    route.side_effect = [
        httpx.Response(429, headers={"Retry-After": "0"}, json={"error_code": "APIGW.0308"}),
        httpx.Response(204),
    ]
    started = time.monotonic()
    result = _run(router)
    elapsed = time.monotonic() - started
    assert result.outcome is Outcome.DELETED
    assert result.attempts == 2
    # The exponential backoff would wait at least 0.2 s; Retry-After: 0 means no wait.
    assert elapsed < 0.15


def test_retry_after_seconds_is_waited(router: respx.Router) -> None:
    stamina.set_testing(False)
    route = _delete(router)
    route.side_effect = [httpx.Response(503, headers={"Retry-After": "1"}), httpx.Response(204)]
    started = time.monotonic()
    result = _run(router)
    elapsed = time.monotonic() - started
    assert result.outcome is Outcome.DELETED
    assert 0.9 <= elapsed < 3.0


def test_retry_after_beyond_deadline_ends_deadline_promptly(router: respx.Router) -> None:
    stamina.set_testing(False)
    route = _delete(router).respond(429, headers={"Retry-After": "20"})
    started = time.monotonic()
    result = _run(router, deadline_in=3.0)
    elapsed = time.monotonic() - started
    assert result.outcome is Outcome.DEADLINE
    assert result.status == 429
    assert result.attempts == 1
    assert route.call_count == 1
    assert elapsed < 0.5


def test_cookieless_client_neither_keeps_nor_sends_cookies() -> None:
    from handler.ecs.client import CookielessClient

    seen: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("cookie"))
        return httpx.Response(204, headers={"Set-Cookie": "session=abc; Path=/"})

    async def main() -> None:
        async with CookielessClient(transport=httpx.MockTransport(answer)) as client:
            await client.delete("http://ecs.test/a")
            await client.delete("http://ecs.test/b")
            assert list(client.cookies.jar) == []
            with pytest.raises(TypeError):
                client.cookies = {"a": "b"}  # type: ignore[assignment]

    asyncio.run(main())
    assert seen == [None, None]


def test_retry_after_on_the_last_attempt_keeps_its_own_outcome(router: respx.Router) -> None:
    """No attempt is left, so the wait it asks for cannot pass any deadline: still a conflict."""
    locked = {"conflictingRequest": {"code": 409, "message": "Instance is locked"}}
    _delete(router).mock(return_value=_json(409, locked, **{"Retry-After": "20"}))
    result = _run(router, max_attempts=1, deadline_in=5.0)
    assert result.outcome is Outcome.CONFLICT
    assert result.attempts == 1


def test_a_deadline_already_past_counts_no_attempt(router: respx.Router) -> None:
    route = _delete(router).mock(return_value=httpx.Response(204))
    result = _run(router, deadline_in=-1.0)
    assert result.outcome is Outcome.DEADLINE
    assert result.attempts == 0
    assert route.call_count == 0


def test_an_unexpected_error_fails_one_pair_transiently_instead_of_raising() -> None:
    class Exploding(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            raise ZeroDivisionError("a bug")

    result = _run(respx.Router(), transport=Exploding())
    assert result.outcome is Outcome.RETRIES_EXHAUSTED
    assert "ZeroDivisionError" in (result.detail or "")


def test_no_more_requests_in_flight_than_allowed() -> None:
    """MAX_CONCURRENCY holds however many tasks ask at once (the executor runs twice as many)."""
    in_flight = 0
    peak = 0

    class Slow(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1
            return httpx.Response(204)

    async def main() -> list[Result]:
        client = EcsClient(
            endpoint=ENDPOINT, auth=TokenAuth(lambda: "t"), transport=Slow(), max_in_flight=3
        )
        try:
            pairs = [Pair(PROJECT, SERVER, f"k{i}") for i in range(12)]
            return list(await asyncio.gather(*(client.delete_metadata(p) for p in pairs)))
        finally:
            await client.aclose()

    results = asyncio.run(main())
    assert {r.outcome for r in results} == {Outcome.DELETED}
    assert peak == 3
