"""Build a tiny random Qwen2 model, convert it with the real converter, and cache it.

The router's tests need a real model on the same code path as Arch-Router (transformers
checkpoint → ``ct2-transformers-converter`` → ``ctranslate2.Generator`` + the tokenizer),
not a fake. Weights are random, except that :func:`steer` wires a few token-to-token
transitions so that free greedy decoding really writes ``{"route": "code_…"}`` answers.
"""

from __future__ import annotations

import itertools
import json
import random
import shutil
from pathlib import Path
from typing import Any

from extproc.control.router_convert import convert
from extproc.decisions.router.prompt import FORMAT_PROMPT, TASK_INSTRUCTION, render_prompt
from tests.support.build_once import build_root, built_once

# Qwen2's pre-tokenizer split (tokenizer.json of Qwen2.5), so token boundaries behave alike.
QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Qwen2.5's chat template without the tool-calling branches: a default system message when
# none is given, ChatML turns, and the generation prompt.
CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. "
    "You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

ROUTES = [
    ("code_generation", "generating new code snippets, functions, or boilerplate"),
    ("code_review", "reviewing, explaining or understanding existing code"),
    ("bug_fixing", "finding and fixing bugs, errors and failing tests"),
    ("general_chat", "general questions and conversation not about code"),
]
# The two routes steer() makes the model choose between, depending on the conversation.
STEERED = ("code_generation", "code_review")

_CORPUS = [
    TASK_INSTRUCTION,
    FORMAT_PROMPT,
    *(json.dumps({"route": name}) for name, _ in ROUTES),
    json.dumps([{"name": n, "description": d} for n, d in ROUTES]),
    json.dumps([{"role": "user", "content": "write a python function that reverses a string"}]),
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
    "explain what a python decorator is in one sentence. run echo hi there. "
    "The quick brown fox jumps over the lazy dog. Please fix the failing test in parser.py.",
]


def train_tokenizer(out: Path, texts: list[str], vocab_size: int) -> None:
    """A byte-level BPE with Qwen2's pre-tokenizer split, ChatML specials and chat template."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(out))


def _sample_windows(count: int) -> list[list[dict[str, str]]]:
    rng = random.Random(7)
    words = ["fix", "the", "bug", "write", "code", "review", "explain", "test", "é", "日本"]
    roles = ["user", "assistant"]
    return [
        [
            {"role": rng.choice(roles), "content": " ".join(rng.choices(words, k=n))}
            for n in rng.choices(range(1, 40), k=rng.randint(1, 3))
        ]
        for _ in range(count)
    ]


def steer(model: Any, tokenizer: Any) -> None:
    """Wire ``assistant\\n`` → ``{"route": "code`` → (``_generation`` | ``_review``) ``"}``.

    Every layer's output is scaled down so the last hidden state is mostly the current
    token's embedding (a bigram model). lm_head rows of the wired next tokens point along the
    current token's (orthonormalised) embedding. The two steered names then tie, and the tie
    is broken along the direction in which the hidden state after ``code`` varies most across
    conversations, centred so that each name wins for about half of them.
    """
    import torch

    def ids(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    answers = [ids(json.dumps({"route": name})) for name in STEERED]
    shared = next(i for i, (a, b) in enumerate(zip(*answers, strict=False)) if a != b)
    chain = [ids("assistant\n")[-1], *answers[0][:shared]]
    edges = set(itertools.pairwise(chain))
    for seq in answers:
        edges |= set(itertools.pairwise([chain[-1], *seq[shared:], ids("<|im_end|>")[0]]))

    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.mul_(0.15)
            layer.mlp.down_proj.weight.mul_(0.15)
        emb, head = model.model.embed_tokens.weight, model.lm_head.weight
        sources = sorted({a for a, _ in edges})
        basis, _ = torch.linalg.qr(torch.randn(emb.shape[1], len(sources)))
        for i, token in enumerate(sources):
            emb[token] = basis[:, i] * 4
        for _, b in edges:
            head[b] = 0
        for a, b in edges:
            head[b] += basis[:, sources.index(a)] * 6

        prefix = tokenizer.decode(chain[1:])
        prompts = [render_prompt(tokenizer, ROUTES, w) + prefix for w in _sample_windows(48)]
        hidden = torch.stack(
            [model.model(torch.tensor([ids(p)])).last_hidden_state[0, -1] for p in prompts]
        )
        mean = hidden.mean(0)
        # Orthogonal to every wired embedding, so the chain positions are left alone.
        free = hidden - mean - (hidden - mean) @ basis @ basis.T
        direction = torch.linalg.svd(free, full_matrices=False).Vh[0]
        projections = hidden @ direction
        scale = 3 / float(projections.std())
        tie_break = scale * (direction - float(projections.median()) * mean / mean.dot(mean))
        head[answers[0][shared]] += tie_break
        head[answers[1][shared]] -= tie_break


def session_model_dir(tmp_path_factory: Any) -> Path:
    """The tiny model for this pytest session: built by the first module that asks (once for
    every session sharing ``EXTPROC_TINY_MODEL_CACHE``)."""
    with built_once(build_root(tmp_path_factory, "tiny-router", Path(__file__))) as folder:
        return build_tiny_model(folder)


def build_tiny_model(cache_dir: str | Path) -> Path:
    """Return a converted tiny model directory under ``cache_dir``, building it once."""
    cache = Path(cache_dir)
    out = cache / "tiny-arch-router-ct2"
    if (out / "model.bin").is_file():
        return out  # before importing torch: seconds that a cached model does not need
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    src = cache / "tiny-arch-router-hf"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    train_tokenizer(src, _CORPUS * 4, vocab_size=700)
    tokenizer = AutoTokenizer.from_pretrained(str(src))
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )
    model = Qwen2ForCausalLM(config)
    steer(model, tokenizer)
    model.save_pretrained(str(src))
    return convert(str(src), out, quantization="float32", force=True)
