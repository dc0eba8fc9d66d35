"""`docker compose up` built and run for real, as a user with an offline build runs it.

Runs where a Docker engine with Compose v2 answers, and is skipped, saying why, where not
(CI starts one with ../shared/tools/docker-here). The image is built from a copy of this
checkout with the tiny test model as a local converted model (ROUTER_MODEL_SOURCE=local): no
Hugging Face, no torch index. The fake provider listens on the host's side of a container
network the test creates: the only address off the loopback that these tests use.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ROOT
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway import PROVIDER_KEYS, free_port
from tests.support.requests import KEY, chat


def docker_missing() -> str | None:
    """Why these tests can't run here, or None."""
    if shutil.which("docker") is None:
        return "no docker command (CI starts an engine with ../shared/tools/docker-here)"
    for command, what in ((["info"], "engine"), (["compose", "version"], "Compose v2")):
        result = subprocess.run(["docker", *command], capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            return f"no Docker {what} answers: {(result.stderr or result.stdout).strip()[:300]}"
    return None


MISSING = docker_missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=f"needs Docker: {MISSING}")


def docker(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        ["docker", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, **(env or {})},
    )
    output = f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert result.returncode == 0, f"docker {' '.join(args)} failed:\n{output}"
    return result.stdout


def copy_working_tree(destination: Path) -> None:
    """The files of a clone with this checkout's edits: tracked and untracked, not ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        if (ROOT / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, destination / name)


def test_the_build_context_holds_only_what_the_image_is_built_from(tmp_path):
    """A user's folder has a virtual environment, node_modules, a converted model under
    .cache, keys in .env and the git history: none of it goes to the engine."""
    folder = tmp_path / "extproc"
    copy_working_tree(folder)
    kept_out = [
        ".venv/bin/python",
        "node_modules/x/index.js",
        ".cache/extproc/model.bin",
        ".env",
        ".git/HEAD",
        "models/other/model.bin",
        "extproc/__pycache__/app.cpython-311.pyc",
    ]
    for name in [*kept_out, "models/router/model.bin"]:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("x")
    probe = tmp_path / "Dockerfile.probe"
    probe.write_text("FROM python:3.11-slim\nCOPY . /context\n")
    tag = f"extproc-context-probe:{uuid.uuid4().hex[:8]}"
    docker("build", "--quiet", "--tag", tag, "--file", str(probe), str(folder))
    try:
        listing = docker("run", "--rm", tag, "find", "/context", "-type", "f")
    finally:
        docker("image", "rm", tag)
    sent = {line.removeprefix("/context/") for line in listing.split()}
    assert {"pyproject.toml", "README.md", "config.yaml", "extproc/app.py"} <= sent
    assert "models/router/model.bin" in sent
    assert not sent & set(kept_out)
    assert not {name.partition("/")[0] for name in sent} & {"tests", "docs", "deploy", ".git"}


@dataclass
class Project:
    """A user's project folder, built once: its compose project, image and the network the
    fake providers are reached on."""

    folder: Path
    name: str
    network: str
    host_address: str
    """The host's address on `network`, where the fake providers listen."""
    image: str
    build_s: float = 0.0

    def compose(self, *args: str, env: dict[str, str] | None = None) -> str:
        return docker("compose", "--project-name", self.name, *args, cwd=self.folder, env=env)


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_router_dir) -> Iterator[Project]:
    folder = tmp_path_factory.mktemp("compose") / "extproc"
    copy_working_tree(folder)
    shutil.copytree(tiny_router_dir, folder / "models" / "router")
    run = uuid.uuid4().hex[:8]
    network = f"extproc-test-{run}"
    docker("network", "create", network)
    host_address = docker(
        "network", "inspect", "--format", "{{(index .IPAM.Config 0).Gateway}}", network
    ).strip()
    project = Project(folder, network, network, host_address, f"extproc-test:{run}")
    try:
        # Compose reads docker-compose.override.yml beside the project's file by itself.
        override = folder / "docker-compose.override.yml"
        override.write_text(f"services:\n  gateway:\n    image: {project.image}\n")
        start = time.monotonic()
        project.compose("build", env={"ROUTER_MODEL_SOURCE": "local"})
        project.build_s = time.monotonic() - start
        yield project
    finally:
        for leftover in (
            ["compose", "--project-name", project.name, "down", "--timeout", "5"],
            ["image", "rm", "--force", project.image],
            ["network", "rm", network],
        ):
            subprocess.run(["docker", *leftover], cwd=folder, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def provider(project) -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic(
        host=project.host_address, expected_key=PROVIDER_KEYS["TEST_ANTHROPIC_KEY"]
    )
    yield fake.start()
    fake.stop()


def config_text(provider: FakeAnthropic, more_providers: str = "") -> str:
    """The project's config.yaml, edited as a user would: providers at the fakes."""
    return f"""\
llm_providers:
  - model: anthropic/claude-sonnet-4-5
    base_url: {provider.url}
    access_key: $TEST_ANTHROPIC_KEY
    default: true
    routing_preferences:
      - name: code generation
        description: generating new code snippets and functions
{more_providers}
listener:
  address: 127.0.0.1
  port: 12000
"""


def override(project: Project, listener: int, health: int) -> str:
    """All the test changes in docker-compose.yml: its own image tag, free host ports, the
    network it made, and a health check every second (the image's is every 10 s)."""
    return f"""\
services:
  gateway:
    image: {project.image}
    ports: !override
      - "127.0.0.1:{listener}:12000"
      - "127.0.0.1:{health}:50052"
    healthcheck:
      interval: 1s
      retries: 2
networks:
  default:
    name: {project.network}
    external: true
"""


ENVOY_SIGNAL = """\
import os, signal, sys
[pid] = [p for p in os.listdir('/proc') if p.isdigit()
         and os.path.basename(open(f'/proc/{p}/cmdline', 'rb').read().split(b'\\0')[0]) == b'envoy']
os.kill(int(pid), getattr(signal, sys.argv[1]))
"""
"""Signals Envoy inside the container: the slim image has no ps, pidof or kill."""


@dataclass
class Running:
    """The gateway's container, up and healthy."""

    project: Project
    listener: int
    health: int
    ready_s: float = 0.0

    @property
    def container(self) -> str:
        return self.project.compose("ps", "--quiet", "gateway").strip()

    def state(self) -> dict[str, Any]:
        return json.loads(docker("inspect", "--format", "{{json .State}}", self.container))

    def wait_health(self, status: str, timeout: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (state := self.state()).get("Health", {}).get("Status") != status:
            assert time.monotonic() < deadline, f"not {status} after {timeout}s: {state}"
            time.sleep(0.5)
        return state

    def post(self, model: str) -> httpx.Response:
        url = f"http://127.0.0.1:{self.listener}/v1/messages"
        return httpx.post(url, json=chat(model), headers=KEY, timeout=30)

    def signal_envoy(self, name: str) -> None:
        self.project.compose("exec", "-T", "gateway", "python", "-c", ENVOY_SIGNAL, name)


@pytest.fixture
def running(project, provider) -> Iterator[Running]:
    gateway = Running(project, free_port(), free_port())
    (project.folder / "config.yaml").write_text(config_text(provider))
    (project.folder / ".env").write_text("".join(f"{k}={v}\n" for k, v in PROVIDER_KEYS.items()))
    override_file = project.folder / "docker-compose.override.yml"
    override_file.write_text(override(project, gateway.listener, gateway.health))
    start = time.monotonic()
    project.compose("up", "--detach")
    try:
        gateway.wait_health("healthy")
        gateway.ready_s = time.monotonic() - start
        yield gateway
    finally:
        project.compose("down", "--timeout", "10")


def test_compose_up_serves_a_provider_and_applies_a_config_edit(running, provider, project):
    size_mb = int(docker("image", "inspect", "--format", "{{.Size}}", project.image)) / 1e6
    print(
        f"\nimage build {project.build_s:.0f} s, image {size_mb:.0f} MB, "
        f"compose up to healthy {running.ready_s:.1f} s"
    )
    assert httpx.get(f"http://127.0.0.1:{running.health}/ready").text == "ok\n"
    answer = running.post("claude-sonnet-4-5")
    assert answer.json()["content"][0]["text"] == provider.answer
    assert provider.received[-1].json()["model"] == "claude-sonnet-4-5"

    second = FakeAnthropic(
        host=project.host_address,
        expected_key=PROVIDER_KEYS["TEST_DEEPSEEK_KEY"],
        answer="deepseek says hi",
    ).start()
    try:
        added = f"""\
  - model: deepseek/deepseek-chat
    base_url: {second.url}/anthropic
    access_key: $TEST_DEEPSEEK_KEY
model_aliases:
  deep: deepseek/deepseek-chat"""
        edited = project.folder / "config.yaml.new"
        edited.write_text(config_text(provider, added))
        edited.replace(project.folder / "config.yaml")  # as an editor saves: a new file
        deadline = time.monotonic() + 60
        while not second.received:
            assert time.monotonic() < deadline, "the edit was not applied"
            answer = running.post("deep")
            time.sleep(0.5)
        assert answer.json()["content"][0]["text"] == "deepseek says hi"
        assert second.received[-1].path == "/anthropic/v1/messages"
        assert second.received[-1].json()["model"] == "deepseek-chat"
    finally:
        second.stop()


def test_the_health_check_sees_envoy_and_a_dead_envoy_restarts_the_container(running):
    running.signal_envoy("SIGSTOP")  # its listener still accepts connections, answers nothing
    try:
        state = running.wait_health("unhealthy")
    finally:
        running.signal_envoy("SIGCONT")
    output = state["Health"]["Log"][-1]["Output"]
    assert "not ready: envoy does not answer on 127.0.0.1:9901" in output
    running.wait_health("healthy")

    container = running.container
    running.signal_envoy("SIGKILL")  # `extproc up` exits; the restart policy starts it again
    deadline = time.monotonic() + 60
    while docker("inspect", "--format", "{{.RestartCount}}", container).strip() == "0":
        assert time.monotonic() < deadline, "the container was not restarted"
        time.sleep(0.2)
    running.wait_health("healthy")
    assert running.post("claude-sonnet-4-5").status_code == 200


def test_compose_down_stops_the_gateway_cleanly(running, project):
    container = running.container
    project.compose("stop")  # SIGTERM: `extproc up` drains, then stops Envoy and the sidecar
    state = json.loads(docker("inspect", "--format", "{{json .State}}", container))
    assert (state["Status"], state["ExitCode"]) == ("exited", 0)
    project.compose("down")
    assert project.compose("ps", "--all", "--quiet") == ""
