"""What each answer cost, in Envoy's access log: native, translated, and with prompt-cache
reads and writes, each against the value worked out by hand from the price table (or the
entry's `price:`); and the mark a Claude Code session gets when it is routed to another model.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import anthropic
import httpx
import pytest

from extproc.config import load
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway import PROVIDER_KEYS, Gateway, running_gateway

CLIENT_KEY = "sk-ant-client-own-key"


def client(gateway, **headers: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=gateway.url, api_key=CLIENT_KEY, max_retries=0, timeout=30, default_headers=headers
    )


def logged(gateway, fake) -> dict:
    """The access-log entry of the latest request `fake` received."""
    request_id = fake.received[-1].headers["x-request-id"]
    return gateway.wait_log(lambda e: e["request_id"] == request_id)


def test_a_native_answer_costs_its_tokens_at_the_table_price(gateway, fakes):
    """deepseek-chat, from the table: $0.56 in, $1.68 out a million tokens. The fake counts
    12 in, 6 out: (12 × 0.56 + 6 × 1.68) / 10⁶ = $0.0000168."""
    _, deepseek, _ = fakes
    client(gateway).messages.create(
        model="deepseek/deepseek-chat", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    )
    entry = logged(gateway, deepseek)
    assert (entry["input_tokens"], entry["output_tokens"]) == (12, 6)
    assert entry["cost_usd"] == 0.0000168


def test_cache_reads_and_writes_are_priced_apart(gateway, fakes):
    """claude-sonnet-4-5: $3 in, $15 out, $0.30 a cache read, $3.75 a cache write. A stream
    that reads 20,000 tokens from the cache and writes 3,000 (reported in message_start):
    (12 × 3 + 6 × 15 + 20,000 × 0.30 + 3,000 × 3.75) / 10⁶ = $0.017376."""
    anthropic_fake, _, _ = fakes
    with client(gateway).messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=10,
        messages=[{"role": "user", "content": "CACHE-20000-3000"}],
    ) as stream:
        final = stream.get_final_message()
    assert final.usage.cache_read_input_tokens == 20000
    entry = logged(gateway, anthropic_fake)
    assert entry["cache_read_input_tokens"] == 20000
    assert entry["cache_creation_input_tokens"] == 3000
    assert entry["cost_usd"] == 0.017376


def test_a_translated_answer_is_priced_at_the_entrys_own_price(gateway, fakes):
    """openai/gpt-4.1 has `price: {input: 1, output: 4, cache_read: 0.25}`, half the table's
    row, which it replaces. Chat Completions counts 120 prompt tokens, 100 of them cached,
    and 17 out: (20 × 1 + 100 × 0.25 + 17 × 4) / 10⁶ = $0.000113."""
    *_, openai_fake = fakes
    client(gateway).messages.create(
        model="openai/gpt-4.1", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    )
    assert (
        openai_fake.received[-1].headers["authorization"].endswith(PROVIDER_KEYS["TEST_OPENAI_KEY"])
    )
    entry = logged(gateway, openai_fake)
    assert (entry["input_tokens"], entry["cache_read_input_tokens"]) == (20, 100)
    assert entry["cost_usd"] == 0.000113


def test_a_session_routed_to_another_model_is_marked(gateway, fakes):
    """Claude Code's session header ties requests together: the first one on a new model
    says which model the session left (its prompt cache stays behind)."""
    anthropic_fake, deepseek, _ = fakes
    session = str(uuid.uuid4())
    in_session = client(gateway, **{"X-Claude-Code-Session-Id": session})
    turn = {"max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    in_session.messages.create(model="claude-sonnet-4-5", **turn)
    first = logged(gateway, anthropic_fake)
    in_session.messages.create(model="deepseek/deepseek-chat", **turn)
    moved = logged(gateway, deepseek)
    in_session.messages.create(model="deepseek/deepseek-chat", **turn)
    stayed = logged(gateway, deepseek)
    assert first["session"] == moved["session"] == session
    assert (first["switched_from"], moved["switched_from"]) == (None, "anthropic/claude-sonnet-4-5")
    assert stayed["switched_from"] is None


NATIVE = """\
listener: {{port: {listener}, admin_port: {admin}}}
sidecar: {{port: {sidecar}, health_port: {health}}}
llm_providers:
  - model: anthropic/claude-sonnet-4-5
    base_url: {url}
    default: true
  - model: anthropic/claude-3-haiku
    base_url: {url}
  - model: deepseek/deepseek-chat
    base_url: {deepseek}/anthropic
    access_key: $TEST_DEEPSEEK_KEY
"""


@pytest.fixture(scope="module")
def native(
    fake_anthropic: FakeAnthropic, fake_deepseek: FakeAnthropic, tmp_path_factory
) -> Iterator[Gateway]:
    """A gateway that never reads Anthropic-format answers in the sidecar (no log_tokens):
    Envoy's Lua filter (extproc/control/usage.lua) counts them."""
    workdir = tmp_path_factory.mktemp("native")
    with running_gateway(
        lambda ports: NATIVE.format(url=fake_anthropic.url, deepseek=fake_deepseek.url, **ports),
        workdir,
    ) as gateway:
        yield gateway


def test_without_log_tokens_envoy_counts_and_prices_a_stream(native, fake_anthropic):
    """One event a word (PACE), each usage object cut in two chunks (SPLIT), with cache
    counts in message_start: the same
    (12 × 3 + 6 × 15 + 20,000 × 0.30 + 3,000 × 3.75) / 10⁶ = $0.017376, and the stream
    reaches the client byte for byte."""
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 10,
        "stream": True,
        "messages": [{"role": "user", "content": "PACE-5 SPLIT CACHE-20000-3000"}],
    }
    headers = {
        "x-api-key": CLIENT_KEY,
        "anthropic-version": "2023-06-01",
        "accept-encoding": "gzip, deflate, br, zstd",
    }
    with httpx.stream("POST", f"{native.url}/v1/messages", json=body, headers=headers) as answer:
        received = b"".join(answer.iter_raw())
    assert received == b"".join(fake_anthropic.sent)
    # Anthropic's API gzips an answer for a client that takes gzip (Claude Code does): the
    # filter could read no counts in it, so the provider is asked for it uncompressed.
    assert fake_anthropic.received[-1].headers["accept-encoding"] == "identity"
    entry = logged(native, fake_anthropic)
    assert (entry["input_tokens"], entry["output_tokens"]) == (12, 6)
    assert entry["cache_read_input_tokens"] == 20000
    assert entry["cache_creation_input_tokens"] == 3000
    assert entry["cost_usd"] == 0.017376


def test_without_log_tokens_a_json_answer_is_priced_too(native, fake_deepseek):
    """deepseek-chat, JSON: (12 × 0.56 + 6 × 1.68) / 10⁶ = $0.0000168."""
    client(native).messages.create(
        model="deepseek/deepseek-chat", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    )
    entry = logged(native, fake_deepseek)
    assert (entry["input_tokens"], entry["output_tokens"]) == (12, 6)
    assert entry["cost_usd"] == 0.0000168


@pytest.mark.parametrize("stream", [True, False])
def test_a_long_answer_is_counted_from_its_start_and_end(native, fake_anthropic, stream):
    """A 512 KiB answer: Envoy passes it in chunks far longer than the filter reads of each
    (their first 512 bytes and last 2 KiB, and the answer's first 4 KiB), and the counts at
    its start and end are still found: (12 × 3 + 6 × 15 + 20,000 × 0.30 + 3,000 × 3.75) / 10⁶."""
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 10,
        "stream": stream,
        "messages": [{"role": "user", "content": "LONG-512 CACHE-20000-3000"}],
    }
    answer = httpx.post(
        f"{native.url}/v1/messages", json=body, headers={"x-api-key": CLIENT_KEY}, timeout=30
    )
    assert answer.status_code == 200 and len(answer.content) > 512 * 1024
    entry = logged(native, fake_anthropic)
    assert (entry["input_tokens"], entry["output_tokens"]) == (12, 6)
    assert entry["cache_read_input_tokens"] == 20000
    assert entry["cost_usd"] == 0.017376


def test_without_a_price_the_counts_are_logged_alone(native, fake_anthropic):
    client(native).messages.create(
        model="claude-3-haiku", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    )
    entry = logged(native, fake_anthropic)
    assert (entry["input_tokens"], entry["output_tokens"], entry["cost_usd"]) == (12, 6, None)


def session_record(gateway: Gateway, session: str, requests: int) -> dict:
    """The session's record on the health port once Envoy's report of its latest answer has
    come (usage.lua posts it after the answer, without the answer waiting for it)."""
    health = load(gateway.config_path).sidecar.health_port
    deadline = time.monotonic() + 10
    while True:
        record = httpx.get(f"http://127.0.0.1:{health}/sessions/{session}").json()
        reported = record["requests"] == requests and record["output_tokens"] is not None
        if reported or time.monotonic() > deadline:
            return record
        time.sleep(0.05)


def test_without_log_tokens_envoy_reports_the_answers_to_the_sessions_record(
    native, fake_anthropic
):
    """A session's native stream, then a native JSON answer (deepseek's, on its failover
    chain to the default): the same $0.017376 and $0.0000168 as above, $0.0173928 for the
    session, the latest answer's 12 in and 6 out."""
    session = str(uuid.uuid4())
    in_session = client(native, **{"X-Claude-Code-Session-Id": session})
    with in_session.messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=10,
        messages=[{"role": "user", "content": "PACE-5 SPLIT CACHE-20000-3000"}],
    ) as stream:
        stream.get_final_message()
    assert session_record(native, session, 1)["cost_usd"] == 0.017376
    in_session.messages.create(
        model="deepseek/deepseek-chat", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    )
    record = session_record(native, session, 2)
    assert (record["model"], record["input_tokens"], record["output_tokens"]) == (
        "deepseek/deepseek-chat",
        12,
        6,
    )
    assert record["cost_usd"] == pytest.approx(0.0173928, abs=1e-12)
