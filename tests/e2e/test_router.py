"""Through real Envoy and the sidecar running the tiny real router: routed, then sticky."""

from __future__ import annotations

import anthropic
import httpx
import pytest

from extproc.config import load
from extproc.decisions.router.engine import ArchRouter
from extproc.decisions.routing import routes_of
from tests.support.conversations import conversations

TOOL = {
    "name": "read_file",
    "description": "Read a file",
    "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
}


@pytest.fixture(scope="module")
def expected_routes(routed_gateway, tiny_router_dir):
    """What the model itself says for candidate conversations, with the gateway's route order."""
    routes = routes_of(load(routed_gateway.config_path))
    windows = conversations(24, seed=5)
    model = ArchRouter(tiny_router_dir)
    answers = model.classify(routes, windows)
    model.close()
    return dict(zip(answers, windows, strict=False))


def sdk(gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key="sk-ant-client", max_retries=0)


@pytest.mark.parametrize(
    ("route", "fake_index", "upstream_model"),
    [("code_generation", 1, "deepseek-chat"), ("code_review", 0, "claude-sonnet-4-5")],
)
def test_router_decides_and_the_tool_loop_sticks(
    routed_gateway, fakes, expected_routes, route, fake_index, upstream_model
):
    window = expected_routes[route]
    client = sdk(routed_gateway)
    first = client.messages.create(
        model="claude-opus-4-8", max_tokens=50, tools=[TOOL], messages=window
    )
    assert first.content[0].type == "text"
    tool_use = {
        "type": "tool_use",
        "id": "toolu_01",
        "name": "read_file",
        "input": {"path": "a.py"},
    }
    follow_up = [
        *window,
        {"role": "assistant", "content": [{"type": "text", "text": "Reading it."}, tool_use]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "print(1)"},
                {"type": "text", "text": "<system-reminder>files changed</system-reminder>"},
            ],
        },
    ]
    client.messages.create(model="claude-opus-4-8", max_tokens=50, tools=[TOOL], messages=follow_up)

    received = fakes[fake_index].received
    assert [r.json()["model"] for r in received] == [upstream_model, upstream_model]
    assert not fakes[1 - fake_index].received
    request_ids = [r.headers["x-request-id"] for r in received]
    entries = [routed_gateway.wait_log(lambda e, i=i: e["request_id"] == i) for i in request_ids]
    assert [(e["source"], e["route"]) for e in entries] == [("router", route), ("sticky", route)]
    assert float(entries[0]["router_ms"]) > 0


def test_explicit_and_alias_bypass_the_router(routed_gateway, fakes, expected_routes):
    client = sdk(routed_gateway)
    client.messages.create(
        model="claude-3-5-haiku-latest", max_tokens=5, messages=expected_routes["code_generation"]
    )
    [seen] = fakes[0].received
    assert seen.json()["model"] == "claude-haiku-4-5"
    entry = routed_gateway.wait_log(lambda e: e["request_id"] == seen.headers["x-request-id"])
    assert (entry["source"], entry["route"]) == ("alias", "")


def ext_proc_messages_sent(gateway) -> int:
    """Envoy's count of messages its ext_proc filter sent to the sidecar."""
    admin = load(gateway.config_path).listener.admin_port
    stats = httpx.get(f"http://127.0.0.1:{admin}/stats?filter=ext_proc.*stream_msgs_sent").text
    return sum(int(line.rsplit(": ", 1)[1]) for line in stats.splitlines() if line)


def test_native_only_config_skips_the_response_phase(routed_gateway, fakes, expected_routes):
    """No provider needs translation here: two messages per request, not three."""
    before = ext_proc_messages_sent(routed_gateway)
    sdk(routed_gateway).messages.create(
        model="claude-haiku-4-5", max_tokens=5, messages=expected_routes["code_review"]
    )
    assert ext_proc_messages_sent(routed_gateway) - before == 2
