"""The fake providers fail as the real ones do when told to: each provider's own status and
error body, `retry-after` on a 429, a refused connection, a silent answer."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_openai import FakeOpenAI
from tests.support.fake_responses import FakeResponses
from tests.support.fake_server import FakeServer
from tests.support.strict_providers import PROFILES, FakeProvider


def _post(fake: FakeServer, timeout: float = 5) -> urllib.error.HTTPError:
    request = urllib.request.Request(fake.url + "/v1/messages", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=timeout)
    return caught.value


def _profile(kind: str) -> FakeProvider:
    return FakeProvider(profile=next(p for p in PROFILES if p.kind == kind))


@pytest.mark.parametrize(
    ("make", "failure", "body"),
    [
        (
            FakeAnthropic,
            "429",
            {
                "type": "error",
                "error": {
                    "type": "rate_limit_error",
                    "message": "This request would exceed your organization's rate limit.",
                },
            },
        ),
        (
            FakeAnthropic,
            "529",
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        ),
        (
            FakeAnthropic,
            "503",
            {"type": "error", "error": {"type": "api_error", "message": "Service unavailable"}},
        ),
        (
            lambda: FakeOpenAI(expected_key="k"),
            "429",
            {
                "error": {
                    "message": "Rate limit reached for requests",
                    "type": "requests",
                    "param": None,
                    "code": "rate_limit_exceeded",
                }
            },
        ),
        (
            lambda: FakeResponses(expected_key="k"),
            "503",
            {
                "error": {
                    "message": "The server is overloaded or not ready yet.",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
            },
        ),
        (
            lambda: _profile("gemini"),
            "503",
            [
                {
                    "error": {
                        "code": 503,
                        "message": "The model is overloaded. Please try again later.",
                        "status": "UNAVAILABLE",
                    }
                }
            ],
        ),
        (
            lambda: _profile("mistral"),
            "429",
            {
                "object": "error",
                "message": "Requests rate limit exceeded",
                "type": "rate_limited",
                "param": None,
                "code": "1300",
            },
        ),
    ],
)
def test_a_failing_fake_answers_its_providers_status_and_error(make, failure, body):
    fake = make().start()
    fake.failure = failure
    try:
        error = _post(fake)
        assert error.code == int(failure)
        assert json.loads(error.read()) == body
        assert error.headers.get("retry-after") == (fake.retry_after if failure == "429" else None)
        assert len(fake.received) == 1
    finally:
        fake.stop()


def test_a_fake_told_to_refuse_connections_has_nothing_listening():
    fake = FakeAnthropic().start()
    fake.refuse_connections()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((fake.host, fake.port), timeout=5).close()


def test_a_silent_fake_reads_the_request_and_never_answers():
    fake = FakeAnthropic().start()
    fake.failure = "silent"
    try:
        request = urllib.request.Request(fake.url + "/v1/messages", data=b"{}", method="POST")
        with pytest.raises(TimeoutError):
            urllib.request.urlopen(request, timeout=0.5)
        assert [r.path for r in fake.received] == ["/v1/messages"]
    finally:
        fake.stop()
