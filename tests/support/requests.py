"""Requests a test sends to a gateway, and what it checks of the answer as an SDK would."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from typing import Any

import httpx

KEY = {"x-api-key": "sk-ant-client-own-key", "anthropic-version": "2023-06-01"}


def assert_anthropic_error(response: httpx.Response, status: int, kind: str) -> str:
    """What an SDK checks: the status, a JSON content type, and the error's type."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == kind
    assert body["error"]["message"]
    return body["error"]["message"]


def chat(model: str = "claude-sonnet-4-5", text: str = "hello", **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 16,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


NATIVE, TRANSLATED = "claude-sonnet-4-5", "openai/gpt-4.1"


def send(gateway, body: dict, timeout: float = 20) -> httpx.Response:
    return httpx.post(f"{gateway.url}/v1/messages", json=body, headers=KEY, timeout=timeout)


def stream_in_background(gateway, model: str, text: str) -> tuple[threading.Thread, dict]:
    """Read a streamed answer in a thread: `seen` gets its bytes, or the error that cut it."""
    seen: dict = {"bytes": b"", "opened": threading.Event()}

    def read() -> None:
        body = chat(model, text, stream=True)
        try:
            with httpx.stream(
                "POST", f"{gateway.url}/v1/messages", json=body, headers=KEY, timeout=30
            ) as response:
                for chunk in response.iter_raw():
                    seen["bytes"] += chunk
                    seen["opened"].set()
        except httpx.HTTPError as exc:
            seen["error"] = exc
        seen["opened"].set()

    thread = threading.Thread(target=read)
    thread.start()
    return thread, seen
