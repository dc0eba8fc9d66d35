"""How many client connections Envoy may hold: from the config, within its open-files limit.

Past the limit, Envoy's overload manager closes each new connection at once, so a flood of
idle or slow clients costs a refused connection rather than Envoy's file descriptors (which
it shares with the provider connections of the requests in flight).
"""

from __future__ import annotations

import contextlib
import dataclasses
import resource

from extproc.config import Config, Listener

FILES_PER_CONNECTION = 2
"""A client connection, and the provider connection of its request while one is in flight."""
FILES_RESERVED = 128
"""Envoy's own: listeners, the admin port, the sidecar's connections, DNS, logs."""


def files_needed(listener: Listener) -> int:
    """What Envoy needs open to hold `listener.max_connections` client connections."""
    return listener.max_connections * FILES_PER_CONNECTION + FILES_RESERVED


def connections_within(open_files: int) -> int:
    """The most client connections Envoy can serve with `open_files` descriptors."""
    return max(1, (open_files - FILES_RESERVED) // FILES_PER_CONNECTION)


def too_few_files(listener: Listener, open_files: int) -> str | None:
    """Why Envoy will hold fewer client connections than configured, if it will."""
    fits, wanted = connections_within(open_files), listener.max_connections
    if fits >= wanted:
        return None
    return (
        f"Envoy may open {open_files} files (ulimit -n): enough for {fits} client connections "
        f"at once, not {wanted} (listener.max_connections); raise the limit to serve more"
    )


def fit_to_open_files(config: Config, open_files: int) -> Config:
    """`config` with a connection limit that `open_files` descriptors can hold."""
    limit = min(config.listener.max_connections, connections_within(open_files))
    return dataclasses.replace(
        config, listener=dataclasses.replace(config.listener, max_connections=limit)
    )


def raise_open_files_limit(wanted: int) -> int:
    """Raise this process's soft open-files limit to `wanted`, as far as its hard limit allows
    (the processes it starts, Envoy among them, inherit it); returns the limit in force (an
    unlimited one counts as `wanted`)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    if soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
