"""config.yaml validation and `extproc check`: one clear line per mistake."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from unittest import mock

import pytest

from extproc.commands.cli import cmd_check
from extproc.config import SIDECAR_SECRET_VAR, ConfigError, parse
from tests.support import ROOT

SEED = """\
llm_providers:
  - model: openai/gpt-4.1-2025-04-14
    access_key: $OPENAI_API_KEY
    routing_preferences:
      - name: code generation
        description: generating new code snippets and functions
  - model: anthropic/claude-3-5-sonnet-20241022
    access_key: $ANTHROPIC_API_KEY
    routing_preferences:
      - name: code reviews
        description: analyzing code for bugs, readability, and improvements
"""


def run_check_command(tmp_path: Path, text: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m extproc check` in a process of its own, with only `env` set."""
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "extproc", "check", str(path)],
        capture_output=True,
        text=True,
        # PYTHONPATH kept: `extproc` must be this tree's, not another installed copy.
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": os.environ.get("PYTHONPATH", ""), **env},
        cwd=tmp_path,
    )


def check(tmp_path: Path, text: str, **env: str) -> subprocess.CompletedProcess[str]:
    """What `extproc check` prints and returns, run in this process (a process per case cost
    0.2 s each) with only `env` set; the seed config's test runs the real command."""
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    with (
        mock.patch.dict(os.environ, {"PATH": "/usr/bin:/bin", **env}, clear=True),
        contextlib.chdir(tmp_path),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            code = cmd_check(argparse.Namespace(config=str(path)))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return subprocess.CompletedProcess(
        ["extproc", "check", str(path)], code, out.getvalue(), err.getvalue()
    )


def test_seed_config_is_accepted_exactly(tmp_path):
    result = run_check_command(tmp_path, SEED, OPENAI_API_KEY="sk-o", ANTHROPIC_API_KEY="sk-a")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].split() == [
        "code",
        "generation",
        "openai/gpt-4.1-2025-04-14",
        "openai/gpt-4.1-2025-04-14",
    ]
    assert "code reviews" in lines[2] and "anthropic/claude-3-5-sonnet-20241022" in lines[2]
    assert "(default / other)" in lines[3] and "openai/gpt-4.1-2025-04-14" in lines[3]
    assert "OK (2 providers, 2 routes)" in result.stdout
    assert result.stderr == ""


def test_env_vars_expand_in_both_forms(monkeypatch):
    monkeypatch.setenv("KEY_A", "secret-a")
    monkeypatch.setenv("HOST", "ollama.internal")
    config = parse(
        """\
llm_providers:
  - model: openai/gpt-4.1
    access_key: ${KEY_A}
  - model: ollama/qwen3
    base_url: http://${HOST}:11434
"""
    )
    assert config.providers[0].access_key == "secret-a"
    assert config.providers[1].base_url == "http://ollama.internal:11434"
    assert config.providers[1].interface == "openai"


def test_unset_key_is_a_warning_at_start_not_an_error(tmp_path):
    result = check(tmp_path, SEED, ANTHROPIC_API_KEY="sk-a")
    assert result.returncode == 0
    assert (
        "config.yaml:3: llm_providers[0].access_key: environment variable OPENAI_API_KEY"
        in result.stderr
    )
    assert "warning:" in result.stderr


def test_unset_anthropic_key_means_client_credentials_pass_through(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    config = parse(SEED)
    anthropic = config.providers[1]
    assert anthropic.access_key is None and anthropic.passes_client_auth
    assert "client's own credentials will pass through" in config.warnings[-1]


ERRORS = [
    (
        "no client connection allowed",
        "llm_providers:\n  - model: openai/x\nlistener:\n  max_connections: 0\n",
        "config.yaml:4: listener.max_connections: 0 is out of range: must be between 1 and "
        "9223372036854775807",
    ),
    (
        "more client connections than Envoy's int64 holds",
        "llm_providers:\n  - model: openai/x\nlistener:\n  max_connections: 9223372036854775808\n",
        "config.yaml:4: listener.max_connections: 9223372036854775808 is out of range: must be "
        "between 1 and 9223372036854775807",
    ),
    (
        "unknown top-level key",
        "llm_providers:\n  - model: openai/x\nrouters: {}\n",
        "config.yaml:3: routers: unknown key",
    ),
    (
        "unknown provider key",
        "llm_providers:\n  - model: openai/x\n    acess_key: $K\n",
        "config.yaml:3: llm_providers[0].acess_key: unknown key",
    ),
    (
        "unknown preference key",
        "llm_providers:\n  - model: openai/x\n    routing_preferences:\n"
        "      - name: a\n        description: b\n        weight: 2\n",
        "config.yaml:6: llm_providers[0].routing_preferences[0].weight: unknown key",
    ),
    (
        "unknown section key",
        "llm_providers:\n  - model: openai/x\nlistener:\n  prot: 1\n",
        "config.yaml:4: listener.prot: unknown key",
    ),
    (
        "model without provider prefix",
        "llm_providers:\n  - model: gpt-4.1\n",
        "config.yaml:2: llm_providers[0].model: 'gpt-4.1' has no provider prefix",
    ),
    (
        "duplicate route names",
        "llm_providers:\n  - model: openai/x\n    routing_preferences:\n"
        "      - {name: code, description: a}\n  - model: openai/y\n    routing_preferences:\n"
        "      - {name: code, description: b}\n",
        "config.yaml:7: llm_providers[1].routing_preferences[0].name: route name 'code' is already used at line 4",
    ),
    (
        "duplicate provider names",
        "llm_providers:\n  - model: openai/x\n    name: main\n  - model: openai/y\n    name: main\n",
        "config.yaml:5: llm_providers[1].name: provider name 'main' is already used at line 2",
    ),
    (
        "two defaults",
        "llm_providers:\n  - model: openai/x\n    default: true\n  - model: openai/y\n    default: true\n",
        "config.yaml:5: llm_providers[1].default: only one provider may be the default",
    ),
    (
        "alias to an unconfigured model",
        "llm_providers:\n  - model: openai/x\nmodel_aliases:\n  claude-*haiku*: openai/gpt-5\n",
        "config.yaml:4: model_aliases.claude-*haiku*: alias target 'openai/gpt-5' is not a configured model",
    ),
    (
        "unknown provider without base_url",
        "llm_providers:\n  - model: acme/big-model\n",
        "config.yaml:2: llm_providers[0].model: unknown provider 'acme'",
    ),
    (
        "catalogue provider that needs base_url",
        "llm_providers:\n  - model: ollama/qwen3\n",
        "config.yaml:2: llm_providers[0]: provider 'ollama' needs base_url",
    ),
    (
        "wrong type",
        "llm_providers:\n  - model: openai/x\nlistener:\n  port: twelve\n",
        "config.yaml:4: listener.port: expected an integer, got 'twelve'",
    ),
    (
        "bad interface",
        "llm_providers:\n  - model: acme/x\n    base_url: http://acme\n    provider_interface: grpc\n",
        "config.yaml:4: llm_providers[0].provider_interface: 'grpc' is not one of anthropic, openai, openai-chat, openai-responses",
    ),
    (
        "reserved route name",
        "llm_providers:\n  - model: openai/x\n    routing_preferences:\n      - {name: other, description: x}\n",
        "config.yaml:4: llm_providers[0].routing_preferences[0].name: 'other' can't be a route name",
    ),
    (
        "no providers",
        "listener: {port: 1}\n",
        "config.yaml:1: llm_providers: configure at least one",
    ),
    (
        "unknown router device",
        "llm_providers:\n  - model: openai/x\nrouting:\n  device: gpu\n",
        "config.yaml:4: routing.device: 'gpu' is not one of auto, cpu, cuda",
    ),
    (
        "unknown compute type",
        "llm_providers:\n  - model: openai/x\nrouting:\n  compute_type: fp16\n",
        "config.yaml:4: routing.compute_type: 'fp16' is not one of auto, default, int8",
    ),
    (
        "unknown router mode",
        "llm_providers:\n  - model: openai/x\nrouting:\n  mode: fast\n",
        "config.yaml:4: routing.mode: 'fast' is not one of constrained, greedy",
    ),
    (
        "unknown fallback",
        "llm_providers:\n  - model: openai/x\n    fallbacks:\n      - openai/y\n",
        "config.yaml:4: llm_providers[0].fallbacks[0]: unknown fallback 'openai/y' (configured: openai/x)",
    ),
    (
        "fallback cycle",
        "llm_providers:\n  - model: openai/a\n    fallbacks: [b]\n"
        "  - {name: b, model: openai/b, fallbacks: [c, openai/a]}\n"
        "  - {name: c, model: openai/c}\n",
        "config.yaml:3: llm_providers[0].fallbacks[0]: fallback cycle: openai/a → b → openai/a",
    ),
    (
        "context window of no tokens",
        "llm_providers:\n  - model: ollama/q\n    base_url: http://h\n    context_window: 0\n",
        "config.yaml:4: llm_providers[0].context_window: must be a number of tokens (at least 1)",
    ),
    ("not YAML", "llm_providers: [\n", "config.yaml:2: yaml:"),
    (
        "YAML explanation and column kept",
        "llm_providers:\n  - model: openai/x\n    name: x\n   routing: 1\n",
        "config.yaml:4: yaml: column 4: expected <block end>, but found '<block mapping start>' "
        "(while parsing a block collection started at line 2)",
    ),
    (
        "port used twice",
        "llm_providers:\n  - model: openai/x\nlistener:\n  port: 9000\nsidecar:\n  health_port: 9000\n",
        "config.yaml:6: sidecar.health_port: port 9000 is already used by listener.port",
    ),
    # What Envoy could not take: each used to pass `check` and stop `extproc up` (or fail
    # `envoy --mode validate`, or go silently elsewhere).
    (
        "base_url port out of range",
        "llm_providers:\n  - model: openai/x\n    base_url: http://localhost:70000/v1\n",
        "config.yaml:3: llm_providers[0].base_url: port 70000 is out of range: must be between 1 and 65535",
    ),
    (
        "base_url port 0",
        "llm_providers:\n  - model: openai/x\n    base_url: http://localhost:0/v1\n",
        "config.yaml:3: llm_providers[0].base_url: port 0 is out of range: must be between 1 and 65535",
    ),
    (
        "base_url with user info",
        "llm_providers:\n  - model: openai/x\n    base_url: http://api.openai.com@evil.example/v1\n",
        "config.yaml:3: llm_providers[0].base_url: 'api.openai.com@evil.example' is not a host name or IPv4 address",
    ),
    (
        "base_url with a query",
        "llm_providers:\n  - model: openai/x\n    base_url: http://h/v1?key=1\n",
        "config.yaml:3: llm_providers[0].base_url: 'http://h/v1?key=1' is not an http(s) URL",
    ),
    (
        "listener port out of range",
        "llm_providers:\n  - model: openai/x\nlistener:\n  port: 70000\n",
        "config.yaml:4: listener.port: 70000 is out of range: must be between 1 and 65535",
    ),
    (
        "sidecar port 0",
        "llm_providers:\n  - model: openai/x\nsidecar:\n  port: 0\n",
        "config.yaml:4: sidecar.port: 0 is out of range: must be between 1 and 65535",
    ),
    (
        "listener address a name",
        "llm_providers:\n  - model: openai/x\nlistener:\n  address: localhost\n",
        "config.yaml:4: listener.address: 'localhost' is not an IP address",
    ),
    (
        "body limit over 32 bits",
        "llm_providers:\n  - model: openai/x\nlistener:\n  max_body_bytes: 5000000000\n",
        "config.yaml:4: listener.max_body_bytes: 5000000000 is out of range: must be between 1 and 1073741824",
    ),
    (
        "no request at once",
        "llm_providers:\n  - model: openai/x\nlistener:\n  max_concurrent_requests: 0\n",
        "config.yaml:4: listener.max_concurrent_requests: 0 is out of range: must be between 1 and 1000000",
    ),
    (
        "router timeout past ext_proc's",
        "llm_providers:\n  - model: openai/x\nrouting:\n  timeout_ms: 3600000\n",
        "config.yaml:4: routing.timeout_ms: 3600000 is out of range: must be between 0 and 600000",
    ),
    (
        "idle timeout past a day",
        "llm_providers:\n  - model: openai/x\nlistener:\n  idle_timeout_s: 100000\n",
        "config.yaml:4: listener.idle_timeout_s: 100000 is out of range: must be between 0 and 86400",
    ),
]


@pytest.mark.parametrize(("what", "text", "expected"), ERRORS, ids=[e[0] for e in ERRORS])
def test_each_mistake_is_one_line_naming_file_line_and_field(tmp_path, what, text, expected):
    result = check(tmp_path, text)
    assert result.returncode == 2, result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert any(line.startswith(f"error: {tmp_path}/{expected}") for line in errors), result.stderr


def test_all_mistakes_are_reported_at_once():
    with pytest.raises(ConfigError) as raised:
        parse("llm_providers:\n  - model: gpt\n  - model: acme/x\nbogus: 1\n")
    assert len(raised.value.problems) == 3


def test_custom_provider_with_base_url_and_interface():
    config = parse(
        "llm_providers:\n  - model: acme/big\n    base_url: https://llm.acme.dev/v1/\n"
        "    provider_interface: anthropic\n    access_key: k\n"
    )
    [acme] = config.providers
    assert (acme.kind, acme.interface, acme.base_url) == (
        "acme",
        "anthropic",
        "https://llm.acme.dev/v1",
    )


def test_alias_globs_and_resolution():
    config = parse(
        "llm_providers:\n  - model: anthropic/claude-haiku-4-5\n  - model: openai/gpt-4.1\n"
        "    name: gpt\nmodel_aliases:\n  claude-*haiku*: anthropic/claude-haiku-4-5\n"
        "  fast: {target: gpt}\n"
    )
    assert config.alias_target("claude-3-5-haiku-20241022").name == "anthropic/claude-haiku-4-5"
    assert config.alias_target("fast").name == "gpt"
    assert config.alias_target("claude-opus-4-8") is None


def test_missing_file_is_one_clear_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "extproc", "check", str(tmp_path / "nope.yaml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip() == f"error: {tmp_path}/nope.yaml:1: file: No such file or directory"
    )


def test_committed_config_is_valid():
    result = subprocess.run(
        [sys.executable, "-m", "extproc", "check", str(ROOT / "config.yaml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_a_key_with_cr_or_lf_is_refused_by_check_without_showing_it(tmp_path):
    # Envoy refuses such a header value on every request (a 503 that blames the sidecar).
    text = "llm_providers:\n  - model: openai/x\n    access_key: $K\n"
    result = check(tmp_path, text, K="sk-secret\r\nx-injected: 1")
    assert result.returncode == 2
    assert f"{tmp_path}/config.yaml:3: llm_providers[0].access_key: " in result.stderr
    assert "control character" in result.stderr
    assert "sk-secret" not in result.stderr + result.stdout


def test_an_unset_variable_in_a_number_is_named(tmp_path):
    result = check(tmp_path, "llm_providers:\n  - model: openai/x\nlistener:\n  port: $UNSET\n")
    assert result.returncode == 2
    assert f"{tmp_path}/config.yaml:4: listener.port: environment variable UNSET is not set" in (
        result.stderr
    )


def test_double_dollar_is_a_literal_dollar(monkeypatch):
    monkeypatch.setenv("K", "from-env")
    config = parse(
        "llm_providers:\n  - model: openai/x\n    access_key: pa$$word-$K-$${K}\n"
        "gateway_keys: [a-literal-$$HOME-key]\n"
    )
    assert config.providers[0].access_key == "pa$word-from-env-${K}"
    assert config.gateway_keys == ("a-literal-$HOME-key",)


def test_pass_through_paths_default_to_what_claude_code_asks_and_can_be_set():
    providers = "llm_providers:\n  - model: anthropic/claude-x\n"
    assert parse(providers).pass_through_paths == ("/", "/v1/models", "/v1/models/*")
    config = parse(providers + "pass_through_paths: [/v1/models, /v1/messages/batches*]\n")
    assert config.pass_through_paths == ("/v1/models", "/v1/messages/batches*")
    assert parse(providers + "pass_through_paths: []\n").pass_through_paths == ()


@pytest.mark.parametrize("entry", ["v1/models", "/v1/*/x", "/v1/../messages", "/v1/%6D", "*"])
def test_a_pass_through_entry_must_be_a_canonical_path_or_prefix(entry):
    with pytest.raises(ConfigError, match=r"pass_through_paths\[0\]: .* is not a path"):
        parse(f"llm_providers:\n  - model: anthropic/claude-x\npass_through_paths: ['{entry}']\n")


@pytest.mark.parametrize(
    ("entry", "interface", "path"),
    [
        ("model: openai/gpt-5.2-codex", "openai-responses", "/v1/responses"),
        (
            "model: openai/gpt-4.1\n    provider_interface: openai-chat",
            "openai",
            "/v1/chat/completions",
        ),
        ("model: xai/grok-4", "openai", "/v1/chat/completions"),
        (
            "model: xai/grok-4\n    provider_interface: openai-responses",
            "openai-responses",
            "/v1/responses",
        ),
        (
            "model: openrouter/openai/gpt-5\n    provider_interface: openai-responses",
            "openai-responses",
            "/api/v1/responses",
        ),
        (
            "model: ollama/qwen3\n    base_url: http://h:11434\n    provider_interface: openai-responses",
            "openai-responses",
            "/v1/responses",
        ),
        ("model: ollama/qwen3\n    base_url: http://h:11434", "openai", "/v1/chat/completions"),
        (
            "model: acme/x\n    base_url: http://acme/v1\n    provider_interface: openai",
            "openai",
            "/v1/chat/completions",
        ),
    ],
)
def test_which_wire_a_provider_speaks(entry: str, interface: str, path: str) -> None:
    from extproc.providers.upstream import upstream_path

    [provider] = parse(f"llm_providers:\n  - {entry}\n    access_key: k\n").providers
    assert provider.interface == interface
    assert upstream_path(provider, "/v1/messages?beta=true") == path


def test_reasoning_summaries_are_turned_off_by_a_model_family_row() -> None:
    config = parse(
        "llm_providers:\n  - model: openai/gpt-5.2-codex\n    access_key: k\n"
        "model_families:\n  - {provider: openai, model: '*', reasoning_summaries: false}\n"
    )
    contract = config.providers[0].contract
    assert contract.reasoning and not contract.reasoning_summaries


SIDECAR_ON_EVERY_INTERFACE = """\
llm_providers:
  - model: openai/x
    access_key: k
sidecar:
  address: extproc.llm.svc.cluster.local
  listen_address: 0.0.0.0
"""


def test_the_sidecar_secret_comes_from_the_environment_and_is_never_shown(monkeypatch):
    monkeypatch.setenv(SIDECAR_SECRET_VAR, "s3cret-0123456789abcdef")
    config = parse(SIDECAR_ON_EVERY_INTERFACE)
    assert config.sidecar_secret == "s3cret-0123456789abcdef"
    assert "s3cret" not in repr(config)
    assert config.warnings == ()


def test_a_sidecar_other_hosts_reach_without_a_secret_is_a_warning(monkeypatch):
    monkeypatch.delenv(SIDECAR_SECRET_VAR, raising=False)
    assert parse(SIDECAR_ON_EVERY_INTERFACE).warnings == (
        "config.yaml:6: sidecar.listen_address: the sidecar listens on 0.0.0.0 and "
        "EXTPROC_SIDECAR_SECRET is not set: anything that reaches port 50051 can ask it for "
        "provider keys (docs/reliability.md)",
    )
    assert parse("llm_providers:\n  - model: openai/x\n    access_key: k\n").warnings == ()


def test_a_sidecar_secret_that_cannot_be_a_header_is_refused_without_showing_it(tmp_path):
    text = "llm_providers:\n  - model: openai/x\n"
    result = check(tmp_path, text, EXTPROC_SIDECAR_SECRET="top secret")
    assert result.returncode == 2
    assert "top secret" not in result.stdout + result.stderr
    assert result.stderr.splitlines()[0] == (
        f"error: {tmp_path}/config.yaml:1: sidecar: environment variable EXTPROC_SIDECAR_SECRET must be "
        "printable ASCII without spaces (Envoy sends it as a gRPC header); `openssl rand -hex 32` "
        "makes one"
    )


CANDIDATES = """\
llm_providers:
  - model: deepseek/deepseek-chat
    access_key: k
    fallbacks: [kimi, gemini/gemini-3-pro-preview]
  - name: kimi
    model: moonshot/kimi-k2.5
    access_key: k
    fallbacks: [openai/gpt-4.1]
  - model: gemini/gemini-3-pro-preview
    access_key: k
  - model: openai/gpt-4.1
    access_key: k
    fallbacks: [gemini/gemini-3-pro-preview]
  - model: anthropic/claude-sonnet-4-5
    default: true
"""


def test_candidates_are_the_fallbacks_in_order_depth_first_then_the_default() -> None:
    config = parse(CANDIDATES)
    chosen, _, gemini, _, sonnet = config.providers
    assert [p.name for p in config.candidates(chosen)] == [
        "deepseek/deepseek-chat",
        "kimi",
        "openai/gpt-4.1",  # kimi's own fallback, before the entry's next one
        "gemini/gemini-3-pro-preview",  # gpt-4.1's, and the entry's own: once
        "anthropic/claude-sonnet-4-5",
    ]
    assert config.candidates(gemini) == (gemini, sonnet)
    assert config.candidates(sonnet) == (sonnet,)


def test_context_window_on_an_entry_overrides_the_table() -> None:
    config = parse(
        "llm_providers:\n"
        "  - {model: ollama/qwen3-coder, base_url: 'http://h:11434', context_window: 32768}\n"
        "  - {model: deepseek/deepseek-chat, access_key: k}\n"
        "  - {model: deepseek/deepseek-reasoner, access_key: k, context_window: 64000}\n"
    )
    ollama, chat, reasoner = (p.contract for p in config.providers)
    assert ollama.context_window == 32768 and ollama.output_cap == 0
    assert (chat.context_window, chat.output_cap, chat.images, chat.pdfs) == (
        128_000,
        8_000,
        False,
        False,
    )
    assert (reasoner.context_window, reasoner.output_cap) == (64_000, 64_000)


def test_model_family_rows_set_the_facts() -> None:
    config = parse(
        "llm_providers:\n  - {model: 'acme/m-1', base_url: 'http://h', provider_interface: anthropic}\n"
        "model_families:\n"
        "  - {provider: acme, model: 'm-*', context_window: 50000, output_cap: 4096,"
        " images: false, pdfs: false, server_tools: web_search}\n"
    )
    contract = config.providers[0].contract
    assert (contract.context_window, contract.output_cap) == (50_000, 4096)
    assert (contract.images, contract.pdfs, contract.server_tools) == (False, False, "web_search")


def test_a_listen_address_override_that_is_not_an_ip_is_named(monkeypatch):
    monkeypatch.setenv("EXTPROC_LISTEN_ADDRESS", "gateway.local")
    with pytest.raises(ConfigError) as raised:
        parse("llm_providers:\n  - model: openai/x\n")
    assert str(raised.value) == (
        "config.yaml:1: listener.address: EXTPROC_LISTEN_ADDRESS='gateway.local' is not an IP "
        "address (Envoy listens on it: 127.0.0.1, or 0.0.0.0 for every interface)"
    )


def test_a_docker_service_name_with_an_underscore_is_a_host():
    config = parse("llm_providers:\n  - model: ollama/q\n    base_url: http://my_ollama:11434\n")
    assert config.providers[0].base_url == "http://my_ollama:11434"
