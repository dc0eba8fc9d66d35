"""The failover part of Envoy's config: one route per candidate chain, tried slot by slot on
the retries Envoy makes before an answer reaches the client, and nothing of it for a config
whose requests each have one candidate."""

from __future__ import annotations

from extproc.config import parse
from extproc.control.envoy_config import fragment, render
from extproc.providers.chains import chain_of, chain_value, chains
from tests.support import load_yaml
from tests.support.envoy import validate

FALLBACKS = """\
llm_providers:
  - model: anthropic/claude-sonnet-4-5
    default: true
  - model: anthropic/claude-haiku-4-5
    access_key: sk-ant-haiku
  - model: openai/gpt-4.1
    access_key: sk-openai
    fallbacks: [deepseek/deepseek-chat]
  - model: deepseek/deepseek-chat
    access_key: sk-deepseek
listener: {max_concurrent_requests: 64, failover_timeout_s: 20}
"""


def _bootstrap(text: str) -> dict:
    return load_yaml(render(parse(text)))


def _manager(bootstrap: dict) -> dict:
    return bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"
    ]


def _routes(bootstrap: dict) -> list[dict]:
    return _manager(bootstrap)["route_config"]["virtual_hosts"][0]["routes"]


def _chain_of(route: dict) -> list[str]:
    plugin = route["route"]["inline_cluster_specifier_plugin"]["extension"]["typed_config"]
    return [group["clusters"][0]["cluster_name"] for group in plugin["priority_groups"]]


def test_a_config_with_one_candidate_per_request_renders_no_failover():
    rendered = render(parse("llm_providers:\n  - model: anthropic/claude-sonnet-4-5\n"))
    for word in ("x-extproc-chain", "fo__", "p__", "failfast", "max_retries", "upstream_log"):
        assert word not in rendered
    routes = _routes(load_yaml(rendered))
    assert [r["route"]["cluster_header"] for r in routes] == ["x-extproc-cluster"]


def test_each_chain_has_a_route_for_streamed_and_whole_requests_then_the_cluster_route():
    bootstrap = _bootstrap(FALLBACKS)
    routes = _routes(bootstrap)
    header = [
        r["match"].get("headers", [{}])[0].get("string_match", {}).get("exact") for r in routes
    ]
    # Every head on its origin's p__ slot (rewritten downstream), later candidates on fo__.
    openai = "p__api_openai_com_443,fo__deepseek_deepseek-chat,fo__anthropic_claude-sonnet-4-5"
    # The same head with fewer candidates after it: one left out as unfit or resting.
    openai_deepseek = "p__api_openai_com_443,fo__deepseek_deepseek-chat"
    openai_sonnet = "p__api_openai_com_443,fo__anthropic_claude-sonnet-4-5"
    deepseek = "p__api_deepseek_com_443,fo__anthropic_claude-sonnet-4-5"
    haiku = "p__api_anthropic_com_443,fo__anthropic_claude-sonnet-4-5"
    chains = (haiku, openai, openai_deepseek, openai_sonnet, deepseek)
    assert header == [*(v for c in chains for v in (f"{c};stream", c)), None]
    assert _chain_of(routes[2]) == openai.split(",")
    assert routes[-1]["route"]["cluster_header"] == "x-extproc-cluster"
    streamed, whole = routes[2]["route"]["retry_policy"], routes[3]["route"]["retry_policy"]
    assert streamed == {
        "retry_on": "connect-failure,reset,refused-stream,retriable-status-codes,"
        "retriable-headers,5xx",
        "retriable_status_codes": [429, 529],
        "retriable_headers": [{"name": "x-extproc-failover", "present_match": True}],
        "num_retries": 2,
        "retry_back_off": {"base_interval": "0.001s", "max_interval": "0.002s"},
        "refresh_cluster_on_retry": True,
        "per_try_timeout": "20s",
    }
    assert whole == {k: v for k, v in streamed.items() if k != "per_try_timeout"}
    assert routes[0]["route"]["retry_policy"]["num_retries"] == 1
    assert routes[2]["request_headers_to_remove"] == ["x-extproc-chain"]
    assert "x-extproc-failover" in routes[2]["response_headers_to_remove"]


FIVE_AFTER = (
    "llm_providers:\n  - model: anthropic/claude-sonnet-4-5\n    default: true\n"
    + "".join(f"  - model: openai/m{i}\n    access_key: k\n" for i in range(5))
    + "  - model: openai/gpt-4.1\n    access_key: k\n"
    + "    fallbacks: [openai/m0, openai/m1, openai/m2, openai/m3]\n"
)
"""A request routed to gpt-4.1 has five candidates after it: m0..m3, then the default."""


def test_a_head_with_more_candidates_after_it_than_can_be_trimmed_has_one_chain():
    """Each subset of the candidates after a head is a route (2**n - 1): past four of them,
    only the chain with all of them is rendered, and no request leaves any out."""
    config = parse(FIVE_AFTER)
    gpt = config.provider_named("openai/gpt-4.1")
    heads = [c for c in chains(config) if c[0] is gpt]
    assert [[p.name for p in c] for c in heads] == [
        [
            "openai/gpt-4.1",
            "openai/m0",
            "openai/m1",
            "openai/m2",
            "openai/m3",
            "anthropic/claude-sonnet-4-5",
        ]
    ]
    m0 = config.provider_named("openai/m0")
    from_m0 = [c for c in chains(config) if c[0] is m0]
    assert len(from_m0) == 2**4 - 1  # m1, m2, m3, sonnet after it: every subset


def test_a_requests_chain_leaves_out_what_trim_says_only_up_to_four_candidates_after_its_head():
    config = parse(FIVE_AFTER)
    gpt, m0 = config.provider_named("openai/gpt-4.1"), config.provider_named("openai/m0")

    def first_only(rest):
        return rest[:1]

    def names(chain):
        return [p.name for p in chain]

    after_m0 = ["openai/m1", "openai/m2", "openai/m3", "anthropic/claude-sonnet-4-5"]
    # Routed to gpt-4.1, sent to m0 (gpt-4.1 can't take it): four candidates after m0.
    assert names(chain_of(config, gpt, m0)) == ["openai/m0", *after_m0]
    assert names(chain_of(config, gpt, m0, first_only)) == ["openai/m0", "openai/m1"]
    # Five after gpt-4.1: no route leaves any out, so the request keeps them all.
    assert len(chain_of(config, gpt, gpt, first_only)) == 6


def test_without_failover_a_requests_chain_is_its_provider_alone():
    config = parse(FIVE_AFTER + "listener: {failover: false}\n")
    gpt = config.provider_named("openai/gpt-4.1")
    assert chain_of(config, gpt, gpt) == (gpt,)


def test_the_sidecars_chain_header_names_a_rendered_route():
    config = parse(FALLBACKS)
    routes = _routes(load_yaml(render(config)))
    values = {r["match"]["headers"][0]["string_match"]["exact"] for r in routes[:-1]}
    sent = {
        chain_value(config, chain, streamed)
        for chain in chains(config)
        for streamed in (True, False)
    }
    assert sent == values


def test_slots_fall_to_the_failfast_cluster_and_only_failover_slots_call_the_sidecar():
    bootstrap = _bootstrap(FALLBACKS)
    clusters = {c["name"]: c for c in bootstrap["static_resources"]["clusters"]}
    failfast = clusters["extproc_failfast"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert failfast["endpoint"]["address"] == {
        "pipe": {"path": "/nonexistent/extproc-failfast.sock"}
    }
    native = clusters["p__api_anthropic_com_443"]
    assert native["cluster_type"]["typed_config"]["clusters"] == [
        "api_anthropic_com_443",
        "extproc_failfast",
    ]
    # No sidecar call on a head's attempt: only Envoy's Lua (control/chain_head.lua).
    (native_options,) = native["typed_extension_protocol_options"].values()
    lua, codec = native_options["http_filters"]
    assert (lua["name"], codec["name"]) == (
        "envoy.filters.http.lua",
        "envoy.filters.http.upstream_codec",
    )
    source = lua["typed_config"]["default_source_code"]["inline_string"]
    assert 'local FAILED_KEY = "failed:p__api_anthropic_com_443"' in source
    assert 'local RETRY_AFTER_KEY = "retry_after"' in source
    assert 'local BODY_KEY = "head_body"' in source
    assert 'headers:replace("x-extproc-head-answer", "1")' in source
    assert '"\\112\\114\\111\\109\\112\\116' in source  # "prompt is too long", escaped
    assert "%" + "NAMESPACE%" not in source and "%" + "MARKERS%" not in source
    slot = clusters["fo__deepseek_deepseek-chat"]
    assert slot["cluster_type"]["typed_config"]["clusters"] == [
        "api_deepseek_com_443",
        "extproc_failfast",
    ]
    options = slot["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    extproc, codec = options["http_filters"]
    assert codec["name"] == "envoy.filters.http.upstream_codec"
    assert extproc["typed_config"]["request_attributes"] == ["xds.cluster_name"]
    assert extproc["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"] == "extproc"
    assert extproc["typed_config"]["processing_mode"]["response_header_mode"] == "SEND"
    for name in ("api_deepseek_com_443", "fo__deepseek_deepseek-chat", "p__api_deepseek_com_443"):
        assert clusters[name]["circuit_breakers"]["thresholds"][0]["max_retries"] == 64
    assert "max_retries" not in str(clusters["extproc"])


def test_a_clients_own_chain_header_is_removed_and_failed_attempts_are_logged():
    manager = _manager(_bootstrap(FALLBACKS))
    mutations = manager["early_header_mutation_extensions"][0]["typed_config"]["mutations"]
    assert {"remove": "x-extproc-chain"} in mutations
    router = manager["http_filters"][-1]["typed_config"]
    (log,) = router["upstream_log"]
    assert log["typed_config"]["log_format"]["json_format"]["candidate"] == "%UPSTREAM_CLUSTER%"
    assert manager["access_log"][0]["typed_config"]["log_format"]["json_format"]["attempts"] == (
        "%UPSTREAM_REQUEST_ATTEMPT_COUNT%"
    )


def test_the_mesh_fragment_has_the_chain_routes_with_the_sidecar_enabled():
    pieces = load_yaml(fragment(parse(FALLBACKS)))
    assert len(pieces["routes"]) == 11  # five chains, streamed and whole, then the cluster route
    enable = "envoy.filters.http.ext_proc"
    assert all(enable in route["typed_per_filter_config"] for route in pieces["routes"])
    names = {c["name"] for c in pieces["clusters"]}
    assert {"p__api_openai_com_443", "fo__deepseek_deepseek-chat", "extproc_failfast"} <= names
    # The sidecar sees the mark of a translated head's answer, which it translates.
    rules = pieces["http_filters"][0]["typed_config"]["forward_rules"]["allowed_headers"]
    assert {"exact": "x-extproc-head-answer"} in rules["patterns"]


def test_envoy_takes_the_failover_config(tmp_path):
    path = tmp_path / "envoy.yaml"
    path.write_text(render(parse(FALLBACKS)), encoding="utf-8")
    result = validate(path)
    assert result.returncode == 0, result.stdout + result.stderr
