"""The `extproc` command: check, serve, render-envoy, up, route, eval, model convert.

Each command imports what it needs when it runs: `extproc statusline` runs after every
Claude Code message and must not pay for the config modules it does not use."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from extproc.config import Config

EXIT_CONFIG = 2


def _load(path: str, warn: bool = True) -> Config:
    """Load the config or exit 2 with every problem on its own line."""
    from extproc import config as config_mod
    from extproc.config import ConfigError

    try:
        config = config_mod.load(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    for warning in config.warnings if warn else ():
        print(f"warning: {warning}", file=sys.stderr)
    return config


def cmd_check(args: argparse.Namespace) -> int:
    config = _load(args.config)
    rows = [("route", "model", "provider")]
    rows += [
        (f"rule {rule.name}", rule.provider.model, rule.provider.name) for rule in config.rules
    ]
    rows += [(route.name, provider.model, provider.name) for route, provider in config.routes]
    default = config.default_provider
    rows.append(("(default / other)", default.model, default.name))
    rows += [(f"alias {pattern}", target, "") for pattern, target in config.aliases]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    rules = f", {len(config.rules)} rules" if config.rules else ""
    print(
        f"{config.path}: OK ({len(config.providers)} providers, {len(config.routes)} routes{rules})"
    )
    return 0


def cmd_render_envoy(args: argparse.Namespace) -> int:
    import dataclasses

    from extproc.control.envoy_config import fragment, render

    config = _load(args.config)
    if args.listen_address:
        listener = dataclasses.replace(config.listener, address=args.listen_address)
        config = dataclasses.replace(config, listener=listener)
    if args.fragment:
        sys.stdout.write(fragment(config))
        return 0
    if args.mesh_failover:
        from extproc.control.mesh_failover import mesh_failover

        sys.stdout.write(mesh_failover(config, args.mesh_failover))
        return 0
    text = render(config)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    from extproc.app import Sidecar
    from extproc.proxy.server import serve_until_signalled, tune_for_serving

    config = _load(args.config, warn=args.config_warnings)
    if args.workers > 1:
        from extproc.commands.workers import run_workers

        return run_workers(config.path, args.workers, args.grace, args.with_envoy)
    tune_for_serving()

    async def main() -> int:
        sidecar = Sidecar(config, warn=args.config_warnings, with_envoy=args.with_envoy)
        try:
            await sidecar.start(reuse_port=args.reuse_port)
        except OSError as exc:  # a port it can't listen on: said in words, not a traceback
            print(f"error: {exc}", file=sys.stderr)
            return 1
        await serve_until_signalled(sidecar.server, grace=args.grace, on_reload=sidecar.reload)
        return 0

    return asyncio.run(main())


def cmd_up(args: argparse.Namespace) -> int:
    from extproc.commands.up import StartupError, run, share_sidecar_secret

    share_sidecar_secret()
    config = _load(args.config)
    try:
        return run(config, log_level=args.envoy_log_level, workers=args.workers)
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _request(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, str]]:
    """A Messages body from --text, or from a file holding a body or a captured request (with
    its headers, which rules may read)."""
    if args.text is not None:
        return {"model": args.model, "messages": [{"role": "user", "content": args.text}]}, {}
    data = json.loads(Path(args.request).read_text(encoding="utf-8"))
    captured = isinstance(data.get("body"), dict)
    body = data["body"] if captured else data
    headers = data.get("headers") if captured and isinstance(data.get("headers"), dict) else {}
    body = {**body, "model": args.model} if args.model else body
    return body, {str(k).lower(): str(v) for k, v in headers.items()}


def _router(config: Config, mode: str | None = None) -> Any:
    """The config's router model (an ArchRouter), or None after saying why it can't load."""
    from extproc.decisions.router.engine import ArchRouter, RouterModelError

    routing = config.routing
    try:
        return ArchRouter(
            Path(routing.model_dir).expanduser(),
            device=routing.device,
            compute_type=routing.compute_type,
            threads=routing.threads,
            mode=mode or routing.mode,
        )
    except RouterModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def cmd_route(args: argparse.Namespace) -> int:
    import asyncio

    from extproc.app import build_runtime, warm_up
    from extproc.decisions.decision import Decision, Request, decide
    from extproc.decisions.routing import RouterStage
    from extproc.decisions.rules import Facts, first_rule, why_not

    config = _load(args.config)
    routing = config.routing
    body, headers = _request(args)
    if args.show_prompt:
        return _show_prompt(config, body)
    size = len(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())
    facts = Facts(body, headers, size)
    model = None
    if config.routes and first_rule(config.rules, facts) is None:  # a rule needs no model
        model = _router(config, args.mode)
        if model is None:
            return 1
    router = RouterStage(routing)
    router.attach(model)
    runtime = build_runtime(config, router)
    request = Request(str(body.get("model", "")), body, headers, size)

    async def decide_warm() -> Decision:
        # As the sidecar does before /ready: one-time device start-up and the route
        # config's static prefix are not part of a decision's milliseconds.
        if model is not None:
            await warm_up(model, config)
        return await decide(config, request, runtime.stages)

    decision = asyncio.run(decide_warm())
    record = decision.metadata()
    rules = {rule.name: why_not(rule, facts) or "holds" for rule in config.rules}
    effort = decision.reasoning_effort or ""
    if args.json:
        print(
            json.dumps({**record, "reasoning_effort": effort, "kind": facts.kind, "rules": rules})
        )
        return 0
    print(
        f"route: {record['route'] or '-'}\nmodel: {record['routed_model']}\n"
        f"source: {record['source']}{' (' + record['note'] + ')' if record['note'] else ''}\n"
        f"router_ms: {record['router_ms']:.1f}\nkind: {facts.kind}"
        + (f"\nreasoning_effort: {effort}" if effort else "")
    )
    for name, why in rules.items():
        print(f"rule {name}: {why}")
    return 0


def _show_prompt(config: Config, body: dict[str, Any]) -> int:
    """The router prompt from the tokenizer alone: loading the model takes seconds."""
    import ctranslate2

    from extproc.decisions.router.engine import RouterModelError, load_tokenizer
    from extproc.decisions.router.prompt import render_prompt
    from extproc.decisions.router.window import conversation_window, window_budget
    from extproc.decisions.routing import routes_of

    model_dir = Path(config.routing.model_dir).expanduser()
    try:
        tokenizer = load_tokenizer(model_dir)
    except RouterModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    encoder = tokenizer.backend_tokenizer

    def count_tokens(text: str) -> int:
        return len(encoder.encode(text, add_special_tokens=False).ids)

    device = config.routing.device
    if device == "auto":  # as ArchRouter resolves it: the window budget depends on it
        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    budget = window_budget(config.routing.window_tokens, device)
    window = conversation_window(body, budget, count_tokens)
    sys.stdout.write(render_prompt(tokenizer, routes_of(config), window))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Every labelled case through the real router; with --compare, two configs side by side."""
    from extproc.app import model_settings
    from extproc.commands import evaluate
    from extproc.decisions.router.window import window_budget
    from extproc.decisions.routing import routes_of

    configs = [_load(args.config), *([_load(args.compare)] if args.compare else [])]
    try:
        cases = evaluate.load_cases(args.cases)
    except evaluate.CaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    for config in configs:
        unknown = evaluate.unknown_labels(cases, routes_of(config), config.rules)
        if unknown:
            their_rules = ", ".join(rule.name for rule in config.rules)
            print(
                f"error: {args.cases}: cases expect routes that {config.path} does not have: "
                f"{', '.join(unknown)} (its routes: "
                f"{', '.join(name for name, _ in routes_of(config)) or 'none'}"
                f"{'; its rules: ' + their_rules if their_rules else ''})",
                file=sys.stderr,
            )
            return EXIT_CONFIG
    models: dict[tuple[Any, ...], Any] = {}
    reports = []
    for config in configs:
        routing, routes = config.routing, routes_of(config)
        key = model_settings(routing)  # one model for configs that load the same one
        if key not in models:
            models[key] = _router(config, args.mode)
            if models[key] is None:
                return 1
        model = models[key]
        # Device start-up and the route config's static prefix, as the sidecar before /ready.
        model.classify(routes, [[{"role": "user", "content": "warm up"}]])
        budget = window_budget(routing.window_tokens, model.device)
        outcomes = evaluate.evaluate(model, routes, cases, budget, config.rules)
        rules = [rule.name for rule in config.rules]
        reports.append(evaluate.Report(config.path, [name for name, _ in routes], outcomes, rules))
    if args.json:
        record: dict[str, Any] = {"reports": [report.as_json() for report in reports]}
        if len(reports) == 2:
            record["changed"] = evaluate.changes(*reports)
        print(json.dumps(record, ensure_ascii=False, indent=2))
    elif len(reports) == 2:
        print(evaluate.format_comparison(*reports))
    else:
        print(evaluate.format_report(reports[0]))
    below = [r for r in reports if args.min_accuracy is not None and r.accuracy < args.min_accuracy]
    for report in below:
        print(
            f"error: {report.config}: accuracy {report.accuracy:.0%} is below "
            f"--min-accuracy {args.min_accuracy:.0%}",
            file=sys.stderr,
        )
    return 1 if below else 0


def cmd_model_convert(args: argparse.Namespace) -> int:
    from extproc.control.router_convert import ConvertError, convert

    def stop(signum: int, frame: object) -> None:
        print("\nstopped; the same command resumes the download", file=sys.stderr, flush=True)
        # At once: KeyboardInterrupt would wait for the download threads to finish their files.
        os._exit(130)

    signal.signal(signal.SIGINT, stop)
    try:
        out = convert(args.src, args.out, quantization=args.quantization, force=args.force)
    except ConvertError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"converted {args.src} → {out} ({args.quantization})")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from extproc.commands import logs

    stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8", errors="replace")  # noqa: SIM115
    with stream:
        lines = logs.follow(stream) if args.follow else stream
        if args.summary:
            print(logs.summary(logs.entries(lines), *_default_price(args.config)))
            return 0
        color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
        try:
            for entry in logs.entries(lines):
                print(logs.line(entry, color), flush=True)
        except KeyboardInterrupt:
            pass
    return 0


def _default_price(path: str) -> tuple[str, object]:
    """The default model of the config at `path` and its price (None: unknown), for the
    summary's "what routing saved"; an unreadable config says so in its stead."""
    from extproc import config as config_mod

    try:
        config = config_mod.load(path)
    except (config_mod.ConfigError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"the default model ({path}: {first})", None
    default = config.default_provider
    return default.model, default.price


def cmd_claude(argv: list[str]) -> int:
    """`extproc claude [--config FILE] [--no-statusline] [--] ARGS...`: everything else
    belongs to claude.

    Parsed by hand: claude's own flags (-p, -c, --model, ...) must pass through untouched.
    """
    from extproc.commands.launch import LaunchError, launch
    from extproc.config import DEFAULT_CONFIG

    path = DEFAULT_CONFIG
    statusline = True
    while argv:
        if argv[0] == "--config" and len(argv) > 1:
            path, argv = argv[1], argv[2:]
        elif argv[0].startswith("--config="):
            path, argv = argv[0].partition("=")[2], argv[1:]
        elif argv[0] == "--no-statusline":
            statusline, argv = False, argv[1:]
        else:
            break
    if argv[:1] == ["--"]:
        argv = argv[1:]
    try:
        # Key warnings describe this terminal's environment; the gateway's is what counts.
        launch(_load(path, warn=False), argv, statusline=statusline)
    except LaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
    return 1


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("extproc")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "(not installed)"


def parser() -> argparse.ArgumentParser:
    from extproc import config as config_mod

    top = argparse.ArgumentParser(
        prog="extproc",
        description="Preference-aware model routing for Claude Code, as an Envoy ext_proc sidecar.",
    )
    top.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    top.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
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
    p.add_argument(
        "--fragment", action="store_true", help="print only the pieces to add to your own Envoy"
    )
    p.add_argument(
        "--mesh-failover",
        choices=["istio", "envoy-gateway"],
        help="print deploy/'s failover EnvoyFilter (istio) or EnvoyPatchPolicy (envoy-gateway)",
    )
    p = command("serve", cmd_serve, "run the ext_proc gRPC server (the sidecar)")
    p.add_argument("--grace", type=float, default=30.0, help="seconds to drain on SIGTERM")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes sharing the ports, to use more cores (each loads its own router model)",
    )
    p.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    # `extproc up` and the workers' parent already printed the config's warnings.
    p.add_argument(
        "--no-config-warnings", dest="config_warnings", action="store_false", help=argparse.SUPPRESS
    )
    # Set by `extproc up`: /ready then answers for the Envoy it runs too.
    p.add_argument("--with-envoy", action="store_true", help=argparse.SUPPRESS)
    p = command("up", cmd_up, "run Envoy and the sidecar together, in the foreground")
    p.add_argument("--envoy-log-level", default="warning", help="Envoy's own log level")
    p.add_argument("--workers", type=int, default=1, help="sidecar processes (see serve)")
    p = command("route", cmd_route, "show how the router decides a text or a request file")
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument("--text", help="the user's message")
    given.add_argument("--request", help="a Messages body, or a captured {path, headers, body}")
    p.add_argument("--model", default="", help="the model the client asks for")
    p.add_argument("--mode", choices=config_mod.ROUTER_MODES, help="override routing.mode")
    p.add_argument("--json", action="store_true", help="print the decision record as JSON")
    p.add_argument("--show-prompt", action="store_true", help="print the router prompt only")
    p = command("eval", cmd_eval, "run the router on labelled examples: accuracy, confusion")
    p.add_argument("cases", help="YAML or JSONL file of examples, each with its expected route")
    p.add_argument("--compare", metavar="OTHER_CONFIG", help="a second config, side by side")
    p.add_argument("--json", action="store_true", help="print the reports as JSON (for CI)")
    p.add_argument("--mode", choices=config_mod.ROUTER_MODES, help="override routing.mode")
    p.add_argument(
        "--min-accuracy", type=float, help="exit 1 when a config's accuracy is below (0-1)"
    )

    p = sub.add_parser(
        "logs",
        help="one line per decision from Envoy's access log",
        description="Read Envoy's access log (a file, - for stdin, or `docker compose logs -f "
        "gateway | extproc logs`) and print one line per decision.",
    )
    p.add_argument("file", nargs="?", default="-", help="log file, or - for stdin (default)")
    p.add_argument("-f", "--follow", action="store_true", help="keep reading as the file grows")
    p.add_argument(
        "--summary",
        action="store_true",
        help="totals, router latency percentiles, cost per route, model and session",
    )
    p.add_argument(
        "--config",
        default=config_mod.DEFAULT_CONFIG,
        help="the config whose default model --summary prices the same tokens at",
    )
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    p.set_defaults(func=cmd_logs)
    # Listed for --help; main() hands their arguments to cmd_claude and statusline untouched.
    sub.add_parser(
        "claude",
        help="run Claude Code through the gateway: [--config FILE] [--no-statusline] ARGS...",
    )
    sub.add_parser(
        "statusline",
        help="one line on this Claude Code session's routing, for its statusLine setting: "
        "[--health URL | --config FILE]",
    )

    model = sub.add_parser("model", help="router model files")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    p = model_sub.add_parser(
        "convert",
        help="convert a Hugging Face checkpoint to CTranslate2 (needs extproc[convert])",
    )
    p.add_argument("src", help="Hugging Face id (katanemo/Arch-Router-1.5B) or local directory")
    p.add_argument("out", help="output directory (routing.model_dir)")
    p.add_argument("--quantization", default="int8", help="int8 (default), float16, bfloat16, …")
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    p.set_defaults(func=cmd_model_convert)
    return top


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["claude"]:
        return cmd_claude(argv[1:])
    if argv[:1] == ["statusline"]:
        from extproc.commands import statusline

        return statusline.main(argv[1:])
    import logging

    args = parser().parse_args(argv)
    # Our own log at INFO; other libraries' (the Hub client's line per HTTP request, torch's
    # exit statistics) only from WARNING, unless -v.
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if not args.verbose:
        logging.getLogger("extproc").setLevel(logging.INFO)
    return args.func(args)
