"""Convert a Hugging Face checkpoint (Arch-Router) to a CTranslate2 model directory.

A Hub id is downloaded first, into the Hugging Face cache, with a progress bar per file
(bytes, rate, time left); an interrupted download resumes from where it stopped. The
router loads the tokenizer (and its chat template) from the same directory as the model,
so the tokenizer files travel with the converted weights. Every failure the user can do
something about is one line saying what to do.
"""

from __future__ import annotations

import errno
import os
import shutil
import urllib.request
from pathlib import Path

# Everything AutoTokenizer and the chat template may need, when the source has it.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "generation_config.json",
)
DOWNLOADED = ("*.safetensors", "*.json", "*.jinja", "*.txt", "*.model")
"""What conversion reads from a Hub checkpoint (not its other weight formats, nor docs)."""
CPU_TORCH = "pip install torch --index-url https://download.pytorch.org/whl/cpu"
"""The CPU build of torch: conversion needs nothing more, and it is a tenth of the CUDA one."""


class ConvertError(Exception):
    """Conversion could not run or failed; the message says what to do."""


def hub_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def hub_reachable() -> bool:
    """One quick request, rather than the Hub client's retries over half a minute."""
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        return False
    try:
        urllib.request.urlopen(hub_endpoint(), timeout=3).close()
    except OSError:
        return False
    return True


def _present_files(src: str) -> list[str]:
    """The tokenizer files that exist in a local directory."""
    return [name for name in TOKENIZER_FILES if os.path.isfile(os.path.join(src, name))]


def download(src: str) -> str:
    """The local directory of Hub checkpoint `src`, downloaded (or resumed) into the cache."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    page = f"{hub_endpoint()}/{src}"
    if not hub_reachable():
        raise ConvertError(
            f"can't reach the Hugging Face Hub ({hub_endpoint()}) to download {src}: check the "
            "network (or HF_ENDPOINT, HTTPS_PROXY, HF_HUB_OFFLINE), or convert a local copy: "
            "extproc model convert /path/to/checkpoint OUT"
        )
    try:
        return snapshot_download(src, allow_patterns=list(DOWNLOADED))
    except GatedRepoError:
        raise ConvertError(
            f"{src} is gated: accept its terms at {page}, then log in with `hf auth login` "
            "(or set HF_TOKEN)"
        ) from None
    except RepositoryNotFoundError:
        raise ConvertError(
            f"{src} is not a model on the Hugging Face Hub: check the id (owner/name, e.g. "
            "katanemo/Arch-Router-1.5B); a private model needs `hf auth login` (or HF_TOKEN)"
        ) from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise ConvertError(f"downloading {src} failed: the Hub answered {status}") from None


def _no_space(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC


def convert(src: str, out: str | Path, *, quantization: str = "int8", force: bool = False) -> Path:
    """Convert ``src`` (a Hub id or a local directory) into ``out`` with ``quantization``.

    int8 is the default: on a CPU it is the fastest compute type and costs Arch-Router no
    measurable accuracy; pass ``float16``/``bfloat16``/``float32``/``int8_float16``... to
    choose another (CTranslate2 converts again at load time if the device needs it).
    The model is written next to ``out`` and moved there once complete, so an interrupted
    conversion never leaves a directory the router would try to load.
    """
    try:
        import torch  # noqa: F401  (the converter needs it; fail here with a useful hint)
        from ctranslate2.converters import TransformersConverter
    except ImportError as exc:
        raise ConvertError(
            f"converting a model needs torch, which is not installed ({exc.name}); "
            f"install its CPU build with: {CPU_TORCH}"
        ) from None
    out = Path(out)
    if out.exists() and not force:
        raise ConvertError(f"{out} already exists; pass force=True (--force) to replace it")
    try:
        local = src if os.path.isdir(src) else download(src)
        converter = TransformersConverter(
            local,
            copy_files=_present_files(local),
            load_as_float16=quantization
            in ("float16", "int8_float16", "bfloat16", "int8_bfloat16"),
        )
        partial = out.with_name(f"{out.name}.partial")
        converter.convert(str(partial), quantization=quantization, force=True)
        if out.exists():
            shutil.rmtree(out)
        partial.rename(out)
    except ConvertError:
        raise
    except Exception as exc:
        if _no_space(exc) or _no_space(exc.__cause__ or exc.__context__ or exc):
            raise ConvertError(
                f"no space left on the disk while converting {src} (the download needs about "
                "3 GB in the Hugging Face cache, HF_HOME; the model about 1.5 GB at "
                f"{out}): free some, or point HF_HOME elsewhere"
            ) from None
        if isinstance(exc, (OSError, ValueError, RuntimeError, NotImplementedError)):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConvertError(f"converting {src} to {out} failed: {first}") from exc
        raise
    return out
