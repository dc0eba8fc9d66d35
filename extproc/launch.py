"""`extproc claude`: start Claude Code pointed at the gateway.

It only sets environment variables and replaces itself with `claude`, so the
terminal, signals and exit code are Claude Code's own.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Mapping
from fnmatch import fnmatchcase

from extproc.config import Config

INSTALL_HINT = "npm install -g @anthropic-ai/claude-code"
PLACEHOLDER_TOKEN = "extproc-gateway"
"""Sent when the gateway holds every key: Claude Code needs some credential to start."""


class LaunchError(Exception):
    """Claude Code can't be started through the gateway; the message says what to do."""


def gateway_url(config: Config) -> str:
    address = config.listener.address
    host = "127.0.0.1" if address in ("0.0.0.0", "::") else address
    return f"http://{host}:{config.listener.port}"


HAIKU_NAMES = ("claude-haiku-4-5", "claude-3-5-haiku-latest")
"""Names Claude Code uses for background calls; an alias matching them marks the target."""


def background_model(config: Config) -> str | None:
    """The model Claude Code's haiku-class background calls go to, if an alias covers them."""
    for pattern, target in config.aliases:
        if any(fnmatchcase(name, pattern) for name in HAIKU_NAMES):
            provider = config.provider_named(target)
            return provider.model if provider else None
    return None


def claude_environment(config: Config, environ: Mapping[str, str]) -> dict[str, str]:
    env = dict(environ)
    env["ANTHROPIC_BASE_URL"] = gateway_url(config)
    # Long answers from slow providers must not be cut by Claude Code's own timeout.
    env.setdefault("API_TIMEOUT_MS", "600000")
    passes_through = any(p.passes_client_auth and not p.access_key for p in config.providers)
    has_credentials = "ANTHROPIC_API_KEY" in env or "ANTHROPIC_AUTH_TOKEN" in env
    if config.gateway_keys and not has_credentials:
        raise LaunchError(
            "this gateway needs one of its gateway_keys: set ANTHROPIC_AUTH_TOKEN to it"
        )
    if not passes_through and not has_credentials:
        # Every provider's key lives in the gateway; a token avoids Claude Code's login prompt.
        env["ANTHROPIC_AUTH_TOKEN"] = PLACEHOLDER_TOKEN
    small = background_model(config)
    if small:
        env.setdefault("ANTHROPIC_DEFAULT_HAIKU_MODEL", small)
        env.setdefault("ANTHROPIC_SMALL_FAST_MODEL", small)
    return env


def check_gateway(config: Config) -> None:
    host, port = gateway_url(config).removeprefix("http://").rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError:
        raise LaunchError(
            f"the gateway is not running at {gateway_url(config)}; start it with "
            f"`extproc up {config.path}` (or docker compose up) in another terminal"
        ) from None


def launch(config: Config, args: list[str], claude: str = "claude") -> None:
    """Replace this process with Claude Code talking to the gateway."""
    executable = shutil.which(claude)
    if executable is None:
        raise LaunchError(
            f"Claude Code (`{claude}`) is not installed; install it with: {INSTALL_HINT}"
        )
    check_gateway(config)
    os.execve(executable, [executable, *args], claude_environment(config, os.environ))
