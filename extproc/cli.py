"""The `extproc` command: check, serve, render-envoy, up."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from pathlib import Path

from extproc import config as config_mod
from extproc.config import Config, ConfigError

EXIT_CONFIG = 2


def _load(path: str) -> Config:
    """Load the config or exit 2 with every problem on its own line."""
    try:
        config = config_mod.load(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return config


def cmd_check(args: argparse.Namespace) -> int:
    config = _load(args.config)
    rows = [("route", "model", "provider")]
    rows += [(route.name, provider.model, provider.name) for route, provider in config.routes]
    default = config.default_provider
    rows.append(("(default / other)", default.model, default.name))
    rows += [(f"alias {pattern}", target, "") for pattern, target in config.aliases]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    print(f"{config.path}: OK ({len(config.providers)} providers, {len(config.routes)} routes)")
    return 0


def cmd_render_envoy(args: argparse.Namespace) -> int:
    from extproc.envoy_config import render

    config = _load(args.config)
    if args.listen_address:
        listener = dataclasses.replace(config.listener, address=args.listen_address)
        config = dataclasses.replace(config, listener=listener)
    text = render(config)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from extproc.app import build_gateway
    from extproc.server import ExtProcServer, serve_until_signalled

    config = _load(args.config)

    async def main() -> None:
        server = ExtProcServer(build_gateway(config))
        sidecar = config.sidecar
        await server.start(
            sidecar.address, sidecar.port, sidecar.health_port, config.listener.max_body_bytes
        )
        await serve_until_signalled(server, grace=args.grace)

    asyncio.run(main())
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from extproc.up import StartupError, run

    config = _load(args.config)
    try:
        return run(config, log_level=args.envoy_log_level)
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="extproc",
        description="Preference-aware model routing for Claude Code, as an Envoy ext_proc sidecar.",
    )
    top.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = top.add_subparsers(dest="command", required=True)

    def command(name: str, func, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("config", nargs="?", default=config_mod.DEFAULT_CONFIG, help="config file")
        p.set_defaults(func=func)
        return p

    command("check", cmd_check, "validate config.yaml and print the routes → models table")
    p = command("render-envoy", cmd_render_envoy, "write Envoy's config for config.yaml")
    p.add_argument("-o", "--output", default="envoy/envoy.yaml", help="file, or - for stdout")
    p.add_argument("--listen-address", help="override listener.address (0.0.0.0 in containers)")
    p = command("serve", cmd_serve, "run the ext_proc gRPC server (the sidecar)")
    p.add_argument("--grace", type=float, default=30.0, help="seconds to drain on SIGTERM")
    p = command("up", cmd_up, "run Envoy and the sidecar together, in the foreground")
    p.add_argument("--envoy-log-level", default="warning", help="Envoy's own log level")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    return args.func(args)
