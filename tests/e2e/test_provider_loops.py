"""The real Claude Code runs a tool loop (two tool calls, then the answer) through the real
Envoy against each strict provider fake, streamed, with thinking on: Claude Code asks every
model for adaptive thinking, and the families that think answer with it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from extproc.config.contract import contract_for
from tests.support.claude_code import CLAUDE_BIN, USER_KEY, claude
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway import running_gateway
from tests.support.strict_providers import FINAL, PROFILES, FakeProvider, Profile

STRICT_KEY = "sk-strict-test"
REASONING = tuple(p for p in PROFILES if contract_for(p.kind, p.model).reasoning)
"""The profiles whose model family reasons: a rule's reasoning_effort may name them."""
BASE_PATHS = {
    "gemini": "/v1beta/openai",
    "groq": "/openai/v1",
    "openrouter": "/api/v1",
    "ollama": "",
}


def provider_entry(profile: Profile, fake: FakeProvider) -> str:
    lines = [
        f"  - model: {profile.name}",
        f"    base_url: {fake.url}{BASE_PATHS.get(profile.kind, '/v1')}",
    ]
    if profile.key:
        lines.append("    access_key: $TEST_STRICT_KEY")
    if profile.kind == "deepseek":  # its OpenAI-format API; the catalogue's is Anthropic's
        lines.append("    provider_interface: openai")
    if profile.kind == "openai":  # these fakes are Chat Completions; openai/ defaults to Responses
        lines.append("    provider_interface: openai-chat")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def strict_fakes() -> Iterator[dict[str, FakeProvider]]:
    fakes = {p.name: FakeProvider(profile=p).start() for p in PROFILES}
    yield fakes
    for fake in fakes.values():
        fake.stop()


@pytest.fixture(scope="module")
def strict_gateway(strict_fakes, fake_anthropic: FakeAnthropic, tmp_path_factory):
    if not (CLAUDE_BIN / "claude").exists():
        pytest.fail("Claude Code is not installed: run `npm ci` in the project root")
    entries = "".join(provider_entry(f.profile, f) for f in strict_fakes.values())
    effort_rules = "".join(
        f"  - {{name: 'low for {p.name}', model: {p.name}, reasoning_effort: low, "
        f"when: {{header: {{x-effort-to: {p.name}}}}}}}\n"
        for p in REASONING
    )

    def config_for(ports: dict[str, int]) -> str:
        return f"""\
listener: {{port: {ports["listener"]}, admin_port: {ports["admin"]}}}
sidecar: {{port: {ports["sidecar"]}, health_port: {ports["health"]}}}
llm_providers:
  - model: anthropic/claude-haiku-4-5
    base_url: {fake_anthropic.url}
    default: true
{entries}model_aliases:
  claude-*haiku*: anthropic/claude-haiku-4-5
rules:
{effort_rules}"""

    workdir = tmp_path_factory.mktemp("strict-providers")
    with running_gateway(config_for, workdir, env={"TEST_STRICT_KEY": STRICT_KEY}) as gateway:
        yield gateway


@pytest.mark.parametrize("profile", REASONING, ids=[p.name for p in REASONING])
def test_a_rules_effort_reaches_a_strict_provider_in_its_own_field(
    profile: Profile, strict_fakes, strict_gateway
) -> None:
    """Claude Code asks for adaptive thinking at `effort: high`; the rule asks for low."""
    fake = strict_fakes[profile.name]
    fake.received.clear()
    fake.refused.clear()
    body = {
        "model": "claude-opus-4-8",
        "max_tokens": 4096,
        "stream": True,
        "messages": [{"role": "user", "content": "hello"}],
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "high"},
    }
    headers = {"x-effort-to": profile.name, "anthropic-version": "2023-06-01"}
    response = httpx.post(f"{strict_gateway.url}/v1/messages", json=body, headers=headers)
    assert fake.refused == [] and response.status_code == 200, response.text
    [received] = fake.received
    assert received.json()["reasoning_effort"] == "low"


@pytest.mark.parametrize("profile", PROFILES, ids=[p.name for p in PROFILES])
def test_claude_code_tool_loop_against_a_strict_provider(
    profile: Profile, strict_fakes, strict_gateway, tmp_path
) -> None:
    fake = strict_fakes[profile.name]
    fake.received.clear()
    fake.refused.clear()
    result = claude(
        strict_gateway,
        tmp_path,
        "-p",
        "LOOP: run the steps",
        "--model",
        profile.name,
        "--allowedTools",
        "Bash(echo:*)",
    )
    assert fake.refused == [], fake.refused
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == FINAL
    requests = [r.json() for r in fake.received]
    assert len(requests) == (2 if profile.parallel_at_index_0 else 3)
    assert all(r.get("stream") is True for r in requests)
    assert all(r["model"] == profile.model for r in requests)
    for received in fake.received:
        assert USER_KEY not in str(received.headers)
        expected = f"Bearer {STRICT_KEY}" if profile.key else None
        assert received.headers.get("authorization") == expected
    last = requests[-1]["messages"]
    results = [m["content"] for m in last if m["role"] == "tool"]
    assert sorted(r.strip() for r in results) == ["STEP-1", "STEP-2"]  # parallel: any order
