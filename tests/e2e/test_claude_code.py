"""The real Claude Code CLI (npm, pinned in package.json) through `extproc claude`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter

import httpx
import pytest

from tests.support.claude_code import (
    CLAUDE_BIN,
    USER_KEY,
    claude,
    claude_gateway_config,
    decisions,
)
from tests.support.gateway import PROVIDER_KEYS, free_port, running_gateway
from tests.support.tiny_model import ROUTES


@pytest.fixture(scope="module")
def claude_gateway(fake_anthropic, fake_openai, tiny_router_dir, tmp_path_factory):
    """Every route leads to the OpenAI-format fake; Claude's own models go to the Anthropic fake."""
    if not (CLAUDE_BIN / "claude").exists():
        pytest.fail("Claude Code is not installed: run `npm ci` in the project root")

    def config_for(ports: dict[str, int]) -> str:
        compaction = "{name: compaction, model: anthropic/claude-haiku-4-5, when: {kind: compact}}"
        return claude_gateway_config(
            fake_anthropic, fake_openai, tiny_router_dir, ports, "", compaction
        )

    with running_gateway(config_for, tmp_path_factory.mktemp("claude-gateway")) as gateway:
        yield gateway


def test_routed_tool_loop_through_claude_code(claude_gateway, fakes, tmp_path):
    *_, openai_fake = fakes
    result = claude(
        claude_gateway,
        tmp_path,
        "-p",
        "please TOOL echo something",
        "--allowedTools",
        "Bash(echo:*)",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "The tool said: hello ünïcode"

    first, second = (r.json() for r in openai_fake.received)
    assert [t["function"]["name"] for t in first["tools"]].count("Bash") == 1
    tool_message = second["messages"][-1]
    assert tool_message["role"] == "tool" and "hello ünïcode" in tool_message["content"]
    for received in openai_fake.received:
        assert received.headers["authorization"] == f"Bearer {PROVIDER_KEYS['TEST_OPENAI_KEY']}"
        assert USER_KEY not in str(received.headers)

    routed, sticky = decisions(claude_gateway, openai_fake.received)
    assert routed["source"] == "router" and routed["route"] in dict(ROUTES)
    assert (sticky["source"], sticky["route"]) == ("sticky", routed["route"])
    assert routed["routed_model"] == sticky["routed_model"] == "openai/gpt-4.1"
    assert routed["path"] == sticky["path"] == "/v1/messages?beta=true"


def test_compaction_goes_to_the_rules_model_while_turns_follow_the_routes(
    claude_gateway, fakes, tmp_path
):
    anthropic_fake, _, openai_fake = fakes
    prompts = ("write a function that adds", "now its tests", "and a docstring")
    for i, prompt in enumerate(prompts):
        turn = claude(claude_gateway, tmp_path, "-p", *(["--continue"] if i else []), prompt)
        assert turn.returncode == 0, turn.stderr
    compact = claude(claude_gateway, tmp_path, "-p", "--continue", "/compact")
    assert compact.returncode == 0, compact.stderr
    turns = decisions(claude_gateway, openai_fake.received)
    assert [(e["source"], e["routed_model"]) for e in turns] == [("router", "openai/gpt-4.1")] * 3
    [compaction] = decisions(claude_gateway, anthropic_fake.received)
    assert (compaction["source"], compaction["route"], compaction["routed_model"]) == (
        "rule",
        "compaction",
        "anthropic/claude-haiku-4-5",
    )
    [summary_request] = [r.json() for r in anthropic_fake.received if r.method == "POST"]
    assert summary_request["model"] == "claude-haiku-4-5"
    assert "summary of the conversation" in summary_request["messages"][-1]["content"][-1]["text"]


def test_haiku_calls_land_on_the_alias_target(claude_gateway, fakes, tmp_path):
    anthropic_fake, *_ = fakes
    result = claude(claude_gateway, tmp_path, "-p", "hello", "--model", "haiku")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == anthropic_fake.answer
    posts = [r for r in anthropic_fake.received if r.method == "POST"]
    assert {r.json()["model"] for r in posts} == {"claude-haiku-4-5"}
    assert all(r.headers["x-api-key"] == USER_KEY for r in posts)
    [entry] = decisions(claude_gateway, anthropic_fake.received)
    assert entry["routed_model"] == "anthropic/claude-haiku-4-5"
    assert entry["source"] == "explicit", "extproc claude names the alias target for haiku"


def test_explicit_model_bypasses_the_router(claude_gateway, fakes, tmp_path):
    anthropic_fake, *_ = fakes
    result = claude(
        claude_gateway, tmp_path, "-p", "write a function", "--model", "anthropic/claude-sonnet-4-5"
    )
    assert result.returncode == 0, result.stderr
    assert {r.json()["model"] for r in anthropic_fake.received if r.method == "POST"} == {
        "claude-sonnet-4-5"
    }
    [entry] = decisions(claude_gateway, anthropic_fake.received)
    assert (entry["source"], entry["route"]) == ("explicit", "")


def test_clear_errors_when_gateway_down_or_claude_missing(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(
        f"llm_providers:\n  - model: anthropic/x\nlistener: {{port: {free_port()}}}\n"
    )
    base = [sys.executable, "-m", "extproc", "claude", "--config", str(config), "-p", "hi"]
    down = subprocess.run(
        base,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{CLAUDE_BIN}:{os.environ['PATH']}"},
    )
    assert down.returncode == 1 and "the gateway is not running at http://127.0.0.1:" in down.stderr
    path_without_claude = os.pathsep.join(
        p for p in os.environ["PATH"].split(os.pathsep) if not shutil.which("claude", path=p)
    )
    missing = subprocess.run(
        base,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": path_without_claude},
        cwd=tmp_path,  # the project root's node_modules/.bin would be found
    )
    assert missing.returncode == 1
    assert "`npm ci` in the extproc project folder" in missing.stderr


def test_logs_and_metrics_agree_with_the_access_log(claude_gateway, tmp_path):
    """On decisions of its own (router, sticky, explicit), so it holds run alone too."""
    from prometheus_client.parser import text_string_to_metric_families

    from extproc.config import load

    def decided() -> list[dict]:
        return [e for e in claude_gateway.log_lines() if e.get("source")]

    before = len(decided())
    turn = [{"role": "user", "content": "write a function that logs its own decisions"}]
    for model in ("claude-opus-4-8", "claude-opus-4-8", "anthropic/claude-sonnet-4-5"):
        body = {"model": model, "max_tokens": 5, "messages": turn}
        headers = {"x-api-key": USER_KEY}
        response = httpx.post(f"{claude_gateway.url}/v1/messages", json=body, headers=headers)
        assert response.status_code == 200
    claude_gateway.wait_log(lambda _: len(decided()) >= before + 3)
    log_file = claude_gateway.access_log
    entries = decided()
    assert [e["source"] for e in entries[before:]] == ["router", "sticky", "explicit"]

    shown = subprocess.run(
        [sys.executable, "-m", "extproc", "logs", "--color", "never", str(log_file)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert len(shown) == len(entries)
    for entry, text in zip(entries, shown, strict=True):
        assert f"{entry['requested_model']} → {entry['routed_model']}" in text
        assert f" {entry['source']} " in text and f" {entry['status']} " in text

    prefixed = "".join(f"envoy-1  | {line}\n" for line in log_file.read_text().splitlines())
    summary = subprocess.run(
        [sys.executable, "-m", "extproc", "logs", "--summary"],
        input="not json\n" + prefixed,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert summary.startswith(f"{len(entries)} decisions")
    assert "router latency over" in summary

    health = load(claude_gateway.config_path).sidecar.health_port
    text = httpx.get(f"http://127.0.0.1:{health}/metrics").text
    counted = {
        (s.labels["route"], s.labels["model"], s.labels["source"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "extproc_decisions"
        for s in family.samples
        if s.name == "extproc_decisions_total"
    }
    logged = Counter((e["route"], e["routed_model"], e["source"]) for e in entries)
    assert counted == logged
    assert "extproc_router_latency_seconds_count" in text and "extproc_open_streams" in text
