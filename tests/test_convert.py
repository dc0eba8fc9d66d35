"""`extproc model convert`: each failure a user can fix is one line saying what to do.

The Hugging Face Hub is not reachable from the tests. `FakeHub` answers as the Hub does for
a missing and a gated repository: its error responses carry `X-Error-Code: RepoNotFound` or
`GatedRepo`, which huggingface_hub turns into RepositoryNotFoundError and GatedRepoError
(huggingface_hub/utils/_http.py, `hf_raise_for_status`; documented at
https://huggingface.co/docs/huggingface_hub/package_reference/utilities#huggingface_hub.errors.GatedRepoError).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from ctranslate2.converters import TransformersConverter

from extproc.router.convert import ConvertError, convert
from tests.conftest import free_port


class FakeHub(BaseHTTPRequestHandler):
    """`/` answers (the reachability check); `gated/*` is gated; every other repo is missing."""

    def do_GET(self) -> None:
        if self.path == "/":
            status, headers = 200, {}
        elif "/gated/" in self.path:
            status, headers = 403, {"X-Error-Code": "GatedRepo"}
        else:
            status, headers = 404, {"X-Error-Code": "RepoNotFound"}
        body = b'{"error": "see X-Error-Code"}'
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def hub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def model_convert(
    src: str, out: str, *, endpoint: str, python: str = ""
) -> subprocess.CompletedProcess:
    code = f"{python}\nimport sys\nfrom extproc.cli import main\nsys.exit(main(sys.argv[1:]))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return subprocess.run(
        [sys.executable, "-c", code, "model", "convert", src, out],
        capture_output=True,
        text=True,
        env={**env, "HF_ENDPOINT": endpoint, "HF_HUB_DISABLE_PROGRESS_BARS": "1"},
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
