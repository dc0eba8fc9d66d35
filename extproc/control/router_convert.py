"""Convert a Hugging Face checkpoint (Arch-Router) to a CTranslate2 model directory.

A Hub id is downloaded first, into `OUT.download` beside the output, with a progress bar
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
from typing import Any

# The tokenizer the router reads (tokenizer.json, its config and chat template) and the files
# other tools load it from, when the source has them.
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


BYTES_BAR = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}B/{total_fmt}B [{remaining} left, {rate_fmt}]"


def download(src: str, into: Path) -> Path:
    """Hub checkpoint `src`'s files that conversion reads, into `into`, with one progress bar
    (bytes, time left). A file cut short stays as `NAME.part` and the next run asks for the
    rest of it: huggingface_hub's own downloads start a cut file over."""
    from fnmatch import fnmatch

    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError
    from huggingface_hub.utils import tqdm

    page = f"{hub_endpoint()}/{src}"
    if not hub_reachable():
        raise ConvertError(
            f"can't reach the Hugging Face Hub ({hub_endpoint()}) to download {src}: check the "
            "network (or HF_ENDPOINT, HTTPS_PROXY, HF_HUB_OFFLINE), or convert a local copy: "
            "extproc model convert /path/to/checkpoint OUT"
        )
    try:
        info = HfApi().model_info(src, files_metadata=True)
        files = [
            (f.rfilename, f.size or 0)
            for f in info.siblings or ()
            if "/" not in f.rfilename and any(fnmatch(f.rfilename, p) for p in DOWNLOADED)
        ]
        into.mkdir(parents=True, exist_ok=True)
        have = sum(_have(into / name) for name, _ in files)
        with tqdm(
            desc=f"Downloading {src}",
            total=sum(size for _, size in files),
            initial=have,
            unit="B",
            unit_scale=True,
            bar_format=BYTES_BAR,
        ) as bar:
            for name, size in files:
                _fetch(src, info.sha, name, size, into / name, bar)
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
    return into


def _have(dest: Path) -> int:
    """Bytes of `dest` already here, whole or in part."""
    for path in (dest, dest.with_name(f"{dest.name}.part")):
        if path.exists():
            return path.stat().st_size
    return 0


def _fetch(src: str, revision: str | None, name: str, size: int, dest: Path, bar: Any) -> None:
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    if dest.exists():
        return
    part = dest.with_name(f"{dest.name}.part")
    start = part.stat().st_size if part.exists() else 0
    if not (start and start == size):
        headers = build_hf_headers()
        if start:
            headers["Range"] = f"bytes={start}-"
        url = hf_hub_url(src, name, revision=revision)
        with get_session().stream(
            "GET", url, headers=headers, follow_redirects=True, timeout=60
        ) as response:
            hf_raise_for_status(response)
            if start and response.status_code != 206:  # the whole file came again
                bar.update(-start)
                start = 0
            with part.open("ab" if start else "wb") as out:
                for chunk in response.iter_bytes(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
    part.rename(dest)


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
        downloads = out.with_name(f"{out.name}.download")
        local = src if os.path.isdir(src) else str(download(src, downloads))
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
        if local != src:
            shutil.rmtree(downloads)
    except ConvertError:
        raise
    except Exception as exc:
        if _no_space(exc) or _no_space(exc.__cause__ or exc.__context__ or exc):
            raise ConvertError(
                f"no space left on the disk while converting {src} (Arch-Router needs about "
                f"3 GB for the download beside {out}, removed once converted, and 1.5 GB for "
                "the model): free some, or convert into another disk's folder"
            ) from None
        if isinstance(exc, (OSError, ValueError, RuntimeError, NotImplementedError)):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConvertError(f"converting {src} to {out} failed: {first}") from exc
        raise
    return out
