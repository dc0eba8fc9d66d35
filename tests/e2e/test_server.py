"""The sidecar on its own: health endpoint, ext_proc over gRPC, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import os
import platform
import signal
import socket
import subprocess
import sys
import time

import grpc
import pytest
from envoy_data_plane.envoy.service.ext_proc.v3 import (
    HttpBody,
    ProcessingRequest,
    ProcessingResponse,
)

from extproc.proxy.server import keep_freed_memory
from tests.support.ext_proc import METHOD, headers_message
from tests.support.gateway import free_port
from tests.support.requests import get


@pytest.fixture
def sidecar(tmp_path):
    port, health = free_port(), free_port()
    config = tmp_path / "config.yaml"
    config.write_text(
        f"llm_providers:\n  - model: deepseek/deepseek-chat\n    access_key: k\n"
        f"sidecar: {{port: {port}, health_port: {health}}}\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "extproc", "serve", str(config), "--grace", "10"],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while get(f"http://127.0.0.1:{health}/healthz")[0] != 200:
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.1)
    yield process, port, health
    if process.poll() is None:
        process.kill()
        process.wait()


def test_health_and_readiness(sidecar):
    _, _, health = sidecar
    assert get(f"http://127.0.0.1:{health}/healthz") == (200, "ok\n")
    assert get(f"http://127.0.0.1:{health}/ready") == (200, "ok\n")
    assert get(f"http://127.0.0.1:{health}/nope")[0] == 404


async def test_sigterm_drains_an_open_stream_then_exits(sidecar):
    process, port, _ = sidecar
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.stream_stream(METHOD)()
        await call.write(bytes(headers_message("/v1/messages")))
        first = ProcessingResponse.parse(await call.read())
        assert first.request_headers is not None

        os.kill(process.pid, signal.SIGTERM)
        await asyncio.sleep(0.5)
        assert process.poll() is None, "the sidecar must wait for the open stream"

        body = b'{"model": "deepseek/deepseek-chat", "messages": []}'
        await call.write(
            bytes(ProcessingRequest(request_body=HttpBody(body=body, end_of_stream=True)))
        )
        reply = ProcessingResponse.parse(await call.read())
        assert reply.request_body.response.body_mutation.body == body.replace(
            b'"deepseek/deepseek-chat"', b'"deepseek-chat"'
        )
        await call.done_writing()
    assert await asyncio.to_thread(process.wait, 15) == 0
    assert "stopped" in process.stderr.read()


async def test_undecodable_body_gets_an_error_not_a_crash(sidecar):
    _, port, _ = sidecar
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.stream_stream(METHOD)()
        await call.write(bytes(headers_message("/v1/messages")))
        await call.read()
        await call.write(
            bytes(ProcessingRequest(request_body=HttpBody(body=b"\xff\xfe", end_of_stream=True)))
        )
        reply = ProcessingResponse.parse(await call.read())
        assert reply.immediate_response.status.code == 400
        assert b"invalid_request_error" in reply.immediate_response.body


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="tunes glibc's allocator")
def test_freed_body_buffers_stay_in_the_heap():
    assert keep_freed_memory() is True


def test_a_request_line_over_64_kib_on_the_health_port_is_a_414_not_a_traceback(sidecar):
    """asyncio's line reader stops at 64 KiB with a ValueError, which went unhandled."""
    process, _, health = sidecar
    with socket.create_connection(("127.0.0.1", health), timeout=10) as client:
        client.sendall(b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n")
        answer = client.makefile("rb").read()
    assert answer.startswith(b"HTTP/1.1 414 URI Too Long\r\n")
    assert answer.endswith(b"\r\n\r\nrequest line too long\n")
    assert get(f"http://127.0.0.1:{health}/healthz") == (200, "ok\n")
    process.send_signal(signal.SIGTERM)
    process.wait(15)
    log = process.stderr.read()
    assert "Traceback" not in log and "exception" not in log.lower()
