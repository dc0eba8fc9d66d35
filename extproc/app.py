"""Assemble the gateway from a config: decision stages, router model, server."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

from extproc.config import Config, ConfigError, Routing, load
from extproc.decisions import decision
from extproc.decisions.cooldown import Cooldowns
from extproc.decisions.routing import Classifier, RouterStage, routes_of
from extproc.metrics import Metrics
from extproc.proxy.exchange import Runtime
from extproc.proxy.server import ExtProcServer

log = logging.getLogger("extproc")


def build_runtime(
    config: Config,
    router: RouterStage,
    metrics: Metrics | None = None,
    cooldowns: Cooldowns | None = None,
) -> Runtime:
    return Runtime(
        config=config,
        stages=(*decision.BEFORE_ROUTER, router, *decision.AFTER_ROUTER),
        token_stages=(*decision.BEFORE_ROUTER, *decision.AFTER_ROUTER),
        metrics=metrics or Metrics(),
        cooldowns=cooldowns or Cooldowns(),
    )


async def load_router(router: RouterStage, config: Config) -> None:
    """Load Arch-Router off the event loop; without it, every decision is a logged fallback.

    One classification warms the model up: the first call for a route config computes
    the cached static prefix (seconds on a CPU), better paid before the first request.
    """
    routing = config.routing
    from extproc.decisions.router.engine import ArchRouter, RouterModelError

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
    await warm_up(model, config)
    log.info(
        "router model loaded from %s on %s (%s)", model.model_dir, model.device, model.compute_type
    )
    router.attach(model)


async def warm_up(model: Classifier, config: Config) -> None:
    """One classification now rather than on a user's request.

    It computes the route config's static prefix and, on a GPU, pays the device's one-time
    start-up (measured at 0.3 to 13 s on an H200), which would otherwise hit the router timeout.
    """
    routes = routes_of(config)
    if routes:
        await asyncio.to_thread(model.classify, routes, [[{"role": "user", "content": "hello"}]])


def model_settings(routing: Routing) -> tuple[object, ...]:
    """The settings `load_router` loads a model with: configs equal in them share one model."""
    return (routing.model_dir, routing.device, routing.compute_type, routing.threads, routing.mode)


class Sidecar:
    """The running sidecar: server, router stage and config, reloadable on SIGHUP.

    A reload swaps the runtime the server hands to *new* exchanges; open streams keep
    the config they started with. The loaded model is kept unless its settings changed, and
    the metrics and the cooldown table are kept always.
    """

    def __init__(self, config: Config, warn: bool = True, with_envoy: bool = False):
        self.config = config
        self.warn = warn
        """Log a reloaded config's warnings (off under `extproc up`, which prints them)."""
        self.metrics = Metrics()
        self.cooldowns = Cooldowns()
        self.router = RouterStage(config.routing)
        self.loading = asyncio.create_task(load_router(self.router, config))
        runtime = build_runtime(config, self.router, self.metrics, self.cooldowns)
        # Under `extproc up`, Envoy's admin port is on this machine's loopback.
        admin = f"127.0.0.1:{config.listener.admin_port}" if with_envoy else None
        self.server = ExtProcServer(runtime, ready=self.loading.done, envoy_admin=admin)

    async def start(self, reuse_port: bool = False) -> None:
        sidecar = self.config.sidecar
        await self.server.start(
            sidecar.bind_address,
            sidecar.port,
            sidecar.health_port,
            self.config.listener.max_body_bytes,
            reuse_port,
            sidecar.health_host,
        )

    def reload(self) -> None:
        try:
            config = load(self.config.path)
        except ConfigError as exc:
            log.error("config not reloaded, the last good one stays in force:\n%s", exc)
            return
        if config.sidecar != self.config.sidecar:
            # Its ports are bound and Envoy's filter reads the decision from its metadata
            # namespace: both change together, on a restart.
            log.warning("sidecar settings take effect on a restart; keeping the running ones")
            config = dataclasses.replace(config, sidecar=self.config.sidecar)
        reload_model = model_settings(config.routing) != model_settings(self.config.routing)
        self.router.routing = config.routing
        self.server.runtime = build_runtime(config, self.router, self.metrics, self.cooldowns)
        self.config = config
        if reload_model:
            self.loading = asyncio.create_task(load_router(self.router, config))
        elif self.router.model is not None:
            self.loading = asyncio.create_task(warm_up(self.router.model.classifier, config))
        log.info("config reloaded from %s", config.path)
        for warning in config.warnings if self.warn else ():
            log.warning("%s", warning)
