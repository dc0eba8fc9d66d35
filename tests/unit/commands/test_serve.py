"""`extproc serve` on a port it can't take: the reason in the project's words, exit code 1."""

from __future__ import annotations

import socket
from pathlib import Path

from extproc.commands.cli import main
from extproc.proxy import server
from tests.support.gateway import free_port


def test_serve_on_a_taken_port_says_so_and_exits_1(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setattr(server, "tune_for_serving", lambda: None)  # process-wide GC settings
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "config.yaml"
        config.write_text(
            "llm_providers:\n  - model: openai/gpt-4.1\n    access_key: k\n"
            f"sidecar:\n  port: {port}\n  health_port: {free_port()}\n",
            encoding="utf-8",
        )
        assert main(["serve", str(config)]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"error: cannot listen on 127.0.0.1:{port} for ext_proc (port taken, or not an address "
        "of this machine? sidecar.listen_address is what serve binds)"
    )
