"""The feasibility check and the walk over a provider's candidates."""

from __future__ import annotations

import asyncio
import base64

import orjson
import pytest
from envoy_data_plane.envoy.service.ext_proc.v3 import ProcessingResponse

from extproc.app import build_runtime
from extproc.config import parse
from extproc.decisions.capability import (
    BYTES_PER_TOKEN,
    IMAGE_TOKENS,
    PDF_PAGE_TOKENS,
    Needs,
    choose,
    needs_of,
    problem,
    worth_trying,
)
from extproc.decisions.cooldown import Cooldowns
from extproc.decisions.decision import Decision
from extproc.decisions.routing import RouterStage
from extproc.proxy.exchange import Exchange

CONFIG = parse("""\
llm_providers:
  - model: deepseek/deepseek-chat
    access_key: k
    fallbacks: [groq/openai/gpt-oss-120b, gemini/gemini-3-pro-preview]
  - model: groq/openai/gpt-oss-120b
    access_key: k
  - model: gemini/gemini-3-pro-preview
    access_key: k
    max_tokens: 8192
  - model: anthropic/claude-sonnet-4-5
    default: true
  - name: local
    model: ollama/qwen3-coder
    base_url: http://127.0.0.1:11434
    context_window: 32768
""")
DEEPSEEK, GPT_OSS, GEMINI, SONNET, LOCAL = CONFIG.providers
PNG = base64.b64encode(b"\x89PNG" + b"\0" * 3000).decode()
NOW = 1_796_000_000.0
TWO_PAGES = base64.b64encode(b"%PDF-1.4 /Type /Pages /Type /Page x /Type/Page y").decode()


def body(*content: object, max_tokens: int = 32_000, tools: list | None = None) -> dict:
    request: dict = {"model": "m", "max_tokens": max_tokens}
    request["messages"] = [{"role": "user", "content": list(content)}]
    if tools is not None:
        request["tools"] = tools
    return request


def image(data: str = PNG) -> dict:
    return {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}


def needs(request: dict) -> Needs:
    return needs_of(request, len(orjson.dumps(request)))


def test_the_estimate_is_the_body_over_three_bytes_a_token_without_its_media() -> None:
    text = {"type": "text", "text": "x" * 30_000}
    plain = body(text)
    assert needs(plain).input_tokens == len(orjson.dumps(plain)) // BYTES_PER_TOKEN
    with_media = body(
        text,
        image(),
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": TWO_PAGES},
        },
    )
    size = len(orjson.dumps(with_media)) - len(PNG) - len(TWO_PAGES)
    expected = size // BYTES_PER_TOKEN + IMAGE_TOKENS + 2 * PDF_PAGE_TOKENS
    found = needs(with_media)
    assert (found.input_tokens, found.images, found.pdfs) == (expected, True, True)
    assert found.max_tokens == 32_000


def test_an_image_inside_a_tool_result_counts() -> None:
    result = {"type": "tool_result", "tool_use_id": "t", "content": [image()]}
    assert needs(body(result)).images


def test_server_tools_are_named_without_their_date() -> None:
    tools = [{"type": None}, {"type": "custom"}, {"type": "web_search_20250305"}]
    assert needs(body(tools=tools)).server_tools == ("web_search",)


def test_a_long_request_does_not_fit_a_smaller_window() -> None:
    # 128k window: 100k input fits with 8k of answer (DeepSeek's cap), 125k doesn't.
    assert problem(DEEPSEEK, Needs(100_000, 32_000)) == ""
    assert problem(DEEPSEEK, Needs(125_000, 32_000)) == (
        "~125k input tokens + 8k max_tokens > 128k window"
    )
    assert problem(DEEPSEEK, Needs(130_000, 0)) == "~130k input tokens > 128k window"


def test_the_entry_cap_counts_for_translated_requests() -> None:
    # gpt-oss's window is 131,072 and its page gives no smaller output cap than that.
    assert problem(GPT_OSS, Needs(100_000, 32_000)) == (
        "~100k input tokens + 32k max_tokens > 131k window"
    )
    assert problem(GEMINI, Needs(1_040_000, 32_000)) == ""  # capped at 8192: it fits


def test_an_unknown_window_is_not_checked() -> None:
    assert SONNET.contract.context_window == 200_000  # known
    assert (
        problem(
            parse("llm_providers:\n  - model: xai/grok-4\n    access_key: k\n").providers[0],
            Needs(10**7, 0),
        )
        == ""
    )


def test_images_pdfs_and_server_tools_need_a_model_that_takes_them() -> None:
    assert problem(DEEPSEEK, Needs(10, 0, images=True)) == "reads no images"
    assert problem(GEMINI, Needs(10, 0, images=True)) == ""
    assert problem(DEEPSEEK, Needs(10, 0, pdfs=True)) == "reads no PDFs"
    assert problem(GEMINI, Needs(10, 0, pdfs=True)) == "reads no PDFs"  # no `file` parts there
    assert problem(SONNET, Needs(10, 0, pdfs=True)) == ""
    assert problem(GEMINI, Needs(10, 0, server_tools=("web_search",))) == (
        "runs no web_search server tool"
    )
    assert problem(SONNET, Needs(10, 0, server_tools=("web_search",))) == ""


def decision(provider, source="router", note="") -> Decision:
    return Decision(source, provider, "claude-sonnet-4-5", "code", 1.0, note)


def test_the_first_candidate_that_fits_gets_the_request() -> None:
    chosen = choose(CONFIG, decision(DEEPSEEK), Needs(125_000, 32_000))
    assert chosen.provider == GEMINI
    assert chosen.note == (
        "deepseek/deepseek-chat skipped: ~125k input tokens + 8k max_tokens > 128k window; "
        "groq/openai/gpt-oss-120b skipped: ~125k input tokens + 32k max_tokens > 131k window"
    )
    assert (chosen.source, chosen.route) == ("router", "code")


def test_an_image_goes_to_a_model_that_reads_it() -> None:
    chosen = choose(CONFIG, decision(DEEPSEEK), Needs(1_000, 100, images=True))
    assert chosen.provider == GEMINI
    assert chosen.note == (
        "deepseek/deepseek-chat skipped: reads no images; "
        "groq/openai/gpt-oss-120b skipped: reads no images"
    )


def test_a_sticky_decision_that_outgrew_its_model_moves_on_and_keeps_its_note() -> None:
    sticky = decision(LOCAL, source="sticky", note="router timed out after 5000 ms")
    chosen = choose(CONFIG, sticky, Needs(40_000, 0))
    assert (chosen.provider, chosen.source) == (SONNET, "sticky")  # the default, after none
    assert chosen.note == (
        "router timed out after 5000 ms; local skipped: ~40k input tokens > 33k window"
    )


def test_a_model_that_fits_is_kept_unchanged() -> None:
    kept = decision(DEEPSEEK)
    assert choose(CONFIG, kept, Needs(1_000, 32_000)) is kept


@pytest.mark.parametrize("needed", [Needs(2_000_000, 0), Needs(300_000, 0, pdfs=True)])
def test_when_no_candidate_fits_the_chosen_model_gets_it(needed: Needs) -> None:
    chosen = choose(CONFIG, decision(GEMINI), needed)
    assert chosen.provider == GEMINI
    assert chosen.note.endswith("; no candidate fits, sent to gemini/gemini-3-pro-preview")
    assert chosen.note.count("skipped") == 2  # Gemini, then the default


def test_the_exchange_sends_the_request_to_the_candidate_with_its_key() -> None:
    """The body phase's reply: the fallback's cluster, path, model and key; the decision's
    note for the access log."""
    config = parse("""\
llm_providers:
  - model: ollama/qwen3-coder
    base_url: http://10.0.0.1:11434
    context_window: 1000
    fallbacks: [big]
  - name: big
    model: openai/gpt-4.1
    base_url: http://10.0.0.2:8080/v1
    provider_interface: openai-chat
    access_key: sk-big
""")
    exchange = Exchange(build_runtime(config, RouterStage(config.routing)))
    headers = {":path": "/v1/messages", ":method": "POST", "content-type": "application/json"}
    exchange.on_request_headers(headers, False)
    long = {
        "model": "ollama/qwen3-coder",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "x" * 6000}],
    }
    reply = ProcessingResponse.parse(asyncio.run(exchange.on_request_body(orjson.dumps(long))))
    mutation = reply.request_body.response.header_mutation
    sent = {o.header.key: o.header.raw_value for o in mutation.set_headers}
    assert sent["x-extproc-cluster"] == b"10_0_0_2_8080"
    assert sent["authorization"] == b"Bearer sk-big"
    assert orjson.loads(reply.request_body.response.body_mutation.body)["model"] == "gpt-4.1"
    assert (
        exchange.decision.note
        == "ollama/qwen3-coder skipped: ~2k input tokens + 100 max_tokens > 1k window"
    )


def test_a_cooling_candidate_is_skipped_like_one_that_does_not_fit() -> None:
    cooldowns = Cooldowns()
    cooldowns.failed(GPT_OSS.name, 429, "41", NOW)
    # DeepSeek's window can't take it, gpt-oss's can.
    chosen = choose(CONFIG, decision(DEEPSEEK), Needs(125_000, 4_000), cooldowns, NOW + 1)
    assert chosen.provider == GEMINI
    assert chosen.note == (
        "deepseek/deepseek-chat skipped: ~125k input tokens + 4k max_tokens > 128k window; "
        "groq/openai/gpt-oss-120b skipped: cooling down 40 s after 429, retry-after 41 s"
    )
    assert chosen.cooled == (GPT_OSS.name,)


def test_the_chosen_model_cooling_sends_the_request_to_its_next_candidate() -> None:
    cooldowns = Cooldowns()
    cooldowns.failed(DEEPSEEK.name, 503, None, NOW)
    chosen = choose(CONFIG, decision(DEEPSEEK), Needs(1_000, 100), cooldowns, NOW)
    assert (chosen.provider, chosen.cooled) == (GPT_OSS, (DEEPSEEK.name,))
    assert chosen.note == "deepseek/deepseek-chat skipped: cooling down 1 s after 503"
    assert choose(CONFIG, decision(DEEPSEEK), Needs(1_000, 100), cooldowns, NOW + 1).provider == (
        DEEPSEEK  # its rest is over
    )


def test_when_every_candidate_that_fits_is_cooling_the_first_of_them_gets_it() -> None:
    """A cooldown is a guess, a window is not: never refused, never sent where it can't fit."""
    cooldowns = Cooldowns()
    for provider in (GPT_OSS, GEMINI, SONNET):
        cooldowns.failed(provider.name, 429, "30", NOW)
    chosen = choose(CONFIG, decision(DEEPSEEK), Needs(125_000, 32_000), cooldowns, NOW)
    assert (chosen.provider, chosen.cooled) == (GEMINI, ())
    assert chosen.note.endswith(
        "; anthropic/claude-sonnet-4-5 skipped: cooling down 30 s after 429, retry-after 30 s; "
        "every candidate that fits is cooling down, sent to gemini/gemini-3-pro-preview"
    )
    everyone = Cooldowns()
    everyone.failed(DEEPSEEK.name, 429, "30", NOW)
    for provider in (GPT_OSS, GEMINI, SONNET):
        everyone.failed(provider.name, 429, "30", NOW)
    assert choose(CONFIG, decision(DEEPSEEK), Needs(1_000, 100), everyone, NOW).provider == DEEPSEEK


def test_a_chain_fails_over_only_to_candidates_that_fit_and_are_not_resting() -> None:
    """The candidates after a chain's head (providers/chains.py): those that can take the
    request, and of them those not cooling down, unless every one of them rests."""
    later = (GPT_OSS, GEMINI, SONNET)
    assert worth_trying(later, Needs(1_000, 100)) == later
    assert worth_trying(later, Needs(1_000, 100, images=True)) == (GEMINI, SONNET)
    # gpt-oss's 131k window can't take 141k; Gemini's entry caps max_tokens at 8k.
    assert worth_trying(later, Needs(125_000, 16_000)) == (GEMINI, SONNET)
    cooldowns = Cooldowns()
    cooldowns.failed(GEMINI.name, 429, "30", NOW)
    assert worth_trying(later, Needs(1_000, 100), cooldowns, NOW) == (GPT_OSS, SONNET)
    assert worth_trying(later, Needs(1_000, 100), cooldowns, NOW + 30) == later  # rest over
    for provider in (GPT_OSS, SONNET):
        cooldowns.failed(provider.name, 503, None, NOW)
    assert worth_trying(later, Needs(1_000, 100), cooldowns, NOW) == later
    assert worth_trying(later, Needs(1_000, 100, images=True), cooldowns, NOW) == (GEMINI, SONNET)
    assert worth_trying(later, Needs(1_500_000, 100, images=True)) == ()


def test_a_text_request_needs_no_images_pdfs_or_server_tools() -> None:
    assert needs_of(body({"type": "text", "text": "hi"}), 3_000) == Needs(1_000, 32_000)


def test_each_image_counts_and_its_bytes_are_left_out() -> None:
    two = body(image(), {"type": "text", "text": "and"}, image())
    size = 3_000 + 2 * len(PNG)
    assert needs_of(two, size) == Needs(1_000 + 2 * IMAGE_TOKENS, 32_000, images=True)


def test_an_image_by_url_counts_with_no_bytes_to_leave_out() -> None:
    by_url = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    assert needs_of(body(by_url), 3_000) == Needs(1_000 + IMAGE_TOKENS, 32_000, images=True)


def pdf(data: object, source_type: str = "base64") -> dict:
    source = {"type": source_type, "media_type": "application/pdf", "data": data}
    return {"type": "document", "source": source}


def test_a_pdf_counts_its_pages_at_least_one() -> None:
    one_page = base64.b64encode(b"%PDF-1.4 /Type /Pages /Type /Page x").decode()
    no_page_objects = base64.b64encode(b"%PDF-1.5 /ObjStm compressed").decode()
    for data, pages in ((one_page, 1), (TWO_PAGES, 2), (no_page_objects, 1)):
        found = needs_of(body(pdf(data)), 3_000 + len(data))
        assert found == Needs(1_000 + pages * PDF_PAGE_TOKENS, 32_000, pdfs=True), pages


def test_a_pdf_whose_data_is_not_base64_counts_one_page() -> None:
    """The provider refuses it with its own error; the estimate must not break first."""
    for data in ("abc", "é"):
        found = needs_of(body(pdf(data)), 3_000 + len(data))
        assert found == Needs(1_000 + PDF_PAGE_TOKENS, 32_000, pdfs=True), data


def test_a_pdf_by_url_is_a_pdf() -> None:
    """Anthropic's URL documents are PDFs, with no media type said."""
    by_url = {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}
    assert needs_of(body(by_url), 3_000) == Needs(1_000 + PDF_PAGE_TOKENS, 32_000, pdfs=True)


def test_a_text_document_is_no_pdf_and_its_text_counts_as_bytes() -> None:
    text = {"type": "text", "media_type": "text/plain", "data": "x" * 600}
    assert needs_of(body({"type": "document", "source": text}), 3_000) == Needs(1_000, 32_000)


@pytest.mark.parametrize(
    ("request_body", "expected"),
    [
        ({"model": "m"}, Needs(1_000, 0)),
        ({"messages": None}, Needs(1_000, 0)),
        ({"messages": ["hi", {"role": "user", "content": None}]}, Needs(1_000, 0)),
        ({"messages": [{"role": "user", "content": 7}]}, Needs(1_000, 0)),
        (body("stray", image(None)), Needs(1_000 + IMAGE_TOKENS, 32_000, images=True)),
        (body(pdf(12)), Needs(1_000 + PDF_PAGE_TOKENS, 32_000, pdfs=True)),
        (body(pdf(None, "url")), Needs(1_000 + PDF_PAGE_TOKENS, 32_000, pdfs=True)),
    ],
)
def test_a_malformed_body_still_gets_its_estimate(request_body: dict, expected: Needs) -> None:
    """Whatever the client sent, the estimate is made: the provider answers a malformed
    request with its own error. A block that is not an object hides none after it."""
    assert needs_of(request_body, 3_000) == expected


@pytest.mark.parametrize(("max_tokens", "counted"), [(1, 1), (0, 0), (-5, 0), ("64000", 0)])
def test_only_a_positive_whole_max_tokens_counts(max_tokens: object, counted: int) -> None:
    request = {"model": "m", "max_tokens": max_tokens, "messages": []}
    assert needs_of(request, 3_000).max_tokens == counted


def test_a_request_that_fills_the_window_exactly_fits() -> None:
    # DeepSeek: 128,000 tokens, answers capped at 8,000.
    assert problem(DEEPSEEK, Needs(120_000, 32_000)) == ""
    assert problem(DEEPSEEK, Needs(120_001, 32_000)) == (
        "~120k input tokens + 8k max_tokens > 128k window"
    )


def test_the_note_gives_thousands_rounded_and_smaller_numbers_whole() -> None:
    assert problem(GEMINI, Needs(2_000_000, 0)) == "~2000k input tokens > 1049k window"
    assert problem(LOCAL, Needs(32_000, 999)) == "~32k input tokens + 999 max_tokens > 33k window"


def test_an_anthropic_format_entrys_max_tokens_does_not_shrink_the_answer() -> None:
    """Its body goes on as the client wrote it: the model's own cap (64k) counts."""
    entry = parse(
        "llm_providers:\n  - {model: anthropic/claude-sonnet-4-5, max_tokens: 8192}\n"
    ).providers[0]
    assert problem(entry, Needs(150_000, 64_000)) == (
        "~150k input tokens + 64k max_tokens > 200k window"
    )


def test_a_model_runs_only_the_server_tools_its_row_lists() -> None:
    config = parse(
        "model_families:\n"
        "  - {provider: anthropic, model: 'claude-sonnet-4-5*', server_tools: 'web_search,web_fetch'}\n"
        "llm_providers:\n  - model: anthropic/claude-sonnet-4-5\n"
    )
    entry = config.providers[0]
    for tool in ("web_search", "web_fetch"):
        assert problem(entry, Needs(10, 0, server_tools=(tool,))) == "", tool
    assert problem(entry, Needs(10, 0, server_tools=("web_fetch", "code_execution"))) == (
        "runs no code_execution server tool"
    )


def test_when_nothing_can_take_it_the_decisions_own_note_is_kept() -> None:
    timed_out = "router timed out after 5000 ms"
    chosen = choose(CONFIG, decision(GEMINI, note=timed_out), Needs(2_000_000, 0))
    assert chosen.note == (
        f"{timed_out}; gemini/gemini-3-pro-preview skipped: ~2000k input tokens > 1049k window; "
        "anthropic/claude-sonnet-4-5 skipped: ~2000k input tokens > 200k window; "
        "no candidate fits, sent to gemini/gemini-3-pro-preview"
    )
    cooldowns = Cooldowns()
    cooldowns.failed(GEMINI.name, 503, None, NOW)
    cooldowns.failed(SONNET.name, 503, None, NOW)
    chosen = choose(CONFIG, decision(GEMINI, note=timed_out), Needs(1_000, 0), cooldowns, NOW)
    assert chosen.note == (
        f"{timed_out}; gemini/gemini-3-pro-preview skipped: cooling down 1 s after 503; "
        "anthropic/claude-sonnet-4-5 skipped: cooling down 1 s after 503; "
        "every candidate that fits is cooling down, sent to gemini/gemini-3-pro-preview"
    )
