"""The per-session store behind `extproc statusline`: the latest decision of each Claude Code
session, bounded, without request content, served on the health port."""

from __future__ import annotations

import asyncio

import orjson

from extproc.app import build_runtime
from extproc.config import parse
from extproc.decisions.decision import Decision
from extproc.decisions.routing import RouterStage
from extproc.proxy.exchange import Exchange
from extproc.proxy.server import ExtProcServer
from extproc.proxy.sessions import SessionStore
from extproc.proxy.wire import Phase

CONFIG = parse(
    "llm_providers:\n"
    "  - {model: anthropic/claude-sonnet-4-5, access_key: k, default: true}\n"
    "  - {model: openai/gpt-4.1, access_key: k}\n"
    "model_aliases: {claude-*haiku*: openai/gpt-4.1}\n"
)
SESSION = "6cc5e38d-2e3b-46b4-8640-d604974c71e1"
SECRET_WORDS = "the launch codes are 0000"


def decision(model: str = "openai/gpt-4.1", route: str = "code_generation") -> Decision:
    provider = CONFIG.provider_named(model)
    assert provider is not None
    return Decision("router", provider, "claude-sonnet-4-5", route=route, router_ms=412.345)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_latest_decision_of_a_session_is_kept():
    store = SessionStore()
    store.decided(SESSION, decision("anthropic/claude-sonnet-4-5", ""))
    store.decided(SESSION, decision())
    record = store.get(SESSION)
    assert record is not None
    assert record.as_json() == {
        "model": "openai/gpt-4.1",
        "route": "code_generation",
        "source": "router",
        "router_ms": 412.35,
        "requests": 2,
        "input_tokens": None,
        "output_tokens": None,
        "cost_usd": None,
    }
    assert store.get("another-session") is None


def test_tokens_of_the_latest_answer_and_the_sessions_cost_add_up():
    store = SessionStore()
    store.decided(SESSION, decision())
    store.answered(SESSION, {"input_tokens": 1200, "output_tokens": 80}, cost_usd=0.25)
    store.decided(SESSION, decision())
    store.answered(SESSION, {"input_tokens": 1500, "output_tokens": 20}, cost_usd=0.5)
    store.answered("never-decided", {"input_tokens": 1}, cost_usd=9.0)
    record = store.get(SESSION)
    assert record is not None
    assert (record.input_tokens, record.output_tokens, record.cost_usd) == (1500, 20, 0.75)
    assert store.get("never-decided") is None


def test_a_switch_names_the_model_the_session_left():
    store = SessionStore(max_sessions=2)
    sonnet, gpt = decision("anthropic/claude-sonnet-4-5", ""), decision()
    assert store.decided("s1", sonnet) is None, "a new session"
    assert store.decided("s1", sonnet) is None, "the same model"
    assert store.decided("s2", gpt) is None, "another session"
    assert store.decided("s1", gpt) == "anthropic/claude-sonnet-4-5"
    assert store.decided("s1", gpt) is None
    store.decided("s3", gpt)  # pushes out s2
    assert store.decided("s2", sonnet) is None, "forgotten: counts as a new session"


def test_the_least_recently_seen_session_goes_first():
    store = SessionStore(max_sessions=2)
    store.decided("a", decision())
    store.decided("b", decision())
    store.decided("a", decision())  # a is seen again: b is now the oldest
    store.decided("c", decision())
    assert [s for s in "abc" if store.get(s)] == ["a", "c"]


def test_a_session_not_seen_for_its_expiry_is_gone():
    clock = Clock()
    store = SessionStore(expires_s=60, clock=clock)
    store.decided("old", decision())
    clock.now += 30
    store.decided("recent", decision())
    clock.now += 31
    assert store.get("old") is None
    assert store.get("recent") is not None
    clock.now += 30
    assert store.get("recent") is None


def test_a_session_expires_at_its_expiry_exactly():
    clock = Clock()
    store = SessionStore(expires_s=60, clock=clock)
    store.decided(SESSION, decision())
    clock.now += 59.5
    assert store.get(SESSION) is not None
    clock.now += 0.5
    assert store.get(SESSION) is None


def test_an_id_that_is_not_a_session_id_is_not_kept():
    store = SessionStore()
    for odd in ("", "x" * 129, "a/b", "a\r\nb", "ünï"):
        store.decided(odd, decision())
        assert store.get(odd) is None


def run_exchange(exchange: Exchange, path: str, session: str, **extra: object) -> None:
    headers = {":path": path, ":method": "POST", "x-claude-code-session-id": session}
    body = {
        "model": "claude-haiku-4-5",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": SECRET_WORDS}],
        **extra,
    }

    async def send() -> None:
        await exchange.handle(Phase("request_headers", headers))
        await exchange.handle(Phase("request_body", body=orjson.dumps(body), end_of_stream=True))

    asyncio.run(send())


def test_the_health_port_serves_a_sessions_decision_and_no_request_content():
    runtime = build_runtime(CONFIG, RouterStage(CONFIG.routing))
    server = ExtProcServer(runtime)
    run_exchange(Exchange(runtime), "/v1/messages?beta=true", SESSION)
    status, content_type, body = server._health_answer(f"/sessions/{SESSION}".encode())
    assert (status, content_type) == (b"200 OK", b"application/json")
    assert orjson.loads(body) == {
        "model": "openai/gpt-4.1",
        "route": "",
        "source": "alias",
        "router_ms": 0.0,
        "requests": 1,
        "input_tokens": None,
        "output_tokens": None,
        "cost_usd": None,
    }
    assert SECRET_WORDS.encode() not in body
    assert server._health_answer(b"/sessions/unknown")[0] == b"404 Not Found"


def test_token_counts_are_not_a_sessions_latest_decision():
    runtime = build_runtime(CONFIG, RouterStage(CONFIG.routing))
    run_exchange(Exchange(runtime), "/v1/messages/count_tokens", SESSION)
    assert runtime.sessions.get(SESSION) is None


def test_the_session_title_call_is_not_the_turns_decision():
    runtime = build_runtime(CONFIG, RouterStage(CONFIG.routing))
    runtime.sessions.decided(SESSION, decision("anthropic/claude-sonnet-4-5", "code_review"))
    title = {"output_config": {"format": {"type": "json_schema", "schema": {}}}}
    run_exchange(Exchange(runtime), "/v1/messages", SESSION, **title)
    record = runtime.sessions.get(SESSION)
    assert record is not None
    assert (record.model, record.route, record.requests) == (
        "anthropic/claude-sonnet-4-5",
        "code_review",
        1,
    )


def test_a_config_reload_keeps_the_sessions(tmp_path):
    from extproc.app import Sidecar

    path = tmp_path / "config.yaml"
    text = (
        f"routing: {{model_dir: {tmp_path / 'none'}}}\nllm_providers:\n  - model: openai/gpt-4.1\n"
    )
    path.write_text(text, encoding="utf-8")

    async def reloaded() -> SessionStore:
        sidecar = Sidecar(parse(text, str(path)), warn=False)
        await sidecar.loading
        sidecar.server.runtime.sessions.decided(SESSION, decision())
        path.write_text(text + "  - model: openai/o4-mini\n", encoding="utf-8")
        sidecar.reload()
        await sidecar.loading
        assert len(sidecar.server.runtime.config.providers) == 2  # the new config is in force
        return sidecar.server.runtime.sessions

    record = asyncio.run(reloaded()).get(SESSION)
    assert record is not None and record.model == "openai/gpt-4.1"
