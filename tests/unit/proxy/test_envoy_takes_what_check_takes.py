"""Whatever `extproc check` accepts, Envoy accepts: every config that parses renders, and the
real Envoy validates the result (`envoy --mode validate`)."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extproc.config import ConfigError, parse
from extproc.control.envoy_config import render
from tests.support.envoy import validate


# Mostly good values, and the edges of each setting: a generated config is accepted (and
# then must render and validate) or refused (and then must say where) often enough for both.
def mostly(good: st.SearchStrategy, edges: list) -> st.SearchStrategy:
    return st.one_of(good, good, good, st.sampled_from(edges))


PORTS = mostly(st.integers(1, 65535), [0, 1, 65535, 65536, 70000])
SIZES = mostly(st.integers(0, 2**30), [0, 1, 2**30, 2**30 + 1, 2**32, 2**63])
CONNECTIONS = mostly(st.integers(1, 2**20), [0, 1, 2**63 - 1, 2**63])
# `a-b.c`, `a.b_c` and `a_b.c` read alike: their clusters must still be distinct.
GOOD_HOSTS = ["localhost", "api.example.com", "127.0.0.1", "a-b.c", "a.b_c", "a_b.c", "h.", "x9"]
HOSTS = mostly(st.sampled_from(GOOD_HOSTS), ["host@evil", "a#b", "Ü.com", "-x.com", "x..y"])
BASE_URLS = st.builds(
    lambda scheme, host, port, path: f"{scheme}://{host}{'' if port is None else f':{port}'}{path}",
    st.sampled_from(["http", "https"]),
    HOSTS,
    st.one_of(st.none(), PORTS),
    mostly(st.sampled_from(["", "/v1", "/api/v1/"]), ["/v1?x=1", "/a b"]),
)
ADDRESSES = mostly(st.sampled_from(["127.0.0.1", "0.0.0.0", "::1"]), ["localhost", "1.2.3.4.5", ""])
PROVIDERS = st.fixed_dictionaries(
    {
        "model": st.sampled_from(
            ["openai/gpt-4.1", "anthropic/claude-sonnet-4-5", "deepseek/deepseek-chat"]
        )
    },
    optional={"base_url": BASE_URLS, "provider_interface": st.just("openai-chat")},
)
CONFIGS = st.fixed_dictionaries(
    {"llm_providers": st.lists(PROVIDERS, min_size=1, max_size=3, unique_by=lambda p: p["model"])},
    optional={
        "listener": st.fixed_dictionaries(
            {},
            optional={
                "address": ADDRESSES,
                "port": PORTS,
                "admin_port": PORTS,
                "max_body_bytes": SIZES,
                "idle_timeout_s": SIZES,
                "request_headers_timeout_s": SIZES,
                "max_concurrent_requests": SIZES,
                "max_connections": CONNECTIONS,
            },
        ),
        "sidecar": st.fixed_dictionaries(
            {},
            optional={
                "address": ADDRESSES,
                "listen_address": ADDRESSES,
                "port": PORTS,
                "health_port": PORTS,
            },
        ),
        "routing": st.fixed_dictionaries({}, optional={"timeout_ms": SIZES}),
        "gateway_keys": st.lists(st.just("k" * 16), max_size=1),
    },
)


@settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(raw=CONFIGS)
def test_every_config_check_accepts_renders_and_passes_envoy_validate(tmp_path, raw):
    try:
        config = parse(yaml.safe_dump(raw))
    except ConfigError as exc:
        assert all(problem.where for problem in exc.problems)
        return
    path = tmp_path / "envoy.yaml"
    path.write_text(render(config), encoding="utf-8")
    result = validate(path)
    assert result.returncode == 0, result.stdout + result.stderr
