"""`extproc up`: one command that runs Envoy and the sidecar, and fails fast and clearly."""

from __future__ import annotations

import functools
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.gateway import gateway_config, gateway_ports, start_gateway, stop_gateway
from tests.support.processes import envoy_pid


def ports() -> dict[str, int]:
    return gateway_ports()


def test_port_taken_fails_fast_naming_the_setting(tmp_path, fake_anthropic, fake_deepseek):
    chosen = ports()
    config = tmp_path / "config.yaml"
    config.write_text(gateway_config(fake_anthropic, fake_deepseek, **chosen))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", chosen["listener"]))
        busy.listen()
        result = subprocess.run(
            [sys.executable, "-m", "extproc", "up", str(config)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert f"127.0.0.1:{chosen['listener']} (listener.port) is not available" in result.stderr


def test_up_serves_then_stops_both_processes_on_sigterm(tmp_path, fake_anthropic, fake_deepseek):
    chosen = ports()
    gateway = start_gateway(
        gateway_config(fake_anthropic, fake_deepseek, **chosen), tmp_path, chosen["listener"]
    )
    response = httpx.post(
        f"{gateway.url}/v1/messages",
        json={"model": "deep", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 200
    assert any(line.startswith("The router model is not at") for line in gateway.output)
    assert any(line.startswith("Offline: katanemo/Arch-Router-1.5B") for line in gateway.output)
    [run_dir] = re.findall(r"\(envoy config: (.+)\)", "\n".join(gateway.output))
    assert Path(run_dir).is_dir()
    assert stop_gateway(gateway) == 0
    assert not Path(run_dir).exists()
    for port in chosen.values():
        with socket.socket() as sock:
            # SO_REUSEADDR, as servers bind: only a process still listening makes this fail.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))


def with_open_files(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


def test_envoys_connection_limit_fits_its_open_files_limit(tmp_path, fake_anthropic, fake_deepseek):
    """Past its open-files limit Envoy could not accept a client, yet nothing refused them
    earlier; now the overload manager's limit leaves it the files for every connection's
    provider connection too."""
    chosen = ports()
    gateway = start_gateway(
        gateway_config(fake_anthropic, fake_deepseek, **chosen),
        tmp_path,
        chosen["listener"],
        preexec_fn=functools.partial(with_open_files, 400),
    )
    try:
        assert (
            "warning: Envoy may open 400 files (ulimit -n): enough for 136 client connections at "
            "once, not 8192 (listener.max_connections); raise the limit to serve more"
        ) in gateway.output
        [run_dir] = re.findall(r"\(envoy config: (.+)\)", "\n".join(gateway.output))
        rendered = yaml.safe_load((Path(run_dir) / "envoy" / "bootstrap.yaml").read_text())
        (monitor,) = rendered["overload_manager"]["resource_monitors"]
        assert monitor["typed_config"]["max_active_downstream_connections"] == 136
        body = {"model": "deep", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
        assert httpx.post(f"{gateway.url}/v1/messages", json=body).status_code == 200
    finally:
        stop_gateway(gateway)


def test_up_exits_when_envoy_dies(tmp_path, fake_anthropic, fake_deepseek):
    """Only the sidecar is restarted (tests/e2e/test_faults.py); without Envoy there is no
    gateway, so `up` stops the sidecar and says so."""
    chosen = ports()
    gateway = start_gateway(
        gateway_config(fake_anthropic, fake_deepseek, **chosen), tmp_path, chosen["listener"]
    )
    os.kill(envoy_pid(gateway), signal.SIGKILL)
    assert gateway.process.wait(30) == 1
    assert any("envoy exited with code -9" in line for line in gateway.output)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ready_says_no_while_envoy_does_not_answer(
    tmp_path, fake_anthropic, fake_deepseek, workers
):
    """What a container's health check asks: /ready answers for the Envoy `up` runs, not only
    for the sidecar. A stopped Envoy's listener accepts connections and answers nothing."""
    chosen = ports()
    gateway = start_gateway(
        gateway_config(fake_anthropic, fake_deepseek, **chosen),
        tmp_path,
        chosen["listener"],
        args=("--workers", workers),
    )
    ready = f"http://127.0.0.1:{chosen['health']}/ready"
    try:
        assert httpx.get(ready).text == "ok\n"
        envoy = envoy_pid(gateway)
        os.kill(envoy, signal.SIGSTOP)
        try:
            stopped, sidecar_alone = httpx.get(ready, timeout=10), httpx.get(f"{ready}/sidecar")
        finally:
            os.kill(envoy, signal.SIGCONT)
        assert (stopped.status_code, stopped.text) == (
            503,
            f"not ready: envoy does not answer on 127.0.0.1:{chosen['admin']}\n",
        )
        assert (sidecar_alone.status_code, sidecar_alone.text) == (200, "ok\n")
        assert httpx.get(ready).text == "ok\n"
    finally:
        assert stop_gateway(gateway) == 0


def test_key_warnings_print_once_and_again_on_a_reload(tmp_path, fake_anthropic, fake_deepseek):
    """An unset key is one warning at start (not one from `up` and one from `serve`), a
    reload that adds one warns too, and a request refused for it keeps its decision."""
    chosen = ports()
    gateway = start_gateway(
        gateway_config(fake_anthropic, fake_deepseek, **chosen), tmp_path, chosen["listener"]
    )
    try:
        warnings = [line for line in gateway.output if "TEST_UNSET_KEY is not set" in line]
        assert len(warnings) == 1 and warnings[0].startswith("warning: ")
        text = gateway.config_path.read_text()
        before = len(gateway.output)
        gateway.config_path.write_text(
            text.replace(
                "model_aliases:\n",
                f"  - model: deepseek/deepseek-v9\n    base_url: {fake_deepseek.url}/anthropic\n"
                "    access_key: $TEST_NEVER_SET_KEY\nmodel_aliases:\n",
            )
        )
        deadline = time.monotonic() + 20
        while not any("reloaded" in line for line in gateway.output[before:]):
            assert time.monotonic() < deadline, gateway.output[before:]
            time.sleep(0.1)
        assert any(
            line.startswith("warning: ") and "TEST_NEVER_SET_KEY is not set" in line
            for line in gateway.output[before:]
        )
        response = httpx.post(
            f"{gateway.url}/v1/messages",
            json={
                "model": "deepseek/deepseek-v9",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "hi"}],
            },
        )
        assert response.status_code == 401
        entry = gateway.wait_log(lambda e: e["status"] == 401)
        assert entry["requested_model"] == entry["routed_model"] == "deepseek/deepseek-v9"
        assert entry["source"] == "explicit"
        assert "TEST_NEVER_SET_KEY" in entry["note"]
    finally:
        stop_gateway(gateway)


def test_serve_warns_on_a_reload_and_stops_at_once_on_ctrl_c(tmp_path):
    """`extproc serve` alone: a SIGHUP that loads an unset key warns; Ctrl-C promises no drain."""
    chosen = ports()
    config = tmp_path / "config.yaml"
    config.write_text(
        f"sidecar: {{port: {chosen['sidecar']}, health_port: {chosen['health']}}}\n"
        f"routing: {{model_dir: {tmp_path / 'none'}}}\nllm_providers:\n  - model: openai/x\n"
    )
    serve = subprocess.Popen(
        [sys.executable, "-m", "extproc", "serve", str(config)],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{chosen['health']}/ready").raise_for_status()
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline and serve.poll() is None
            time.sleep(0.1)
    health = f"http://127.0.0.1:{chosen['health']}/config"
    loaded = httpx.get(health).text
    with config.open("a") as more:
        more.write("  - model: openai/y\n    access_key: $TEST_NEVER_SET_KEY\n")
    serve.send_signal(signal.SIGHUP)
    while httpx.get(health).text == loaded:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    serve.send_signal(signal.SIGINT)
    _, stderr = serve.communicate(timeout=30)
    assert serve.returncode == 0
    assert "TEST_NEVER_SET_KEY is not set" in stderr.split("config reloaded")[1]
    assert "stopping now; open streams are cut" in stderr
    assert "draining" not in stderr
