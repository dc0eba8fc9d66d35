"""The data path: what the sidecar costs every request that needs no classification.

One Envoy with four listeners in front of one fast upstream (a fifth Envoy listener
answering with a fixed body, so the upstream costs next to nothing):
  direct  - no ext_proc at all (still through Envoy: "added" below is the ext_proc's share,
            not the Envoy hop; ttfb_bench.py measures client → provider with and without
            the whole gateway);
  noop    - ext_proc to a Python gRPC server that answers every message with an empty reply
            (the floor of Envoy + gRPC + Python);
  echo    - the same server, but it sends the request body back unchanged as a body
            mutation: the floor of any ext_proc that rewrites the body (ours must, for `model`);
  ours    - ext_proc to `extproc serve` with routes configured and decisions sticky; the
            routed model differs from the one the body asks for, so every body is rewritten
            and sent back (`--same-model`: the body already names it and is not);
            `--fallback`: the routed model has a fallback, so its requests go out on a
            failover chain route (docs/reliability.md#failover).
Bodies: the captured Claude Code first turn (78 KB) and 1 MB / 4 MB variants of it.
Load from wrk (Debian package `wrk`): p50/p99 at 1 connection, throughput at 16, and the CPU
time Envoy and the ext_proc server spent per request at 16 (from /proc: where the time goes).

    python benchmarks/datapath_bench.py [--seconds 5] [--bodies '78 KB,1 MB,4 MB'] [--workers 1]
    python benchmarks/datapath_bench.py --smoke   # CI: 1 s a cell, 78 KB and 4 MB

Every listener's route is our rendered route with only its destination changed, so every
path has the same body limits as ours (a 4 MB body fits) and every row is a 200.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from extproc.commands.up import envoy_command
from extproc.config import parse
from extproc.control.envoy_config import render
from extproc.proxy.wire import decode_request, message
from tests.support.gateway import free_port

FIXTURE = Path(__file__).resolve().parent.parent / "tests/fixtures/claude-code/first-turn.json"
PROCESS = "/envoy.service.ext_proc.v3.ExternalProcessor/Process"
# Empty replies for each phase, by the ProcessingRequest field number Envoy sends first
# (request_headers=2, response_headers=3, request_body=4, ...): the same phase's reply is
# field N-1 of ProcessingResponse, and an empty message is zero bytes long.
NOOP_REPLIES = {n: bytes([(n - 1) << 3 | 2, 0]) for n in (2, 3, 4, 5, 6, 7)}


def bodies(tmp: Path) -> dict[str, Path]:
    body = json.loads(FIXTURE.read_text())["body"]
    out = {}
    for name, size in (("78 KB", 0), ("1 MB", 1 << 20), ("4 MB", 4 << 20)):
        padded = json.loads(json.dumps(body))
        if size:
            filler = "x" * (size - len(json.dumps(body)))
            padded["messages"][0]["content"].insert(0, {"type": "text", "text": filler})
        path = tmp / f"body-{len(out)}.json"
        path.write_text(json.dumps(padded, separators=(",", ":"), ensure_ascii=False))
        out[name] = path
    return out


def echo_reply(raw: bytes) -> bytes:
    """A request-body reply that sets the body it was sent, unchanged."""
    body = decode_request(raw).body
    body_mutation = message(3, message(1, body))  # CommonResponse.body_mutation.body
    return message(3, message(1, body_mutation))  # ProcessingResponse.request_body.response


def noop_server(port: int, echo: bool = False) -> None:
    """The floor: answer each message without parsing it; with `echo`, send the request
    body back as a body mutation (what any ext_proc that rewrites the body must do)."""

    async def process(requests, context):
        async for raw in requests:
            phase = raw[0] >> 3
            yield echo_reply(raw) if echo and phase == 4 else NOOP_REPLIES[phase]

    async def main() -> None:
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20)])
        handler = grpc.stream_stream_rpc_method_handler(process)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(PROCESS.split("/")[1], {"Process": handler}),)
        )
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(main())


CHAT_ANSWER = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4.1",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "ok"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
)
"""The upstream's answer with `--translated`: a Chat Completion the sidecar translates."""


def front_envoy(config_text: str, ports: dict[str, int], answer_body: str = "{}") -> dict:
    """Our rendered bootstrap plus a `direct` listener, a `noop` one and the upstream."""
    config = parse(config_text)
    bootstrap = yaml.safe_load(render(config))
    resources = bootstrap["static_resources"]
    ours = resources["listeners"][0]
    manager = ours["filter_chains"][0]["filters"][0]["typed_config"]
    manager.pop("access_log")

    def listener(name: str, port: int, with_filter: dict | None, route: dict) -> dict:
        copy = json.loads(json.dumps(ours))
        copy["name"] = name
        copy["address"]["socket_address"]["port_value"] = port
        hcm = copy["filter_chains"][0]["filters"][0]["typed_config"]
        first = [with_filter] if with_filter else []
        hcm["http_filters"] = [*first, manager["http_filters"][-1]]
        hcm["route_config"]["virtual_hosts"][0]["routes"] = [route]
        return copy

    # Our route with its limits (request_body_buffer_limit: the listener's own buffer limit
    # is 1 MiB), sent to the upstream: a body ours accepts is accepted on every path.
    our_route = manager["route_config"]["virtual_hosts"][0]["routes"][-1]  # after any chains
    to_upstream = {**our_route, "route": {"cluster": "upstream"}}
    noop_filter = json.loads(json.dumps(manager["http_filters"][0]))
    noop_filter["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"] = "noop"
    answer = {
        **{key: value for key, value in our_route.items() if key != "route"},
        "direct_response": {"status": 200, "body": {"inline_string": answer_body}},
    }
    # The upstream reads the whole body before answering, or it would close the connection.
    read_body = {
        "name": "envoy.filters.http.buffer",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
            "max_request_bytes": 16 << 20,
        },
    }
    echo_filter = json.loads(json.dumps(noop_filter).replace('"noop"', '"echo"'))
    resources["listeners"] += [
        listener("direct", ports["direct"], None, to_upstream),
        listener("noop", ports["noop"], noop_filter, to_upstream),
        listener("echo", ports["echo"], echo_filter, to_upstream),
        listener("upstream", ports["upstream"], read_body, answer),
    ]
    extproc_cluster = next(c for c in resources["clusters"] if c["name"] == "extproc")
    noop_cluster = json.loads(json.dumps(extproc_cluster).replace('"extproc"', '"noop"'))
    noop_cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
        "socket_address"
    ]["port_value"] = ports["noop_grpc"]
    echo_cluster = json.loads(json.dumps(noop_cluster).replace('"noop"', '"echo"'))
    echo_cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
        "socket_address"
    ]["port_value"] = ports["echo_grpc"]
    upstream = json.loads(json.dumps(noop_cluster).replace('"noop"', '"upstream"'))
    upstream.pop("typed_extension_protocol_options")
    upstream["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
        "socket_address"
    ]["port_value"] = ports["upstream"]
    resources["clusters"] += [noop_cluster, echo_cluster, upstream]
    return bootstrap


def process_tree_cpu(pid: int) -> float:
    """CPU seconds used so far by process `pid` and its children (sidecar workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def wrk(url: str, body: Path, connections: int, seconds: int) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, requests/s) from wrk."""
    script = body.with_suffix(".lua")
    script.write_text(
        'wrk.method = "POST"\n'
        f'wrk.body = io.open("{body}", "rb"):read("*a")\n'
        'wrk.headers["content-type"] = "application/json"\n'
        'wrk.headers["anthropic-version"] = "2023-06-01"\n'
    )
    threads = min(2, connections)
    out = subprocess.run(
        [
            *("wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"),
            *("-s", str(script), url),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def ms(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} error responses\n{out}")
    return ms("50%"), ms("99%"), rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=1, help="extproc serve --workers")
    parser.add_argument("--bodies", default="78 KB,1 MB,4 MB", help="which bodies, comma-separated")
    parser.add_argument(
        "--same-model", action="store_true", help="route to the model the body asks for"
    )
    parser.add_argument(
        "--translated",
        action="store_true",
        help="route to an OpenAI-format model (Chat Completions): the body is translated, and "
        "the answer too",
    )
    parser.add_argument(
        "--fallback",
        action="store_true",
        help="give the routed model a fallback (another entry, the default): its requests go "
        "out on a failover chain route",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="1 s a cell, 78 KB and 4 MB: checks that every path answers (CI)",
    )
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.bodies = 1, "78 KB,4 MB"
    tmp = Path(tempfile.mkdtemp(prefix="datapath-"))
    names = ("listener", "admin", "sidecar", "health", "direct", "noop", "echo", "upstream")
    names += ("noop_grpc", "echo_grpc")
    ports = {name: free_port() for name in names}
    upstream = f"http://127.0.0.1:{ports['upstream']}"
    if args.translated:
        routed = "openai/gpt-4.1"
        entry = f"{upstream}/v1\n    provider_interface: openai\n    access_key: sk-bench"
    else:
        routed = f"anthropic/{'claude-opus-4-8' if args.same_model else 'claude-sonnet-4-5'}"
        entry = upstream
    config_text = f"""\
listener: {{port: {ports["listener"]}, admin_port: {ports["admin"]}, max_body_bytes: 16777216}}
sidecar: {{port: {ports["sidecar"]}, health_port: {ports["health"]}}}
routing: {{model_dir: {tmp / "no-model"}}}
llm_providers:
  - model: {routed}
    base_url: {entry}
    routing_preferences:
      - {{name: code, description: writing code}}
"""
    if args.fallback:
        # Another entry is the default, so the routed model's candidates are two; an alias
        # keeps the routing as it was (the router has no model here: the default would win).
        config_text += f"""\
  - model: anthropic/claude-haiku-4-5
    base_url: {upstream}
    default: true
model_aliases:
  claude-opus-4-8: {routed}
"""
    (tmp / "config.yaml").write_text(config_text)
    answer_body = CHAT_ANSWER if args.translated else "{}"
    (tmp / "envoy.yaml").write_text(yaml.safe_dump(front_envoy(config_text, ports, answer_body)))
    threading.Thread(target=noop_server, args=(ports["noop_grpc"],), daemon=True).start()
    threading.Thread(target=noop_server, args=(ports["echo_grpc"], True), daemon=True).start()
    sidecar = subprocess.Popen(
        [
            *(sys.executable, "-m", "extproc", "serve", str(tmp / "config.yaml")),
            *("--workers", str(args.workers)),
        ],
        stderr=subprocess.DEVNULL,
    )
    envoy = subprocess.Popen(envoy_command(tmp / "envoy.yaml"), stderr=subprocess.DEVNULL)
    try:
        time.sleep(4)
        urls = {
            path: f"http://127.0.0.1:{ports[port]}/v1/messages"
            for path, port in (
                ("direct", "direct"),
                ("noop", "noop"),
                ("echo", "echo"),
                ("ours", "listener"),
            )
        }
        print(
            f"{'body':<6} {'path':<7} {'p50 ms':>7} {'p99 ms':>7} {'req/s@16':>9}"
            f" {'CPU µs/req@16: envoy':>21} {'ext_proc':>8}"
        )
        ext_proc_cpu = {
            "direct": lambda: 0.0,
            "noop": time.process_time,  # the noop and echo servers are threads of this process
            "echo": time.process_time,
            "ours": lambda: process_tree_cpu(sidecar.pid),
        }
        wanted = [name.strip() for name in args.bodies.split(",")]
        for name, body in bodies(tmp).items():
            if name not in wanted:
                continue
            rows = {}
            for path, url in urls.items():
                p50, p99, _ = wrk(url, body, 1, args.seconds)
                before = process_tree_cpu(envoy.pid), ext_proc_cpu[path]()
                _, _, rate = wrk(url, body, 16, args.seconds)
                after = process_tree_cpu(envoy.pid), ext_proc_cpu[path]()
                served = rate * args.seconds
                envoy_us, ext_proc_us = (
                    (b - a) / served * 1e6 for a, b in zip(before, after, strict=True)
                )
                rows[path] = (p50, p99, rate)
                print(
                    f"{name:<6} {path:<7} {p50:>7.2f} {p99:>7.2f} {rate:>9.0f}"
                    f" {envoy_us:>21.0f} {ext_proc_us:>8.0f}",
                    flush=True,
                )
            added = rows["ours"][0] - rows["direct"][0]
            print(
                f"{name:<6} ours adds {added:.2f} ms p50 over direct (Envoy without ext_proc:"
                " the Envoy hop is not in it); throughput "
                f"{rows['ours'][2] / rows['noop'][2]:.0%} of the no-op floor, "
                f"{rows['ours'][2] / rows['echo'][2]:.0%} of echo, "
                f"{rows['ours'][2] / rows['direct'][2]:.0%} of direct"
            )
    finally:
        sidecar.terminate()
        envoy.terminate()
        sidecar.wait()
        envoy.wait()


if __name__ == "__main__":
    main()
