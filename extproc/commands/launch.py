"""`extproc claude`: start Claude Code pointed at the gateway.

It only sets environment variables and replaces itself with `claude`, so the
terminal, signals and exit code are Claude Code's own. What credentials Claude Code
needs is the running gateway's answer (`/credentials`), not this terminal's guess.

It also shows the gateway's routing in Claude Code's status line (`extproc statusline`),
through `--settings` on the command line: the user's settings files are never written.
`--settings` outranks them, so a status line of the user's own is looked for first and kept.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import sys
from collections.abc import Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from extproc.config import Config
from extproc.providers import credentials

INSTALL_HINT = (
    "install the version this project pins with `npm ci` in the extproc project folder "
    "(it lands in node_modules/.bin), and run extproc claude from that folder"
)
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


def claude_environment(
    config: Config, environ: Mapping[str, str], gateway: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """Claude Code's environment; `gateway` is the running gateway's `/credentials` answer
    (without it, the config as loaded here decides)."""
    env = dict(environ)
    env["ANTHROPIC_BASE_URL"] = gateway_url(config)
    # Long answers from slow providers must not be cut by Claude Code's own timeout.
    env.setdefault("API_TIMEOUT_MS", "600000")
    view = gateway if gateway is not None else credentials.summary(config)
    passes_through = bool(view.get("passes_client_credentials"))
    has_credentials = "ANTHROPIC_API_KEY" in env or "ANTHROPIC_AUTH_TOKEN" in env
    if view.get("gateway_keys") and not has_credentials:
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


def find_claude(config: Config, claude: str = "claude") -> str | None:
    """The pinned install (`npm ci`) in node_modules/.bin of this folder or the config's,
    else `claude` on PATH."""
    for folder in (Path.cwd(), Path(config.path).resolve().parent):
        local = folder / "node_modules" / ".bin" / claude
        if local.is_file() and os.access(local, os.X_OK):
            return str(local)
    return shutil.which(claude)


def settings_files(environ: Mapping[str, str], project: Path) -> list[Path]:
    """The settings files where a user keeps a statusLine: their own and the project's."""
    home = Path(environ.get("CLAUDE_CONFIG_DIR") or Path(environ.get("HOME", "~")) / ".claude")
    return [
        home.expanduser() / "settings.json",
        project / ".claude" / "settings.json",
        project / ".claude" / "settings.local.json",
    ]


def own_status_line(files: list[Path]) -> Path | None:
    """The first of `files` that sets a statusLine (unreadable ones are skipped)."""
    for path in files:
        try:
            settings = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(settings, dict) and settings.get("statusLine"):
            return path
    return None


def statusline_settings(config: Config) -> str:
    """`--settings` JSON that runs `extproc statusline` against this gateway's health port."""
    command = [sys.executable, "-m", "extproc", "statusline", "--health"]
    command.append(config.sidecar.health_url)
    status_line = {"type": "command", "command": shlex.join(command), "padding": 0}
    return json.dumps({"statusLine": status_line})


def claude_arguments(
    config: Config, args: list[str], environ: Mapping[str, str], project: Path, statusline: bool
) -> list[str]:
    """Claude Code's arguments: the user's, after `--settings` with our status line unless
    it is turned off, the user has a status line of their own, or passes `--settings`."""
    theirs = any(arg == "--settings" or arg.startswith("--settings=") for arg in args)
    if not statusline or theirs or own_status_line(settings_files(environ, project)):
        return list(args)
    return ["--settings", statusline_settings(config), *args]


def launch(
    config: Config, args: list[str], claude: str = "claude", statusline: bool = True
) -> None:
    """Replace this process with Claude Code talking to the gateway."""
    executable = find_claude(config, claude)
    if executable is None:
        raise LaunchError(
            f"Claude Code (`{claude}`) is in neither ./node_modules/.bin nor PATH; {INSTALL_HINT}"
        )
    check_gateway(config)
    gateway = credentials.from_gateway(config)
    for variable in (gateway or {}).get("unset_key_variables", ()):
        print(
            f"note: the gateway has no {variable}; requests routed to the providers that use "
            "it will fail (export it where extproc up runs, then restart it)",
            file=sys.stderr,
        )
    env = claude_environment(config, os.environ, gateway)
    arguments = claude_arguments(config, args, os.environ, Path.cwd(), statusline)
    os.execve(executable, [executable, *arguments], env)
