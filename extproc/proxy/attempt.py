"""One attempt of a failover chain, seen from the ext_proc filter on its `fo__` slot.

Envoy tries a chain's slots one per attempt (providers/chains.py). On a `fo__` slot the
sidecar runs as an *upstream* filter: Envoy opens one gRPC stream per attempt, with the
slot's name in the `xds.cluster_name` attribute, the body the router keeps for retries (the
client's, or the native head's rewrite of it) and the downstream decision in the dynamic
metadata. The attempt rewrites that body for its candidate with the same function as the
downstream exchange (`exchange.provider_request`), and translates the answer if it must.
The chain's head is no such attempt: the downstream exchange rewrote it, and its answer
goes past (control/chain_head.lua writes down its failure for the attempt after it).

Header changes of one attempt stay in the request the next attempt starts from, so each
attempt sets and removes every header it owns: both credential headers, path, length.
A failed answer is marked for the next attempts in the metadata (its status, retry-after);
a provider's context-too-long 400 gets `x-extproc-failover`, on which the route retries.
"""

from __future__ import annotations

from extproc.config import Provider
from extproc.decisions.cooldown import is_failure, retry_after_seconds
from extproc.errors import GatewayError
from extproc.providers.chains import (
    CHAIN_METADATA,
    EFFORT_METADATA,
    FAILOVER_HEADER,
    FAILOVER_PREFIX,
    HEAD_ANSWER_HEADER,
    HEAD_METADATA,
    HEAD_PREFIX,
    STREAMED,
    client_key,
    slot_provider,
)
from extproc.providers.upstream import CLIENT_AUTH_HEADERS, AuthChange, auth_change
from extproc.proxy import replies
from extproc.proxy.exchange import (
    ANTHROPIC_HEADERS,
    Exchange,
    Runtime,
    _parse_body,
    price_text,
    provider_request,
)
from extproc.proxy.wire import Phase

SLOT_ATTRIBUTE = "xds.cluster_name"
UNSEEN = "unseen"
"""The reason of a failed attempt that got no answer (refused, reset, silent)."""
RETRY_AFTER = "retry_after"
"""The soonest retry-after of the chain's failed answers, in seconds (dynamic metadata):
Envoy's own 503 after a last attempt that got no answer carries it (control/envoy_config.py)."""
CONTEXT_TOO_LONG = (
    b"context_length_exceeded",  # OpenAI and most OpenAI-format APIs
    b"prompt is too long",  # Anthropic
    b"maximum context length",  # Mistral, vLLM
    b"exceeds the maximum number of tokens",  # Gemini
    b"exceeded model token limit",  # Moonshot
)
"""How each provider's 400 says the prompt is over the model's window (docs/translation.md)."""

NOT_THE_HEADS = (HEAD_ANSWER_HEADER,)
"""Removed from a later candidate's answer: the downstream exchange translates (or, with
log_tokens, counts) an answer marked as the head's, and this one is not, whatever its
provider sent."""


def exchange_for(runtime: Runtime, first: Phase, exchange: Exchange) -> Exchange:
    """The handler of a stream, from its first message: a failover attempt when Envoy says
    the stream is a `fo__` slot's, else `exchange` (the downstream one)."""
    slot = first.attributes.get(SLOT_ATTRIBUTE, "")
    return Attempt(runtime, slot) if slot.startswith(FAILOVER_PREFIX) else exchange


def is_context_too_long(body: bytes) -> bool:
    return any(marker in body for marker in CONTEXT_TOO_LONG)


class Attempt(Exchange):
    def __init__(self, runtime: Runtime, slot: str):
        super().__init__(runtime)
        self.slot = slot
        self.candidate: Provider | None = None
        self.slots: list[str] = []
        self.earlier: list[Provider] = []
        """The chain's candidates before this one, in order."""
        self.effort: str | None = None
        self.retry_after: float | None = None
        """The soonest retry-after the earlier attempts got, from the metadata."""
        self.body_read = False
        self.held_status = 0
        """A 400 whose body is read (its headers held) to tell a context-too-long one."""
        self.client_headers: dict[str, str] = {}
        self.client_anthropic: dict[str, str] = {}
        """The client's anthropic-* headers, as they came or as an earlier attempt kept them."""
        self.route = ""
        """The route that chose the chain (the downstream decision's)."""
        self.client_auth: dict[str, str] = {}
        """The client's credential headers, kept by the downstream exchange (metadata) when a
        later candidate takes them: an earlier attempt's rewrite may have replaced them."""

    @property
    def body_due(self) -> bool:
        return bool(self.headers) and not self.body_read

    async def handle(self, message: Phase) -> bytes:
        if message.name == "request_headers":
            return self.on_attempt_headers(message)
        if not self.headers:
            raise GatewayError("api_error", f"ext_proc {message.name} came before the headers")
        if message.name == "request_body":
            return self.on_attempt_body(message.body)
        if message.name == "response_headers":
            return self.on_answer_headers(message.headers)
        if message.name == "response_body" and self.held_status:
            return self.on_held_body(bytes(message.body))
        return await super().handle(message)

    def on_attempt_headers(self, message: Phase) -> bytes:
        config = self.runtime.config
        candidate = slot_provider(config, self.slot)
        if candidate is None:  # a config edit removed it while the request was under way
            raise GatewayError("api_error", f"no provider entry for failover slot {self.slot}")
        self.candidate = candidate
        self.headers = message.headers
        self.path = self.headers.get("x-envoy-original-path") or self.headers.get(":path", "/")
        decided = message.metadata.get(self.namespace, {})
        self.slots = decided.get(CHAIN_METADATA, "").removesuffix(STREAMED).split(",")
        self.effort = decided.get(EFFORT_METADATA) or None
        self.route = decided.get("route", "")
        self.client_auth = {
            header: value
            for header in CLIENT_AUTH_HEADERS
            if (value := decided.get(client_key(header)))
        }
        self.retry_after = retry_after_seconds(decided.get(RETRY_AFTER), self.runtime.clock())
        self.client_anthropic = {
            name: value
            for name in ANTHROPIC_HEADERS
            if (value := self.headers.get(name) or decided.get(client_key(name)))
        }
        position = self.slots.index(self.slot) if self.slot in self.slots else 0
        head = config.provider_named(decided.get(HEAD_METADATA, ""))
        earlier = [slot_provider(config, s) for s in self.slots[1:position]]
        self.earlier = [p for p in (head, *earlier) if p is not None][:position]
        if self.earlier:
            failed = self.slots[position - 1]
            self._count_failover(
                self.earlier[-1], failed, decided.get(failure_key(failed)), decided
            )
        return replies.continue_request_headers()

    @property
    def answering(self) -> tuple[Provider, str] | None:
        return (self.candidate, self.route) if self.candidate else None

    def _count_failover(
        self, failed: Provider, slot: str, reason: str | None, decided: dict[str, str]
    ) -> None:
        """The attempt before this one, on `slot`, failed: count it. One that got no answer (a
        refused connection, a timeout) is news for the cooldown table too, and so is the
        head's failed answer, which its Lua filter wrote down (with its retry-after): no
        handler of ours saw either."""
        self.runtime.metrics.failovers.labels(failed.name, reason or UNSEEN).inc()
        if reason is None:
            self.runtime.record_attempt(failed.name, UNSEEN, {})
        elif slot.startswith(HEAD_PREFIX) and reason.isdigit():
            retry_after = {"retry-after": decided.get(RETRY_AFTER, "")}
            self.runtime.record_attempt(failed.name, int(reason), retry_after)

    def credentials(self, candidate: Provider) -> AuthChange:
        """The candidate's own key; for one that takes the client's credentials, those the
        request came with: as they are where every earlier attempt left them so, else as the
        downstream exchange kept them in the metadata (`client_auth`), else none."""
        auth = auth_change(candidate)
        if auth.set or auth.remove:
            return auth
        if all(not p.access_key and p.passes_client_auth for p in self.earlier):
            return auth
        kept = self.client_auth
        return AuthChange(kept, tuple(h for h in CLIENT_AUTH_HEADERS if h not in kept))

    def on_attempt_body(self, raw: bytes | memoryview) -> bytes:
        assert self.candidate is not None
        candidate = self.candidate
        self.body_read = True
        body, span = _parse_body(raw)
        rewrite = provider_request(
            self.runtime.config,
            candidate,
            self.credentials(candidate),
            raw,
            body,
            span,
            self.path,
            self.effort,
        )
        self.translation = rewrite.translation
        # A translated attempt removes the client's anthropic-* headers, for this attempt and
        # the next ones: they are kept in the metadata, and a native attempt restores them.
        restored = self.client_anthropic if candidate.interface == "anthropic" else {}
        mutation = rewrite.mutation(restored)
        fields = {
            "provider": candidate.name,
            "routed_model": candidate.model,
            **{client_key(name): value for name, value in self.client_anthropic.items()},
        }
        if not self.runtime.config.listener.log_tokens:
            # usage.lua prices the answer that reaches the client: this candidate's.
            fields["price"] = price_text(candidate)
        return replies.route_request_body(
            mutation, rewrite.body, fields, self.namespace, clear_route_cache=False
        )

    def on_answer_headers(self, headers: dict[str, str]) -> bytes:
        assert self.candidate is not None
        status = int(headers.get(":status", "200"))
        if status >= 400:
            self.runtime.metrics.upstream_errors.labels(self.candidate.name, status).inc()
        # Every answer, a success too (it ends a streak of failures), for the cooldown table.
        self.runtime.record_attempt(self.candidate.name, status, headers)
        if self.translation is not None:
            encoding = headers.get("content-encoding", "")
            self.client_headers = self.translation.on_headers(status, encoding)
        if status == 400:
            self.held_status = status
            return replies.attempt_response_headers(None, {}, self.namespace, read_body=False)
        fields = (
            self._failure(str(status), headers.get("retry-after", "")) if is_failure(status) else {}
        )
        if self.translation is None:
            mutation = replies.header_mutation(None, NOT_THE_HEADS)
            if self.reads_counts(status, headers):  # this candidate's, with log_tokens
                return replies.attempt_response_headers(
                    mutation, fields, self.namespace, read_body=True
                )
            self.finished = True  # a native answer goes on without the sidecar
            return replies.attempt_response_headers(mutation, fields, self.namespace)
        mutation = replies.header_mutation(
            self.client_headers, ("content-length", "content-encoding", *NOT_THE_HEADS)
        )
        return replies.attempt_response_headers(
            mutation, fields, self.namespace, read_body=self.translation.streaming
        )

    def _failure(self, reason: str, retry_after: str) -> dict[str, str]:
        """Tell the next attempts (metadata) that this one failed, and its retry-after."""
        seconds = retry_after_seconds(retry_after, self.runtime.clock())
        fields = {failure_key(self.slot): reason}
        known = [s for s in (self.retry_after, seconds) if s is not None]
        if known:
            fields[RETRY_AFTER] = f"{min(known):.3f}".rstrip("0").rstrip(".")
        return fields

    def on_held_body(self, body: bytes) -> bytes:
        """A whole 400: marked for a retry when it says the prompt is over the window (as it
        came, or translated: a provider that gzips its answer although asked not to)."""
        self.finished = True
        translated = None if self.translation is None else self.translation.on_body(body, True)
        too_long = is_context_too_long(body) or is_context_too_long(translated or b"")
        fields = self._failure("context_too_long", "") if too_long else {}
        changes = {FAILOVER_HEADER: "context_too_long"} if too_long else {}
        if translated is None:
            return replies.held_response_body(
                replies.header_mutation(changes, NOT_THE_HEADS), None, fields, self.namespace
            )
        mutation = replies.header_mutation(
            {**self.client_headers, **changes, "content-length": str(len(translated))},
            ("content-encoding", *NOT_THE_HEADS),
        )
        return replies.held_response_body(mutation, translated, fields, self.namespace)


def failure_key(slot: str) -> str:
    """Where an attempt on `slot` that failed says why, in the request's metadata (read by
    the next attempt; a `p__` slot's Lua filter writes it too: control/envoy_config.py)."""
    return f"failed:{slot}"
