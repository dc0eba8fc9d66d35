"""docker-compose.yml's EXTPROC_LISTEN_ADDRESS at work in a running gateway (the compose
file's static wiring is checked in tests/unit/deploy/test_compose.py)."""

from __future__ import annotations

import socket

import httpx

from extproc.config import LISTEN_ADDRESS_VAR
from tests.support.gateway import gateway_config, gateway_ports, start_gateway, stop_gateway


def test_listen_address_moves_the_listener_and_health_port_not_grpc(
    tmp_path, fake_anthropic, fake_deepseek
):
    """What EXTPROC_LISTEN_ADDRESS does in the image, shown live with another loopback
    address (0.0.0.0 would listen beyond this machine)."""
    ports = gateway_ports()
    gateway = start_gateway(
        gateway_config(fake_anthropic, fake_deepseek, **ports),
        tmp_path,
        ports["listener"],
        env={LISTEN_ADDRESS_VAR: "127.0.0.2"},
    )
    try:
        answer = httpx.post(
            f"http://127.0.0.2:{ports['listener']}/v1/messages",
            json={
                "model": "deep",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "hi"}],
            },
        )
        assert answer.status_code == 200
        assert (
            "extproc_decisions_total"
            in httpx.get(f"http://127.0.0.2:{ports['health']}/metrics").text
        )
        with socket.socket() as grpc_port:
            assert grpc_port.connect_ex(("127.0.0.2", ports["sidecar"])) != 0
        with socket.socket() as grpc_port:
            assert grpc_port.connect_ex(("127.0.0.1", ports["sidecar"])) == 0
    finally:
        stop_gateway(gateway)
