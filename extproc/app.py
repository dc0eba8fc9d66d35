"""Assemble the gateway from a config: decision stages, router model, server."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from extproc import decision
from extproc.config import Config
from extproc.exchange import Gateway
from extproc.metrics import Metrics
from extproc.routing import RouterStage, routes_of

log = logging.getLogger("extproc")


def build_gateway(config: Config, router: RouterStage, metrics: Metrics | None = None) -> Gateway:
    return Gateway(
        config=config,
        stages=(*decision.BEFORE_ROUTER, router, *decision.AFTER_ROUTER),
        token_stages=(*decision.BEFORE_ROUTER, *decision.AFTER_ROUTER),
        metrics=metrics or Metrics(),
    )


async def load_router(router: RouterStage, config: Config) -> None:
    """Load Arch-Router off the event loop; without it, every decision is a logged fallback.

    One classification warms the model up: the first call for a route config computes
    the cached static prefix (seconds on a CPU), better paid before the first request.
    """
    routing = config.routing
    from extproc.router.engine import ArchRouter, RouterModelError

    try:
        model = await asyncio.to_thread(
            ArchRouter,
            Path(routing.model_dir).expanduser(),
            device=routing.device,
            compute_type=routing.compute_type,
            threads=routing.threads,
            mode=routing.mode,
        )
    except RouterModelError as exc:
        log.error("%s. Until then every routed request goes to its fallback model.", exc)
        router.attach(None, f"router unavailable: {exc}"[:300])
        return
    routes = routes_of(config)
    if routes:
        await asyncio.to_thread(model.classify, routes, [[{"role": "user", "content": "hello"}]])
    log.info("router model loaded from %s on %s", model.model_dir, model.device)
    router.attach(model)
