"""Assemble the gateway from a config: the decision stages and the server."""

from __future__ import annotations

from extproc import decision
from extproc.config import Config
from extproc.exchange import Gateway


def build_gateway(config: Config) -> Gateway:
    return Gateway(
        config=config,
        stages=(*decision.BEFORE_ROUTER, *decision.AFTER_ROUTER),
        token_stages=(*decision.BEFORE_ROUTER, *decision.AFTER_ROUTER),
    )
