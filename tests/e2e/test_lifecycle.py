"""Lifecycle: SIGTERM lets open streams finish; /ready waits for the router model."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import httpx

from tests.support.gateway import (
    gateway_config,
    gateway_ports,
    routed_gateway_config,
    start_gateway,
)
from tests.support.requests import KEY, chat, get


def refused_within(port: int, timeout: float) -> None:
    """Wait for the listener on `port` to refuse connections (a connect, no request sent)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return
        assert time.monotonic() < deadline, f"port {port} still accepts connections"
        time.sleep(0.05)


def test_sigterm_to_extproc_up_lets_an_open_stream_finish(
    tmp_path, fake_anthropic, fake_deepseek, fakes
):
    ports = gateway_ports()
    gateway = start_gateway(
        gateway_config(fake_anthropic, fake_deepseek, **ports), tmp_path, ports["listener"]
    )
    received: list[bytes] = []
    opened = threading.Event()

    def stream() -> None:
        body = chat("claude-sonnet-4-5", "PACE-300 a long answer", stream=True)
        with httpx.stream(
            "POST", f"{gateway.url}/v1/messages", json=body, headers=KEY, timeout=30
        ) as response:
            for chunk in response.iter_raw():
                received.append(chunk)
                opened.set()

    reader = threading.Thread(target=stream)
    reader.start()
    assert opened.wait(10)
    gateway.process.terminate()
    refused_within(gateway.port, 10)  # the listener is closed to new connections...
    assert reader.is_alive()  # ...while the open stream goes on
    reader.join(30)
    assert b"event: message_stop" in b"".join(received)
    assert gateway.process.wait(30) == 0


def test_ready_only_once_the_router_model_is_loaded(
    tmp_path, fake_anthropic, fake_deepseek, tiny_router_dir
):
    ports = gateway_ports()
    config = tmp_path / "config.yaml"
    config.write_text(
        routed_gateway_config(fake_anthropic, fake_deepseek, tiny_router_dir, **ports)
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "extproc", "serve", str(config)], stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{ports['health']}"
    seen = []
    try:
        deadline = time.monotonic() + 60
        while get(f"{base}/ready")[0] != 200:
            seen.append(get(f"{base}/ready"))
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.02)
        assert (503, "not ready\n") in seen
        assert get(f"{base}/healthz")[0] == 200
    finally:
        process.kill()
        process.wait()


def test_sigterm_drain_closes_keep_alive_connections(tmp_path, fake_anthropic, fake_deepseek):
    """A client on a kept-alive connection is told to go (`connection: close`) rather than
    served on a gateway that is stopping."""
    ports = gateway_ports()
    gateway = start_gateway(
        gateway_config(fake_anthropic, fake_deepseek, **ports), tmp_path, ports["listener"]
    )
    url = f"{gateway.url}/v1/messages"
    with httpx.Client(headers=KEY, timeout=10) as client:
        assert client.post(url, json=chat()).headers.get("connection") != "close"
        opened = threading.Event()

        def long_stream() -> None:  # keeps the drain going while the client asks again
            body = chat("claude-sonnet-4-5", "PACE-300 a long answer", stream=True)
            with httpx.stream("POST", url, json=body, headers=KEY, timeout=30) as response:
                for _ in response.iter_raw():
                    opened.set()

        reader = threading.Thread(target=long_stream)
        reader.start()
        assert opened.wait(10)
        gateway.process.terminate()
        time.sleep(0.5)
        try:
            response = client.post(url, json=chat())
        except httpx.TransportError:
            pass  # the connection was already closed, and no new one is accepted
        else:
            assert response.headers.get("connection") == "close"
        reader.join(30)
    assert gateway.process.wait(30) == 0
