"""Arch-Router on CTranslate2: load the model, build prompts, decide routes.

Fast path (mode="constrained"): the route-config part of the prompt is CTranslate2's
``static_prompt`` (its KV cache is computed once per route config), the answer prefix
``{"route": "`` is forced, and the model only chooses where candidate names differ, in as few
steps as their shared prefixes need. mode="greedy" decodes freely and parses the text, as the
model card does; it is the reference the fast path is tested against.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ctranslate2
import numpy as np

from extproc.config import ROUTER_MODES
from extproc.decisions.router.decoding import OTHER, AnswerTrie, TrieNode, answer_text, parse_route
from extproc.decisions.router.prompt import Conversation, Routes, render_prompt, split_prompt

# On a GPU, bfloat16 (float16 where the GPU lacks it) beat the int8 variants on an H200.
_GPU_COMPUTE_TYPES = ("bfloat16", "float16")
FREE_SLACK_TOKENS = 8
"""Greedy mode's room beyond the longest candidate answer: a ```json fence around it."""
_ROUTE_CACHE_SIZE = 8
_END_TOKENS = ("<|im_end|>", "<|endoftext|>")


class RouterModelError(Exception):
    """The router model directory is missing, incomplete or unloadable."""


@dataclass(frozen=True)
class _RouteConfig:
    """Everything derived from one route config: computed once, reused for every request."""

    static_tokens: list[str]
    trie: AnswerTrie
    free_tokens: int
    """Greedy mode's token limit: the longest candidate answer, whole, and some slack."""


@dataclass
class _Choice:
    """Decoding state of one window: prompt tokens, forced answer tokens so far, trie node."""

    prompt: list[str]
    forced: list[int]
    node: TrieNode

    def settle(self) -> None:
        """Force single-child links before a model call: those tokens need no model step."""
        while self.node.resolved is None and len(self.node.children) == 1:
            token, self.node = next(iter(self.node.children.items()))
            self.forced.append(token)


def _check_dir(path: Path) -> None:
    if not path.is_dir():
        raise RouterModelError(
            f"router model directory {path} does not exist (or is not a directory); create it with "
            "`extproc model convert` (see docs/router.md)"
        )
    missing = [name for name in ("model.bin", "config.json") if not (path / name).is_file()]
    if not any((path / name).is_file() for name in ("vocabulary.json", "vocabulary.txt")):
        missing.append("vocabulary.json")
    if not (path / "tokenizer.json").is_file():
        missing.append("tokenizer.json")
    if missing:
        raise RouterModelError(
            f"router model directory {path} is incomplete: missing {', '.join(missing)}; "
            "convert the model again with `extproc model convert`"
        )


def load_tokenizer(path: Path) -> Any:
    """The router's tokenizer and chat template, from the model directory's tokenizer.json.

    Loaded as transformers' class for any ``tokenizers`` file, not through ``AutoTokenizer``:
    the auto classes import torch wherever it is installed (2 s of CPU at each start, for
    nothing the router uses), and the class they pick for Arch-Router (``Qwen2Tokenizer``)
    reads the same file into the same tokenizer.
    """
    if not (path / "tokenizer.json").is_file():
        raise RouterModelError(
            f"router model directory {path}: no tokenizer.json; create the directory with "
            "`extproc model convert` (see docs/router.md)"
        )
    from transformers import PreTrainedTokenizerFast

    try:
        # A CTranslate2 directory's config.json names no transformers version, which
        # transformers 5 takes for an old Mistral tokenizer and warns that tokenization
        # will be wrong; Qwen's regex is right as saved.
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path), fix_mistral_regex=False)
    except (OSError, ValueError) as exc:
        raise RouterModelError(
            f"router model directory {path}: tokenizer cannot be loaded ({exc})"
        ) from exc
    if not getattr(tokenizer, "chat_template", None):
        raise RouterModelError(f"router model directory {path}: tokenizer has no chat template")
    return tokenizer


def pick_compute_type(compute_type: str, device: str, supported: set[str]) -> str:
    """Resolve ``auto``: the model as converted (int8) on a CPU, a 16-bit float type on a GPU.

    ``supported`` is what CTranslate2 reports for ``device``; any other value passes through.
    """
    if compute_type != "auto":
        return compute_type
    if device == "cuda":
        for candidate in _GPU_COMPUTE_TYPES:
            if candidate in supported:
                return candidate
    return "default"


class ArchRouter:
    """Blocking, thread-safe Arch-Router classifier. Call it from a worker thread."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        device: str = "auto",
        compute_type: str = "auto",
        threads: int = 0,
        mode: str = "constrained",
    ) -> None:
        if mode not in ROUTER_MODES:
            raise ValueError(f"router mode must be one of {ROUTER_MODES}, not {mode!r}")
        path = Path(model_dir)
        _check_dir(path)
        if device == "auto":
            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        compute_type = pick_compute_type(
            compute_type, device, ctranslate2.get_supported_compute_types(device)
        )
        try:
            self._generator: ctranslate2.Generator | None = ctranslate2.Generator(
                str(path), device=device, compute_type=compute_type, intra_threads=threads
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise RouterModelError(
                f"router model directory {path}: model.bin cannot be loaded ({exc}); "
                "convert the model again with `extproc model convert`"
            ) from exc
        self.tokenizer: Any = load_tokenizer(path)
        _LIVE.add(self)
        self.model_dir = path
        self.device = device
        self.compute_type = compute_type
        self.mode = mode
        self._backend = self.tokenizer.backend_tokenizer
        vocab = self.tokenizer.get_vocab()
        self._end_tokens = [t for t in (self.tokenizer.eos_token, *_END_TOKENS) if t in vocab]
        self._lock = threading.Lock()
        self._configs: dict[tuple[tuple[str, str], ...], _RouteConfig] = {}

    def close(self) -> None:
        """Release the model. Idempotent; also done at interpreter exit.

        CTranslate2 4.8 can abort the process ("terminate called without an active
        exception") when a Generator that ran step callbacks is destroyed during interpreter
        finalization; releasing it earlier avoids that.
        """
        self._generator = None

    @property
    def generator(self) -> ctranslate2.Generator:
        """The CTranslate2 generator (for benchmarks and diagnostics)."""
        if self._generator is None:
            raise RouterModelError(f"router model {self.model_dir} was closed")
        return self._generator

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (special tokens in the text recognised, none added)."""
        with self._lock:  # a Rust tokenizer shared between threads can raise "Already borrowed"
            return self._backend.encode(text, add_special_tokens=False).ids

    def count_tokens(self, text: str) -> int:
        """Token count of ``text`` with the router's own tokenizer (for the window budget)."""
        return len(self.encode(text))

    def prompt(self, routes: Routes, window: Conversation) -> str:
        """The full prompt text, for ``extproc route --show-prompt``."""
        return render_prompt(self.tokenizer, routes, window)

    def _config(self, routes: Routes) -> _RouteConfig:
        key = tuple((name, desc) for name, desc in routes)
        config = self._configs.get(key)
        if config is None:
            static_text, _ = split_prompt(self.prompt(routes, []))
            names = tuple(name for name, _ in routes)
            config = _RouteConfig(
                static_tokens=self.tokenizer.convert_ids_to_tokens(self.encode(static_text)),
                trie=AnswerTrie.build(names, self.encode),
                free_tokens=FREE_SLACK_TOKENS
                + max(len(self.encode(answer_text(name))) for name in (*names, OTHER)),
            )
            with self._lock:
                if len(self._configs) >= _ROUTE_CACHE_SIZE:
                    self._configs.pop(next(iter(self._configs)))
                self._configs[key] = config
        return config

    def split_tokens(self, routes: Routes, window: Conversation) -> tuple[list[str], list[str]]:
        """(static prompt tokens, remaining prompt tokens) for one window.

        The whole prompt is tokenized and the static part is used only when the whole
        prompt's tokens start with it, so the model always sees exactly tokens(prompt).
        """
        config = self._config(routes)
        tokens = self.tokenizer.convert_ids_to_tokens(self.encode(self.prompt(routes, window)))
        cut = len(config.static_tokens)
        if tokens[:cut] == config.static_tokens:
            return config.static_tokens, tokens[cut:]
        return [], tokens

    def classify(self, routes: Routes, windows: list[Conversation]) -> list[str]:
        """One route name (from ``routes``) or ``"other"`` per window. Blocking, batched."""
        if not windows:
            return []
        if self.mode == "greedy":
            names = [name for name, _ in routes]
            return [parse_route(text, names) for text in self.generate_free(routes, windows)]
        return self._classify_constrained(routes, windows)

    def generate_free(
        self, routes: Routes, windows: list[Conversation], max_length: int | None = None
    ) -> list[str]:
        """The model's own greedy answers as text, as the model card would get them.

        By default decoding may run as long as the longest candidate answer needs, so a
        long or escaped route name is never cut short into ``other``.
        """
        static, rests = self._split_batch(routes, windows)
        answers = [""] * len(rests)
        # One batch per prompt length, as in _classify_constrained: a mixed batch is stepped
        # through token by token past its shortest prompt (2.5 times the CPU for 40 windows).
        groups: dict[int, list[int]] = {}
        for index, rest in enumerate(rests):
            groups.setdefault(len(rest), []).append(index)
        for indices in groups.values():
            results = self.generator.generate_batch(
                [rests[index] for index in indices],
                static_prompt=static or None,
                max_length=max_length or self._config(routes).free_tokens,
                include_prompt_in_result=False,
                end_token=self._end_tokens or None,
            )
            for index, result in zip(indices, results, strict=True):
                answers[index] = self.tokenizer.decode(
                    result.sequences_ids[0], skip_special_tokens=True
                )
        return answers

    def _split_batch(
        self, routes: Routes, windows: list[Conversation]
    ) -> tuple[list[str], list[list[str]]]:
        splits = [self.split_tokens(routes, window) for window in windows]
        if all(static for static, _ in splits):
            return splits[0][0], [rest for _, rest in splits]
        return [], [static + rest for static, rest in splits]

    def _classify_constrained(self, routes: Routes, windows: list[Conversation]) -> list[str]:
        trie = self._config(routes).trie
        static, rests = self._split_batch(routes, windows)
        choices = [_Choice(rest, list(trie.prefix), trie.root) for rest in rests]
        while pending := [c for c in choices if c.node.resolved is None]:
            for choice in pending:
                choice.settle()
            # CTranslate2 feeds a batch's prompts at once only up to the shortest one and
            # steps through the rest token by token: batch only prompts of equal length.
            groups: dict[int, list[_Choice]] = {}
            for choice in pending:
                groups.setdefault(len(choice.prompt) + len(choice.forced), []).append(choice)
            for group in groups.values():
                self._step(static, group)
        return [str(choice.node.resolved) for choice in choices]

    def _step(self, static: list[str], group: list[_Choice]) -> None:
        """Decode ``group`` until each choice resolves or the model leaves the trie.

        While the model's greedy token is a child of the choice's node it is also the best
        child, and the next step is conditioned on the right prefix, so decoding goes on. When
        it leaves the trie, the best child by that step's logits is forced and the caller runs
        the choice again (never needed when the model writes a candidate by itself).
        """
        steps = [0] * len(group)

        def on_step(step: Any) -> bool:
            choice = group[step.batch_id]
            child = choice.node.children.get(step.token_id)
            if child is None:
                return True
            steps[step.batch_id] += 1
            choice.node = child
            choice.forced.append(step.token_id)
            return child.resolved is not None

        convert = self.tokenizer.convert_ids_to_tokens
        results = self.generator.generate_batch(
            [choice.prompt + convert(choice.forced) for choice in group],
            static_prompt=static or None,
            max_length=max(choice.node.depth() for choice in group),
            include_prompt_in_result=False,
            return_logits_vocab=True,
            end_token=self._end_tokens or None,
            callback=on_step,
        )
        for choice, taken, result in zip(group, steps, results, strict=True):
            if choice.node.resolved is None:
                children = list(choice.node.children)
                logits = _to_numpy(result.logits[0][taken]).reshape(-1)
                token = children[int(np.argmax(logits[children]))]
                choice.node = choice.node.children[token]
                choice.forced.append(token)


_LIVE: weakref.WeakSet[ArchRouter] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for router in list(_LIVE):
        router.close()


def _to_numpy(logits: ctranslate2.StorageView) -> np.ndarray:
    """Logits as float32 on the host (a GPU compute type may hold them as (b)float16)."""
    if logits.dtype != ctranslate2.DataType.float32:
        logits = logits.to(ctranslate2.DataType.float32)
    if logits.device != "cpu":
        logits = logits.to_device(ctranslate2.Device.cpu)
    return np.asarray(logits)
