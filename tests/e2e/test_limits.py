"""Limits: concurrency (Envoy's circuit breakers, a config setting) and memory bounds."""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway import gateway_config, running_gateway
from tests.support.processes import envoy_pid, sidecar_pid
from tests.support.requests import (
    KEY,
    NATIVE,
    TRANSLATED,
    assert_anthropic_error,
    chat,
    send,
    stream_in_background,
)

LIMIT = 2


@pytest.fixture(scope="module")
def limited_gateway(fake_anthropic, fake_deepseek, fake_openai, tmp_path_factory):
    def config_for(ports: dict[str, int]) -> str:
        config = gateway_config(fake_anthropic, fake_deepseek, fake_openai, **ports)
        return config.replace("  log_tokens: true\n", f"  max_concurrent_requests: {LIMIT}\n")

    with running_gateway(config_for, tmp_path_factory.mktemp("limited")) as gateway:
        yield gateway


def test_provider_past_its_limit_answers_529_and_others_still_serve(limited_gateway, fakes):
    """LIMIT answers stream from one provider; of 3 × LIMIT more requests to it, at most
    LIMIT may wait for a connection (Envoy's pending requests), the rest are refused.
    Another provider is not affected."""
    held = [stream_in_background(limited_gateway, NATIVE, "PACE-300") for _ in range(LIMIT)]
    for _, seen in held:
        assert seen["opened"].wait(10)
    # Routed native answers hold no sidecar stream: the sidecar and other providers serve.
    assert send(limited_gateway, chat("deep")).status_code == 200
    with ThreadPoolExecutor(3 * LIMIT) as pool:
        extra = list(pool.map(lambda _: send(limited_gateway, chat(NATIVE)), range(3 * LIMIT)))
    refused = [r for r in extra if r.status_code != 200]
    assert len(refused) >= 2 * LIMIT
    for response in refused:
        message = assert_anthropic_error(response, 529, "overloaded_error")
        assert "gateway is at its concurrency limit" in message
        assert "listener.max_concurrent_requests" in message
    for thread, seen in held:
        thread.join(30)
        assert b"message_stop" in seen["bytes"]
    assert send(limited_gateway, chat(NATIVE)).status_code == 200


def test_sidecar_past_its_limit_answers_529(limited_gateway, fakes):
    """Translated answers hold a sidecar stream each: past LIMIT, nothing more is routed."""
    held = [stream_in_background(limited_gateway, TRANSLATED, "PACE-300") for _ in range(LIMIT)]
    for _, seen in held:
        assert seen["opened"].wait(10)
    message = assert_anthropic_error(send(limited_gateway, chat("deep")), 529, "overloaded_error")
    assert "gateway is at its concurrency limit" in message
    for thread, seen in held:
        thread.join(30)
        assert b"message_stop" in seen["bytes"]
    assert send(limited_gateway, chat("deep")).status_code == 200


def native_only(config: str) -> str:
    """The config without log_tokens: nothing reads Anthropic-format answers on their way."""
    return config.replace("  log_tokens: true\n", "")


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


BIG_ANSWER_MIB = 16
SLOW_READERS = 10


def test_clients_that_do_not_read_pin_little_envoy_memory(fake_deepseek, fake_openai, tmp_path):
    """Each client asks for a 16 MiB answer and never reads it. Envoy holds about its
    connection buffers (1 MiB each way) per client, not the answer: with buffers as large
    as max_body_bytes it held them whole (+160 MiB here)."""
    big = FakeAnthropic(answer="word " * (BIG_ANSWER_MIB * 1024 * 1024 // 5)).start()
    request = json.dumps(chat(NATIVE)).encode()
    head = b"POST /v1/messages HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
    try:
        with running_gateway(
            lambda ports: native_only(gateway_config(big, fake_deepseek, fake_openai, **ports)),
            tmp_path,
        ) as gateway:
            envoy = envoy_pid(gateway)
            assert send(gateway, chat(NATIVE), timeout=60).status_code == 200
            before = rss_mib(envoy)
            clients = []
            for _ in range(SLOW_READERS):
                client = socket.create_connection(("127.0.0.1", gateway.port))
                client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                client.sendall(head + b"content-length: %d\r\n\r\n" % len(request) + request)
                clients.append(client)
            deadline = time.monotonic() + 30
            while len(big.received) < 1 + SLOW_READERS:  # every answer is on its way
                assert time.monotonic() < deadline
                time.sleep(0.1)
            time.sleep(2)  # as far as the answers get while nobody reads
            grown = rss_mib(envoy) - before
            for client in clients:
                client.close()
            assert grown < 3 * SLOW_READERS, f"Envoy grew {grown:.0f} MiB"
    finally:
        big.stop()


@pytest.fixture(scope="module")
def native_gateway(fake_anthropic, fake_deepseek, fake_openai, tmp_path_factory):
    def config_for(ports: dict[str, int]) -> str:
        return native_only(gateway_config(fake_anthropic, fake_deepseek, fake_openai, **ports))

    with running_gateway(config_for, tmp_path_factory.mktemp("native")) as gateway:
        yield gateway


def post_concurrently(gateway, body: bytes, count: int) -> set[int]:
    headers = {**KEY, "content-type": "application/json"}
    with ThreadPoolExecutor(count) as pool:
        answers = pool.map(
            lambda _: httpx.post(
                f"{gateway.url}/v1/messages", content=body, headers=headers, timeout=120
            ),
            range(count),
        )
        return {answer.status_code for answer in answers}


def settled_rss_mib(pid: int) -> float:
    """Resident memory once the sidecar has handed back what the last exchange freed."""
    time.sleep(2)
    return rss_mib(pid)


def test_big_bodies_at_once_leave_the_sidecar_bounded(native_gateway, fakes):
    """8 concurrent 30 MB bodies: the sidecar reads 4 bodies' worth at a time and hands
    memory back after. Unbounded, it peaked at +1 GB and kept +360 to +800 MiB for good.
    (8, not more: on a loaded 2-core machine the last of 16 queued bodies could wait past
    the ext_proc stream's timeout, a 503 that says nothing about memory.)"""
    sidecar = sidecar_pid(native_gateway)
    before = rss_mib(sidecar)
    peak = [before]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mib(sidecar))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        body = json.dumps(chat(NATIVE, "x" * (30 * 1024 * 1024))).encode()
        assert post_concurrently(native_gateway, body, 8) == {200}
    finally:
        done.set()
        watcher.join()
    after = settled_rss_mib(sidecar)
    assert peak[0] - before < 800, f"peak +{peak[0] - before:.0f} MiB"
    assert after - before < 250, f"after +{after - before:.0f} MiB"


def test_requests_the_sidecar_is_done_with_leave_nothing_behind(native_gateway, fakes):
    """The sidecar ends each native exchange's stream after routing it; what gRPC held for
    that stream (about one body each) must go with it, not wait for a garbage collection."""
    sidecar = sidecar_pid(native_gateway)
    body = json.dumps(chat(NATIVE, "x" * (1024 * 1024))).encode()
    assert post_concurrently(native_gateway, body, 16) == {200}
    first = settled_rss_mib(sidecar)
    for _ in range(8):
        assert post_concurrently(native_gateway, body, 8) == {200}
    grown = settled_rss_mib(sidecar) - first
    assert grown < 40, f"+{grown:.0f} MiB after 128 more requests of 1 MB"


# ------------------------------------------------------------------ slow and many clients

CONNECTIONS = 4


@pytest.fixture(scope="module")
def guarded_gateway(fake_anthropic, fake_deepseek, fake_openai, tmp_path_factory):
    """At most CONNECTIONS client connections; a request's headers within a second."""

    def config_for(ports: dict[str, int]) -> str:
        config = gateway_config(fake_anthropic, fake_deepseek, fake_openai, **ports)
        limits = f"  max_connections: {CONNECTIONS}\n  request_headers_timeout_s: 1\n"
        return config.replace("  log_tokens: true\n", limits)

    with running_gateway(config_for, tmp_path_factory.mktemp("guarded")) as gateway:
        yield gateway


def served(gateway) -> bool:
    try:
        return send(gateway, chat("deep")).status_code == 200
    except httpx.TransportError:
        return False


def answered_connection(gateway) -> http.client.HTTPConnection:
    """A kept-alive connection Envoy has surely accepted: it answered a request on it (its
    workers accept in parallel, so a connection merely opened may not be counted yet)."""
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    connection.request("GET", "/v1/unknown")
    assert connection.getresponse().read()
    return connection


def closed_unanswered(connection: socket.socket) -> bool:
    connection.settimeout(10)
    try:
        return connection.recv(1) == b""
    except ConnectionResetError:
        return True


def test_slow_headers_get_408_and_the_connection_is_closed(guarded_gateway):
    """Slow clients were never timed out: only the stream's 10 minutes of silence ended them."""
    with socket.create_connection(("127.0.0.1", guarded_gateway.port), timeout=30) as client:
        client.sendall(b"POST /v1/messages HTTP/1.1\r\nhost: gateway\r\n")
        answer = client.makefile("rb").read()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert json.loads(body) == {
        "type": "error",
        "error": {
            "type": "timeout_error",
            "message": "The request's headers did not arrive within "
            "listener.request_headers_timeout_s (request_header_timeout)",
        },
    }


def test_past_the_connection_limit_a_new_connection_is_closed_until_one_is_freed(
    guarded_gateway, fakes
):
    held = [answered_connection(guarded_gateway) for _ in range(CONNECTIONS)]
    try:
        with socket.create_connection(("127.0.0.1", guarded_gateway.port)) as extra:
            extra.sendall(b"GET /v1/models HTTP/1.1\r\nhost: gateway\r\n\r\n")
            assert closed_unanswered(extra)
        assert not served(guarded_gateway)
    finally:
        held.pop().close()
    deadline = time.monotonic() + 10
    while not served(guarded_gateway):  # Envoy counts the freed connection out
        assert time.monotonic() < deadline, "a freed connection slot was never reused"
        time.sleep(0.1)
    for connection in held:
        connection.close()
