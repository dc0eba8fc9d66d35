"""A fake of Envoy's admin port over the folder of watched files `extproc up` writes
(extproc.control.envoy_files), so that delivery, refusal and pruning run without Envoy.

As Envoy does, it takes a changed `clusters.yaml`, `routes.yaml` or `listeners.yaml` (its
`version_info` becomes the subscription's `version_text`) or rejects it (`update_rejected`
counts up and the last good resources stay in force). It tells the order of the files it took
(`taken`), as Envoy's stats do not. It reads the folder when asked for stats, which is when
`EnvoyFiles` looks for Envoy's answer.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from tests.support import load_yaml
from tests.support.fake_server import FakeServer

STATS = {
    "clusters.yaml": "cluster_manager.cds",
    "routes.yaml": "http.llm.rds.llm",
    "listeners.yaml": "listener_manager.lds",
}


@dataclass
class Subscription:
    version_text: str | None = None
    rejected: int = 0
    seen: str | None = None
    """The file as last read."""
    resources: list[dict[str, Any]] = field(default_factory=list)


@dataclass(kw_only=True)
class FakeEnvoyAdmin(FakeServer):
    folder: Path
    reject: set[str] = field(default_factory=set)
    """Files whose next versions are rejected (`clusters.yaml`, `routes.yaml`, `listeners.yaml`)."""
    ignore: set[str] = field(default_factory=set)
    """Files whose changes are neither applied nor rejected (a stuck Envoy)."""
    answering: bool = True
    silent_for: int = 0
    """Requests left unanswered first (an Envoy still starting)."""
    answers_left: int | None = None
    """Requests answered before it stops answering (a hung Envoy); None: every one."""
    active: dict[str, int] = field(default_factory=dict)
    """Open requests per cluster (0 for one not named); `http.llm.downstream_rq_active` too."""
    subscriptions: dict[str, Subscription] = field(
        default_factory=lambda: {name: Subscription() for name in STATS}
    )
    taken: list[str] = field(default_factory=list)
    """The files whose versions it took, in order, one entry per version."""

    def cluster_names(self) -> list[str]:
        """The clusters in force, in their order in the file."""
        return [c["name"] for c in self.subscriptions["clusters.yaml"].resources]

    def read_folder(self) -> None:
        """Take the files as they are now (what Envoy does when it starts, and on a rename)."""
        for name, sub in self.subscriptions.items():
            path = self.folder / name
            if not path.exists():
                continue
            text = path.read_text(encoding="utf-8")
            if text == sub.seen or name in self.ignore:
                continue
            sub.seen = text
            document = load_yaml(text)
            if name in self.reject:
                sub.rejected += 1
            else:
                sub.version_text = document["version_info"]
                sub.resources = document["resources"]
                self.taken.append(name)

    def _stats(self) -> dict[str, str]:
        stats = {}
        for name, sub in self.subscriptions.items():
            stats[f"{STATS[name]}.update_rejected"] = str(sub.rejected)
            if sub.version_text is not None:
                stats[f"{STATS[name]}.version_text"] = f'"{sub.version_text}"'
        for cluster in self.cluster_names():
            stats[f"cluster.{cluster}.upstream_rq_active"] = str(self.active.get(cluster, 0))
        stats["http.llm.downstream_rq_active"] = str(self.active.get("llm", 0))
        return stats

    def respond(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        url = urllib.parse.urlsplit(handler.path)
        silent = not self.answering or self.silent_for > 0 or self.answers_left == 0
        self.silent_for -= self.silent_for > 0
        if self.answers_left and not silent:
            self.answers_left -= 1
        if silent:
            data, status = b"unavailable", 503
        elif url.path == "/stats":
            self.read_folder()
            pattern = urllib.parse.parse_qs(url.query).get("filter", [""])[0]
            stats = self._stats().items()
            data = "\n".join(f"{k}: {v}" for k, v in stats if re.search(pattern, k)).encode()
            status = 200
        else:
            data, status = b"OK", 200
        handler.send_response(status)
        handler.send_header("content-length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
