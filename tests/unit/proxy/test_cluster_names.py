"""No two upstream origins share an Envoy cluster: each provider's requests, and its key, go
to its own scheme, host and port, even where the readable names of origins are alike."""

from __future__ import annotations

import asyncio
import itertools

import orjson
from envoy_data_plane.envoy.service.ext_proc.v3 import ProcessingResponse

from extproc.app import build_runtime
from extproc.config import Config, parse
from extproc.control.envoy_config import clusters
from extproc.decisions.routing import RouterStage
from extproc.providers.upstream import origin, origins
from extproc.proxy.exchange import Exchange

# Every spelling of one readable name, `a_b_c_8443`: each separator the rule turns into `_`,
# a trailing dot, and both schemes.
HOSTS = [f"a{one}b{two}c" for one, two in itertools.product(".-_", repeat=2)] + ["a.b.c."]
ALIKE = [f"{scheme}://{host}:8443" for scheme in ("http", "https") for host in HOSTS]


def config_of(base_urls: list[str]) -> Config:
    """One OpenAI-style provider per URL, `openai/m<i>` with the key `key-<i>`; no failover,
    so that each request goes out on its provider's own cluster."""
    entries = "".join(
        f"  - model: openai/m{i}\n    access_key: key-{i}\n    base_url: {url}/v1\n"
        for i, url in enumerate(base_urls)
    )
    return parse("listener: {failover: false}\nllm_providers:\n" + entries)


def sent_to(config: Config, model: str) -> dict[str, str]:
    """The headers the sidecar sets on a request for `model`."""
    exchange = Exchange(build_runtime(config, RouterStage(config.routing)))
    exchange.on_request_headers({":path": "/v1/messages", ":method": "POST"}, False)
    body = {"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    reply = ProcessingResponse.parse(asyncio.run(exchange.on_request_body(orjson.dumps(body))))
    mutation = reply.request_body.response.header_mutation
    return {o.header.key: o.header.raw_value.decode() for o in mutation.set_headers}


def upstream(cluster: dict) -> tuple[str, str, int]:
    """Where Envoy sends a cluster's requests: scheme, host and port."""
    (endpoint,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    address = endpoint["endpoint"]["address"]["socket_address"]
    scheme = "https" if "transport_socket" in cluster else "http"
    return scheme, address["address"], address["port_value"]


def test_the_origins_all_read_alike():
    """The premise of the next test: today's readable name can't tell these apart."""
    assert {origin(p).readable for p in config_of(ALIKE).providers} == {"a_b_c_8443"}


def test_each_provider_goes_to_its_own_origin_with_its_own_key():
    config = config_of(ALIKE)
    rendered = {c["name"]: c for c in clusters(config)}
    assert len(rendered) == 2 + len(ALIKE)  # the sidecar's, its health port's, one per origin
    for i, url in enumerate(ALIKE):
        headers = sent_to(config, f"openai/m{i}")
        scheme, host = url.removesuffix(":8443").split("://")
        assert upstream(rendered[headers["x-extproc-cluster"]]) == (scheme, host, 8443)
        assert headers["authorization"] == f"Bearer key-{i}"


def test_origins_that_read_alike_are_named_the_same_in_any_order():
    """A digest of the exact origin (SHA-256 of `scheme://host:port`) in both names, whichever
    provider comes first (docs/mesh.md has the first)."""
    pair = ["http://a-b.c:8443", "https://a.b_c:8443"]
    names = ["a_b_c_8443_07ad61a3", "a_b_c_8443_c06c3ba8"]
    assert list(origins(config_of(pair))) == names
    assert list(origins(config_of(pair[::-1]))) == names[::-1]


def test_an_origin_alike_to_none_keeps_its_readable_name():
    """Access logs, dashboards and mesh manifests name clusters such as `api_openai_com_443`."""
    config = config_of(["https://api.openai.com", "http://a-b.c:80", "https://a.b.c"])
    assert list(origins(config)) == ["api_openai_com_443", "a_b_c_80", "a_b_c_443"]


def test_providers_of_one_origin_share_its_cluster():
    config = config_of(["https://a.b.c/v1", "https://A.b.c:443/v2"])
    assert list(origins(config)) == ["a_b_c_443"]
