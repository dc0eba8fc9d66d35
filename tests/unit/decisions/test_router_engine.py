"""ArchRouter on a tiny real model: constrained decoding, greedy agreement, errors, convert."""

from __future__ import annotations

import random
import shutil
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import ctranslate2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extproc.control.router_convert import ConvertError, convert
from extproc.decisions.router.decoding import OTHER, answer_text, parse_route
from extproc.decisions.router.engine import (
    ArchRouter,
    RouterModelError,
    load_tokenizer,
    pick_compute_type,
)
from tests.support.tiny_model import ROUTES, STEERED, session_model_dir

NAMES = [name for name, _ in ROUTES]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return session_model_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def router(model_dir: Path) -> Iterator[ArchRouter]:
    router = ArchRouter(model_dir, device="auto")
    yield router
    router.close()


def random_windows(count: int, seed: int) -> list[list[dict[str, str]]]:
    rng = random.Random(seed)
    words = ["fix", "the", "bug", "write", "code", "review", "hello", "python", "é", "日本", '"q"']
    roles = ["user", "assistant"]
    return [
        [
            {"role": rng.choice(roles), "content": " ".join(rng.choices(words, k=n))}
            for n in rng.choices(range(1, 40), k=rng.randint(1, 3))
        ]
        for _ in range(count)
    ]


def test_loads_on_cpu_with_the_tokenizer_beside_the_model(router: ArchRouter) -> None:
    assert router.device == "cpu"  # no CUDA device here: "auto" fell back
    assert router.compute_type == "default"  # "auto" on a CPU: int8, as converted
    assert router.count_tokens("hello world") == len(router.encode("hello world")) > 0
    assert router.classify(ROUTES, []) == []


def test_loading_qwens_tokenizer_warns_of_nothing(
    qwen_router_load: tuple[ArchRouter, list[str]],
) -> None:
    """transformers 5 took a converted directory with a vocabulary the size of Qwen's for a
    Mistral one and warned of wrong tokenization on every start of the sidecar.

    The session's one load of Qwen's tokenizer, with all it printed: `capfd` here would miss
    the warning whenever an earlier test had imported transformers."""
    router, printed = qwen_router_load
    assert router.encode("Hello, world") == [9707, 11, 1879]
    assert [line for line in printed if "regex" in line] == []


def test_qwens_own_pre_tokenizer_split_is_kept(qwen_router: ArchRouter) -> None:
    """Qwen's regex keeps a run of letters whole before BPE (`XMLHttpRequest` is 2 tokens);
    transformers' fix for Mistral's regex, if asked for, would split it at capitals (3)."""
    assert qwen_router.encode("XMLHttpRequest") == [10609, 26362]


def test_the_tokenizer_is_the_one_autotokenizer_picks_for_arch_router(
    qwen_router: ArchRouter,
) -> None:
    """The router reads tokenizer.json as it stands; the class AutoTokenizer picks for
    Arch-Router's directory (its tokenizer_config.json names `Qwen2Tokenizer`), which builds
    its own from the vocabulary and merges, gives the same tokenizer and chat template."""
    from transformers import Qwen2Tokenizer

    picked = Qwen2Tokenizer.from_pretrained(str(qwen_router.model_dir), fix_mistral_regex=False)
    ours = qwen_router.tokenizer
    assert ours.backend_tokenizer.to_str() == picked.backend_tokenizer.to_str()
    assert (ours.chat_template, ours.eos_token, ours.all_special_tokens) == (
        picked.chat_template,
        picked.eos_token,
        picked.all_special_tokens,
    )


@pytest.mark.parametrize(
    ("asked", "device", "supported", "expected"),
    [
        ("auto", "cpu", {"int8", "int8_float32", "float32"}, "default"),
        ("auto", "cuda", {"int8", "float16", "bfloat16", "int8_bfloat16"}, "bfloat16"),
        ("auto", "cuda", {"int8", "float16", "int8_float16"}, "float16"),
        ("auto", "cuda", {"int8", "float32"}, "default"),
        ("int8_float16", "cuda", {"bfloat16"}, "int8_float16"),
    ],
)
def test_auto_compute_type(asked: str, device: str, supported: set, expected: str) -> None:
    """A GPU gets a 16-bit float type (bfloat16 first); a CPU keeps the int8 model as is."""
    assert pick_compute_type(asked, device, supported) == expected


# What CTranslate2 reports on an H100 (CUDA 12): bfloat16 among them.
H100_COMPUTE_TYPES = {"int8", "int8_float32", "int8_float16", "int8_bfloat16", "float16", "bfloat16", "float32"}  # fmt: skip


def test_auto_loads_the_model_on_a_gpu_in_bfloat16_when_ctranslate2_sees_one(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CTranslate2 as on a machine with one GPU: its device count, its compute types there,
    and a Generator that records where it was asked to load (no GPU here to load on)."""
    loaded: list[tuple[str, str]] = []

    class Generator:
        def __init__(self, path: str, *, device: str, compute_type: str, intra_threads: int):
            loaded.append((device, compute_type))

    def supported(device: str) -> set[str]:
        if device.lower() not in ("cpu", "cuda"):
            raise ValueError(f"unsupported device {device}")
        return H100_COMPUTE_TYPES if device.lower() == "cuda" else {"int8", "float32"}

    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: 1)
    monkeypatch.setattr(ctranslate2, "get_supported_compute_types", supported)
    monkeypatch.setattr(ctranslate2, "Generator", Generator)
    router = ArchRouter(model_dir)
    router.close()
    assert (router.device, router.compute_type) == ("cuda", "bfloat16")
    assert loaded == [("cuda", "bfloat16")]


class GpuStorage:
    """A StorageView held on a GPU, as strict as CTranslate2's: numpy can't read it, only
    `to_device(Device.cpu)` brings it to the host; `to` converts it there."""

    device = "cuda"

    def __init__(self, host: ctranslate2.StorageView, copied: list[object]) -> None:
        self._host = host
        self._copied = copied

    @property
    def dtype(self) -> ctranslate2.DataType:
        return self._host.dtype

    @property
    def __array_interface__(self) -> dict:
        raise AttributeError("Cannot get __array_interface__ when the StorageView is viewing a CUDA array")  # fmt: skip

    def to(self, dtype: ctranslate2.DataType) -> GpuStorage:
        return GpuStorage(self._host.to(dtype), self._copied)

    def to_device(self, device: ctranslate2.Device) -> ctranslate2.StorageView:
        if not isinstance(device, ctranslate2.Device):
            raise TypeError(f"to_device(): incompatible function arguments: {device!r}")
        self._copied.append(self)
        return self._host if device == ctranslate2.Device.cpu else self


class OnGpu:
    """The real generator as it answers on a GPU with compute_type auto: each step's logits a
    bfloat16 StorageView on the GPU (CTranslate2 converts them on a CPU as on a GPU)."""

    def __init__(self, generator: object) -> None:
        self.generator = generator
        self.copied: list[object] = []

    def generate_batch(self, *args: object, **kwargs: object) -> object:
        results = self.generator.generate_batch(*args, **kwargs)  # type: ignore[attr-defined]
        if not kwargs.get("return_logits_vocab"):
            return results
        bfloat16 = ctranslate2.DataType.bfloat16
        return [
            SimpleNamespace(
                logits=[
                    [GpuStorage(step.to(bfloat16), self.copied) for step in steps]
                    for steps in result.logits
                ]
            )
            for result in results
        ]


def test_logits_in_bfloat16_on_a_gpu_decide_as_on_the_cpu(model_dir: Path) -> None:
    """Where the model leaves the answer trie, the route is chosen by that step's logits:
    numpy reads neither bfloat16 nor a GPU's memory, so they come to the host as float32.
    The model writes `code_review` or `code_generation` and leaves the trie before the digit,
    which the logits choose."""
    described = dict(ROUTES)
    routes = [(f"{name}{digit}", described[name]) for name in STEERED for digit in "23"]
    windows = random_windows(40, seed=1)
    router = ArchRouter(model_dir, device="cpu")
    on_cpu = router.classify(routes, windows)
    gpu = OnGpu(router.generator)
    router._generator = gpu  # type: ignore[assignment]
    try:
        assert router.classify(routes, windows) == on_cpu
        assert len(gpu.copied) == len(windows)  # each window's digit chosen by its logits
    finally:
        router.close()


def answer_log_prob(
    router: ArchRouter, routes: list[tuple[str, str]], window: list, name: str, at: int
) -> float:
    """CTranslate2's own log-probability of token `at` of the answer naming `name`, after
    the window's prompt (its `score_batch`, not the decoding under test)."""
    convert = router.tokenizer.convert_ids_to_tokens
    prompt = convert(router.encode(router.prompt(routes, window)))
    tokens = convert(router.encode(answer_text(name)))
    return router.generator.score_batch([prompt + tokens])[0].log_probs[len(prompt) + at - 1]


def test_where_the_model_leaves_the_trie_the_candidate_it_scores_highest_wins(
    router: ArchRouter,
) -> None:
    """The model writes `code_review` or `code_generation` (two tokens chosen in one call)
    and then `"}`, which no candidate continues with: the digit is the one CTranslate2's own
    scoring of the whole answer finds likelier at that place."""
    described = dict(ROUTES)
    routes = [(f"{name}{digit}", described[name]) for name in STEERED for digit in "23"]
    windows = random_windows(8, seed=1)
    answers = router.classify(routes, windows)
    assert {answer[:-1] for answer in answers} == set(STEERED)
    for window, answer in zip(windows, answers, strict=True):
        at = len(router.encode(answer_text(answer))) - 2  # the digit, before `"}`
        scores = {d: answer_log_prob(router, routes, window, answer[:-1] + d, at) for d in "23"}
        assert answer[-1] == max(scores, key=scores.__getitem__), (window, scores)


def test_a_name_that_another_continues_is_chosen_after_the_forced_token(
    router: ArchRouter,
) -> None:
    """`code_review2` and `code_review23`: the model writes `code_review` and then `"}`,
    which leaves the trie, so `2` (the only child) is forced, and the model runs again on
    the answer so far to choose between ending there and `3`."""
    described = dict(ROUTES)
    routes = [(f"{name}{end}", described[name]) for name in STEERED for end in ("2", "23")]
    windows = random_windows(8, seed=1)
    answers = router.classify(routes, windows)
    bases = [answer.removesuffix("3").removesuffix("2") for answer in answers]
    assert set(bases) == set(STEERED)
    for window, base, answer in zip(windows, bases, answers, strict=True):
        at = len(router.encode(answer_text(base + "2"))) - 1  # `"}` or `3`
        ends = answer_log_prob(router, routes, window, base + "2", at)
        goes_on = answer_log_prob(router, routes, window, base + "23", at)
        assert answer == (base + "2" if ends > goes_on else base + "23"), (window, ends, goes_on)


def test_a_token_written_after_leaving_the_trie_is_no_choice(router: ArchRouter) -> None:
    """Routes `code`, `code_generation1` and `code_generation2`: where the model writes
    `code_review"}`, it leaves the trie at `_review`, and the choice there, by that step's
    scores, is between `_generation` and ending the name; the `"}` it writes next is not a
    choice of `code`."""
    routes = [(name, f"route {name}") for name in ("code", "code_generation1", "code_generation2")]
    windows = random_windows(12, seed=1)
    free = {parse_route(text, NAMES) for text in router.generate_free(ROUTES, windows)}
    assert free == set(STEERED)  # some windows leave the trie at `_review`
    at = len(router.encode(answer_text("code"))) - 1  # `"}` or `_generation`
    for window, answer in zip(windows, router.classify(routes, windows), strict=True):
        ends = answer_log_prob(router, routes, window, "code", at)
        goes_on = answer_log_prob(router, routes, window, "code_generation1", at)
        assert (answer == "code") == (ends > goes_on), (window, answer, ends, goes_on)


def test_constrained_agrees_with_free_greedy_decoding(router: ArchRouter) -> None:
    """Whenever the model writes a valid answer by itself, the fast path picks the same.

    The tiny model is steered (tests/support/tiny_model.py) so that it really writes one of two
    route names depending on the conversation: both cases must occur, or this test proves
    nothing.
    """
    windows = random_windows(40, seed=1)
    rng = random.Random(2)
    agreed: Counter[str] = Counter()
    for routes in (ROUTES, rng.sample(ROUTES, k=4), [ROUTES[1], ROUTES[0]]):
        names = [name for name, _ in routes]
        free = [parse_route(text, names) for text in router.generate_free(routes, windows)]
        fast = router.classify(routes, windows)
        for expected, got in zip(free, fast, strict=True):
            if expected != OTHER:
                assert got == expected
                agreed[got] += 1
    assert set(agreed) == set(STEERED), agreed
    assert min(agreed.values()) >= 10, agreed


def test_greedy_mode_parses_the_models_answer(model_dir: Path, router: ArchRouter) -> None:
    greedy = ArchRouter(model_dir, mode="greedy")
    try:
        windows = random_windows(12, seed=3)
        assert greedy.classify(ROUTES, windows) == router.classify(ROUTES, windows)
        # Routes the model doesn't answer with: its free answer names no configured route.
        assert set(greedy.classify(ROUTES[2:], windows)) == {OTHER}
    finally:
        greedy.close()


class RecordingGenerator:
    """The real generator, with the prompts and arguments of each ``generate_batch`` call kept."""

    def __init__(self, generator: object) -> None:
        self.generator = generator
        self.batches: list[list[list[str]]] = []
        self.calls: list[dict] = []

    def generate_batch(self, prompts: list[list[str]], **kwargs: object) -> object:
        self.batches.append(prompts)
        self.calls.append(kwargs)
        return self.generator.generate_batch(prompts, **kwargs)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "name", ["x" * 64, "コード生成", "code_generation"], ids=["64 chars", "escaped", "short"]
)
def test_greedy_mode_may_write_the_longest_answer_whole(model_dir: Path, name: str) -> None:
    """A long (or escaped non-ASCII) route name must not be cut off into ``other``."""
    router = ArchRouter(model_dir, device="cpu", mode="greedy")
    recording = RecordingGenerator(router.generator)
    router._generator = recording  # type: ignore[assignment]
    routes = [*ROUTES, (name, "a route with a long or non-ASCII name")]
    router.classify(routes, random_windows(1, seed=3))
    longest = max(len(router.encode(answer_text(n))) for n, _ in routes)
    assert recording.calls[-1]["max_length"] >= longest > 0
    router.close()


@pytest.mark.parametrize("mode", ["constrained", "greedy"])
def test_decoding_ends_at_either_of_qwens_end_tokens(model_dir: Path, mode: str) -> None:
    """Qwen2.5's chat models (Arch-Router's base) end a turn at `<|im_end|>` or
    `<|endoftext|>`, both in their generation config; CTranslate2 alone stops only at the
    first (its config's eos_token)."""
    router = ArchRouter(model_dir, device="cpu", mode=mode)
    recording = RecordingGenerator(router.generator)
    router._generator = recording  # type: ignore[assignment]
    router.classify(ROUTES, random_windows(2, seed=3))
    router.close()
    assert recording.calls
    assert [set(call["end_token"]) for call in recording.calls] == [
        {"<|im_end|>", "<|endoftext|>"}
    ] * len(recording.calls)


@pytest.mark.parametrize("mode", ["constrained", "greedy"])
def test_ctranslate2_gets_one_batch_per_prompt_length(model_dir: Path, mode: str) -> None:
    """A batch of mixed lengths is stepped through token by token past its shortest prompt:
    2.5 times the CPU for 40 windows."""
    router = ArchRouter(model_dir, device="cpu", mode=mode)
    recording = RecordingGenerator(router.generator)
    router._generator = recording  # type: ignore[assignment]
    windows = random_windows(10, seed=4)
    lengths = {len(router.encode(router.prompt(ROUTES, window))) for window in windows}
    router.classify(ROUTES, windows)
    router.close()
    assert len(lengths) > 1
    assert [len({len(prompt) for prompt in batch}) for batch in recording.batches] == [1] * len(
        recording.batches
    )
    assert sum(len(batch) for batch in recording.batches[: len(lengths)]) == len(windows)


class LeavesTheTrie:
    """A model that leaves the answer trie where it is told, with flat scores, so that the
    router forces each node's first child: its first batch leaves at once, its second after
    writing `first`, and every later one at once. Each batch's prompts are kept."""

    def __init__(self, router: ArchRouter, first: int) -> None:
        self.first = first
        self.stray = router.encode("<|im_end|>")[0]
        self.vocabulary = len(router.tokenizer)
        self.batches: list[list[list[str]]] = []

    def generate_batch(self, prompts: list, *, callback: Any, **kwargs: object) -> list:
        script = [self.first, self.stray] if len(self.batches) == 1 else [self.stray]
        self.batches.append(prompts)
        results = []
        for batch_id, _ in enumerate(prompts):
            rows = []
            for step, token in enumerate(script):
                rows.append(
                    ctranslate2.StorageView.from_array(np.zeros(self.vocabulary, "float32"))
                )
                if callback(SimpleNamespace(batch_id=batch_id, step=step, token_id=token)):
                    break
            results.append(SimpleNamespace(logits=[rows]))
        return results


def test_windows_run_again_at_different_depths_are_batched_by_their_length(
    router: ArchRouter,
) -> None:
    """Two windows, the second a token longer, leave the trie one token apart: the longer
    one after `code`, the other at once. Run again, each prompt is its window with the
    answer so far, two tokens apart: one batch each (as the first test of this kind says,
    CTranslate2 steps through a mixed batch token by token)."""
    names = ("code_review_bug", "code_review_chat", "code_generation_bug", "code_generation_chat")
    routes = [(name, f"route {name}") for name in names]
    trie = router._config(routes).trie
    code = next(iter(trie.root.children))
    review = next(iter(trie.root.children[code].children))
    assert len(trie.root.children[code].children[review].children) == 2  # still a choice there
    texts = ["hello" + "!" * n for n in range(8)]
    lengths = {
        len(router.encode(router.prompt(routes, [{"role": "user", "content": text}]))): text
        for text in texts
    }
    short = next(n for n in sorted(lengths) if n + 1 in lengths)
    windows = [[{"role": "user", "content": lengths[n]}] for n in (short, short + 1)]
    model = LeavesTheTrie(router, first=code)
    generator, router._generator = router._generator, model  # type: ignore[assignment]
    try:
        answers = router.classify(routes, windows)
    finally:
        router._generator = generator
    assert answers == ["code_review_bug", "code_review_bug"]
    first = len(model.batches[0][0])  # the short window
    assert [sorted(len(prompt) for prompt in batch) for batch in model.batches] == [
        [first],
        [first + 1],  # the long window
        [first + 1],  # the short one again, at `code`
        [first + 3],  # the long one again, at `code_review`
        [first + 2],  # the short one, at `code_review`
    ]


class WritesSpecialTokens:
    """A model whose greedy answer has a stray `<|im_start|>` inside the route name."""

    def __init__(self, router: ArchRouter) -> None:
        encode = router.encode
        self.ids = [*encode('{"route": "code'), *encode("<|im_start|>"), *encode('_review"}')]

    def generate_batch(self, prompts: list, **kwargs: object) -> list[SimpleNamespace]:
        return [SimpleNamespace(sequences_ids=[self.ids]) for _ in prompts]


def test_greedy_mode_reads_the_answer_without_special_tokens(model_dir: Path) -> None:
    """As the model card decodes it (`skip_special_tokens=True`): the name is read whole."""
    router = ArchRouter(model_dir, device="cpu", mode="greedy")
    router._generator = WritesSpecialTokens(router)  # type: ignore[assignment]
    window = random_windows(1, seed=3)
    assert router.generate_free(ROUTES, window) == ['{"route": "code_review"}']
    assert router.classify(ROUTES, window) == ["code_review"]
    router.close()


def test_free_answers_stay_with_their_windows(router: ArchRouter) -> None:
    """Free decoding batches windows by prompt length: two of one length that the model
    answers differently each get their own answer, in either order."""
    review = [{"role": "user", "content": '日本 python code hello "q" bug "q" code 日本 write the bug hello python the write 日本 bug python hello fix code "q" the review fix code write hello python fix 日本 review bug "q"'}]  # fmt: skip
    generation = [{"role": "user", "content": "日本 日本 é bug é 日本 日本 日本 python python bug 日本 日本 日本"}]  # fmt: skip
    lengths = {len(router.encode(router.prompt(ROUTES, w))) for w in (review, generation)}
    assert len(lengths) == 1, lengths
    for windows, expected in [
        ([review, generation], ["code_review", "code_generation"]),
        ([generation, review], ["code_generation", "code_review"]),
    ]:
        assert [parse_route(t, NAMES) for t in router.generate_free(ROUTES, windows)] == expected


def test_batched_equals_one_by_one(router: ArchRouter) -> None:
    windows = random_windows(10, seed=4)
    routes = [("bug_fixing", "x"), ("general_chat", "y"), ("code_gen", "z"), ("coda", "w")]
    batched = router.classify(routes, windows)
    assert batched == [router.classify(routes, [w])[0] for w in windows]


def test_a_window_without_the_static_prefix_is_decoded_from_its_whole_prompt(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where a prompt's tokens don't start with the static part's (a merge across the cut),
    the batch goes without the static prompt: every window's whole prompt, the same routes."""
    router = ArchRouter(model_dir, device="cpu")
    windows = random_windows(6, seed=4)
    expected = router.classify(ROUTES, windows)
    split = router.split_tokens

    def first_unsplit(routes: list, window: list) -> tuple[list[str], list[str]]:
        static, rest = split(routes, window)
        return ([], static + rest) if window is windows[0] else (static, rest)

    monkeypatch.setattr(router, "split_tokens", first_unsplit)
    assert router.classify(ROUTES, windows) == expected
    router.close()


def test_thread_safe(router: ArchRouter) -> None:
    windows = random_windows(16, seed=5)
    expected = router.classify(ROUTES, windows)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda w: router.classify(ROUTES, [w])[0], windows))
    assert got == expected


name_st = st.text(alphabet="abc_é", min_size=1, max_size=12)
routes_st = st.lists(name_st, min_size=1, max_size=6, unique=True).map(
    lambda names: [(name, f"route {name}") for name in names]
)
window_st = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant"]), "content": st.text(max_size=60)}
    ),
    min_size=1,
    max_size=3,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(routes_st, st.lists(window_st, min_size=1, max_size=3))
def test_always_a_configured_name_or_other(
    router: ArchRouter, routes: list[tuple[str, str]], windows: list
) -> None:
    """Random names make deep tries where the model leaves the trie and must be re-run."""
    answers = router.classify(routes, windows)
    assert len(answers) == len(windows)
    assert set(answers) <= {name for name, _ in routes} | {OTHER}


@settings(max_examples=40, deadline=None)
@given(st.lists(window_st, min_size=1, max_size=4))
def test_agreement_on_random_windows(router: ArchRouter, windows: list) -> None:
    free = [parse_route(text, NAMES) for text in router.generate_free(ROUTES, windows)]
    fast = router.classify(ROUTES, windows)
    assert all(f == c for f, c in zip(free, fast, strict=True) if f != OTHER)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(RouterModelError) as err:
        ArchRouter(tmp_path / "nope")
    assert str(err.value) == (
        f"router model directory {tmp_path / 'nope'} does not exist (or is not a directory); "
        "create it with `extproc model convert` (see docs/router.md)"
    )


def test_incomplete_directory(tmp_path: Path, model_dir: Path) -> None:
    shutil.copytree(model_dir, tmp_path / "m")
    (tmp_path / "m" / "model.bin").unlink()
    (tmp_path / "m" / "tokenizer.json").unlink()  # tokenizer_config.json alone is no tokenizer
    with pytest.raises(RouterModelError, match=r"missing model.bin, tokenizer.json") as err:
        ArchRouter(tmp_path / "m")
    assert str(tmp_path / "m") in str(err.value)


def test_a_tokenizer_that_cannot_serve_the_router_is_named(tmp_path: Path, model_dir: Path) -> None:
    """`extproc route --show-prompt` loads the tokenizer alone: each way it can be unusable
    is one message naming the directory."""
    folder = tmp_path / "m"
    shutil.copytree(model_dir, folder)
    template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    (folder / "chat_template.jinja").unlink()
    with pytest.raises(RouterModelError) as err:
        load_tokenizer(folder)
    assert str(err.value) == f"router model directory {folder}: tokenizer has no chat template"
    (folder / "chat_template.jinja").write_text(template, encoding="utf-8")
    (folder / "tokenizer.json").write_text("{", encoding="utf-8")
    with pytest.raises(RouterModelError, match=r": tokenizer cannot be loaded \(") as err:
        load_tokenizer(folder)
    assert str(err.value).startswith(f"router model directory {folder}: ")
    (folder / "tokenizer.json").unlink()
    with pytest.raises(RouterModelError) as err:
        load_tokenizer(folder)
    assert str(err.value) == (
        f"router model directory {folder}: no tokenizer.json; create the directory with "
        "`extproc model convert` (see docs/router.md)"
    )


@pytest.mark.parametrize(
    ("removed", "named"),
    [
        (["vocabulary.json"], "vocabulary.json"),
        (["config.json"], "config.json"),
        (
            ["tokenizer.json", "vocabulary.json", "config.json", "model.bin"],
            "model.bin, config.json, vocabulary.json, tokenizer.json",
        ),
    ],
)
def test_an_incomplete_directory_names_exactly_what_is_missing(
    tmp_path: Path, model_dir: Path, removed: list[str], named: str
) -> None:
    """Every file the check needs and lacks, in one message."""
    shutil.copytree(model_dir, tmp_path / "m")
    for name in removed:
        (tmp_path / "m" / name).unlink()
    with pytest.raises(RouterModelError) as err:
        ArchRouter(tmp_path / "m")
    assert str(err.value) == (
        f"router model directory {tmp_path / 'm'} is incomplete: missing {named}; "
        "convert the model again with `extproc model convert`"
    )


def test_a_vocabulary_txt_is_a_vocabulary(tmp_path: Path, model_dir: Path) -> None:
    """Converters write the vocabulary as vocabulary.json or vocabulary.txt."""
    shutil.copytree(model_dir, tmp_path / "m")
    (tmp_path / "m" / "vocabulary.json").rename(tmp_path / "m" / "vocabulary.txt")
    (tmp_path / "m" / "model.bin").unlink()
    with pytest.raises(RouterModelError, match=r"missing model\.bin;"):
        ArchRouter(tmp_path / "m")


def test_truncated_model_bin(tmp_path: Path, model_dir: Path) -> None:
    shutil.copytree(model_dir, tmp_path / "m")
    data = (tmp_path / "m" / "model.bin").read_bytes()
    (tmp_path / "m" / "model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(RouterModelError) as err:
        ArchRouter(tmp_path / "m")
    message = str(err.value)  # CTranslate2's own reason in the brackets
    assert message.startswith(
        f"router model directory {tmp_path / 'm'}: model.bin cannot be loaded ("
    )
    assert message.endswith("); convert the model again with `extproc model convert`")


def test_closed_router_says_so(model_dir: Path) -> None:
    closed = ArchRouter(model_dir)
    closed.close()
    with pytest.raises(RouterModelError) as err:
        closed.classify(ROUTES, random_windows(1, seed=6))
    assert str(err.value) == f"router model {model_dir} was closed"


def test_an_unknown_mode_is_refused_by_name(model_dir: Path) -> None:
    with pytest.raises(ValueError) as err:
        ArchRouter(model_dir, mode="fast")
    assert str(err.value) == "router mode must be one of ('constrained', 'greedy'), not 'fast'"


def test_convert_copies_the_tokenizer_and_refuses_to_overwrite(model_dir: Path) -> None:
    assert (model_dir / "tokenizer.json").is_file()
    assert (model_dir / "chat_template.jinja").is_file()
    assert (model_dir / "generation_config.json").is_file()
    with pytest.raises(ConvertError, match="already exists"):
        convert(str(model_dir.parent / "tiny-arch-router-hf"), model_dir)


def test_convert_without_torch_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    cpu_index = r"pip install torch --index-url https://download\.pytorch\.org/whl/cpu"
    with pytest.raises(ConvertError, match=cpu_index):
        convert("katanemo/Arch-Router-1.5B", tmp_path / "out")
