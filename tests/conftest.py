"""Shared fixtures: fake providers and a real gateway (`extproc up`: Envoy + sidecar).

Fixtures, Hypothesis's profiles and how collection treats the garbage collector only: the
helpers they use live in tests/support/."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

# Before anything imports grpc. The tests run gRPC servers in this process and start children
# with a Python `preexec_fn` (`extproc up`'s supervisor), so by fork, not vfork: gRPC's
# post-fork handler then starts a poller in the child, which aborts it before its exec now and
# then (SIGABRT, "epoll_wait error: Bad file descriptor"; grpc/grpc#43055, grpcio 1.81 on).
# The product's supervisor runs in `extproc up`'s process, which serves no gRPC.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import pytest
from hypothesis import settings

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import (
    PROVIDER_KEYS,
    STRICT_IDLE_S,
    STRICT_MAX_BODY,
    Gateway,
    gateway_config,
    routed_gateway_config,
    running_gateway,
)

if TYPE_CHECKING:
    from extproc.decisions.router.engine import ArchRouter

# A property test tries 50 examples a run, or fewer where it sets its own max_examples (an
# example there is a model run); `--hypothesis-profile deep` tries 1,000, for a long search.
settings.register_profile("unit", max_examples=50)
settings.register_profile("deep", max_examples=1000)
# In CI (CI=true), Hypothesis tries the same examples on every run: a red CI is reproducible.
settings.register_profile(
    "ci", settings.get_profile("unit"), derandomize=True, database=None, print_blob=True
)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "unit")


@pytest.hookimpl(wrapper=True)
def pytest_collection(session: pytest.Session) -> Iterator[None]:
    """No cyclic garbage collection while the test files are imported, and what they
    imported frozen out of later collections: it lives as long as the session.

    Importing the SDKs' and cloudcoil's pydantic models set off a dozen full collections,
    each walking the whole heap, and every later full collection walked those modules
    again (5 s of the unit tests' CPU, 1.6 s of it while collecting). Freezing leaves the
    objects the tests make to the collector as before (extproc does the same when it
    starts serving: `tune_for_serving`)."""
    gc.disable()
    try:
        return (yield)
    finally:
        gc.freeze()
        gc.enable()


@pytest.fixture(scope="session")
def fake_anthropic() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic(expected_key=PROVIDER_KEYS["TEST_ANTHROPIC_KEY"]).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def fake_deepseek() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic(expected_key=PROVIDER_KEYS["TEST_DEEPSEEK_KEY"], answer="deepseek says hi")
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(expected_key=PROVIDER_KEYS["TEST_OPENAI_KEY"]).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def gateway(
    fake_anthropic: FakeAnthropic,
    fake_deepseek: FakeAnthropic,
    fake_openai: FakeOpenAI,
    tmp_path_factory,
) -> Iterator[Gateway]:
    with running_gateway(
        lambda ports: gateway_config(fake_anthropic, fake_deepseek, fake_openai, **ports),
        tmp_path_factory.mktemp("gateway"),
    ) as gw:
        yield gw


@pytest.fixture
def fakes(fake_anthropic: FakeAnthropic, fake_deepseek: FakeAnthropic, fake_openai: FakeOpenAI):
    """The fakes (anthropic, deepseek, openai) with their request records cleared for this test."""
    for fake in (fake_anthropic, fake_deepseek, fake_openai):
        fake.received.clear()
    return fake_anthropic, fake_deepseek, fake_openai


@pytest.fixture(scope="session")
def tiny_router_dir(tmp_path_factory) -> Path:
    from tests.support.tiny_model import session_model_dir

    return session_model_dir(tmp_path_factory)


@pytest.fixture(scope="session")
def qwen_router_load(tmp_path_factory) -> Iterator[tuple[ArchRouter, list[str]]]:
    """A router on Arch-Router's own tokenizer (Qwen2.5's) and a one-layer random model, and
    the lines that loading it printed, logged or warned (tests/support/printed.py).

    Loading Qwen's tokenizer takes seconds, so the session shares one router; its only state
    is a cache of what it derives from each route list."""
    from extproc.decisions.router.engine import ArchRouter
    from tests.support.printed import printed
    from tests.support.qwen_tokenizer import session_qwen_dir

    model_dir = session_qwen_dir(tmp_path_factory)
    with printed() as lines:
        router = ArchRouter(model_dir, device="cpu")
    yield router, lines
    router.close()


@pytest.fixture(scope="session")
def qwen_router(qwen_router_load: tuple[ArchRouter, list[str]]) -> ArchRouter:
    """The session's router on Qwen's tokenizer (`qwen_router_load`)."""
    return qwen_router_load[0]


@pytest.fixture(scope="session")
def routed_gateway(
    fake_anthropic: FakeAnthropic, fake_deepseek: FakeAnthropic, tiny_router_dir, tmp_path_factory
) -> Iterator[Gateway]:
    """A gateway whose sidecar runs the tiny real router model."""
    with running_gateway(
        lambda ports: routed_gateway_config(
            fake_anthropic, fake_deepseek, tiny_router_dir, **ports
        ),
        tmp_path_factory.mktemp("routed-gateway"),
    ) as gw:
        yield gw


@pytest.fixture(scope="session")
def strict_gateway(
    fake_anthropic: FakeAnthropic,
    fake_deepseek: FakeAnthropic,
    fake_openai: FakeOpenAI,
    tmp_path_factory,
) -> Iterator[Gateway]:
    """The fakes behind tight limits (64 KiB bodies, 2 s of silence) and one provider whose
    host does not resolve (`nowhere`)."""

    def config_for(ports: dict[str, int]) -> str:
        config = gateway_config(fake_anthropic, fake_deepseek, fake_openai, **ports)
        return config.replace(
            "listener:\n",
            f"listener:\n  max_body_bytes: {STRICT_MAX_BODY}\n  idle_timeout_s: {STRICT_IDLE_S}\n",
        ).replace(
            "model_aliases:\n",
            "  - name: nowhere\n    model: anthropic/claude-nowhere\n"
            "    base_url: http://does-not-exist.invalid\n    access_key: k\nmodel_aliases:\n",
        )

    with running_gateway(config_for, tmp_path_factory.mktemp("strict-gateway")) as gw:
        yield gw
