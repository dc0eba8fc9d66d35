"""A real gateway for the tests: `extproc up` (Envoy + sidecar) on free ports, with configs
whose providers are the local fakes."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_openai import FakeOpenAI

PROVIDER_KEYS = {
    "TEST_ANTHROPIC_KEY": "sk-ant-gateway-owned-key",
    "TEST_DEEPSEEK_KEY": "sk-deepseek-secret",
    "TEST_OPENAI_KEY": "sk-openai-secret",
}


PORTS = range(10000, 32768)
"""Below Linux's ephemeral range (32768-60999), where outgoing connections take their source
ports: one of them can't take a port between `free_port()` and the bind that follows."""
_handed_out: set[int] = set()


def free_port() -> int:
    """A port free now, never handed out before in this run. Another process may still bind
    it first: `running_gateway` starts again on new ports when `extproc up` says so."""
    rng = random.Random()
    while True:
        port = rng.choice(PORTS)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port


@dataclass
class Gateway:
    process: subprocess.Popen[bytes]
    port: int
    access_log: Path
    config_path: Path
    output: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_lines(self, attempts: bool = False) -> list[dict[str, Any]]:
        """The access log's request lines, or with `attempts` its lines of failed attempts
        (`"log": "attempt"`, written with failover)."""
        lines = []
        for line in self.access_log.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if (entry.get("log") == "attempt") == attempts:
                lines.append(entry)
        return lines

    def wait_log(self, predicate, timeout: float = 10.0, attempts: bool = False) -> dict[str, Any]:
        """The first access-log entry matching `predicate` (Envoy flushes about once a second);
        with `attempts`, the first line of a failed attempt."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in self.log_lines(attempts):
                if predicate(entry):
                    return entry
            time.sleep(0.1)
        raise AssertionError(f"no matching access-log line in: {self.log_lines()[-5:]}")


def start_gateway(
    config_text: str,
    workdir: Path,
    port: int,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    preexec_fn: Callable[[], Any] | None = None,
) -> Gateway:
    """`extproc up CONFIG ARGS` in `workdir`, once it says it is ready; `preexec_fn` runs in
    its process before it starts (to set its resource limits)."""
    config_path = workdir / "config.yaml"
    config_path.write_text(config_text, encoding="utf-8")
    access_log = workdir / "access.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "extproc", "up", str(config_path), *args],
        stdout=access_log.open("wb"),
        stderr=subprocess.PIPE,
        env={**os.environ, **PROVIDER_KEYS, "HF_HUB_OFFLINE": "1", **(env or {})},
        cwd=workdir,
        preexec_fn=preexec_fn,
    )
    gateway = Gateway(process, port, access_log, config_path)
    ready = threading.Event()

    def read_stderr() -> None:
        assert process.stderr is not None
        for raw in process.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            gateway.output.append(line)
            if "gateway ready" in line:
                ready.set()

    threading.Thread(target=read_stderr, daemon=True).start()
    deadline = time.monotonic() + 60
    while not ready.wait(0.1):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            output = "\n".join(gateway.output)
            taken = "is not available" in output or "Address already in use" in output
            raise (PortTaken if taken else RuntimeError)(f"gateway did not start:\n{output}")
    return gateway


class PortTaken(RuntimeError):
    """Another process bound one of the gateway's ports between `free_port()` and `extproc up`."""


GATEWAY_PORTS = ("listener", "admin", "sidecar", "health")


def gateway_ports() -> dict[str, int]:
    """Free ports for a gateway's config (listener, admin, sidecar, health)."""
    return {name: free_port() for name in GATEWAY_PORTS}


@contextmanager
def running_gateway(
    config_for: Callable[[dict[str, int]], str],
    workdir: Path,
    env: dict[str, str] | None = None,
) -> Iterator[Gateway]:
    """`extproc up` on free ports with the config `config_for(ports)` returns, stopped after."""
    for attempt in range(3):
        ports = gateway_ports()
        try:
            gateway = start_gateway(config_for(ports), workdir, ports["listener"], env)
            break
        except PortTaken:
            if attempt == 2:
                raise
    try:
        yield gateway
    finally:
        stop_gateway(gateway)


def stop_gateway(gateway: Gateway) -> int:
    gateway.process.terminate()
    try:
        return gateway.process.wait(30)
    except subprocess.TimeoutExpired:
        gateway.process.kill()
        raise


def gateway_config(
    anthropic: FakeAnthropic,
    deepseek: FakeAnthropic,
    openai: FakeOpenAI | None = None,
    **ports: int,
) -> str:
    """A config whose providers are the local fakes; ports are free ones. Providers never rest
    after failing (`cooldown_max_s: 0`), nor does a failed request move on to another
    (`failover: false`): the tests that share this gateway provoke errors one after another
    and expect each from the provider they asked (tests/e2e/test_cooldown.py and
    tests/e2e/test_failover.py have gateways of their own)."""
    openai_url = openai.url if openai else "http://127.0.0.1:9"
    return f"""\
listener:
  port: {ports["listener"]}
  admin_port: {ports["admin"]}
  failover: false
  log_tokens: true
  cooldown_max_s: 0
sidecar:
  port: {ports["sidecar"]}
  health_port: {ports["health"]}
llm_providers:
  - model: anthropic/claude-sonnet-4-5
    base_url: {anthropic.url}
    access_key: $TEST_ANTHROPIC_KEY
    default: true
    routing_preferences:
      - name: code reviews
        description: analyzing code for bugs, readability, and improvements
  - name: subscription
    model: anthropic/claude-opus-4-8
    base_url: {anthropic.url}
  - model: anthropic/claude-haiku-4-5
    base_url: {anthropic.url}
    access_key: ${{TEST_ANTHROPIC_KEY}}
  - model: deepseek/deepseek-chat
    base_url: {deepseek.url}/anthropic
    access_key: $TEST_DEEPSEEK_KEY
  - model: deepseek/deepseek-reasoner
    base_url: {deepseek.url}/anthropic
    access_key: $TEST_UNSET_KEY
  - model: openai/gpt-4.1
    base_url: {openai_url}/v1
    provider_interface: openai-chat
    access_key: $TEST_OPENAI_KEY
    max_tokens: 8192
    price: {{input: 1, output: 4, cache_read: 0.25}}
  - model: openai/o4-mini
    base_url: {openai_url}/v1
    provider_interface: openai-chat
    access_key: $TEST_OPENAI_KEY
    reasoning: true
  - model: mistral/mistral-large-latest
    base_url: {openai_url}/v1
    access_key: $TEST_OPENAI_KEY
model_aliases:
  claude-*haiku*: anthropic/claude-haiku-4-5
  deep: deepseek/deepseek-chat
"""


def routed_gateway_config(
    anthropic: FakeAnthropic, deepseek: FakeAnthropic, model_dir: Path, **ports: int
) -> str:
    """The tiny router model's routes, owned by the fakes: generation → DeepSeek, the rest → Anthropic."""
    from tests.support.tiny_model import ROUTES

    def routes(*names: str) -> str:
        return "".join(
            f"      - {{name: {n}, description: '{d}'}}\n" for n, d in ROUTES if n in names
        )

    return f"""\
listener: {{port: {ports["listener"]}, admin_port: {ports["admin"]}}}
sidecar: {{port: {ports["sidecar"]}, health_port: {ports["health"]}}}
routing: {{model_dir: {model_dir}}}
llm_providers:
  - model: anthropic/claude-sonnet-4-5
    base_url: {anthropic.url}
    access_key: $TEST_ANTHROPIC_KEY
    default: true
    routing_preferences:
{routes("code_review", "bug_fixing", "general_chat")}\
  - model: deepseek/deepseek-chat
    base_url: {deepseek.url}/anthropic
    access_key: $TEST_DEEPSEEK_KEY
    routing_preferences:
{routes("code_generation")}\
  - model: anthropic/claude-haiku-4-5
    base_url: {anthropic.url}
    access_key: $TEST_ANTHROPIC_KEY
model_aliases:
  claude-*haiku*: anthropic/claude-haiku-4-5
"""


STRICT_MAX_BODY = 64 * 1024
STRICT_IDLE_S = 2
"""The strict gateway's limits (conftest's `strict_gateway`): 64 KiB bodies, 2 s of silence."""
