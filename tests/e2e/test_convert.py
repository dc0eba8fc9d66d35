"""`extproc model convert`: each failure a user can fix is one line saying what to do, and a
download shows its progress, stops on Ctrl-C and resumes.

The Hugging Face Hub is not reachable from the tests. `FakeHub` answers as the Hub does for
a missing and a gated repository: its error responses carry `X-Error-Code: RepoNotFound` or
`GatedRepo`, which huggingface_hub turns into RepositoryNotFoundError and GatedRepoError
(huggingface_hub/utils/_http.py, `hf_raise_for_status`; documented at
https://huggingface.co/docs/huggingface_hub/package_reference/utilities#huggingface_hub.errors.GatedRepoError).
It serves one real repository, `owner/tiny`, through the endpoints a download reads: the
model's info with file sizes (`/api/models/{id}?blobs=True`, as
`HfApi.model_info(files_metadata=True)` asks it) and `/{id}/resolve/{sha}/{file}`, which
honours `Range` with a 206 as the Hub does (https://huggingface.co/docs/hub/api).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pty
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from ctranslate2.converters import TransformersConverter

from extproc.commands.up import ROUTER_SOURCE
from extproc.control.router_convert import ConvertError, convert
from tests.support.gateway import PROVIDER_KEYS, free_port, gateway_config, gateway_ports

COMMIT = "c0ffee" * 6 + "c0ff"
SERVED = ("owner/tiny", ROUTER_SOURCE)
"""Both serve the tiny checkpoint: as ROUTER_SOURCE, for `extproc up`'s first-run offer."""
BIG = "notes.txt"
"""A file large enough that a stopped download has kept a part of it."""


class FakeHub(BaseHTTPRequestHandler):
    """`/` answers (the reachability check); `gated/*` is gated; the SERVED repos serve
    `server.files`; every other repo is missing. With `server.stall` set, the first GET of
    BIG sends 11 MB and then waits until `server.release` is set."""

    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)

    def do_GET(self) -> None:
        files: dict[str, bytes] = self.server.files  # type: ignore[attr-defined]
        if self.path == "/":
            return self._send(200, b"hub", {})
        for repo in SERVED:
            if self.path.partition("?")[0] == f"/api/models/{repo}":
                siblings = [{"rfilename": n, "size": len(d)} for n, d in files.items()]
                info = json.dumps({"id": repo, "sha": COMMIT, "siblings": siblings}).encode()
                return self._send(200, info, {"Content-Type": "application/json"})
            if self.path.startswith(f"/{repo}/resolve/{COMMIT}/"):
                name = self.path.rsplit("/", 1)[1]
                return self._file(name, files[name])
        if "/gated/" in self.path:
            return self._send(403, b"{}", {"X-Error-Code": "GatedRepo"})
        return self._send(404, b"{}", {"X-Error-Code": "RepoNotFound"})

    def _file(self, name: str, data: bytes) -> None:
        headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha256(data).hexdigest()}"'}
        start = 0
        if self.command == "GET" and "Range" in self.headers:
            self.server.ranges.append((name, self.headers["Range"]))  # type: ignore[attr-defined]
            start = int(self.headers["Range"].removeprefix("bytes=").partition("-")[0])
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        if name == BIG and self.command == "GET" and self.server.stall.is_set():  # type: ignore[attr-defined]
            self.server.stall.clear()  # type: ignore[attr-defined]
            self.send_response(200)
            for key, value in {**headers, "Content-Length": str(len(data))}.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data[: 11 * 1024 * 1024])
            self.wfile.flush()
            self.server.release.wait(60)  # type: ignore[attr-defined]
            self.close_connection = True
            return
        self._send(206 if start else 200, data[start:], headers)

    do_HEAD = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def hub_server(tiny_router_dir) -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    checkpoint = tiny_router_dir.parent / "tiny-arch-router-hf"
    server.files = {p.name: p.read_bytes() for p in sorted(checkpoint.iterdir())}  # type: ignore[attr-defined]
    server.files[BIG] = random.Random(0).randbytes(12 * 1024 * 1024)  # type: ignore[attr-defined]
    server.stall, server.release = threading.Event(), threading.Event()  # type: ignore[attr-defined]
    server.ranges = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.release.set()  # type: ignore[attr-defined]
    server.shutdown()


@pytest.fixture(scope="module")
def hub(hub_server) -> str:
    return f"http://127.0.0.1:{hub_server.server_port}"


def convert_command(src: str, out: str, python: str = "") -> list[str]:
    code = (
        f"{python}\nimport sys\nfrom extproc.commands.cli import main\nsys.exit(main(sys.argv[1:]))"
    )
    return [sys.executable, "-c", code, "model", "convert", src, out]


def hub_env(endpoint: str, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return {**env, "HF_ENDPOINT": endpoint, **more}


def model_convert(
    src: str, out: str, *, endpoint: str, python: str = ""
) -> subprocess.CompletedProcess:
    return subprocess.run(
        convert_command(src, out, python),
        capture_output=True,
        text=True,
        env=hub_env(endpoint, HF_HUB_DISABLE_PROGRESS_BARS="1"),
        timeout=120,
    )


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_no_network_is_one_line_and_quick(tmp_path):
    line = one_error_line(
        model_convert(
            "katanemo/Arch-Router-1.5B",
            str(tmp_path / "out"),
            endpoint=f"http://127.0.0.1:{free_port()}",
        )
    )
    assert "can't reach the Hugging Face Hub" in line and "convert a local copy" in line


def test_bad_id_is_one_line(tmp_path, hub):
    line = one_error_line(
        model_convert("katanemo/Arch-Router-15B", str(tmp_path / "out"), endpoint=hub)
    )
    assert "katanemo/Arch-Router-15B is not a model on the Hugging Face Hub: check the id" in line


def test_gated_model_is_one_line(tmp_path, hub):
    line = one_error_line(model_convert("gated/model", str(tmp_path / "out"), endpoint=hub))
    assert f"gated/model is gated: accept its terms at {hub}/gated/model" in line
    assert "hf auth login" in line


def test_missing_torch_is_one_line_with_the_cpu_index(tmp_path, hub):
    hide_torch = "import sys; sys.modules['torch'] = None"
    line = one_error_line(
        model_convert(
            "katanemo/Arch-Router-1.5B", str(tmp_path / "out"), endpoint=hub, python=hide_torch
        )
    )
    assert "needs torch, which is not installed" in line
    assert "--index-url https://download.pytorch.org/whl/cpu" in line


def test_no_disk_space_is_one_line(tmp_path, tiny_router_dir, monkeypatch):
    """A full disk can't be made here; the converter's write fails as a full disk fails it."""

    def full_disk(self, output_dir: str, **kwargs: object) -> str:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f"{output_dir}/model.bin")

    monkeypatch.setattr(TransformersConverter, "convert", full_disk)
    with pytest.raises(
        ConvertError, match=r"^no space left on the disk while converting"
    ) as raised:
        convert(str(tiny_router_dir.parent / "tiny-arch-router-hf"), tmp_path / "out")
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "out").exists()


def test_an_interrupted_conversion_leaves_no_model_directory(
    tmp_path, tiny_router_dir, monkeypatch
):
    def interrupted(self, output_dir: str, **kwargs: object) -> str:
        os.makedirs(output_dir)
        (tmp_path / "out.partial" / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(TransformersConverter, "convert", interrupted)
    with pytest.raises(KeyboardInterrupt):
        convert(str(tiny_router_dir.parent / "tiny-arch-router-hf"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_download_shows_progress_stops_on_ctrl_c_and_resumes(tmp_path, hub, hub_server):
    """The progress bar shows bytes and time left; Ctrl-C stops at once, keeping what
    arrived; the same command asks for the rest only, and the download folder goes once the
    model is converted."""
    out = tmp_path / "model"
    part = tmp_path / "model.download" / f"{BIG}.part"
    env = hub_env(hub)
    hub_server.stall.set()
    first = subprocess.Popen(
        convert_command("owner/tiny", str(out)), env=env, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not (part.exists() and part.stat().st_size >= 5 << 20):
        assert time.monotonic() < deadline and first.poll() is None, first.stderr.read()
        time.sleep(0.1)
    first.send_signal(signal.SIGINT)
    _, stderr = first.communicate(timeout=60)  # not held up by the stalled download
    hub_server.release.set()
    assert first.returncode == 130
    assert "stopped; the same command resumes the download" in stderr
    assert not out.exists()
    kept = part.stat().st_size
    hub_server.ranges.clear()

    second = subprocess.run(
        convert_command("owner/tiny", str(out)), env=env, capture_output=True, text=True
    )
    assert second.returncode == 0, second.stderr
    [(name, requested)] = hub_server.ranges
    assert (name, requested) == (BIG, f"bytes={kept}-")
    assert (out / "model.bin").is_file()
    assert not (tmp_path / "model.download").exists()
    # The first run's bars, as they stood when it stopped: bytes of a known total, time left.
    bars = stderr.replace("\r", "\n")
    assert re.search(
        r"Downloading owner/tiny: +\d+%\|.*\| [\d.]+[kM]?B/[\d.]+MB \[[\d:?]+ left, ", bars
    ), bars


def test_first_start_offers_the_model_and_the_gateway_loads_it(
    tmp_path, hub, fake_anthropic, fake_deepseek
):
    """`extproc up > access.log` in a terminal, no router model yet: the offer and its
    progress reach the terminal (not the access log), and the converted model is loaded."""
    ports = gateway_ports()
    model_dir = tmp_path / "router-model"
    config = tmp_path / "config.yaml"
    config.write_text(
        gateway_config(fake_anthropic, fake_deepseek, **ports)
        + f"routing: {{model_dir: {model_dir}}}\n"
    )
    access_log = tmp_path / "access.log"
    terminal, terminal_end = pty.openpty()
    up = subprocess.Popen(
        [sys.executable, "-m", "extproc", "up", str(config)],
        stdin=terminal_end,
        stdout=access_log.open("wb"),
        stderr=subprocess.PIPE,
        env=hub_env(hub, **PROVIDER_KEYS),
    )
    os.close(terminal_end)
    try:
        output: list[str] = []  # chunks, not lines: the question ends without a newline

        def read() -> None:
            while chunk := os.read(up.stderr.fileno(), 65536):
                output.append(chunk.decode(errors="replace"))

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + 240
        asked = False
        while "gateway ready" not in "".join(output):
            assert time.monotonic() < deadline and up.poll() is None, "".join(output)
            if not asked and "and convert it now? [y/N]" in "".join(output):
                os.write(terminal, b"y\n")
                asked = True
            time.sleep(0.1)
        text = "".join(output)
        assert re.search(r"Downloading katanemo/Arch-Router-1.5B: +100%", text.replace("\r", "\n"))
        assert f"converted {ROUTER_SOURCE} → {model_dir} (int8)" in text
        assert f"router model loaded from {model_dir}" in text
        assert "Download" not in access_log.read_text(errors="replace")
    finally:
        up.terminate()
        up.wait(30)
        os.close(terminal)
