"""OpenAI Chat Completions answers as test data: one answer, streamed and non-streamed.

`Answer` describes what a model said; `chunks` cuts it into stream chunks the way OpenAI-style
servers do (role-only first chunk, small content pieces, tool calls by index, finish_reason,
usage-only last chunk), `sse` frames them with a choice of line endings and `data:` spacing,
and `completion` is the same answer as a non-streamed `chat.completion`. `RECORDED` holds
streams written out byte for byte in the shapes providers send (hand-written from their
documented formats: no network here to capture real ones), with framing variations mixed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

JSON = dict[str, Any]


@dataclass(frozen=True)
class Call:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Answer:
    text: str = ""
    reasoning: str = ""
    calls: tuple[Call, ...] = ()
    finish_reason: str = "stop"
    usage: JSON | None = field(
        default_factory=lambda: {
            "prompt_tokens": 1200,
            "completion_tokens": 42,
            "total_tokens": 1242,
            "prompt_tokens_details": {"cached_tokens": 1024},
        }
    )
    reasoning_key: str = "reasoning_content"


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _chunk(delta: JSON | None, finish: str | None = None, **extra: Any) -> JSON:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {
        "id": "chatcmpl-abc123",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-test",
        "choices": choices,
        **extra,
    }


def chunks(
    answer: Answer,
    *,
    size: int = 3,
    interleave: bool = False,
    usage: str = "empty",
) -> list[JSON]:
    """Stream chunks. `interleave` alternates the argument fragments of parallel calls;
    `usage` is "empty" (a last chunk with choices []), "null" (choices null), "inline" (on the
    finish chunk) or "none"."""
    out = [_chunk({"role": "assistant", "content": ""})]
    out += [_chunk({answer.reasoning_key: p}) for p in _pieces(answer.reasoning, size)]
    out += [_chunk({"content": p}) for p in _pieces(answer.text, size)]
    heads = [
        {"index": i, "id": c.id, "type": "function", "function": {"name": c.name, "arguments": ""}}
        for i, c in enumerate(answer.calls)
    ]
    tails = [
        [{"index": i, "function": {"arguments": p}} for p in _pieces(c.arguments, size)]
        for i, c in enumerate(answer.calls)
    ]
    if interleave:
        out += [_chunk({"tool_calls": [h]}) for h in heads]
        longest = max((len(t) for t in tails), default=0)
        for k in range(longest):
            out += [_chunk({"tool_calls": [t[k]]}) for t in tails if k < len(t)]
    else:
        for head, tail in zip(heads, tails, strict=True):
            out += [_chunk({"tool_calls": [head]}), *(_chunk({"tool_calls": [f]}) for f in tail)]
    finish = _chunk({}, answer.finish_reason)
    if usage == "inline" and answer.usage:
        finish["usage"] = answer.usage
    out.append(finish)
    if usage == "empty" and answer.usage:
        out.append(_chunk(None, usage=answer.usage))
    elif usage == "null" and answer.usage:
        out.append({**_chunk(None, usage=answer.usage), "choices": None})
    return out


def sse(items: list[JSON], *, newline: str = "\n", space: bool = True, done: bool = True) -> bytes:
    """Frame chunks as SSE, with a keep-alive comment first as some proxies add."""
    prefix = b"data: " if space else b"data:"
    nl = newline.encode()
    out = [b": keep-alive" + nl + nl]
    out += [prefix + orjson.dumps(item) + nl + nl for item in items]
    if done:
        out.append(prefix + b"[DONE]" + nl + nl)
    return b"".join(out)


def completion(answer: Answer) -> JSON:
    """The same answer, non-streamed."""
    message: JSON = {"role": "assistant", "content": answer.text or None}
    if answer.reasoning:
        message[answer.reasoning_key] = answer.reasoning
    if answer.calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in answer.calls
        ]
    body: JSON = {
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-test",
        "choices": [{"index": 0, "message": message, "finish_reason": answer.finish_reason}],
    }
    if answer.usage:
        body["usage"] = answer.usage
    return body


BASH = Call("call_bash01", "Bash", '{"command": "echo hi there", "description": "say hi"}')
READ = Call("call_read02", "Read", '{"file_path": "/tmp/x.py", "limit": 20}')

ANSWERS: dict[str, Answer] = {
    "text": Answer(text="Hello! Here is a function:\n\n```python\ndef f(s): return s[::-1]\n```"),
    "tool": Answer(text="Let me run it.", calls=(BASH,), finish_reason="tool_calls"),
    "parallel": Answer(calls=(BASH, READ), finish_reason="tool_calls"),
    "reasoning": Answer(reasoning="The user wants a greeting.", text="Hi there."),
    "reasoning-key": Answer(reasoning="Think.", text="Done.", reasoning_key="reasoning"),
    "unicode": Answer(text="naïve café — 日本語 😀🚀 مرحبا"),
    "length": Answer(text="truncated because", finish_reason="length"),
    "no-usage": Answer(text="no usage here", usage=None),
}

# Provider-shaped streams (field sets, chunk order), with framing variations mixed in.
RECORDED: dict[str, bytes] = {
    # OpenAI: role chunk with refusal null, obfuscation fields, usage chunk with choices [].
    "openai-text": (
        b'data: {"id":"chatcmpl-Bx1","object":"chat.completion.chunk","created":1754000000,'
        b'"model":"gpt-4.1-2025-04-14","service_tier":"default","system_fingerprint":"fp_1",'
        b'"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},'
        b'"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"xY"}\n\n'
        b'data: {"id":"chatcmpl-Bx1","object":"chat.completion.chunk","created":1754000000,'
        b'"model":"gpt-4.1-2025-04-14","choices":[{"index":0,"delta":{"content":"Hi"},'
        b'"logprobs":null,"finish_reason":null}],"usage":null}\n\n'
        b'data: {"id":"chatcmpl-Bx1","object":"chat.completion.chunk","created":1754000000,'
        b'"model":"gpt-4.1-2025-04-14","choices":[{"index":0,"delta":{"content":" there \xc3\xa9"},'
        b'"logprobs":null,"finish_reason":null}],"usage":null}\n\n'
        b'data: {"id":"chatcmpl-Bx1","object":"chat.completion.chunk","created":1754000000,'
        b'"model":"gpt-4.1-2025-04-14","choices":[{"index":0,"delta":{},"logprobs":null,'
        b'"finish_reason":"stop"}],"usage":null}\n\n'
        b'data: {"id":"chatcmpl-Bx1","object":"chat.completion.chunk","created":1754000000,'
        b'"model":"gpt-4.1-2025-04-14","choices":[],"usage":{"prompt_tokens":19,'
        b'"completion_tokens":3,"total_tokens":22,"prompt_tokens_details":{"cached_tokens":0,'
        b'"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}\n\n'
        b"data: [DONE]\n\n"
    ),
    # OpenAI parallel tool calls: each call's fragments in turn, arguments start "".
    "openai-parallel-tools": (
        b'data: {"id":"c2","choices":[{"index":0,"delta":{"role":"assistant","content":null},'
        b'"finish_reason":null}]}\n\n'
        b'data: {"id":"c2","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_A",'
        b'"type":"function","function":{"name":"Bash","arguments":""}}]},"finish_reason":null}]}\n\n'
        b'data: {"id":"c2","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":'
        b'{"arguments":"{\\"command\\": \\"ls\\"}"}}]},"finish_reason":null}]}\n\n'
        b'data: {"id":"c2","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_B",'
        b'"type":"function","function":{"name":"Read","arguments":""}}]},"finish_reason":null}]}\n\n'
        b'data: {"id":"c2","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":'
        b'{"arguments":"{\\"file_path\\":"}}]},"finish_reason":null}]}\n\n'
        b'data: {"id":"c2","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":'
        b'{"arguments":" \\"/a\\"}"}}]},"finish_reason":null}]}\n\n'
        b'data: {"id":"c2","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}\n\n'
        b'data: {"id":"c2","choices":[],"usage":{"prompt_tokens":50,"completion_tokens":20,'
        b'"total_tokens":70}}\n\n'
        b"data: [DONE]\n\n"
    ),
    # DeepSeek: reasoning_content then content, usage on the finish chunk, \r\n endings.
    "deepseek-reasoning": (
        b'data: {"id":"d1","choices":[{"index":0,"delta":{"role":"assistant","content":null,'
        b'"reasoning_content":""},"finish_reason":null}]}\r\n\r\n'
        b'data: {"id":"d1","choices":[{"index":0,"delta":{"content":null,"reasoning_content":'
        b'"Hmm \xe2\x80\x94 think"},"finish_reason":null}]}\r\n\r\n'
        b'data: {"id":"d1","choices":[{"index":0,"delta":{"content":"Answer \xf0\x9f\x98\x80",'
        b'"reasoning_content":null},"finish_reason":null}]}\r\n\r\n'
        b'data: {"id":"d1","choices":[{"index":0,"delta":{"content":"","reasoning_content":null},'
        b'"finish_reason":"stop"}],"usage":{"prompt_tokens":30,"completion_tokens":9,'
        b'"total_tokens":39,"prompt_tokens_details":{"cached_tokens":16},'
        b'"prompt_cache_hit_tokens":16,"prompt_cache_miss_tokens":14}}\r\n\r\n'
        b"data: [DONE]\r\n\r\n"
    ),
    # Gemini's OpenAI endpoint: whole tool calls in one chunk, finish "stop", `data:` spacing
    # varies by proxy (here none), no [DONE] before the connection closes.
    "gemini-tools-nospace": (
        b'data:{"id":"g1","choices":[{"index":0,"delta":{"role":"assistant","tool_calls":['
        b'{"index":0,"id":"fc_1","type":"function","function":{"name":"Bash",'
        b'"arguments":"{\\"command\\":\\"pwd\\"}"}},{"index":1,"id":"fc_2","type":"function",'
        b'"function":{"name":"Read","arguments":"{\\"file_path\\":\\"/b\\"}"}}]},'
        b'"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":7,'
        b'"total_tokens":19}}\n\n'
    ),
    # Ollama-shaped: usage in the finish chunk, `reasoning` key; \r endings to test the parser.
    "ollama-cr": (
        b'data: {"id":"o1","choices":[{"index":0,"delta":{"role":"assistant","content":"",'
        b'"reasoning":"plan"},"finish_reason":null}]}\r\r'
        b'data: {"id":"o1","choices":[{"index":0,"delta":{"role":"assistant","content":"ok"},'
        b'"finish_reason":null}]}\r\r'
        b'data: {"id":"o1","choices":[{"index":0,"delta":{"role":"assistant","content":""},'
        b'"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2,'
        b'"total_tokens":7}}\r\r'
        b"data: [DONE]\r\r"
    ),
    # Gemini 3: the first call of a step carries its thought signature in extra_content.
    "gemini3-signature": (
        b'data: {"id":"g3","choices":[{"index":0,"delta":{"role":"assistant","tool_calls":['
        b'{"index":0,"id":"fc_a","type":"function","function":{"name":"Bash",'
        b'"arguments":"{\\"command\\":\\"ls\\"}"},"extra_content":{"google":'
        b'{"thought_signature":"CiQBcsjafT+sig/A=="}}},{"index":1,"id":"fc_b","type":"function",'
        b'"function":{"name":"Read","arguments":"{\\"file_path\\":\\"/c\\"}"}}]},'
        b'"finish_reason":"tool_calls"}]}\n\n'
        b'data: {"id":"g3","choices":[],"usage":{"prompt_tokens":40,"completion_tokens":9,'
        b'"total_tokens":49}}\n\n'
        b"data: [DONE]\n\n"
    ),
    # Ollama: parallel calls all at index 0, told apart only by their ids.
    "ollama-index-reuse": (
        b'data: {"id":"o2","choices":[{"index":0,"delta":{"role":"assistant","content":"",'
        b'"tool_calls":[{"id":"call_x1","index":0,"type":"function","function":{"name":"Bash",'
        b'"arguments":"{\\"command\\":\\"pwd\\"}"}}]},"finish_reason":null}]}\n\n'
        b'data: {"id":"o2","choices":[{"index":0,"delta":{"role":"assistant","content":"",'
        b'"tool_calls":[{"id":"call_x2","index":0,"type":"function","function":{"name":"Read",'
        b'"arguments":"{\\"file_path\\":\\"/d\\"}"}}]},"finish_reason":null}]}\n\n'
        b'data: {"id":"o2","choices":[{"index":0,"delta":{"role":"assistant","content":""},'
        b'"finish_reason":"stop"}],"usage":{"prompt_tokens":8,"completion_tokens":6,'
        b'"total_tokens":14}}\n\n'
        b"data: [DONE]\n\n"
    ),
    # A server that gives each chunk of one call a fresh id (only the first names the function).
    "id-changes-mid-call": (
        b'data: {"id":"p1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c_A",'
        b'"type":"function","function":{"name":"Bash","arguments":""}}]},"finish_reason":null}]}\n\n'
        b'data: {"id":"p1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c_B",'
        b'"function":{"arguments":"{\\"command\\":"}}]},"finish_reason":null}]}\n\n'
        b'data: {"id":"p1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c_C",'
        b'"function":{"arguments":"\\"ls\\"}"}}]},"finish_reason":"tool_calls"}]}\n\n'
        b"data: [DONE]\n\n"
    ),
}
