"""The `http` source: requests the ASGI app hands over, and nothing else."""

from __future__ import annotations

import pytest

from handler.sources import UnknownEventError, detect
from handler.sources.base import HttpRequest
from handler.sources.served import ServedSource


def test_only_a_request_object_is_a_served_request() -> None:
    request = HttpRequest.of("post", {"X-Request-Id": "r1"}, b"{}", "/")
    assert ServedSource.matches(request)
    assert isinstance(detect(request), ServedSource)
    # A platform's event that looks like a request (a dict) is never taken for one.
    looks_alike = {"method": "POST", "headers": {}, "body": "{}", "path": "/"}
    assert not ServedSource.matches(looks_alike)


def test_the_unrecognised_event_message_does_not_offer_the_internal_door() -> None:
    with pytest.raises(UnknownEventError) as caught:
        detect(42)
    assert "apigw-v2" in str(caught.value)
    assert "http," not in str(caught.value)


def test_the_log_event_form_of_a_request_is_json_text() -> None:
    request = HttpRequest.of("POST", {"Authorization": "Bearer x"}, b"\xff{}", "/hook")
    shown = request.as_event()
    assert shown == {
        "method": "POST",
        "path": "/hook",
        "headers": {"authorization": "Bearer x"},
        "body": "\ufffd{}",
    }
