"""Failover chains: the candidates a request may move through, as Envoy's config names them.

A request whose decision has more than one candidate (`Config.candidates`) goes out on a
chain route (control/envoy_config.py): Envoy tries the chain's slots in order, one per
attempt, and moves on when an attempt fails before the answer's headers. Each slot is an
Envoy cluster:

- `p__<origin cluster>`: the head of a chain, whose request the downstream sidecar already
  rewrote: no sidecar call on that attempt (a translated head's body is put in place by a
  Lua filter, control/chain_head.lua);
- `fo__<entry>`: a later candidate, whose request the sidecar's upstream handler rewrites on
  the attempt itself (extproc/proxy/attempt.py), from the client's own body.

The renderer and the sidecar both name chains and slots here, so the chain a request is
sent on always has its route.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable

from extproc.config import Config, Provider
from extproc.providers.upstream import cluster_name

CHAIN_HEADER = "x-extproc-chain"
"""The header a chain route matches; set by the sidecar in place of the cluster header."""
FAILOVER_HEADER = "x-extproc-failover"
"""Set by the sidecar on a provider's answer that should move to the next candidate although
its status alone would not (a context-too-long 400); the chain routes retry on it."""
HEAD_ANSWER_HEADER = "x-extproc-head-answer"
"""Set by the head's Lua filter on the head's answer when the downstream sidecar reads it (a
translated head's, or with log_tokens any): it translates or counts that one, and passes a
later candidate's (translated and counted on its own attempt)."""
CHAIN_METADATA, HEAD_METADATA, EFFORT_METADATA, HEAD_BODY_METADATA = (
    "chain",
    "head",
    "effort",
    "head_body",
)
"""What the downstream exchange tells the chain's attempts, in the decision's dynamic
metadata: the chain header's value, the head's entry, the decided reasoning effort, and a
translated head's body (put in place, then emptied, by the head's Lua filter; empty for a
native head whose answer the sidecar reads, with log_tokens). Where that last key is, the
Lua filter marks the head's answer (`HEAD_ANSWER_HEADER`)."""
FAILOVER_PREFIX = "fo__"
HEAD_PREFIX = "p__"
STREAMED = ";stream"
"""Ends the chain header of a streamed request: its route has the per-try timeout."""


def failover_slot(config: Config, provider: Provider) -> str:
    """The `fo__` cluster of `provider`'s entry."""
    return _failover_slots(_names(config))[provider.name]


def head_slot(config: Config, provider: Provider) -> str:
    """The `p__` cluster over `provider`'s origin: attempt 1 of a chain it heads."""
    return HEAD_PREFIX + cluster_name(config, provider)


def slot_provider(config: Config, slot: str) -> Provider | None:
    """The provider entry a `fo__` cluster stands for, or None."""
    entry = _entries_by_slot(_names(config)).get(slot)
    return None if entry is None else config.provider_named(entry)


def slots(config: Config, chain: tuple[Provider, ...]) -> tuple[str, ...]:
    """The clusters a chain's attempts go to, in order: the head's rewritten downstream, the
    others' on their attempt."""
    head, *rest = chain
    return (head_slot(config, head), *(failover_slot(config, p) for p in rest))


MAX_TRIMMED = 4
"""Candidates after a chain's head that a request may leave out (those that can't take it, or
rest after failing): each subset of them gets a route of its own, 2**n - 1 of them. A head
with more candidates after it has one chain, all of them in it."""

Trim = Callable[[tuple[Provider, ...]], tuple[Provider, ...]]
"""Which of the candidates after a chain's head a request is worth sending to, in order."""


def chain_of(
    config: Config, routed: Provider, chosen: Provider, trim: Trim | None = None
) -> tuple[Provider, ...]:
    """The chain of a request routed to `routed` and, after the capability check, sent to
    `chosen`: `chosen` and the candidates of `routed` after it, as many of them as `trim`
    keeps (all past `MAX_TRIMMED`: no route leaves any out); `chosen` alone without
    failover."""
    candidates = config.candidates(routed)
    names = [p.name for p in candidates]
    if not config.listener.failover or chosen.name not in names:
        return (chosen,)
    rest = candidates[names.index(chosen.name) + 1 :]
    if trim is not None and len(rest) <= MAX_TRIMMED:
        rest = trim(rest)
    return (chosen, *rest)


def takes_client_auth_later(chain: tuple[Provider, ...]) -> bool:
    """Whether a candidate after the chain's head takes the client's own credentials: the
    head's rewrite may have replaced them, so the downstream exchange keeps them for it."""
    return any(p.passes_client_auth and not p.access_key for p in chain[1:])


def client_key(header: str) -> str:
    """Where a client header kept for later attempts goes in the dynamic metadata."""
    return f"client:{header}"


def chain_value(config: Config, chain: tuple[Provider, ...], streamed: bool) -> str:
    """The chain header's value for `chain` (its slots, comma-separated)."""
    return ",".join(slots(config, chain)) + (STREAMED if streamed else "")


def chains(config: Config) -> tuple[tuple[Provider, ...], ...]:
    """Every chain a request can be sent on, once each: each of a provider's candidates
    followed by the candidates after it, all of them first, then every smaller subset of them
    in order (`chain_of`'s trims; only all of them past `MAX_TRIMMED`). Empty when no provider
    has a second candidate, or with `listener.failover` off."""
    if not config.listener.failover:
        return ()
    found: dict[tuple[str, ...], tuple[Provider, ...]] = {}
    for provider in config.providers:
        candidates = config.candidates(provider)
        for start, head in enumerate(candidates[:-1]):
            for rest in _subsets(candidates[start + 1 :]):
                chain = (head, *rest)
                found.setdefault(tuple(p.name for p in chain), chain)
    return tuple(found.values())


def _subsets(rest: tuple[Provider, ...]) -> list[tuple[Provider, ...]]:
    """The non-empty subsets of `rest`, each in its order, the whole first (only the whole
    past `MAX_TRIMMED`)."""
    if len(rest) > MAX_TRIMMED:
        return [rest]
    kept = [
        tuple(p for p, keep in zip(rest, mask, strict=True) if keep)
        for mask in itertools.product((True, False), repeat=len(rest))
    ]
    return [subset for subset in kept if subset]


def keeps_client_auth(config: Config) -> bool:
    """Whether any chain takes the client's own credentials after its head: Envoy then shows
    them to the sidecar (never logged; kept only in the request's dynamic metadata)."""
    return any(takes_client_auth_later(chain) for chain in chains(config))


def _names(config: Config) -> tuple[str, ...]:
    return tuple(p.name for p in config.providers)


@functools.lru_cache(maxsize=16)
def _failover_slots(entries: tuple[str, ...]) -> dict[str, str]:
    """Each entry's `fo__` cluster: its name with other characters than letters, digits and
    `_-.` as `_`, and the entry's place in the config where two would read the same."""
    readable = {e: FAILOVER_PREFIX + re.sub(r"[^A-Za-z0-9_.-]", "_", e) for e in entries}
    counts: dict[str, int] = {}
    for name in readable.values():
        counts[name] = counts.get(name, 0) + 1
    return {
        entry: name if counts[name] == 1 else f"{name}_{i}"
        for i, (entry, name) in enumerate(readable.items())
    }


@functools.lru_cache(maxsize=16)
def _entries_by_slot(entries: tuple[str, ...]) -> dict[str, str]:
    return {slot: entry for entry, slot in _failover_slots(entries).items()}
