"""One HTTP exchange seen through ext_proc: a handler per phase.

Envoy opens one gRPC stream per HTTP request and sends the phases in order:
request headers, request body (BUFFERED), response headers. Each `on_*` method
takes that phase's message and returns the reply; the state they share (path,
client headers, the decision) lives on the `Exchange`.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from extproc.config import Config, Provider
from extproc.config.checks import CONTROL_CHARACTERS
from extproc.decisions import capability, kinds
from extproc.decisions.cooldown import Cooldowns
from extproc.decisions.decision import Decision, Request, Stage, decide
from extproc.decisions.effort import with_effort
from extproc.errors import GatewayError
from extproc.metrics import Metrics
from extproc.providers.chains import (
    CHAIN_HEADER,
    CHAIN_METADATA,
    EFFORT_METADATA,
    HEAD_ANSWER_HEADER,
    HEAD_BODY_METADATA,
    HEAD_METADATA,
    chain_of,
    chain_value,
    client_key,
    takes_client_auth_later,
)
from extproc.providers.upstream import (
    CLIENT_AUTH_HEADERS,
    CLUSTER_HEADER,
    AuthChange,
    auth_change,
    cluster_name,
    upstream_path,
)
from extproc.proxy import replies
from extproc.proxy.paths import is_messages, passes_through
from extproc.proxy.sessions import HEADER as SESSION_HEADER
from extproc.proxy.sessions import SessionStore
from extproc.proxy.wire import Phase
from extproc.request_json import encode_request_json
from extproc.translate import TranslationError, signatures, translator_for
from extproc.translate.response import ResponseTranslation
from extproc.translate.token_estimate import count_tokens_estimate
from extproc.translate.usage import UsageReader

log = logging.getLogger("extproc")

LOCAL_REPLY_HEADER = "x-extproc-local-reply"
"""Marks Envoy's own error replies (control/envoy_config.py): Anthropic JSON already."""
READ_HEADERS = (
    ":path",
    ":method",
    ":status",
    "content-type",
    "content-encoding",
    "content-length",
    "retry-after",
    "retry-after-ms",
    LOCAL_REPLY_HEADER,
    SESSION_HEADER,
)
"""The headers the exchange reads; Envoy forwards only these (and the key headers below)."""
ANTHROPIC_HEADERS = ("anthropic-version", "anthropic-beta")
UPSTREAM_READ_HEADERS = (*READ_HEADERS, "x-envoy-original-path", *ANTHROPIC_HEADERS)
"""What a failover attempt's handler reads: the client's path is in x-envoy-original-path
once the downstream exchange rewrote it; a failed answer's retry-after; the client's
anthropic-* headers, which a translated attempt removes and a later native one restores."""
ENVOY_FAILURES = {503: "unreachable", 504: "timeout"}
"""Envoy's own replies that mean the provider failed (control/envoy_config.py's mapper): it
could not be reached (refused, reset, no address) or stayed silent. Its others (413, its own
concurrency limit's 529, an answer too large) say nothing of the provider's health."""
GATEWAY_KEY_HEADERS = ("x-api-key", "authorization")
"""Forwarded only when gateway_keys are set: otherwise the sidecar never sees credentials."""
MODEL_NAME_MAX = 256
# `model` as the body's first key: its value (group 1) and what follows it (group 2).
_MODEL_FIRST = re.compile(rb'\s*\{\s*"model"\s*:\s*("(?:[^"\\]|\\.)*")\s*([,}])\s*')
Span = tuple[int, int]


@dataclass
class Runtime:
    """What every exchange reads: the config, the decision stages built from it, the metrics
    they count into and the cooldown table; rebuilt when the config changes, around the same
    metrics and table."""

    config: Config
    stages: tuple[Stage, ...]
    """Decision stages for Messages requests (may include the router)."""
    token_stages: tuple[Stage, ...]
    """Decision stages for count_tokens: never worth a router call."""
    metrics: Metrics
    cooldowns: Cooldowns
    """Kept across config changes (app.Sidecar): providers fail whatever the config says."""
    sessions: SessionStore
    """Each Claude Code session's latest decision, for the status line; kept across config
    changes too."""
    clock: Callable[[], float] = time.time
    """`now` for the cooldown table: seconds since the epoch (tests set their own)."""

    def record_attempt(self, entry: str, outcome: int | str, headers: Mapping[str, str]) -> None:
        """Tell the cooldown table how one attempt at provider entry `entry` ended: the
        answer's status and headers (`retry-after`, `retry-after-ms`), or the reason no answer
        came ("refused", "reset", "timeout") with no headers. Whoever sees an attempt end
        calls this: the response headers phase here, a per-attempt handler of failover."""
        max_rest = self.config.listener.cooldown_max_s
        self.cooldowns.record(entry, outcome, headers, self.clock(), max_rest)


def _is_foreign_thinking(block: Any) -> bool:
    """A thinking block Anthropic did not sign: unsigned, or signed by this gateway."""
    if not isinstance(block, dict) or block.get("type") != "thinking":
        return False
    signature = block.get("signature")
    return not signature or signatures.is_ours(signature)


def _blocks(message: Any) -> list[Any]:
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, list) else []


def without_foreign_thinking(body: dict[str, Any]) -> dict[str, Any] | None:
    """The body minus thinking blocks that another provider wrote, or None if it has none.

    An earlier turn answered by an OpenAI-format model carries thinking blocks with an empty
    signature, or one holding OpenAI's encrypted reasoning; Anthropic-format APIs reject the
    whole request over them.
    """
    messages = body.get("messages")
    if not isinstance(messages, list):
        return None
    touched = {i for i, m in enumerate(messages) if any(map(_is_foreign_thinking, _blocks(m)))}
    if not touched:
        return None
    cleaned = [
        {**m, "content": [b for b in _blocks(m) if not _is_foreign_thinking(b)]}
        if i in touched
        else m
        for i, m in enumerate(messages)
    ]
    return {**body, "messages": cleaned}


def rewrite_model(
    raw: bytes | memoryview, body: dict[str, Any], model: str, span: Span | None
) -> replies.Body | None:
    """The request body with `model` replaced, leaving every other byte as it was, as pieces;
    None when the body already asks for `model` and needs no other change (Envoy then sends
    it on as it came, and the sidecar need not send it back).

    `body` and `span` are what `_parse_body` returned. When `span` says where the only
    `model` value stands (Claude Code and the SDKs put it first), the new value is spliced
    in: the pieces are the head, the new value and a view of the rest, and nothing is copied
    until the reply is written. Any other layout is re-serialized (same JSON value, different
    whitespace), and so is a body with another provider's thinking blocks in it (they are
    dropped).
    """
    # Walking the parsed blocks costs ~2 µs at 78 KB; searching the raw bytes cost ~40 µs.
    cleaned = without_foreign_thinking(body)
    if cleaned is not None:
        return [
            encode_request_json({**full_body(raw), "messages": cleaned["messages"], "model": model})
        ]
    if body.get("model") == model:
        return None
    if span is None:
        return [encode_request_json({**full_body(raw), "model": model})]
    start, end = span
    return [bytes(raw[:start]), orjson.dumps(model), memoryview(raw)[end:]]


@dataclass
class ProviderRequest:
    """The client's request as one provider takes it: what Envoy sends in its place."""

    body: replies.Body | None
    """None: the body as it came."""
    headers: dict[str, str]
    remove: tuple[str, ...]
    add_if_absent: dict[str, str] | None
    translation: ResponseTranslation | None
    """How to translate the answer back, for a provider that speaks another API."""

    def mutation(self, headers: dict[str, str]) -> bytes:
        """The header mutation that sends it, with `headers` (a route's, a client's) set too."""
        return replies.header_mutation(
            {**headers, **self.headers}, self.remove, add_if_absent=self.add_if_absent
        )


def provider_request(
    config: Config,
    provider: Provider,
    auth: AuthChange,
    raw: bytes | memoryview,
    body: dict[str, Any],
    span: Span | None,
    client_path: str,
    effort: str | None,
) -> ProviderRequest:
    """The rewrite of a Messages request for `provider`: model, path, credentials (`auth`),
    reasoning effort, another provider's thinking blocks dropped, translation. Both the
    downstream exchange and a failover attempt (extproc/proxy/attempt.py) use it.
    """
    effortful = with_effort(full_body(raw), effort) if effort else None
    translation = None
    add_if_absent = None
    if provider.interface == "anthropic":
        if effortful is None:
            new_body = rewrite_model(raw, body, provider.upstream_model, span)  # None: same
        else:  # written whole, as a body with another provider's thinking blocks is
            cleaned = without_foreign_thinking(effortful) or effortful
            new_body = [encode_request_json({**cleaned, "model": provider.upstream_model})]
        # Its token counts are read as it passes (usage.lua, or log_tokens): compressed, they
        # could not be (Anthropic's API gzips answers a client takes gzip for).
        changes: dict[str, str] = {"accept-encoding": "identity"}
        removed: tuple[str, ...] = ()
        add_if_absent = {"anthropic-version": "2023-06-01"}
    else:
        translated, translation = translate(config, effortful or full_body(raw), provider)
        new_body = [translated]
        # We read this response, so ask for it uncompressed; Anthropic headers mean
        # nothing to an OpenAI-style API and stay with us.
        changes = {"content-type": "application/json", "accept-encoding": "identity"}
        removed = ANTHROPIC_HEADERS
    headers = {
        ":path": upstream_path(provider, client_path),
        # Envoy's convention for a rewritten path: the access log shows the client's.
        "x-envoy-original-path": client_path,
        **changes,
        **auth.set,
    }
    length: tuple[str, ...] = ()
    if new_body is not None:
        headers["content-length"] = str(sum(map(len, new_body)))
        length = ("content-length",)
    return ProviderRequest(
        new_body, headers, (*length, *auth.remove, *removed), add_if_absent, translation
    )


def translate(
    config: Config, body: dict[str, Any], provider: Provider
) -> tuple[bytes, ResponseTranslation]:
    """Anthropic Messages → Chat Completions or Responses, and how to translate the answer."""
    try:
        translator = translator_for(
            provider.interface,
            body,
            upstream_model=provider.upstream_model,
            contract=provider.contract,
            max_tokens_cap=provider.max_tokens,
            entry=provider.name,
            base_url=provider.base_url,
            access_key=provider.access_key,
        )
        translated = translator.request(body)
    except TranslationError as exc:
        raise GatewayError(exc.error_type, exc.message) from None
    return translated, ResponseTranslation(
        translator, bool(body.get("stream")), whole_max=config.listener.max_body_bytes
    )


class Exchange:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.headers: dict[str, str] = {}
        self.path = ""
        self.routed_by_headers = False
        """A path other than Messages: routed in the headers phase, its body not read."""
        self.decision: Decision | None = None
        self.translation: ResponseTranslation | None = None
        self.usage: UsageReader | None = None
        self.chained = False
        """Sent on a failover chain: the answer may be any candidate's, whose attempt
        reported it (extproc/proxy/attempt.py), so this exchange does not."""
        self.finished = False
        """Envoy needs nothing more from the sidecar for this request: the server then ends
        the gRPC stream, and Envoy carries on without it (a sidecar crash can't cut it)."""

    @property
    def body_due(self) -> bool:
        """The next message is a Messages request's body: the server reads it within budget."""
        return bool(self.headers) and self.is_messages and self.decision is None

    async def handle(self, message: Phase) -> bytes:
        """The reply (ProcessingResponse bytes) to one message of this exchange's stream."""
        if message.name == "request_headers":
            return self.on_request_headers(message.headers, message.end_of_stream)
        if message.name and not self.path:
            # Envoy sends a request's headers first. A stream that starts with anything else
            # would skip the gateway-key check, and a body's reply carries a provider key.
            raise GatewayError(
                "api_error", f"ext_proc {message.name} came before the request's headers"
            )
        if message.name == "request_body":
            return await self.on_request_body(message.body)
        if message.name == "response_headers":
            return self.on_response_headers(message.headers)
        if message.name == "response_body":
            if self.translation is not None and self.translation.compressed:
                # Inflating may take a while (up to its cap); zlib lets go of the GIL.
                return await asyncio.to_thread(
                    self.on_response_body, bytes(message.body), message.end_of_stream
                )
            return self.on_response_body(bytes(message.body), message.end_of_stream)
        raise GatewayError(
            "api_error", "unexpected ext_proc phase; check the filter's processing_mode"
        )

    def on_request_headers(self, headers: dict[str, str], end_of_stream: bool) -> bytes:
        self.headers = headers
        self.path = self.headers.get(":path", "/")
        _check_gateway_key(self.runtime.config.gateway_keys, self.headers)
        if self.is_messages:
            if self.headers.get(":method") != "POST":
                raise GatewayError("invalid_request_error", f"{self.path_only} takes POST")
            if end_of_stream:
                raise GatewayError("invalid_request_error", "the request has no body")
            _check_body_headers(self.headers)
            return replies.continue_request_headers(
                skip_response=not self.runtime.config.reads_responses
            )
        return self.pass_through()

    @property
    def namespace(self) -> str:
        """Where the decision goes in Envoy's dynamic metadata."""
        return self.runtime.config.sidecar.metadata_namespace

    @property
    def session(self) -> str:
        """Claude Code's session id, when the client sent one."""
        return self.headers.get(SESSION_HEADER, "")

    @property
    def path_only(self) -> str:
        return self.path.partition("?")[0]

    @property
    def is_messages(self) -> bool:
        return is_messages(self.path_only)

    def pass_through(self) -> bytes:
        """Paths we don't route but allow (model lists) go unchanged to Anthropic, if any."""
        config = self.runtime.config
        anthropic = next((p for p in config.providers if p.kind == "anthropic"), None)
        if anthropic is None or not passes_through(self.path_only, config.pass_through_paths):
            raise GatewayError(
                "not_found_error",
                f"The gateway does not serve {self.path_only[:200]}: it routes /v1/messages "
                "and /v1/messages/count_tokens, and passes the paths in pass_through_paths "
                "to an anthropic provider.",
            )
        auth = auth_change(anthropic)
        mutation = replies.header_mutation(
            {CLUSTER_HEADER: cluster_name(config, anthropic), **auth.set}, auth.remove
        )
        self.routed_by_headers = self.finished = True
        # The provider for the access log (no `source`: no model was decided).
        return replies.route_request_headers(mutation, {"provider": anthropic.name})

    async def on_request_body(self, raw: bytes | memoryview) -> bytes:
        if self.routed_by_headers:
            # Envoy sends this body only where the filter's config does not allow the
            # sidecar to override its processing mode.
            return replies.continue_request_body()
        body, span = _parse_body(raw)
        model = _requested_model(body)
        runtime = self.runtime
        counting = self.path_only.rstrip("/").endswith("count_tokens")
        stages = runtime.token_stages if counting else runtime.stages
        request = Request(model, body, self.headers, len(raw))
        routed = await decide(runtime.config, request, stages)
        # listener.cooldown_max_s: 0 turns cooldowns off, rests already begun included.
        cooldowns = runtime.cooldowns if runtime.config.listener.cooldown_max_s else None
        needs, now = request.facts.needs, runtime.clock()
        decision = capability.choose(runtime.config, routed, needs, cooldowns, now)
        self.decision = decision
        runtime.metrics.record(decision)
        provider = decision.provider
        metadata = decision.metadata()
        if self.session and not counting and not kinds.is_title(body):
            # The title call answers in the background: the turn's model is the one to show,
            # and the one whose prompt cache a switch throws away.
            switched_from = runtime.sessions.decided(self.session, decision)
            if switched_from:
                metadata["switched_from"] = switched_from
        # Debug only: Envoy's access log records every decision; a line per request here
        # cost ~7% of the sidecar's throughput.
        log.debug(
            "%s %s → %s (%s%s)",
            self.path_only,
            model,
            provider.model,
            decision.source,
            f", route {decision.route}" if decision.route else "",
        )
        if counting and provider.interface != "anthropic":
            self.finished = True
            estimate = count_tokens_estimate(full_body(raw))
            return replies.local_answer(estimate, metadata, self.namespace)
        effort = None if counting else decision.reasoning_effort
        trim = functools.partial(capability.worth_trying, needs=needs, cooldowns=cooldowns, now=now)
        chain = () if counting else chain_of(runtime.config, routed.provider, provider, trim)
        if len(chain) > 1:
            return self.send_on_chain(raw, body, span, chain, effort, metadata)
        rewrite = provider_request(
            runtime.config, provider, auth_change(provider), raw, body, span, self.path, effort
        )
        self.translation = rewrite.translation
        self.finished = self.translation is None and not runtime.config.listener.log_tokens
        if self.finished and not counting:
            metadata.update(self.usage_lua_fields(provider))
        mutation = rewrite.mutation({CLUSTER_HEADER: cluster_name(runtime.config, provider)})
        return replies.route_request_body(mutation, rewrite.body, metadata, self.namespace)

    def send_on_chain(
        self,
        raw: bytes | memoryview,
        body: dict[str, Any],
        span: Span | None,
        chain: tuple[Provider, ...],
        effort: str | None,
        metadata: dict[str, Any],
    ) -> bytes:
        """Send the request on its failover chain's route (providers/chains.py).

        The head is rewritten here, as without failover, so a request that never fails over
        costs what it did: a native head's answer does not wait on the sidecar, and a
        translated head's answer is translated here. A translated head's body is left as the
        client sent it, though: Envoy keeps that body for each attempt, and a later
        Anthropic-format candidate needs it. Its translation goes in the metadata, where the
        head's Lua filter puts it in the body's place (control/chain_head.lua).
        """
        assert self.decision is not None
        config = self.runtime.config
        head = chain[0]
        self.chained = True
        chain_header = {CHAIN_HEADER: chain_value(config, chain, body.get("stream") is True)}
        decided = {
            **metadata,
            CHAIN_METADATA: chain_header[CHAIN_HEADER],
            HEAD_METADATA: head.name,
            EFFORT_METADATA: effort or "",
        }
        if takes_client_auth_later(chain):
            # Kept where only our own handlers read them (never logged): the head's rewrite
            # replaces them, and a later attempt may need them (proxy/attempt.py).
            kept = {h: v for h in CLIENT_AUTH_HEADERS if (v := self.headers.get(h))}
            decided.update({client_key(h): v for h, v in kept.items()})
        rewrite = provider_request(
            config, head, auth_change(head), raw, body, span, self.path, effort
        )
        self.translation = rewrite.translation
        self.finished = self.translation is None and not config.listener.log_tokens
        if not config.listener.log_tokens:
            # A later candidate's attempt writes its own price (proxy/attempt.py).
            decided.update(self.usage_lua_fields(head if self.translation is None else None))
        if self.translation is None:
            if config.listener.log_tokens:
                # No body to put in place, but the head's Lua filter marks its answer all the
                # same: its counts are read here, a later candidate's on its own attempt.
                decided[HEAD_BODY_METADATA] = ""
            return replies.route_request_body(
                rewrite.mutation(chain_header), rewrite.body, decided, self.namespace
            )
        # The client's anthropic-* headers go with its body, for a later native candidate.
        kept = {n: v for n in ANTHROPIC_HEADERS if (v := self.headers.get(n))}
        decided.update({client_key(n): v for n, v in kept.items()})
        decided[HEAD_BODY_METADATA] = b"".join(rewrite.body or ())
        # The client's body, and its length, stay for the router; the Lua filter sets the
        # translation's.
        headers = {k: v for k, v in rewrite.headers.items() if k != "content-length"}
        remove = tuple(h for h in rewrite.remove if h != "content-length")
        mutation = replies.header_mutation({**chain_header, **headers}, remove)
        return replies.route_request_body(mutation, None, decided, self.namespace)

    def on_response_headers(self, headers: dict[str, str]) -> bytes:
        status = int(headers.get(":status", "200"))
        local = LOCAL_REPLY_HEADER in headers
        heads = HEAD_ANSWER_HEADER in headers
        if self.chained and not heads:
            # A later candidate's answer (or Envoy's own after the last): its own attempt
            # translated, counted and reported it.
            self.finished = True
            return replies.continue_response_headers()
        unmark = (HEAD_ANSWER_HEADER,) if heads else ()
        if self.decision is not None:
            provider = self.decision.provider.name
            if status >= 400:
                self.runtime.metrics.upstream_errors.labels(provider, status).inc()
            outcome = ENVOY_FAILURES.get(status) if local else status
            if outcome is not None:
                self.runtime.record_attempt(provider, outcome, headers)
        if local:
            self.finished = True
            return replies.continue_response_headers()  # Envoy's own error, in Anthropic's format
        if self.translation is None:
            mutation = replies.header_mutation(None, unmark) if unmark else None
            if self.reads_counts(status, headers):
                return replies.want_response_body(mutation or b"", streamed=True)
            self.finished = True
            return replies.continue_response_headers(mutation)
        client_headers = self.translation.on_headers(status, headers.get("content-encoding", ""))
        removed = ("content-length", "content-encoding", *unmark)
        mutation = replies.header_mutation(client_headers, removed)
        return replies.want_response_body(mutation, self.translation.streaming)

    def reads_counts(self, status: int, headers: dict[str, str]) -> bool:
        """Whether this exchange reads a native answer's token counts (`listener.log_tokens`,
        a 2xx): then its body comes, and `usage` reads it."""
        if status >= 300 or not self.runtime.config.listener.log_tokens:
            return False
        self.usage = UsageReader("text/event-stream" in headers.get("content-type", ""))
        return True

    def on_response_body(self, chunk: bytes, end_of_stream: bool) -> bytes:
        self.finished = end_of_stream
        if self.usage is not None:
            self.usage.feed(chunk)
            counts = self.usage.finish() if end_of_stream else {}
            counts = self.answered(counts)
            return replies.pass_response_body(counts, self.namespace)
        if self.translation is None:
            raise GatewayError("api_error", "unexpected response body; check processing_mode")
        body = self.translation.on_body(chunk, end_of_stream)
        usage = self.answered(self.translation.usage()) if end_of_stream else {}
        if self.translation.client_status != self.translation.status:
            # A whole (buffered) answer whose translation changed its status: a 2xx body
            # holding an error. Headers have not left Envoy yet, so answer in its place.
            status = self.translation.client_status
            return replies.answer_instead(status, body, usage, self.namespace)
        return replies.replace_response_body(body, usage, self.namespace)

    def usage_lua_fields(self, priced: Provider | None) -> dict[str, str]:
        """What Envoy's Lua filter (control/usage.lua) reads to count an answer the sidecar
        does not read: the price of the model answering (`priced`), and the session whose
        record it reports the answer to."""
        fields = {"price": price_text(priced)} if priced is not None else {}
        if self.session:
            fields["session"] = self.session
        return fields

    @property
    def answering(self) -> tuple[Provider, str] | None:
        """The provider whose answer this exchange reads, and the route that chose it."""
        return (self.decision.provider, self.decision.route) if self.decision else None

    def answered(self, usage: dict[str, int]) -> dict[str, Any]:
        """An answer's token counts (known at its end) for the access log, with their cost in
        USD where both the counts and the routed model's price are known; the cost is counted
        in the metrics, and both go to the session's record."""
        answering = self.answering
        if not usage or answering is None:
            return usage
        provider, route = answering
        cost = None
        if provider.price is not None:
            cost = provider.price.cost(usage)
            self.runtime.metrics.cost.labels(provider.name, route).inc(cost)
        if self.session:
            self.runtime.sessions.answered(self.session, usage, cost)
        return usage if cost is None else {**usage, "cost_usd": round(cost, 8)}


def price_text(provider: Provider) -> str:
    """The routed model's prices for usage.lua: USD per million tokens as "input,output,
    cache_read,cache_write"; empty when unknown (counts without a cost)."""
    price = provider.price
    if price is None:
        return ""
    return ",".join(map(str, (price.input, price.output, price.cache_read, price.cache_write)))


def _check_gateway_key(keys: tuple[str, ...], headers: dict[str, str]) -> None:
    """With gateway_keys configured, only callers holding one get past the headers phase.

    The key may come in either header: Claude Code sends both when both ANTHROPIC_API_KEY
    and ANTHROPIC_AUTH_TOKEN are set, the gateway key in one and any other key in the other.
    """
    if not keys:
        return
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    bearer = token.strip() if scheme.lower() == "bearer" else ""  # schemes are case-insensitive
    presented = [p.encode() for p in (headers.get("x-api-key", ""), bearer) if p]
    if not any(hmac.compare_digest(p, key.encode()) for p in presented for key in keys):
        raise GatewayError(
            "authentication_error",
            "This gateway needs one of its keys in x-api-key or Authorization: Bearer.",
        )


def _check_body_headers(headers: dict[str, str]) -> None:
    """Refuse what we would misread: a body that isn't plain JSON.

    A compressed body is refused rather than inflated here: no Anthropic client compresses
    requests, and not inflating leaves no room for a zip bomb.
    """
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":
        message = f"Content-Encoding {encoding!r} is not accepted; send the JSON body uncompressed."
        raise GatewayError("invalid_request_error", message, status=415)
    media_type = headers.get("content-type", "application/json").partition(";")[0]
    if media_type.strip().lower() != "application/json":
        message = f"content-type must be application/json, not {media_type.strip()!r}."
        raise GatewayError("invalid_request_error", message, status=415)


def _requested_model(body: dict[str, Any]) -> str:
    """The requested model, refused before any routing if it could corrupt a header or a log
    line (CR/LF) or is too long to be a model name (it is echoed into both)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise GatewayError("invalid_request_error", "model: field required (a string)")
    if len(model) > MODEL_NAME_MAX or CONTROL_CHARACTERS.search(model):
        message = f"model: must be at most {MODEL_NAME_MAX} characters, without control characters"
        raise GatewayError("invalid_request_error", message)
    return model


class _Tool(msgspec.Struct):
    """A tool as routing reads it: its `type` (set for Anthropic's own tools) and its `name`
    (rules may match it)."""

    type: Any = None
    name: Any = None


class _RoutingFields(msgspec.Struct):
    """The fields a routing decision reads. The rest (Claude Code's tool schemas and system
    prompt: 70 of 77 KB on a first turn) is checked as JSON but never built as objects:
    `system` and `thinking` are kept raw, decoded only for a rule that asks what kind of
    request it is (extproc.decisions.kinds)."""

    model: Any = msgspec.UNSET
    messages: Any = msgspec.UNSET
    tools: list[_Tool] | msgspec.UnsetType | None = msgspec.UNSET
    output_config: Any = msgspec.UNSET
    system: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    thinking: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    max_tokens: Any = msgspec.UNSET
    stream: Any = msgspec.UNSET
    """Picks the failover route: only a streamed answer's headers come before it is written."""


_ROUTING_FIELDS = msgspec.json.Decoder(_RoutingFields)


def _parse_body(raw: bytes | memoryview) -> tuple[dict[str, Any], Span | None]:
    """The routing fields of the body, as a dict with the body's own shape, and the span of
    its `model` value when a splice can rewrite it.

    A splice is safe when `model` is the first key and the only one: JSON parsers keep the
    last of two equal keys, so a second one would choose the model the provider runs. To
    know, one scan reads the body after its first key. 38 µs at 78 KB, where parsing the
    whole body costs 100 µs.
    """
    match = _MODEL_FIRST.match(raw)
    span = None
    document = raw
    if match and (match[2] == b"}" or raw[match.end() : match.end() + 1] == b'"'):
        span = match.span(1)
        document = b"{" + raw[match.start(2) + (match[2] == b",") :]
    try:
        fields = _ROUTING_FIELDS.decode(document)
        first_model = msgspec.json.decode(raw[span[0] : span[1]]) if span else msgspec.UNSET
    except msgspec.ValidationError as exc:
        whole = "- at `$" not in str(exc)  # the body itself, not one of its fields
        message = "must be a JSON object." if whole else f"is not valid: {exc}"
        raise GatewayError("invalid_request_error", f"The request body {message}") from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        message = f"The request body is not valid JSON: {exc}"
        raise GatewayError("invalid_request_error", message) from None
    body = {
        name: value
        for name in _RoutingFields.__struct_fields__
        if (value := getattr(fields, name)) is not msgspec.UNSET
    }
    if isinstance(fields.tools, list):
        body["tools"] = [{"type": tool.type, "name": tool.name} for tool in fields.tools]
    if first_model is not msgspec.UNSET:
        if "model" in body:
            span = None  # `model` twice: the provider would read the second
        else:
            body["model"] = first_model
    if not isinstance(body.get("messages", []), list):
        raise GatewayError("invalid_request_error", "messages: must be a list")
    return body, span


def full_body(raw: bytes | memoryview) -> dict[str, Any]:
    """The whole body, for the paths that rebuild it (translation, token counts, rewrites
    that can't splice). `raw` already passed `_parse_body`, so it is a JSON object."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:  # JSON that msgspec accepts and orjson does not
        message = f"The request body is not valid JSON: {exc}"
        raise GatewayError("invalid_request_error", message) from None
