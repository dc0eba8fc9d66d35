"""`extproc logs --summary` on a recorded access log: the decisions, then what they cost."""

from __future__ import annotations

from extproc.commands import cli, logs
from extproc.config.prices import price_for
from tests.support import ROOT

RECORDED = ROOT / "tests/fixtures/access-log/costs.log"
SONNET = "anthropic/claude-sonnet-4-5"

# By hand, from the log's token counts: spent 0.008 + 0.0037 + 0.010905 + 0.00138 =
# $0.023985; the same tokens on claude-sonnet-4-5 ($3 in, $15 out, $0.30 a cache read,
# $3.75 a cache write): 0.0135 + 0.00564 + 0.010905 + 0.00138 = $0.031425; saved $0.00744
# (24%). Cache: 3,800 read of 2,320 + 3,800 + 2,500 = 8,620 prompt tokens. The switch to
# claude-sonnet-4-5 paid 10 input + 2,500 cache-write tokens.
EXPECTED = """\
6 decisions
by route → model:
       2  code generation → openai/gpt-4.1
       2  - → anthropic/claude-sonnet-4-5
       1  code reviews → anthropic/claude-sonnet-4-5
       1  - → mistral/mistral-large-latest
by source: router 2, default 2, sticky 1, explicit 1
router latency over 2 fresh decisions: p50 388ms, p90 412ms, p99 412ms, mean 400ms
cost by route:
  route            requests  cost USD
  code generation         2    0.0117
  code reviews            1    0.0109
  -                       1    0.0014
cost by model:
  model                        requests  cost USD
  anthropic/claude-sonnet-4-5         2    0.0123
  openai/gpt-4.1                      2    0.0117
cost by session:
  session  requests  cost USD
  s1              3    0.0226
  s2              1    0.0014
answers with tokens but no price (unknown; `price:` gives one): 1
what routing saved: $0.0240 spent; all on anthropic/claude-sonnet-4-5: $0.0314; \
routing saved $0.0074 (24%)
input served from the provider's cache: 44% (3800 of 8620 tokens)
model switches within a session: 1, their 2510 input tokens not read from a cache"""


def summary(**default) -> str:
    with RECORDED.open(encoding="utf-8") as lines:
        return logs.summary(logs.entries(lines), **default)


def test_the_cost_tables_and_what_routing_saved():
    assert (
        summary(default_model=SONNET, default_price=price_for("anthropic", "claude-sonnet-4-5"))
        == EXPECTED
    )


def test_routing_that_cost_more_says_so():
    cheap = price_for("deepseek", "deepseek-chat")
    last = summary(default_model="deepseek/deepseek-chat", default_price=cheap).splitlines()[-3]
    # The same tokens at $0.56 in, $1.68 out, $0.07 a read, $0.56 a write: 1960 + 742 +
    # 1573.6 + 229.6 = $0.0045052 a million; 0.023985 - 0.0045052 = $0.0194798 more (432%).
    assert last == (
        "what routing saved: $0.0240 spent; all on deepseek/deepseek-chat: $0.0045; "
        "routing cost $0.0195 more (432%)"
    )


def test_a_default_model_without_a_price():
    lines = summary(default_model="mistral/mistral-large-latest").splitlines()
    assert lines[-3] == "what routing saved: unknown, mistral/mistral-large-latest has no price"


def test_a_log_without_token_counts():
    entry = '{"status": 200, "source": "router", "route": "r", "routed_model": "m"}\n'
    assert logs.summary(logs.entries([entry])).splitlines()[-1] == (
        "cost: no token counts in the log (an Envoy without the gateway's Lua filter has "
        "them only for translated answers, or with listener.log_tokens)"
    )


def test_the_command_prices_at_the_configs_default_model(tmp_path, capsys):
    """`--config`: its default entry's price, its own `price:` included."""
    config = tmp_path / "config.yaml"
    config.write_text(
        "llm_providers:\n"
        "  - model: openai/gpt-4.1\n"
        "    default: true\n"
        "    price: {input: 2, output: 8, cache_read: 0.5}\n"
    )
    assert cli.main(["logs", str(RECORDED), "--summary", "--config", str(config)]) == 0
    # 2000 × 2 + 500 × 8 = 8000; 200 × 2 + 300 × 8 + 1800 × 0.5 = 3700; 10 × 2 + 100 × 8 +
    # 2500 × 2 = 5820; 10 × 2 + 50 × 8 + 2000 × 0.5 = 1420: $0.01894; 0.023985 - 0.01894 =
    # $0.005045 more (27%).
    assert capsys.readouterr().out.splitlines()[-3] == (
        "what routing saved: $0.0240 spent; all on openai/gpt-4.1: $0.0189; "
        "routing cost $0.0050 more (27%)"
    )


def test_without_a_readable_config_the_savings_are_unknown(tmp_path, capsys):
    missing = tmp_path / "nowhere.yaml"
    assert cli.main(["logs", str(RECORDED), "--summary", "--config", str(missing)]) == 0
    line = capsys.readouterr().out.splitlines()[-3]
    assert line.startswith(f"what routing saved: unknown, the default model ({missing}: ")
