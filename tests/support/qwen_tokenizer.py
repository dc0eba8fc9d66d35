"""Arch-Router's own tokenizer (Qwen2.5's), built at test and benchmark time.

Arch-Router-1.5B is a Qwen2.5-1.5B fine-tune and uses Qwen2.5's tokenizer unchanged. Its BPE
ranks ship in the ``dashscope`` package (``dashscope/resources/qwen.tiktoken``, 151,643
tokens, the same ids as Qwen2's ``vocab.json``); Qwen's vocabulary is never committed here.
To it we add what the Hugging Face tokenizer adds: NFC normalisation and Qwen2's
pre-tokenizer split (transformers' ``Qwen2Tokenizer``), the 22 special and added tokens of
Qwen2.5 at ids 151,643-151,664, and Qwen2.5's chat template.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from extproc.control.router_convert import convert
from tests.support.build_once import build_root, built_once

# Qwen2.5's added tokens, in id order from 151643 (tokenizer_config.json of Qwen2.5).
ADDED_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)
NOT_SPECIAL = {"<tool_call>", "</tool_call>"}
FIRST_ADDED_ID = 151643

# Qwen2.5-Instruct's chat template (tool-calling branches included), as Arch-Router ships it.
CHAT_TEMPLATE = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""


def tiktoken_path() -> Path:
    """``qwen.tiktoken`` inside the installed dashscope package (found without importing it)."""
    spec = importlib.util.find_spec("dashscope")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the dashscope package is not installed: pip install -e '.[test]'")
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: this dashscope release does not ship it")
    return path


def build_qwen_tokenizer(out: str | Path) -> Path:
    """Save Qwen2.5's tokenizer (tokenizer.json, config, chat template) to ``out``, once."""
    out = Path(out)
    if (out / "tokenizer.json").is_file():
        return out
    from tokenizers import AddedToken
    from transformers.convert_slow_tokenizer import TikTokenConverter
    from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

    vocab, merges = TikTokenConverter().extract_vocab_merges_from_model(str(tiktoken_path()))
    if len(vocab) != FIRST_ADDED_ID:
        raise ValueError(f"qwen.tiktoken holds {len(vocab)} tokens, not {FIRST_ADDED_ID}")
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token=ADDED_TOKENS[0],  # the constructor adds it first: id 151643
        pad_token=ADDED_TOKENS[0],
    )
    tokenizer.add_tokens(
        [AddedToken(t, special=t not in NOT_SPECIAL, normalized=False) for t in ADDED_TOKENS]
    )
    ids = tokenizer.convert_tokens_to_ids(list(ADDED_TOKENS))
    if ids != list(range(FIRST_ADDED_ID, FIRST_ADDED_ID + len(ADDED_TOKENS))):
        raise ValueError(f"added tokens landed at {ids}")
    tokenizer.eos_token = "<|im_end|>"  # Qwen2.5-Instruct's, as generation stops on it
    tokenizer.chat_template = CHAT_TEMPLATE
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(out))
    list_added_tokens_in_config(out)
    return out


def list_added_tokens_in_config(out: Path) -> None:
    """Write the added tokens into tokenizer_config.json (`added_tokens_decoder`), as
    Qwen2.5's own holds them and transformers 5's `save_pretrained` does not.

    Without them, every load of the tokenizer parses the 18 MB tokenizer.json once more in
    Python to find them (a second of CPU); they are that file's own `added_tokens`."""
    config_file = out / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    added = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))["added_tokens"]
    config["added_tokens_decoder"] = {str(token.pop("id")): token for token in added}
    config_file.write_text(
        json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def session_root(tmp_path_factory: Any) -> Path:
    """Where this session's Qwen files go (tests/support/build_once.py)."""
    return build_root(tmp_path_factory, "qwen-router", Path(__file__))


def session_qwen_dir(tmp_path_factory: Any) -> Path:
    """A router directory with Qwen2.5's tokenizer, for this pytest session (built once)."""
    with built_once(session_root(tmp_path_factory)) as root:
        return build_qwen_router_dir(root)


def build_qwen_router_dir(cache_dir: str | Path) -> Path:
    """A one-layer random Qwen2 over Qwen's whole vocabulary, with its tokenizer, converted.

    Its answers mean nothing; it lets every tokenizer-dependent path of ``ArchRouter``
    (prompt split, answer trie, window budget) run on the tokenizer Arch-Router really uses.
    """
    cache = Path(cache_dir)
    out = cache / "ct2"
    if (out / "model.bin").is_file():
        return out  # before importing torch: seconds that a cached model does not need
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    src = build_qwen_tokenizer(cache / "hf")
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=151936,  # Arch-Router's: the 151,665 tokens padded
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=32768,
        tie_word_embeddings=True,
        eos_token_id=151645,
        pad_token_id=FIRST_ADDED_ID,
    )
    Qwen2ForCausalLM(config).save_pretrained(str(src))
    return convert(str(src), out, quantization="float32", force=True)
